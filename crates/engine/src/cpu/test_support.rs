//! Helpers shared by the CPU kernels' unit tests.

use crate::dtype::Real;

/// `n` deterministic values in [−1, 1], different for each `seed`.
pub fn values(n: usize, seed: u64) -> Vec<f64> {
    (0..n).map(|i| ((i as f64 + 1.0) * 0.6180339 + seed as f64 * 0.37).sin()).collect()
}

/// Asserts `got` equals `want` element by element within `tol` relative (plus `tol` absolute).
pub fn assert_close<T: Real>(name: &str, got: &[T], want: &[f64], tol: f64) {
    assert_eq!(got.len(), want.len(), "{name}: length");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let g = g.to_f64();
        assert!((g - w).abs() <= tol * (1.0 + w.abs()), "{name}[{i}]: {g} vs {w}");
    }
}
