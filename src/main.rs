//! The `finlit-map` binary: parse the command line, run, exit with its code.

// Every document, row and cell is a few small allocations: mimalloc's
// thread-local free lists cost a fraction of glibc malloc's (measured in
// docs/PERFORMANCE.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `mi_option_arena_eager_commit` in mimalloc's `mi_option_t` (v2 and v3),
/// which the Rust bindings do not name.
const ARENA_EAGER_COMMIT: libmimalloc_sys::mi_option_t = 4;

fn main() -> std::process::ExitCode {
    // Arenas committed as they are used, not all at once: otherwise the
    // resident memory of a run doubles (measured in docs/PERFORMANCE.md).
    // SAFETY: set once, before any thread but this one exists.
    unsafe {
        libmimalloc_sys::mi_option_set(ARENA_EAGER_COMMIT, 0);
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
