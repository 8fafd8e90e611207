/// A connector allocates many small, short-lived buffers (JSON, HTTP, SQL) across threads; mimalloc serves that with
/// less contention and less work than the system allocator (decision 0016).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    hanse::cli::main()
}
