fn main() -> std::process::ExitCode {
    hanse::cli::main()
}
