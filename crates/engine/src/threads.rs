//! The engine's thread pool: one rayon pool sized by `TUNESMITH_THREADS` (or all cores).
//! Kernels split work in fixed-size chunks, so results for a seed are bit-identical from run
//! to run at a fixed thread count.

use std::sync::OnceLock;

static THREADS: OnceLock<usize> = OnceLock::new();

/// The environment variable that sets the number of threads.
pub const THREADS_ENV: &str = "TUNESMITH_THREADS";

/// Sets up the global pool with `threads` workers (or `TUNESMITH_THREADS`, or all cores).
/// Only the first call has an effect; returns the number of threads in use.
pub fn init(threads: Option<usize>) -> usize {
    *THREADS.get_or_init(|| {
        let n = threads
            .filter(|&n| n > 0)
            .or_else(|| std::env::var(THREADS_ENV).ok().and_then(|v| v.trim().parse::<usize>().ok()).filter(|&n| n > 0))
            .unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1));
        // If a pool was already built elsewhere (tests, embedding apps), use it as is.
        let _ = rayon::ThreadPoolBuilder::new().num_threads(n).build_global();
        rayon::current_num_threads()
    })
}

/// The number of threads kernels may use.
pub fn num_threads() -> usize {
    init(None)
}

/// The parallelism to hand to `gemm` for a product of `m×n×k`: all threads for large
/// products issued from outside the pool, one thread inside a parallel region.
pub fn gemm_parallelism(m: usize, n: usize, k: usize) -> gemm::Parallelism {
    let threads = num_threads();
    let inside_pool = rayon::current_thread_index().is_some();
    if threads > 1 && !inside_pool && m.saturating_mul(n).saturating_mul(k) >= 48 * 48 * 48 {
        gemm::Parallelism::Rayon(threads)
    } else {
        gemm::Parallelism::None
    }
}

/// Number of items per parallel chunk so that `total` splits into about four chunks per
/// thread, but never below `min_chunk` items.
pub fn chunk_len(total: usize, min_chunk: usize) -> usize {
    let per = total.div_ceil(num_threads() * 4).max(1);
    per.max(min_chunk)
}
