//! The `finlit-map` binary: parse the command line, run, exit with its code.

fn main() -> std::process::ExitCode {
    finlit_map::cli::main()
}
