//! Scaled dot-product attention, tiled flash-style: each worker holds one `BR×BC` block of
//! scores at a time and keeps a running max/sum (online softmax), so the B×H×T×S score tensor
//! is never materialised. The backward recomputes score tiles from the saved log-sum-exp.
//!
//! Layout: q `[B, T, H, D]`, k and v `[B, S, Hkv, D]`, o `[B, T, H, D]` (token-major, as the
//! projections produce them), lse `[B, H, T]`. Query head h reads key/value head
//! `h / (H / Hkv)` (grouped-query attention). Causal attention aligns the last query with the
//! last key, so T < S works for decoding with a cache.

use rayon::prelude::*;

use super::gemm::{matmul_serial, MatMut, MatRef, SendPtr};
use crate::dtype::Real;
use crate::rng;

/// Query rows per tile.
const BR: usize = 128;
/// Key columns per tile.
const BC: usize = 128;

/// Sizes of one attention call.
#[derive(Debug, Clone, Copy)]
pub struct AttnDims {
    /// Batch.
    pub b: usize,
    /// Query length.
    pub t: usize,
    /// Key length.
    pub s: usize,
    /// Query heads.
    pub h: usize,
    /// Key/value heads (divides `h`).
    pub hkv: usize,
    /// Head dimension.
    pub d: usize,
}

/// Which (query, key) pairs may attend, plus scale and dropout.
#[derive(Debug, Clone, Copy)]
pub struct AttnRule<'a> {
    /// Query i sees keys at positions ≤ its own (aligned to the end of the keys).
    pub causal: bool,
    /// `[B, S]`, nonzero where a key is real (zero for padding).
    pub key_mask: Option<&'a [u8]>,
    /// `[B, T]` (requires T == S): a query sees only keys with the same segment id
    /// (packed sequences).
    pub segments: Option<&'a [i64]>,
    /// Sliding window: a query sees at most this many most recent keys (itself included).
    pub window: Option<usize>,
    /// Multiplier on q·k (usually 1/√D).
    pub scale: f64,
    /// Dropout probability on the attention weights.
    pub dropout: f32,
    /// Dropout seed.
    pub seed: u64,
}

impl AttnRule<'_> {
    /// Key range `[lo, hi)` that queries `[i0, i1)` may see (before per-element masks).
    fn key_range(&self, dims: &AttnDims, i0: usize, i1: usize) -> (usize, usize) {
        let off = dims.s - dims.t;
        let hi = if self.causal { (i1 - 1 + off + 1).min(dims.s) } else { dims.s };
        let lo = match self.window {
            Some(w) => (i0 + off + 1).saturating_sub(w),
            None => 0,
        };
        (lo.min(hi), hi)
    }

    /// True when every pair of the tile is allowed by position alone and no masks apply.
    fn tile_is_dense(&self, dims: &AttnDims, i0: usize, j1: usize, i1: usize, j0: usize) -> bool {
        if self.key_mask.is_some() || self.segments.is_some() {
            return false;
        }
        let off = dims.s - dims.t;
        if self.causal && j1 - 1 > i0 + off {
            return false;
        }
        if let Some(w) = self.window {
            if j0 + w <= i1 - 1 + off {
                return false;
            }
        }
        true
    }

    /// Sets the disallowed entries of a `br×bc` score tile at (i0, j0) to −∞: position
    /// limits by row ranges, then the per-key masks only where present.
    #[allow(clippy::too_many_arguments)]
    fn mask_tile<T: Real>(
        &self,
        dims: &AttnDims,
        b: usize,
        tile: &mut [T],
        i0: usize,
        j0: usize,
        br: usize,
        bc: usize,
    ) {
        let off = dims.s - dims.t;
        for r in 0..br {
            let row = &mut tile[r * bc..(r + 1) * bc];
            let pos = i0 + r + off;
            if self.causal {
                // keys j > pos are hidden: columns c > pos − j0
                let first_hidden = (pos + 1).saturating_sub(j0).min(bc);
                row[first_hidden..].fill(T::NEG_INFINITY);
            }
            if let Some(w) = self.window {
                // keys j ≤ pos − w are hidden: columns c < pos + 1 − w − j0
                let visible_from = (pos + 1).saturating_sub(w).saturating_sub(j0).min(bc);
                row[..visible_from].fill(T::NEG_INFINITY);
            }
            if let Some(m) = self.key_mask {
                let keys = &m[b * dims.s + j0..b * dims.s + j0 + bc];
                for (x, &k) in row.iter_mut().zip(keys) {
                    if k == 0 {
                        *x = T::NEG_INFINITY;
                    }
                }
            }
            if let Some(seg) = self.segments {
                let own = seg[b * dims.t + i0 + r];
                let keys = &seg[b * dims.s + j0..b * dims.s + j0 + bc];
                for (x, &k) in row.iter_mut().zip(keys) {
                    if k != own {
                        *x = T::NEG_INFINITY;
                    }
                }
            }
        }
    }

    #[inline(always)]
    fn dropout_index(&self, dims: &AttnDims, b: usize, h: usize, i: usize, j: usize) -> u64 {
        ((((b * dims.h + h) * dims.t + i) * dims.s) + j) as u64
    }
}

/// Forward; returns `(o [B,T,H,D], lse [B,H,T])`. Rows that may see no key get o = 0 and
/// lse = +∞ (their backward contributes nothing).
// Tile scratch lives on the heap: BR×BC f64 is 128 KB, too much for a worker's stack.
#[allow(clippy::useless_vec)]
pub fn forward<T: Real>(q: &[T], k: &[T], v: &[T], dims: AttnDims, rule: &AttnRule<'_>) -> (Vec<T>, Vec<T>) {
    let AttnDims { b: nb, t, s, h: nh, hkv, d } = dims;
    let group = nh / hkv;
    let mut o = vec![T::ZERO; nb * t * nh * d];
    let mut lse = vec![T::ZERO; nb * nh * t];
    let o_ptr = SendPtr(o.as_mut_ptr());
    let scale = T::from_f64(rule.scale);
    let keep_scale = T::from_f64(1.0 / (1.0 - rule.dropout as f64));
    let q_rs = nh * d;
    let kv_rs = hkv * d;
    lse.par_chunks_mut(t.max(1)).enumerate().for_each(|(item, lse_row)| {
        let (b, h) = (item / nh, item % nh);
        let kvh = h / group;
        let mut scores = vec![T::ZERO; BR * BC];
        let mut acc = vec![T::ZERO; BR * d];
        let mut m = [T::NEG_INFINITY; BR];
        let mut l = [T::ZERO; BR];
        for i0 in (0..t).step_by(BR) {
            let i1 = (i0 + BR).min(t);
            let br = i1 - i0;
            m[..br].fill(T::NEG_INFINITY);
            l[..br].fill(T::ZERO);
            acc[..br * d].fill(T::ZERO);
            let (lo, hi) = rule.key_range(&dims, i0, i1);
            let mut j0 = lo;
            while j0 < hi {
                let j1 = (j0 + BC).min(hi);
                let bc = j1 - j0;
                let st = &mut scores[..br * bc];
                matmul_serial(
                    MatMut::row_major(st, br, bc),
                    MatRef::strided(q, (b * t + i0) * q_rs + h * d, br, d, q_rs, 1),
                    MatRef::strided(k, (b * s + j0) * kv_rs + kvh * d, bc, d, kv_rs, 1).t(),
                    scale,
                    false,
                );
                if !rule.tile_is_dense(&dims, i0, j1, i1, j0) {
                    rule.mask_tile(&dims, b, st, i0, j0, br, bc);
                }
                for r in 0..br {
                    let row = &mut st[r * bc..(r + 1) * bc];
                    let tile_max = super::reduce::max(row);
                    let m_new = m[r].max(tile_max);
                    let (alpha, rowsum) = if m_new == T::NEG_INFINITY {
                        row.fill(T::ZERO);
                        (T::ONE, T::ZERO)
                    } else {
                        let sum = super::reduce::exp_in_place_sum(row, m_new);
                        let alpha = if m[r] == T::NEG_INFINITY { T::ZERO } else { (m[r] - m_new).fast_exp() };
                        (alpha, sum)
                    };
                    l[r] = l[r] * alpha + rowsum;
                    m[r] = m_new;
                    if alpha != T::ONE {
                        for x in acc[r * d..(r + 1) * d].iter_mut() {
                            *x *= alpha;
                        }
                    }
                    if rule.dropout > 0.0 {
                        for (c, x) in row.iter_mut().enumerate() {
                            let idx = rule.dropout_index(&dims, b, h, i0 + r, j0 + c);
                            *x = if rng::keep(rule.seed, idx, rule.dropout) { *x * keep_scale } else { T::ZERO };
                        }
                    }
                }
                matmul_serial(
                    MatMut::row_major(&mut acc[..br * d], br, d),
                    MatRef::row_major(st, br, bc),
                    MatRef::strided(v, (b * s + j0) * kv_rs + kvh * d, bc, d, kv_rs, 1),
                    T::ONE,
                    true,
                );
                j0 = j1;
            }
            for r in 0..br {
                let i = i0 + r;
                // SAFETY: row (b, i, h) of o belongs to this work item alone.
                let orow = unsafe { std::slice::from_raw_parts_mut(o_ptr.get().add((b * t + i) * q_rs + h * d), d) };
                if l[r] > T::ZERO {
                    let inv = T::ONE / l[r];
                    for (dst, &a) in orow.iter_mut().zip(&acc[r * d..(r + 1) * d]) {
                        *dst = a * inv;
                    }
                    lse_row[i] = m[r] + l[r].ln();
                } else {
                    orow.fill(T::ZERO);
                    lse_row[i] = T::from_f64(f64::INFINITY);
                }
            }
        }
    });
    (o, lse)
}

/// Gradients of attention: `(dq, dk, dv)` in the layouts of q, k, v.
#[allow(clippy::too_many_arguments, clippy::useless_vec)]
pub fn backward<T: Real>(
    dout: &[T],
    q: &[T],
    k: &[T],
    v: &[T],
    o: &[T],
    lse: &[T],
    dims: AttnDims,
    rule: &AttnRule<'_>,
) -> (Vec<T>, Vec<T>, Vec<T>) {
    let AttnDims { b: nb, t, s, h: nh, hkv, d } = dims;
    let group = nh / hkv;
    let mut dq = vec![T::ZERO; q.len()];
    let mut dk = vec![T::ZERO; k.len()];
    let mut dv = vec![T::ZERO; v.len()];
    let (dq_p, dk_p, dv_p) = (SendPtr(dq.as_mut_ptr()), SendPtr(dk.as_mut_ptr()), SendPtr(dv.as_mut_ptr()));
    let scale = T::from_f64(rule.scale);
    let keep_scale = T::from_f64(1.0 / (1.0 - rule.dropout as f64));
    let q_rs = nh * d;
    let kv_rs = hkv * d;
    (0..nb * hkv).into_par_iter().for_each(|item| {
        let (b, kvh) = (item / hkv, item % hkv);
        let mut p = vec![T::ZERO; BR * BC];
        let mut dp = vec![T::ZERO; BR * BC];
        let mut keep = vec![T::ZERO; if rule.dropout > 0.0 { BR * BC } else { 0 }];
        let mut p_drop = keep.clone();
        let mut delta = vec![T::ZERO; t];
        // SAFETY (all three views): this item alone owns the dk/dv rows of (b, ·, kvh) and the
        // dq rows of (b, ·, h) for the query heads h of its group.
        let dk_tile = |j0: usize, bc: usize| unsafe {
            MatMut::from_raw(dk_p.get().add((b * s + j0) * kv_rs + kvh * d), bc, d, kv_rs, 1)
        };
        let dv_tile = |j0: usize, bc: usize| unsafe {
            MatMut::from_raw(dv_p.get().add((b * s + j0) * kv_rs + kvh * d), bc, d, kv_rs, 1)
        };
        let dq_tile = |i0: usize, br: usize, h: usize| unsafe {
            MatMut::from_raw(dq_p.get().add((b * t + i0) * q_rs + h * d), br, d, q_rs, 1)
        };
        for h in kvh * group..(kvh + 1) * group {
            for (i, di) in delta.iter_mut().enumerate() {
                let off = (b * t + i) * q_rs + h * d;
                *di = super::reduce::dot(&dout[off..off + d], &o[off..off + d]);
            }
            let lse_h = &lse[(b * nh + h) * t..(b * nh + h + 1) * t];
            for j0 in (0..s).step_by(BC) {
                let j1 = (j0 + BC).min(s);
                let bc = j1 - j0;
                for i0 in (0..t).step_by(BR) {
                    let i1 = (i0 + BR).min(t);
                    let (lo, hi) = rule.key_range(&dims, i0, i1);
                    if j1 <= lo || j0 >= hi {
                        continue;
                    }
                    let br = i1 - i0;
                    let n = br * bc;
                    let q_tile = MatRef::strided(q, (b * t + i0) * q_rs + h * d, br, d, q_rs, 1);
                    let k_tile = MatRef::strided(k, (b * s + j0) * kv_rs + kvh * d, bc, d, kv_rs, 1);
                    let v_tile = MatRef::strided(v, (b * s + j0) * kv_rs + kvh * d, bc, d, kv_rs, 1);
                    let do_tile = MatRef::strided(dout, (b * t + i0) * q_rs + h * d, br, d, q_rs, 1);
                    // P = exp(scale·QKᵀ − lse), zero where masked.
                    let pt = &mut p[..n];
                    matmul_serial(MatMut::row_major(pt, br, bc), q_tile, k_tile.t(), scale, false);
                    if !rule.tile_is_dense(&dims, i0, j1, i1, j0) {
                        rule.mask_tile(&dims, b, pt, i0, j0, br, bc);
                    }
                    for r in 0..br {
                        let li = lse_h[i0 + r];
                        for x in pt[r * bc..(r + 1) * bc].iter_mut() {
                            *x = (*x - li).fast_exp();
                        }
                    }
                    // dP = dO·Vᵀ
                    let dpt = &mut dp[..n];
                    matmul_serial(MatMut::row_major(dpt, br, bc), do_tile, v_tile.t(), T::ONE, false);
                    // dV += P̃ᵀ·dO, where P̃ is P after dropout; dP flows back through the same mask.
                    let p_used: &[T] = if rule.dropout > 0.0 {
                        for r in 0..br {
                            for c in 0..bc {
                                let idx = rule.dropout_index(&dims, b, h, i0 + r, j0 + c);
                                let kept = rng::keep(rule.seed, idx, rule.dropout);
                                keep[r * bc + c] = if kept { keep_scale } else { T::ZERO };
                            }
                        }
                        for e in 0..n {
                            p_drop[e] = pt[e] * keep[e];
                            dpt[e] *= keep[e];
                        }
                        &p_drop[..n]
                    } else {
                        pt
                    };
                    matmul_serial(dv_tile(j0, bc), MatRef::row_major(p_used, br, bc).t(), do_tile, T::ONE, true);
                    // dS = P ⊙ (dP − δ), stored in dp.
                    for r in 0..br {
                        let dl = delta[i0 + r];
                        for c in 0..bc {
                            let e = r * bc + c;
                            dpt[e] = p[e] * (dpt[e] - dl);
                        }
                    }
                    let ds = MatRef::row_major(&dp[..n], br, bc);
                    matmul_serial(dq_tile(i0, br, h), ds, k_tile, scale, true);
                    matmul_serial(dk_tile(j0, bc), ds.t(), q_tile, scale, true);
                }
            }
        }
    });
    (dq, dk, dv)
}
