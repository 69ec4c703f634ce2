//! The `finlit-map` binary: parse the command line, run, exit with its code.

// Every document, row and cell is a few small allocations: mimalloc's
// thread-local free lists cost a fraction of glibc malloc's (measured in
// docs/PERFORMANCE.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `mi_option_purge_delay` in mimalloc 2's `mi_option_t` (the `v2` feature
/// is pinned in Cargo.toml); the Rust bindings do not name it.
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

fn main() -> std::process::ExitCode {
    // No transparent huge pages: mimalloc asks for them on its arenas, and
    // each 2 MiB page a thread touches stays resident, which doubled the
    // resident memory of a run (measured in docs/PERFORMANCE.md).
    #[cfg(target_os = "linux")]
    // SAFETY: a process-wide flag, set before any other thread exists.
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
    // Freed pages go back to the system at once rather than 10 ms later:
    // chunks are freed by another thread than the one that filled them.
    // SAFETY: options are set before any other thread exists.
    unsafe {
        libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, 0);
    }
    // `finlit-map plan | head` should end quietly, as other Unix tools do,
    // not panic on a closed pipe.
    #[cfg(unix)]
    // SAFETY: setting a signal's disposition to its default before any thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    finlit_map::cli::main()
}
