//! The `finlit-map` binary: parse the command line, run, exit with its code.

fn main() -> std::process::ExitCode {
    // `finlit-map plan | head` should end quietly, as other Unix tools do,
    // not panic on a closed pipe.
    #[cfg(unix)]
    // SAFETY: setting a signal's disposition to its default before any thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    finlit_map::cli::main()
}
