//! Masked mean pooling over the sequence (sentence-transformers style); CLS pooling is a narrow.

use rayon::prelude::*;

use crate::dtype::Real;

/// `x [b, t, d]`, `mask [b, t]` (nonzero = real token) → `[b, d]`: the mean of the real tokens
/// (zero for a row with none). Returns `(y, counts)`.
pub fn mean_pool<T: Real>(x: &[T], mask: &[u8], b: usize, t: usize, d: usize) -> (Vec<T>, Vec<T>) {
    let mut y = vec![T::ZERO; b * d];
    let mut counts = vec![T::ZERO; b];
    y.par_chunks_mut(d.max(1)).zip(counts.par_iter_mut()).enumerate().for_each(|(bi, (yr, cnt))| {
        let mut n = 0usize;
        for ti in 0..t {
            if mask[bi * t + ti] != 0 {
                n += 1;
                let xr = &x[(bi * t + ti) * d..(bi * t + ti + 1) * d];
                yr.iter_mut().zip(xr).for_each(|(a, &v)| *a += v);
            }
        }
        let c = T::from_f64(n.max(1) as f64);
        *cnt = T::from_f64(n as f64);
        yr.iter_mut().for_each(|a| *a /= c);
    });
    (y, counts)
}

/// Backward of [`mean_pool`]: each real token receives dy/count.
pub fn mean_pool_backward<T: Real>(dy: &[T], mask: &[u8], counts: &[T], b: usize, t: usize, d: usize) -> Vec<T> {
    let mut dx = vec![T::ZERO; b * t * d];
    dx.par_chunks_mut((t * d).max(1)).enumerate().for_each(|(bi, xb)| {
        let c = counts[bi].max(T::ONE);
        let g = &dy[bi * d..(bi + 1) * d];
        for ti in 0..t {
            if mask[bi * t + ti] != 0 {
                xb[ti * d..(ti + 1) * d].iter_mut().zip(g).for_each(|(o, &v)| *o = v / c);
            }
        }
    });
    dx
}
