//! lora_linear: y = x·Wᵀ + b + s·(drop(x)·Aᵀ)·Bᵀ with A `[r, in]`, B `[out, r]`.
//!
//! Forward keeps only `xa = drop(x)·Aᵀ` (`[n, r]`, tiny). The backward regenerates the dropout
//! mask from its seed, and never computes dW for the frozen base: per token the frozen path
//! costs 2 GEMMs instead of the 3 a trainable weight needs.

use super::dropout;
use super::gemm::{matmul, MatMut, MatRef};
use super::linear::{self, Weight};
use super::narrow;
use super::shape::transpose_2d;
use crate::dtype::Real;

/// Shapes and hyper-parameters of one lora_linear call.
#[derive(Debug, Clone, Copy)]
pub struct LoraDims {
    /// Rows of x (tokens).
    pub n: usize,
    /// Input features.
    pub inp: usize,
    /// Output features.
    pub out: usize,
    /// Rank.
    pub r: usize,
    /// Scale on the low-rank path (alpha/r, or alpha/sqrt(r) with rsLoRA).
    pub scale: f64,
    /// Dropout probability on the low-rank path's input.
    pub dropout: f32,
    /// Seed of the dropout mask.
    pub seed: u64,
}

/// Forward; returns `(y, xa)`.
pub fn forward<T: Real>(
    x: &[T],
    w: Weight<'_, T>,
    b: Option<&[T]>,
    a: &[T],
    bm: &[T],
    d: LoraDims,
) -> (Vec<T>, Vec<T>) {
    let mut y = linear::forward(x, w, b, d.n, d.inp, d.out);
    let xa = low_rank_forward(x, a, bm, &mut y, d);
    (y, xa)
}

/// Adds the low-rank path `s·(drop(x)·Aᵀ)·Bᵀ` to the base output `y` `[n, out]` and returns
/// `xa = drop(x)·Aᵀ` for the backward. Shared by every base a LoRA sits on (dense or quantized).
pub fn low_rank_forward<T: Real>(x: &[T], a: &[T], bm: &[T], y: &mut [T], d: LoraDims) -> Vec<T> {
    let xd;
    let x_in: &[T] = if d.dropout > 0.0 {
        xd = dropout::apply(x, d.dropout, d.seed);
        &xd
    } else {
        x
    };
    let xa = narrow::product(x_in, d.n, d.inp, &transpose_2d(a, d.r, d.inp), d.r, T::ONE);
    matmul(
        MatMut::row_major(y, d.n, d.out),
        MatRef::row_major(&xa, d.n, d.r),
        MatRef::row_major(bm, d.out, d.r).t(),
        T::from_f64(d.scale),
        true,
    );
    xa
}

/// Which gradients lora_linear's backward must produce.
#[derive(Debug, Clone, Copy)]
pub struct LoraNeeds {
    /// Gradient of the input.
    pub dx: bool,
    /// Gradient of the base weight (false when frozen: the usual case).
    pub dw: bool,
    /// Gradient of the base bias.
    pub db: bool,
    /// Gradient of A.
    pub da: bool,
    /// Gradient of B.
    pub dbm: bool,
}

/// Gradients of lora_linear.
pub struct LoraGrads<T> {
    /// `[n, in]`
    pub dx: Option<Vec<T>>,
    /// `[out, in]`
    pub dw: Option<Vec<T>>,
    /// `[out]`
    pub db: Option<Vec<T>>,
    /// `[r, in]`
    pub da: Option<Vec<T>>,
    /// `[out, r]`
    pub dbm: Option<Vec<T>>,
}

/// Backward from `dy [n, out]`.
#[allow(clippy::too_many_arguments)]
pub fn backward<T: Real>(
    dy: &[T],
    x: &[T],
    w: &[T],
    a: &[T],
    bm: &[T],
    xa: &[T],
    d: LoraDims,
    need: LoraNeeds,
) -> LoraGrads<T> {
    let base = linear::backward(dy, Some(x), Some(w), d.n, d.inp, d.out, need.dx, need.dw, need.db);
    let mut dx = base.dx;
    let (da, dbm) = low_rank_backward(dy, x, a, bm, xa, d, need, dx.as_deref_mut());
    LoraGrads { dx, dw: base.dw, db: base.db, da, dbm }
}

/// Backward of [`low_rank_forward`]: returns `(dA, dB)` as `need` asks and adds the low-rank
/// path's share of dx into `dx` (the base's dx, already computed) when given.
#[allow(clippy::too_many_arguments)]
pub fn low_rank_backward<T: Real>(
    dy: &[T],
    x: &[T],
    a: &[T],
    bm: &[T],
    xa: &[T],
    d: LoraDims,
    need: LoraNeeds,
    dx: Option<&mut [T]>,
) -> (Option<Vec<T>>, Option<Vec<T>>) {
    let scale = T::from_f64(d.scale);
    let want_dx = dx.is_some();
    // dB = s·dyᵀ·xa [out, r] and dxa = s·dy·B [n, r], in one pass over dy when both are needed.
    let (dxa, dbm) = match (need.da || want_dx, need.dbm) {
        (true, true) => {
            let (dxa, dbm) = narrow::product_and_reduce(dy, d.n, d.out, bm, xa, d.r, scale);
            (Some(dxa), Some(dbm))
        }
        (true, false) => (Some(narrow::product(dy, d.n, d.out, bm, d.r, scale)), None),
        (false, true) => (None, Some(narrow::reduce(dy, d.n, d.out, xa, d.r, scale))),
        (false, false) => (None, None),
    };
    let mut da = None;
    if let Some(dxa) = dxa {
        if need.da {
            let xd;
            let x_in: &[T] = if d.dropout > 0.0 {
                xd = dropout::apply(x, d.dropout, d.seed);
                &xd
            } else {
                x
            };
            // dA = dxaᵀ·x [r, in], computed as its transpose xᵀ·dxa [in, r].
            da = Some(transpose_2d(&narrow::reduce(x_in, d.n, d.inp, &dxa, d.r, T::ONE), d.inp, d.r));
        }
        if let Some(dx) = dx {
            if d.dropout > 0.0 {
                let mut dxd = vec![T::ZERO; d.n * d.inp];
                matmul(
                    MatMut::row_major(&mut dxd, d.n, d.inp),
                    MatRef::row_major(&dxa, d.n, d.r),
                    MatRef::row_major(a, d.r, d.inp),
                    T::ONE,
                    false,
                );
                dropout::apply_in_place(&mut dxd, d.dropout, d.seed);
                for (g, v) in dx.iter_mut().zip(dxd) {
                    *g += v;
                }
            } else {
                matmul(
                    MatMut::row_major(dx, d.n, d.inp),
                    MatRef::row_major(&dxa, d.n, d.r),
                    MatRef::row_major(a, d.r, d.inp),
                    T::ONE,
                    true,
                );
            }
        }
    }
    (da, dbm)
}
