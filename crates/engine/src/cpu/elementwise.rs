//! Elementwise arithmetic where the second operand is the same size or repeats over leading
//! dimensions (a bias-like broadcast), plus the reductions their backwards need.

use std::mem::MaybeUninit;

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

/// A new vector of `len` elements, filled in parallel: `write(start, piece)` gets the
/// uninitialised elements `[start, start + piece.len())`, in pieces of `chunk`. Output buffers
/// are not zero-filled first, saving a memory pass per elementwise op.
///
/// # Safety
/// `write` must initialise every element of each piece it is given.
pub unsafe fn par_new<T: Copy + Send + Sync>(
    len: usize,
    chunk: usize,
    write: impl Fn(usize, &mut [MaybeUninit<T>]) + Sync,
) -> Vec<T> {
    let mut y: Vec<T> = Vec::with_capacity(len);
    let chunk = chunk.max(1);
    y.spare_capacity_mut()[..len].par_chunks_mut(chunk).enumerate().for_each(|(i, piece)| write(i * chunk, piece));
    // SAFETY: the pieces cover all len elements, and the caller's `write` initialised each.
    unsafe { y.set_len(len) };
    y
}

/// `y[i] = a[i] ∘ b[i mod b.len()]`.
pub fn binary<T: Real>(op: BinaryOp, a: &[T], b: &[T]) -> Vec<T> {
    if b.is_empty() {
        return vec![T::ZERO; a.len()];
    }
    let period = b.len();
    // Chunks are whole multiples of the period so each worker starts at b[0].
    let chunk = CHUNK.div_ceil(period).max(1) * period;
    // SAFETY: each piece is split into rows zipped with equally long rows of `a`, each at most
    // `period` = b.len() long, so every element is written.
    unsafe {
        par_new(a.len(), chunk, |start, yc| {
            let ac = &a[start..start + yc.len()];
            for (yr, ar) in yc.chunks_mut(period).zip(ac.chunks(period)) {
                match op {
                    BinaryOp::Add => yr.iter_mut().zip(ar).zip(b).for_each(|((o, &x), &z)| _ = o.write(x + z)),
                    BinaryOp::Sub => yr.iter_mut().zip(ar).zip(b).for_each(|((o, &x), &z)| _ = o.write(x - z)),
                    BinaryOp::Mul => yr.iter_mut().zip(ar).zip(b).for_each(|((o, &x), &z)| _ = o.write(x * z)),
                }
            }
        })
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// binary's output is written without a zero-fill first: computed right after a NaN-filled
    /// block of its size is freed, with broadcast periods that do and do not divide the chunk,
    /// every element must equal its definition.
    #[test]
    fn binary_writes_every_element() {
        for (n, period) in [(1usize, 1usize), (CHUNK + 3, CHUNK + 3), (3 * CHUNK, 384), (5 * 7 * 300, 7 * 300), (12, 0)]
        {
            let a: Vec<f64> = (0..n).map(|i| (i as f64 * 0.37).sin()).collect();
            let b: Vec<f64> = (0..period).map(|i| (i as f64 * 0.11).cos()).collect();
            for op in [BinaryOp::Add, BinaryOp::Sub, BinaryOp::Mul] {
                drop(std::hint::black_box(vec![f64::NAN; n]));
                let y = binary(op, &a, &b);
                assert_eq!(y.len(), n);
                for i in 0..n {
                    let want = match (op, b.get(i % period.max(1))) {
                        (_, None) => 0.0,
                        (BinaryOp::Add, Some(&z)) => a[i] + z,
                        (BinaryOp::Sub, Some(&z)) => a[i] - z,
                        (BinaryOp::Mul, Some(&z)) => a[i] * z,
                    };
                    assert_eq!(y[i], want, "{op:?} at {i} of {n} (period {period})");
                }
            }
        }
    }
}
