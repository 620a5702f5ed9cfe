//! Batched matrix multiply `c[i] = op(a[i])·op(b[i])`, where op optionally transposes the last
//! two dimensions. The backward is two more batched products.

use rayon::prelude::*;

use super::gemm::{matmul, matmul_serial, MatMut, MatRef};
use crate::dtype::Real;

/// Shapes of a batched product: `batch` products of `[m, k] × [k, n]` (after the transposes).
#[derive(Debug, Clone, Copy)]
pub struct BmmDims {
    /// Number of products.
    pub batch: usize,
    /// Rows of the result.
    pub m: usize,
    /// Inner dimension.
    pub k: usize,
    /// Columns of the result.
    pub n: usize,
    /// `a` is stored `[k, m]`.
    pub trans_a: bool,
    /// `b` is stored `[n, k]`.
    pub trans_b: bool,
}

fn view<T: Real>(data: &[T], idx: usize, rows: usize, cols: usize, trans: bool) -> MatRef<'_, T> {
    let len = rows * cols;
    let m = if trans {
        MatRef::row_major(&data[idx * len..(idx + 1) * len], cols, rows).t()
    } else {
        MatRef::row_major(&data[idx * len..(idx + 1) * len], rows, cols)
    };
    m
}

/// `c [batch, m, n]` (accumulated into if `accumulate`).
pub fn forward_into<T: Real>(c: &mut [T], a: &[T], b: &[T], d: BmmDims, alpha: T, accumulate: bool) {
    let mn = d.m * d.n;
    if d.batch == 1 {
        let av = view(a, 0, d.m, d.k, d.trans_a);
        let bv = view(b, 0, d.k, d.n, d.trans_b);
        matmul(MatMut::row_major(c, d.m, d.n), av, bv, alpha, accumulate);
        return;
    }
    c.par_chunks_mut(mn.max(1)).enumerate().for_each(|(i, ci)| {
        let av = view(a, i, d.m, d.k, d.trans_a);
        let bv = view(b, i, d.k, d.n, d.trans_b);
        matmul_serial(MatMut::row_major(ci, d.m, d.n), av, bv, alpha, accumulate);
    });
}

/// Forward: returns `c [batch, m, n]`.
pub fn forward<T: Real>(a: &[T], b: &[T], d: BmmDims) -> Vec<T> {
    let mut c = vec![T::ZERO; d.batch * d.m * d.n];
    forward_into(&mut c, a, b, d, T::ONE, false);
    c
}

/// Backward: `(da, db)` in the stored layouts of a and b.
pub fn backward<T: Real>(
    dc: &[T],
    a: &[T],
    b: &[T],
    d: BmmDims,
    need_a: bool,
    need_b: bool,
) -> (Option<Vec<T>>, Option<Vec<T>>) {
    // C = A·B ⇒ dA = dC·Bᵀ, dB = Aᵀ·dC (with A, B the logical, post-transpose operands).
    let da = need_a.then(|| {
        if d.trans_a {
            // stored a is [k, m]: d(a_stored) = (dC·Bᵀ)ᵀ = B·dCᵀ  → [k, m]
            forward(b, dc, BmmDims { batch: d.batch, m: d.k, k: d.n, n: d.m, trans_a: d.trans_b, trans_b: true })
        } else {
            forward(dc, b, BmmDims { batch: d.batch, m: d.m, k: d.n, n: d.k, trans_a: false, trans_b: !d.trans_b })
        }
    });
    let db = need_b.then(|| {
        if d.trans_b {
            // stored b is [n, k]: d(b_stored) = (Aᵀ·dC)ᵀ = dCᵀ·A → [n, k]
            forward(dc, a, BmmDims { batch: d.batch, m: d.n, k: d.m, n: d.k, trans_a: true, trans_b: d.trans_a })
        } else {
            forward(a, dc, BmmDims { batch: d.batch, m: d.k, k: d.m, n: d.n, trans_a: !d.trans_a, trans_b: false })
        }
    });
    (da, db)
}
