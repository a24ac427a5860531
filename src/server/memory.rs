//! The daemon's memory and glibc's allocator: large jobs come and go (a 100,000-task job holds
//! tens of MB in large vectors), and glibc's allocator would otherwise keep their memory. The
//! `jobmaster` binary allocates with jemalloc (see `src/bin/jobmaster.rs`); this serves where
//! the library runs on glibc's allocator (`jmload`'s in-process daemon, tests).

/// Large blocks (a job's task vectors) are mapped and unmapped on their own rather than
/// carved from the heap: glibc raises its mmap threshold to the size of every mapped block
/// that is freed (up to 32 MiB), after which the next job's vectors come from the heap and
/// stay there as fragments. A fixed threshold keeps them returnable. Call once, first thing in
/// `main` (before threads start).
pub fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets allocator parameters; called before other threads exist.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 256 * 1024);
    }
}

/// Declares the daemon's allocator in a binary: jemalloc, with background threads that give
/// freed pages back after about a second rather than the default ten (`MALLOC_CONF` in the
/// environment still overrides the options). Large jobs come and go, and their memory must go
/// back to the system when they are dropped (`jobs.retain-ended`); glibc's allocator keeps
/// fragments of it in its arenas. For `jobmaster`, and for `jmload`, whose in-process daemon
/// must be measured as it ships. Elsewhere (glibc) it declares nothing.
#[macro_export]
macro_rules! daemon_allocator {
    () => {
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        #[global_allocator]
        static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

        /// jemalloc's options, read by jemalloc at start.
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        #[unsafe(export_name = "_rjem_malloc_conf")]
        static JEMALLOC_CONF: &[u8; 60] =
            b"background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0\0";
    };
}
