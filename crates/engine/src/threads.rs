//! The engine's thread pool: one rayon pool sized by `TUNESMITH_THREADS` (or all cores).
//! Kernels split work in fixed-size chunks, so results for a seed are bit-identical from run
//! to run at a fixed thread count. Every thread that runs engine work flushes subnormal floats
//! to zero ([`crate::fpmode`]).

use std::sync::OnceLock;

static THREADS: OnceLock<usize> = OnceLock::new();

/// The environment variable that sets the number of threads.
pub const THREADS_ENV: &str = "TUNESMITH_THREADS";

/// Sets up the global pool with `threads` workers (or `TUNESMITH_THREADS`, or all cores).
/// Only the first call sizes the pool; every call sets the calling thread's floating-point
/// mode. Returns the number of threads in use.
pub fn init(threads: Option<usize>) -> usize {
    let n = *THREADS.get_or_init(|| {
        let n = threads
            .filter(|&n| n > 0)
            .or_else(|| std::env::var(THREADS_ENV).ok().and_then(|v| v.trim().parse::<usize>().ok()).filter(|&n| n > 0))
            .unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1));
        // If a pool was already built elsewhere (tests, embedding apps), use it as is.
        let _ = rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .start_handler(|_| crate::fpmode::flush_denormals())
            .build_global();
        // A pool built elsewhere kept its own start handler: set the mode on its workers too.
        rayon::broadcast(|_| crate::fpmode::flush_denormals());
        rayon::current_num_threads()
    });
    crate::fpmode::ensure();
    n
}

/// The number of threads kernels may use.
pub fn num_threads() -> usize {
    crate::fpmode::ensure();
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

#[cfg(all(test, target_arch = "x86_64"))]
mod tests {
    use rayon::prelude::*;

    #[test]
    fn every_pool_worker_and_the_caller_flush_denormals() {
        super::init(None);
        assert!(crate::fpmode::denormals_flushed(), "calling thread");
        let all = (0..4096).into_par_iter().map(|_| crate::fpmode::denormals_flushed()).all(|f| f);
        assert!(all, "a rayon worker keeps subnormals");
        let other = std::thread::spawn(|| {
            super::num_threads();
            crate::fpmode::denormals_flushed()
        });
        assert!(other.join().unwrap(), "a thread that calls a kernel entry point");
    }
}
