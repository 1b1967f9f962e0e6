//! The C allocator's settings for strata's processes.
//!
//! Blobs move through strata in 1 MiB messages and chunks (gRPC frames, RocksDB reads,
//! tar buffers), and each is a fresh allocation. glibc serves a block that size with its
//! own `mmap` while the block is above its mmap threshold, and returns the pages at `free`,
//! so every chunk paid ~256 page faults and the zeroing of fresh pages: measured on
//! `strata save` of a 536 MB layer, 115,000 page faults and ~17% of its CPU. With the
//! threshold fixed at 32 MiB (the top of glibc's own dynamic range) those blocks are reused
//! from the heap instead: 13,500 faults, the save ~25% faster, peak RSS +6 MB.

/// Largest block taken from the heap rather than mapped on its own.
const MMAP_THRESHOLD: i32 = 32 << 20;
/// Free memory at the top of a heap kept for reuse rather than returned to the kernel
/// (glibc's own choice for the threshold above: twice it).
const TRIM_THRESHOLD: i32 = 64 << 20;

/// Sets the allocator up for chunked blob traffic. Call once at the start of `main`;
/// harmless to call again. Elsewhere than glibc it does nothing.
///
/// `max_arenas` caps glibc's per-thread heaps (default: 8 per core). Heap blocks that are
/// kept for reuse are kept per arena, so a process whose many threads each pass big blocks
/// through holds a pool in each: the CLI keeps one (its embedded `strata build` of
/// examples/large-copy peaked 20-30 MB higher with the thresholds above and no cap; two
/// arenas still cost it ~4 MB over one, with no measurable gain in its time or a pull's);
/// long-running services keep the default, for the concurrency. (A 512 KiB mmap threshold
/// instead took another ~4 MB off that build but made it 25% slower, a pull ~40% more CPU
/// and a save twice as slow.)
#[allow(unsafe_code)] // the one FFI call of the workspace; nothing safe wraps mallopt
pub fn tune_allocator(max_arenas: Option<u16>) {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets allocator parameters; it is thread-safe in glibc, takes no
    // pointers, and returns 0 on an unknown or refused parameter, which leaves the defaults.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
        libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD);
        if let Some(n) = max_arenas {
            libc::mallopt(libc::M_ARENA_MAX, i32::from(n.max(1)));
        }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    let _ = max_arenas;
}
