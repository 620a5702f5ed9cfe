//! Softmax cross-entropy fused with the output projection (logits = h·Wᵀ + b), processed in
//! chunks of tokens so the `[tokens, vocab]` logits are never held at once.
//!
//! Because the loss is a scalar, its gradient is linear in the upstream gradient: the forward
//! computes dh, dW and db for an upstream gradient of 1 while each chunk's logits are hot in
//! cache, and the backward only rescales them. No logits are recomputed.
//!
//! For per-token log-probabilities that feed other losses (DPO and friends), [`logprobs_forward`]
//! and [`logprobs_backward`] recompute the chunk logits in the backward instead.

use rayon::prelude::*;

use super::gemm::{matmul, MatMut, MatRef};
use super::linear::column_sums;
use super::linear::Weight;
use crate::dtype::Real;
use crate::error::{EngineError, Result};

/// How the loss treats labels.
#[derive(Debug, Clone, Copy)]
pub struct CeOptions {
    /// Label value that contributes nothing (PyTorch's default is -100).
    pub ignore_index: i64,
    /// Label smoothing ε: the target is (1−ε)·one-hot + ε/V.
    pub label_smoothing: f64,
    /// Divide the weighted sum by this instead of the total weight of non-ignored tokens
    /// (used to normalise by the tokens of a whole accumulated batch).
    pub normalizer: Option<f64>,
}

/// What the fused forward returns.
pub struct CeOutput<T> {
    /// Σ weightᵢ·lossᵢ / normalizer.
    pub loss: f64,
    /// log p(labelᵢ) per token (0 for ignored tokens).
    pub token_logprobs: Vec<T>,
    /// The normaliser used.
    pub normalizer: f64,
    /// Number of tokens that were not ignored.
    pub counted: usize,
    /// d loss / d h for an upstream gradient of 1, `[n, d]`.
    pub dh: Option<Vec<T>>,
    /// d loss / d W, `[V, d]`.
    pub dw: Option<Vec<T>>,
    /// d loss / d b, `[V]`.
    pub db: Option<Vec<T>>,
}

/// Tokens per chunk: about sixteen million logits (64 MB in f32), between 32 and 2048 rows;
/// large enough for efficient GEMMs, small next to the full `[tokens, vocab]` tensor.
pub fn chunk_rows(vocab: usize) -> usize {
    (16 * 1024 * 1024 / vocab.max(1)).clamp(32, 2048)
}

/// dh and dW of the output projection, built chunk by chunk without zero-filling them first
/// (a pass over 16–65 MB of dW at the usual vocabularies): each chunk's GEMM writes its own
/// rows of dh, and the first chunk's GEMM writes all of dW, which later chunks add to.
struct ChunkGrads<T> {
    dh: Option<Vec<T>>,
    dw: Option<Vec<T>>,
    n: usize,
    d: usize,
    v: usize,
    /// Rows added so far; the buffers' first `covered` rows (and all of dW once it is
    /// nonzero) are initialised.
    covered: usize,
}

impl<T: Real> ChunkGrads<T> {
    fn new(need_dh: bool, need_dw: bool, n: usize, d: usize, v: usize) -> Self {
        ChunkGrads {
            dh: need_dh.then(|| Vec::with_capacity(n * d)),
            dw: need_dw.then(|| Vec::with_capacity(v * d)),
            n,
            d,
            v,
            covered: 0,
        }
    }

    /// Adds chunk `[r0, r0 + rows)`: `g` is its `[rows, v]` gradient of the logits, `hc` its
    /// `[rows, d]` hidden states. Chunks must come in order, starting at row 0.
    fn add(&mut self, r0: usize, rows: usize, g: &[T], hc: &[T], w: &[T]) {
        let (d, v) = (self.d, self.v);
        assert!(r0 == self.covered && r0 + rows <= self.n, "chunks must come in order and within the rows");
        if let Some(dh) = self.dh.as_mut() {
            // SAFETY: rows r0..r0+rows of dh's allocation (n·d elements); the GEMM writes
            // every element of its destination without reading it (no accumulation).
            let dst = unsafe { MatMut::from_raw(dh.as_mut_ptr().add(r0 * d), rows, d, d, 1) };
            matmul(dst, MatRef::row_major(g, rows, v), MatRef::row_major(w, v, d), T::ONE, false);
        }
        if let Some(dw) = self.dw.as_mut() {
            // SAFETY: the whole v·d allocation; the first chunk (r0 = 0) writes every element
            // without reading, later ones read only what it wrote.
            let dst = unsafe { MatMut::from_raw(dw.as_mut_ptr(), v, d, d, 1) };
            matmul(dst, MatRef::row_major(g, rows, v).t(), MatRef::row_major(hc, rows, d), T::ONE, r0 > 0);
        }
        self.covered += rows;
    }

    /// The finished `(dh, dW)`, once chunks have covered all `n` rows (zeros when `n` is 0).
    fn finish(self) -> (Option<Vec<T>>, Option<Vec<T>>) {
        let (n, d, v) = (self.n, self.d, self.v);
        assert_eq!(self.covered, n, "chunks must cover every row before the gradients are read");
        let done = |buf: Option<Vec<T>>, len: usize| {
            buf.map(|mut b| {
                if n == 0 {
                    return vec![T::ZERO; len];
                }
                // SAFETY: chunks covered all n rows in order (asserted above), so `add` wrote
                // all `len` elements (see there).
                unsafe { b.set_len(len) };
                b
            })
        };
        (done(self.dh, n * d), done(self.dw, v * d))
    }
}

fn check_labels(labels: &[i64], vocab: usize, ignore_index: i64) -> Result<()> {
    for (i, &y) in labels.iter().enumerate() {
        if y != ignore_index && (y < 0 || y as usize >= vocab) {
            return Err(EngineError::invalid(
                "cross_entropy",
                format!("label {y} at position {i} is outside [0, {vocab}) and is not the ignore index {ignore_index}"),
            ));
        }
    }
    Ok(())
}

/// Row log-sum-exp.
#[inline]
fn row_lse<T: Real>(row: &[T]) -> T {
    let m = super::reduce::max(row);
    m + super::reduce::exp_sum(row, m).ln()
}

/// Fused forward (+ eager gradients for an upstream gradient of 1 when requested).
#[allow(clippy::too_many_arguments)]
pub fn forward<T: Real>(
    h: &[T],
    w: Weight<'_, T>,
    b: Option<&[T]>,
    labels: &[i64],
    weights: Option<&[T]>,
    n: usize,
    d: usize,
    v: usize,
    opts: CeOptions,
    need_dh: bool,
    need_dw: bool,
    need_db: bool,
) -> Result<CeOutput<T>> {
    check_labels(labels, v, opts.ignore_index)?;
    let weight_of = |i: usize| weights.map_or(1.0, |w| w[i].to_f64());
    let mut counted = 0usize;
    let mut total_weight = 0.0f64;
    for (i, &y) in labels.iter().enumerate() {
        if y != opts.ignore_index {
            counted += 1;
            total_weight += weight_of(i);
        }
    }
    let norm = opts.normalizer.unwrap_or(total_weight);
    let inv_norm = if norm > 0.0 { 1.0 / norm } else { 0.0 };
    let eps = opts.label_smoothing;
    let want_grad = need_dh || need_dw || need_db;
    let mut token_logprobs = vec![T::ZERO; n];
    let mut grads = ChunkGrads::new(need_dh, need_dw, n, d, v);
    let mut db = need_db.then(|| vec![T::ZERO; v]);
    let mut loss_sum = 0.0f64;
    let c = chunk_rows(v).min(n.max(1));
    T::with_scratch(c * v, |buf| {
        let mut r0 = 0;
        while r0 < n {
            let rows = c.min(n - r0);
            let hc = &h[r0 * d..(r0 + rows) * d];
            let logits = &mut buf[..rows * v];
            super::linear::forward_into(logits, hc, w, b, rows, d, v);
            let lc = &labels[r0..r0 + rows];
            let lp_chunk = &mut token_logprobs[r0..r0 + rows];
            let losses: Vec<f64> = logits
                .par_chunks_mut(v)
                .zip(lp_chunk.par_iter_mut())
                .enumerate()
                .map(|(r, (row, lp))| {
                    let y = lc[r];
                    if y == opts.ignore_index {
                        if want_grad {
                            row.fill(T::ZERO);
                        }
                        return 0.0;
                    }
                    let y = y as usize;
                    let target_logit = row[y];
                    let mean_logit = if eps > 0.0 { super::reduce::sum(row).to_f64() / v as f64 } else { 0.0 };
                    // One exp per logit: the row becomes exp(x − max), whose sum gives the lse and
                    // whose scaled values are the softmax the gradient needs.
                    let m = super::reduce::max(row);
                    let sum_exp = super::reduce::exp_in_place_sum(row, m);
                    let lse = m + sum_exp.ln();
                    let logp = target_logit - lse;
                    *lp = logp;
                    let mut loss = -(1.0 - eps) * logp.to_f64();
                    if eps > 0.0 {
                        loss -= eps * (mean_logit - lse.to_f64());
                    }
                    let wt = weight_of(r0 + r);
                    if want_grad {
                        let g = T::from_f64(wt * inv_norm);
                        let sg = T::from_f64(eps / v as f64) * g;
                        let scale = g / sum_exp;
                        for x in row.iter_mut() {
                            *x = x.mul_add(scale, -sg);
                        }
                        row[y] -= T::from_f64((1.0 - eps) * wt * inv_norm);
                    }
                    wt * loss
                })
                .collect();
            loss_sum += losses.iter().sum::<f64>();
            grads.add(r0, rows, logits, hc, w.w);
            if let Some(db) = db.as_mut() {
                for (a, s) in db.iter_mut().zip(column_sums(logits, rows, v)) {
                    *a += s;
                }
            }
            r0 += rows;
        }
    });
    let (dh, dw) = grads.finish();
    Ok(CeOutput { loss: loss_sum * inv_norm, token_logprobs, normalizer: norm, counted, dh, dw, db })
}

/// Optional gradients of (h, W, b).
pub type HeadGrads<T> = (Option<Vec<T>>, Option<Vec<T>>, Option<Vec<T>>);

/// Per-token log p(label) and log-sum-exp, without gradients (ignored tokens get 0).
#[allow(clippy::too_many_arguments)]
pub fn logprobs_forward<T: Real>(
    h: &[T],
    w: Weight<'_, T>,
    b: Option<&[T]>,
    labels: &[i64],
    n: usize,
    d: usize,
    v: usize,
    ignore_index: i64,
) -> Result<(Vec<T>, Vec<T>)> {
    check_labels(labels, v, ignore_index)?;
    let mut logp = vec![T::ZERO; n];
    let mut lse = vec![T::ZERO; n];
    let c = chunk_rows(v).min(n.max(1));
    T::with_scratch(c * v, |buf| {
        let mut r0 = 0;
        while r0 < n {
            let rows = c.min(n - r0);
            let logits = &mut buf[..rows * v];
            super::linear::forward_into(logits, &h[r0 * d..(r0 + rows) * d], w, b, rows, d, v);
            logits
                .par_chunks(v)
                .zip(logp[r0..r0 + rows].par_iter_mut().zip(lse[r0..r0 + rows].par_iter_mut()))
                .enumerate()
                .for_each(|(r, (row, (lp, ls)))| {
                    let y = labels[r0 + r];
                    let l = row_lse(row);
                    *ls = l;
                    if y != ignore_index {
                        *lp = row[y as usize] - l;
                    }
                });
            r0 += rows;
        }
    });
    Ok((logp, lse))
}

/// Backward of [`logprobs_forward`] from per-token upstream gradients `dlogp [n]`.
#[allow(clippy::too_many_arguments)]
pub fn logprobs_backward<T: Real>(
    dlogp: &[T],
    h: &[T],
    w: Weight<'_, T>,
    b: Option<&[T]>,
    labels: &[i64],
    lse: &[T],
    n: usize,
    d: usize,
    v: usize,
    ignore_index: i64,
    need: (bool, bool, bool),
) -> HeadGrads<T> {
    let (need_dh, need_dw, need_db) = need;
    let mut grads = ChunkGrads::new(need_dh, need_dw, n, d, v);
    let mut db = need_db.then(|| vec![T::ZERO; v]);
    let c = chunk_rows(v).min(n.max(1));
    T::with_scratch(c * v, |buf| {
        let mut r0 = 0;
        while r0 < n {
            let rows = c.min(n - r0);
            let hc = &h[r0 * d..(r0 + rows) * d];
            let g = &mut buf[..rows * v];
            super::linear::forward_into(g, hc, w, b, rows, d, v);
            g.par_chunks_mut(v).enumerate().for_each(|(r, row)| {
                let i = r0 + r;
                let y = labels[i];
                if y == ignore_index {
                    row.fill(T::ZERO);
                    return;
                }
                let (up, l) = (dlogp[i], lse[i]);
                for x in row.iter_mut() {
                    *x = -(*x - l).fast_exp() * up;
                }
                row[y as usize] += up;
            });
            grads.add(r0, rows, g, hc, w.w);
            if let Some(db) = db.as_mut() {
                for (a, s) in db.iter_mut().zip(column_sums(g, rows, v)) {
                    *a += s;
                }
            }
            r0 += rows;
        }
    });
    let (dh, dw) = grads.finish();
    (dh, dw, db)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// dh and dW assembled from uneven chunks (without zero-filling) equal the one-shot products
    /// gᵀ·h and g·W; with no rows at all they are zeros.
    #[test]
    fn chunk_grads_match_whole_products() {
        let (n, d, v) = (23, 5, 7);
        let g: Vec<f64> = (0..n * v).map(|i| (i as f64 * 0.37).sin()).collect();
        let h: Vec<f64> = (0..n * d).map(|i| (i as f64 * 0.11).cos()).collect();
        let w: Vec<f64> = (0..v * d).map(|i| (i as f64 * 0.23).sin()).collect();
        let mut grads = ChunkGrads::new(true, true, n, d, v);
        for (r0, rows) in [(0, 10), (10, 9), (19, 4)] {
            grads.add(r0, rows, &g[r0 * v..(r0 + rows) * v], &h[r0 * d..(r0 + rows) * d], &w);
        }
        let (dh, dw) = grads.finish();
        let (dh, dw) = (dh.unwrap(), dw.unwrap());
        for i in 0..n {
            for c in 0..d {
                let want: f64 = (0..v).map(|j| g[i * v + j] * w[j * d + c]).sum();
                assert!((dh[i * d + c] - want).abs() < 1e-12, "dh[{i},{c}]");
            }
        }
        for j in 0..v {
            for c in 0..d {
                let want: f64 = (0..n).map(|i| g[i * v + j] * h[i * d + c]).sum();
                assert!((dw[j * d + c] - want).abs() < 1e-12, "dw[{j},{c}]");
            }
        }
        let (dh, dw) = ChunkGrads::<f64>::new(true, true, 0, d, v).finish();
        assert_eq!(dh.unwrap(), Vec::<f64>::new());
        assert_eq!(dw.unwrap(), vec![0.0; v * d]);
    }

    /// Peaked logits, whose softmax leaves most probabilities subnormal in f32 (under 1e-38),
    /// give the same loss and gradients as an f64 reference within 1e-6, on threads that
    /// flush subnormals to zero (as every engine thread does).
    #[test]
    fn peaked_logits_with_subnormal_probabilities_match_f64() {
        crate::threads::init(None);
        let (n, d, v) = (48, 16, 96);
        // Row i of h picks feature i mod d; token j scores −j·(1 + 0.02c) on feature c, so each
        // row's logits fall from 0 in steps of about 1.1: tokens 80–95 sit 87–125 below the
        // top, where e^z is subnormal in f32.
        let h: Vec<f32> =
            (0..n * d).map(|k| if k % d == (k / d) % d { 1.0 + 0.01 * (k / d) as f32 } else { 0.0 }).collect();
        let w: Vec<f32> = (0..v * d).map(|k| -((k / d) as f32) * (1.0 + 0.02 * (k % d) as f32)).collect();
        let logits = |i: usize, j: usize| -> f64 { (0..d).map(|c| h[i * d + c] as f64 * w[j * d + c] as f64).sum() };
        let labels: Vec<i64> =
            (0..n).map(|i| (0..v).max_by(|&a, &b| logits(i, a).total_cmp(&logits(i, b))).unwrap() as i64).collect();
        let subnormal = (0..n)
            .flat_map(|i| (0..v).map(move |j| (i, j)))
            .filter(|&(i, j)| {
                let lse = (0..v).map(|k| logits(i, k)).fold(f64::NEG_INFINITY, f64::max);
                // In f64: this thread flushes f32 subnormals, conversions included.
                let p = (logits(i, j) - lse).exp();
                p < f32::MIN_POSITIVE as f64 && p >= 1.4e-45
            })
            .count();
        assert!(subnormal > n * v / 20, "fixture must produce subnormal probabilities ({subnormal})");
        let opts = CeOptions { ignore_index: -100, label_smoothing: 0.0, normalizer: None };
        let out = forward(&h, Weight::plain(&w), None, &labels, None, n, d, v, opts, true, true, false).unwrap();
        let mut loss = 0.0;
        let mut dh = vec![0.0f64; n * d];
        let mut dw = vec![0.0f64; v * d];
        for i in 0..n {
            let row: Vec<f64> = (0..v).map(|j| logits(i, j)).collect();
            let m = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let lse = m + row.iter().map(|z| (z - m).exp()).sum::<f64>().ln();
            loss += lse - row[labels[i] as usize];
            for j in 0..v {
                let g = ((row[j] - lse).exp() - f64::from(j as i64 == labels[i])) / n as f64;
                for c in 0..d {
                    dh[i * d + c] += g * w[j * d + c] as f64;
                    dw[j * d + c] += g * h[i * d + c] as f64;
                }
            }
        }
        loss /= n as f64;
        assert!((out.loss - loss).abs() <= 1e-6, "loss {} vs {loss}", out.loss);
        for (name, got, want) in [("dh", out.dh.unwrap(), dh), ("dw", out.dw.unwrap(), dw)] {
            for (k, (&g, &r)) in got.iter().zip(&want).enumerate() {
                assert!((g as f64 - r).abs() <= 1e-6, "{name}[{k}]: {g} vs {r}");
            }
        }
    }
}
