fn main() -> std::process::ExitCode {
    restock::cli::main()
}
