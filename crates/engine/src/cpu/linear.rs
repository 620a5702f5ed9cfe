//! linear: y = x·Wᵀ + b, with W stored `[out, in]` as in PyTorch/HF.
//! The backward computes only the gradients asked for: a frozen weight costs no GEMM.

use std::sync::OnceLock;

use rayon::prelude::*;

use super::gemm::{matmul, matmul_new, stride_aliases, MatMut, MatRef};
use crate::dtype::Real;

/// A linear layer's weight `W [out, in]` as the forward reads it, with a copy in a faster
/// layout when the caller holds one.
///
/// gemm computes x·Wᵀ from W viewed transposed by packing W per thread with strided loads.
/// On this project's model shapes that ran 10–22% slower than from a row-major `[in, out]`
/// copy, while the input gradient dy·W is fastest from W itself. So long-lived weights keep
/// both layouts: see [`transposed_pays`] and `Tensor::transposed_cached`. Most of that loss
/// comes from rows a multiple of 2 KB apart ([`stride_aliases`]); for those, a copy with
/// padded rows ([`pad_rows`]) recovers it at the cost of a plain row copy, so weights
/// without a transposed copy get one per forward ([`padded_applies`]).
#[derive(Clone, Copy)]
pub struct Weight<'a, T> {
    /// `[out, in]`, row-major.
    pub w: &'a [T],
    /// The same weight as `[in, out]`, row-major, if available.
    pub wt: Option<&'a [T]>,
    /// The same weight with each row followed by [`ROW_PAD`] unused elements, if available
    /// (read only without `wt`).
    pub padded: Option<&'a [T]>,
}

impl<'a, T: Real> Weight<'a, T> {
    /// A weight without a copy in another layout.
    pub fn plain(w: &'a [T]) -> Self {
        Weight { w, wt: None, padded: None }
    }

    /// A weight with its `[in, out]` transposed copy.
    pub fn with_transposed(w: &'a [T], wt: &'a [T]) -> Self {
        Weight { w, wt: Some(wt), padded: None }
    }

    /// A weight with its padded-row copy from [`pad_rows`].
    pub fn with_padded(w: &'a [T], padded: &'a [T]) -> Self {
        Weight { w, wt: None, padded: Some(padded) }
    }

    /// The `[in, out]` right operand of x·Wᵀ, from the transposed copy when there is one, else
    /// from the padded copy, else from W.
    pub fn rhs(&self, inp: usize, out: usize) -> MatRef<'a, T> {
        match (self.wt, self.padded) {
            (Some(wt), _) => MatRef::row_major(wt, inp, out),
            (None, Some(p)) => MatRef::strided(p, 0, out, inp, inp + ROW_PAD, 1).t(),
            (None, None) => MatRef::row_major(self.w, out, inp).t(),
        }
    }
}

/// Unused elements after each row of a [`pad_rows`] copy: 64 bytes of f32, enough to move
/// consecutive rows into different cache sets.
pub const ROW_PAD: usize = 16;

/// Whether a forward over `rows` rows of a `[out, inp]` weight without a transposed copy
/// should read a padded-row copy instead: when its rows alias ([`stride_aliases`]) and the
/// product is large enough for the layout to show (as for [`transposed_applies`]). Measured
/// on Zen 4 at 1024 rows, x·Wᵀ from the padded copy, copy included, against W itself:
/// 10% faster at `inp` = 512 and 1536, 15–19% at 1024 to 4096; at strides that do not alias
/// (384, 640, 896, 1152) padding gained nothing.
pub fn padded_applies<T>(rows: usize, out: usize, inp: usize) -> bool {
    rows >= 64 && out * inp >= 1 << 14 && stride_aliases::<T>(inp)
}

/// A copy of the row-major `[rows, cols]` matrix `w` whose rows are `cols + ROW_PAD` apart,
/// the padding zeroed.
pub fn pad_rows<T: Real>(w: &[T], rows: usize, cols: usize) -> Vec<T> {
    let stride = cols + ROW_PAD;
    let rows_per_piece = (1usize << 15).div_ceil(stride).max(1);
    // SAFETY: pieces are whole padded rows (the total is rows · stride), and each row is
    // written in full: `cols` values, then ROW_PAD zeros.
    unsafe {
        super::elementwise::par_new(rows * stride, rows_per_piece * stride, |start, piece| {
            let first = start / stride;
            for (r, dst) in piece.chunks_mut(stride).enumerate() {
                let src = &w[(first + r) * cols..(first + r + 1) * cols];
                for (d, &s) in dst[..cols].iter_mut().zip(src) {
                    d.write(s);
                }
                for d in &mut dst[cols..] {
                    d.write(T::ZERO);
                }
            }
        })
    }
}

/// Environment variable that turns the transposed weight copies off (`0`), trading the forward
/// speed-up for the memory of one more copy of each weight used in a forward.
pub const TRANSPOSED_WEIGHTS_ENV: &str = "TUNESMITH_TRANSPOSED_WEIGHTS";

/// Whether a forward over `rows` rows of a `[out, in]` weight may read a transposed copy: not
/// with `TUNESMITH_TRANSPOSED_WEIGHTS=0`, nor for products too small for the layout to show
/// (under 64 rows or 16K weights).
pub fn transposed_applies(rows: usize, shape: &[usize]) -> bool {
    static ENABLED: OnceLock<bool> = OnceLock::new();
    let enabled = *ENABLED.get_or_init(|| std::env::var(TRANSPOSED_WEIGHTS_ENV).map_or(true, |v| v.trim() != "0"));
    matches!(shape, [out, inp] if enabled && rows >= 64 && out * inp >= 1 << 14)
}

/// Whether to build the transposed copy of a weight that forwards have read `earlier_reads`
/// times since it was last written: from the second read of unchanged data on. So frozen
/// weights (LoRA bases, frozen heads) get a copy that serves every later step, and weights an
/// optimizer rewrites after each forward get none: building it costs a memory pass over W
/// with W out of cache, which in whole full fine-tuning steps measured as much as the faster
/// forward saves.
pub fn transposed_pays(earlier_reads: usize) -> bool {
    earlier_reads > 0
}

/// Forward: `x [n, inp]`, `w [out, inp]`, optional `b [out]` → `y [n, out]`.
pub fn forward<T: Real>(x: &[T], w: Weight<'_, T>, b: Option<&[T]>, n: usize, inp: usize, out: usize) -> Vec<T> {
    if b.is_none() {
        return matmul_new(MatRef::row_major(x, n, inp), w.rhs(inp, out), T::ONE);
    }
    let mut y = vec![T::ZERO; n * out];
    forward_into(&mut y, x, w, b, n, inp, out);
    y
}

/// Forward into a caller's buffer.
pub fn forward_into<T: Real>(
    y: &mut [T],
    x: &[T],
    w: Weight<'_, T>,
    b: Option<&[T]>,
    n: usize,
    inp: usize,
    out: usize,
) {
    if let Some(b) = b {
        y.par_chunks_mut(out.max(1)).for_each(|row| row.copy_from_slice(b));
    }
    matmul(MatMut::row_major(y, n, out), MatRef::row_major(x, n, inp), w.rhs(inp, out), T::ONE, b.is_some());
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
