//! Elementwise arithmetic where the second operand is the same size or repeats over leading
//! dimensions (a bias-like broadcast), plus the reductions their backwards need.

use rayon::prelude::*;

use crate::dtype::Real;

const CHUNK: usize = 8192;

/// A binary elementwise operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinaryOp {
    /// a + b
    Add,
    /// a − b
    Sub,
    /// a · b
    Mul,
}

/// `y[i] = a[i] ∘ b[i mod b.len()]`.
pub fn binary<T: Real>(op: BinaryOp, a: &[T], b: &[T]) -> Vec<T> {
    let mut y = vec![T::ZERO; a.len()];
    let period = b.len().max(1);
    // Chunks are whole multiples of the period so each worker starts at b[0].
    let chunk = CHUNK.div_ceil(period).max(1) * period;
    y.par_chunks_mut(chunk).zip(a.par_chunks(chunk)).for_each(|(yc, ac)| {
        for (yr, ar) in yc.chunks_mut(period).zip(ac.chunks(period)) {
            match op {
                BinaryOp::Add => yr.iter_mut().zip(ar).zip(b).for_each(|((o, &x), &z)| *o = x + z),
                BinaryOp::Sub => yr.iter_mut().zip(ar).zip(b).for_each(|((o, &x), &z)| *o = x - z),
                BinaryOp::Mul => yr.iter_mut().zip(ar).zip(b).for_each(|((o, &x), &z)| *o = x * z),
            }
        }
    });
    y
}

/// Sums `x` over its repetitions of length `period`: out[j] = Σ_k x[k·period + j].
/// Fixed row blocks combined in order (deterministic).
pub fn reduce_period<T: Real>(x: &[T], period: usize) -> Vec<T> {
    if period == 0 {
        return Vec::new();
    }
    if period == x.len() {
        return x.to_vec();
    }
    super::linear::column_sums(x, x.len() / period, period)
}

/// y = s·x.
pub fn scale<T: Real>(x: &[T], s: T) -> Vec<T> {
    let mut y = vec![T::ZERO; x.len()];
    y.par_chunks_mut(CHUNK).zip(x.par_chunks(CHUNK)).for_each(|(yc, xc)| {
        yc.iter_mut().zip(xc).for_each(|(o, &v)| *o = v * s);
    });
    y
}

/// a += b (in place), sizes equal.
pub fn add_assign<T: Real>(a: &mut [T], b: &[T]) {
    a.par_chunks_mut(CHUNK).zip(b.par_chunks(CHUNK)).for_each(|(ac, bc)| {
        ac.iter_mut().zip(bc).for_each(|(x, &y)| *x += y);
    });
}

/// Σ x, in fixed blocks combined in order (deterministic), accumulated in f64.
pub fn sum_all<T: Real>(x: &[T]) -> f64 {
    let parts: Vec<f64> = x.par_chunks(CHUNK).map(|c| super::reduce::sum(c).to_f64()).collect();
    parts.iter().sum()
}
