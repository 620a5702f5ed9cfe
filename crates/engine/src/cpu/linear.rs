//! linear: y = x·Wᵀ + b, with W stored `[out, in]` as in PyTorch/HF.
//! The backward computes only the gradients asked for: a frozen weight costs no GEMM.

use rayon::prelude::*;

use super::gemm::{matmul, matmul_new, MatMut, MatRef};
use crate::dtype::Real;

/// Forward: `x [n, inp]`, `w [out, inp]`, optional `b [out]` → `y [n, out]`.
pub fn forward<T: Real>(x: &[T], w: &[T], b: Option<&[T]>, n: usize, inp: usize, out: usize) -> Vec<T> {
    if b.is_none() {
        return matmul_new(MatRef::row_major(x, n, inp), MatRef::row_major(w, out, inp).t(), T::ONE);
    }
    let mut y = vec![T::ZERO; n * out];
    forward_into(&mut y, x, w, b, n, inp, out);
    y
}

/// Forward into a caller's buffer.
pub fn forward_into<T: Real>(y: &mut [T], x: &[T], w: &[T], b: Option<&[T]>, n: usize, inp: usize, out: usize) {
    if let Some(b) = b {
        y.par_chunks_mut(out.max(1)).for_each(|row| row.copy_from_slice(b));
    }
    matmul(
        MatMut::row_major(y, n, out),
        MatRef::row_major(x, n, inp),
        MatRef::row_major(w, out, inp).t(),
        T::ONE,
        b.is_some(),
    );
}

/// Gradients of linear; each is computed only when requested.
pub struct LinearGrads<T> {
    /// d loss / d x, `[n, inp]`.
    pub dx: Option<Vec<T>>,
    /// d loss / d W, `[out, inp]`.
    pub dw: Option<Vec<T>>,
    /// d loss / d b, `[out]`.
    pub db: Option<Vec<T>>,
}

/// Backward: given `dy [n, out]`, returns the requested gradients. `x` is read only for dW
/// and `w` only for dx, so callers may omit what they do not need.
#[allow(clippy::too_many_arguments)]
pub fn backward<T: Real>(
    dy: &[T],
    x: Option<&[T]>,
    w: Option<&[T]>,
    n: usize,
    inp: usize,
    out: usize,
    need_dx: bool,
    need_dw: bool,
    need_db: bool,
) -> LinearGrads<T> {
    let dx = w
        .filter(|_| need_dx)
        .map(|w| matmul_new(MatRef::row_major(dy, n, out), MatRef::row_major(w, out, inp), T::ONE));
    let dw = x
        .filter(|_| need_dw)
        .map(|x| matmul_new(MatRef::row_major(dy, n, out).t(), MatRef::row_major(x, n, inp), T::ONE));
    let db = need_db.then(|| column_sums(dy, n, out));
    LinearGrads { dx, dw, db }
}

/// Sums the rows of an `[n, cols]` matrix, in fixed-size row blocks combined in order so
/// the result does not depend on scheduling.
pub fn column_sums<T: Real>(m: &[T], n: usize, cols: usize) -> Vec<T> {
    const BLOCK: usize = 64;
    if cols == 0 {
        return Vec::new();
    }
    let partials: Vec<Vec<T>> = m[..n * cols]
        .par_chunks(BLOCK * cols)
        .map(|blk| {
            let mut acc = vec![T::ZERO; cols];
            for row in blk.chunks_exact(cols) {
                for (a, &v) in acc.iter_mut().zip(row) {
                    *a += v;
                }
            }
            acc
        })
        .collect();
    let mut total = vec![T::ZERO; cols];
    for p in partials {
        for (t, v) in total.iter_mut().zip(p) {
            *t += v;
        }
    }
    total
}
