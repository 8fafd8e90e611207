/// A connector allocates many small, short-lived buffers (JSON, HTTP, SQL) across threads; mimalloc serves that with
/// less contention and less work than the system allocator (decision 0016). The meter around it bounds the memory a
/// SPARQL query may take ([`hanse::memory`]).
#[global_allocator]
static ALLOCATOR: hanse::memory::Metered<mimalloc::MiMalloc> = hanse::memory::Metered(mimalloc::MiMalloc);

fn main() -> std::process::ExitCode {
    hanse::cli::main()
}
