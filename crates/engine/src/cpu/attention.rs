//! Scaled dot-product attention, tiled flash-style: each worker holds one `BR×BC` block of
//! scores at a time and keeps a running max/sum (online softmax), so the B×H×T×S score tensor
//! is never materialised. The backward recomputes score tiles from the saved log-sum-exp.
//!
//! Layout: q `[B, T, H, D]`, k and v `[B, S, Hkv, D]`, o `[B, T, H, D]` (token-major, as the
//! projections produce them), lse `[B, H, T]`. Query head h reads key/value head
//! `h / (H / Hkv)` (grouped-query attention). Causal attention aligns the last query with the
//! last key, so T < S works for decoding with a cache.
//!
//! Causal tiles on the diagonal are computed in row strips that stop at the diagonal; where
//! the head-interleaved layout puts rows at cache-aliasing strides, tiles are gathered into
//! contiguous buffers first; and heads of 64 or more are transposed once per work item for the
//! products that read keys or values transposed (see [`AttnRule::strips`], `aliases` and
//! `HeadCols`).

use rayon::prelude::*;

use super::gemm::{matmul_serial, MatMut, MatRef, SendPtr};
use crate::dtype::Real;
use crate::rng;

/// Query rows per tile.
const BR: usize = 128;
/// Key columns per tile.
const BC: usize = 128;
/// Rows per strip when a causal tile straddles the diagonal (see [`AttnRule::strips`]).
const STRIP: usize = 32;

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

    /// Splits the tile of queries `[i0, i1)` × keys `[j0, j1)` into row strips
    /// `(row start, row end, key end)`. A causal tile that straddles the diagonal is cut into
    /// [`STRIP`]-row strips, each ending at the last key its last row may see, so most of the
    /// tile's hidden upper triangle is never computed (a quarter of all scores at T = 128).
    /// Any other tile is one strip.
    fn strips(&self, dims: &AttnDims, i0: usize, i1: usize, j0: usize, j1: usize) -> Vec<(usize, usize, usize)> {
        let off = dims.s - dims.t;
        if !self.causal || j1 - 1 <= i0 + off {
            return vec![(i0, i1, j1)];
        }
        (i0..i1)
            .step_by(STRIP)
            .map(|r0| {
                let r1 = (r0 + STRIP).min(i1);
                (r0, r1, (r1 + off).min(j1))
            })
            .filter(|&(_, _, end)| end > j0)
            .collect()
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

/// True when rows `stride` elements apart alias in cache sets badly enough that a tile is
/// worth gathering contiguous before its GEMMs. Measured on Zen 4 (T = 128): at 2 KB strides
/// (8 heads of 64, 16 of 32) attention ran 15–25% faster gathered; at 0.5 and 1 KB it made no
/// difference, and at other strides (1.5 KB: 6 heads of 64, 12 of 32) the extra copy cost 5–10%.
fn aliases<T>(stride: usize) -> bool {
    super::gemm::stride_aliases::<T>(stride)
}

/// Where the kernels read their operands from: which side's rows are gathered contiguous
/// (query rows, key/value rows), and whether keys and values are also transposed for the
/// products that read them transposed (which then need no gathered copy).
#[derive(Debug, Clone, Copy)]
struct Layout {
    q: bool,
    kv: bool,
    transpose: bool,
}

impl Layout {
    fn for_dims<T>(dims: &AttnDims) -> Layout {
        Layout {
            q: aliases::<T>(dims.h * dims.d),
            kv: aliases::<T>(dims.hkv * dims.d),
            transpose: transpose_heads(dims.d),
        }
    }
}

/// One head's rows of a `[.., heads·d]` tensor, read in place or from a contiguous copy.
#[derive(Clone, Copy)]
struct HeadRows<'a, T> {
    data: &'a [T],
    offset: usize,
    stride: usize,
    d: usize,
}

impl<'a, T: Real> HeadRows<'a, T> {
    /// `rows` rows of `d` elements, `stride` apart from `offset` in `src`; copied into `buf`
    /// when `gather`.
    fn new(src: &'a [T], offset: usize, rows: usize, d: usize, stride: usize, gather: bool, buf: &'a mut [T]) -> Self {
        if !gather {
            return HeadRows { data: src, offset, stride, d };
        }
        for (r, out) in buf[..rows * d].chunks_exact_mut(d).enumerate() {
            copy_short(out, &src[offset + r * stride..offset + r * stride + d]);
        }
        HeadRows { data: buf, offset: 0, stride: d, d }
    }

    /// Rows `[r0, r0 + rows)` as a matrix.
    fn tile(self, r0: usize, rows: usize) -> MatRef<'a, T> {
        MatRef::strided(self.data, self.offset + r0 * self.stride, rows, self.d, self.stride, 1)
    }
}

/// Whether heads of width `d` are worth transposing for the products that read keys or values
/// transposed (QKᵀ, dO·Vᵀ; see [`HeadCols`]). Measured on Zen 4, fwd/bwd: d = 64 ran 4–19%
/// faster transposed (most at T = 256 with GQA), d = 32 (BERT/MiniLM) 6–10% slower.
fn transpose_heads(d: usize) -> bool {
    d >= 64
}

/// One head's keys or values for products that read them transposed: either the rows seen
/// transposed, or a copy transposed to `d × rows` (row stride `rows`). From the former gemm
/// packs per call with strided loads, 7% slower on a 128×128×64 tile and 50% slower on a
/// 32-row causal strip than from the copy.
#[derive(Clone, Copy)]
struct HeadCols<'a, T> {
    rows: HeadRows<'a, T>,
    copy: Option<&'a [T]>,
    len: usize,
}

impl<'a, T: Real> HeadCols<'a, T> {
    /// The head whose `len` rows are `rows`; when `buf` is given (at least `d·len` long) the
    /// rows are transposed into it.
    fn new(rows: HeadRows<'a, T>, len: usize, buf: Option<&'a mut [T]>) -> Self {
        let copy = buf.map(|buf| {
            let out = &mut buf[..rows.d * len];
            // SAFETY: MaybeUninit<T> has T's layout, and transpose_into writes only valid values.
            let out = unsafe { &mut *(out as *mut [T] as *mut [std::mem::MaybeUninit<T>]) };
            super::shape::transpose_into(rows.data, rows.offset, len, rows.d, rows.stride, out, len);
            &*buf
        });
        HeadCols { rows, copy, len }
    }

    /// Rows `[r0, r0 + n)` of the head as the `d × n` matrix of their transposes.
    fn cols(self, r0: usize, n: usize) -> MatRef<'a, T> {
        match self.copy {
            Some(data) => MatRef::strided(data, r0, self.rows.d, n, self.len, 1),
            None => self.rows.tile(r0, n).t(),
        }
    }
}

/// One head's gradient rows: written in place, or accumulated contiguous and scattered back
/// by [`HeadGrad::finish`].
struct HeadGrad<T> {
    out: SendPtr<T>,
    offset: usize,
    stride: usize,
    d: usize,
    local: Option<Vec<T>>,
}

impl<T: Real> HeadGrad<T> {
    /// Rows `stride` apart from `out + offset` (zero-filled by the caller), accumulated
    /// contiguous first when `gather`.
    fn new(out: SendPtr<T>, offset: usize, rows: usize, d: usize, stride: usize, gather: bool) -> Self {
        let local = gather.then(|| vec![T::ZERO; rows * d]);
        HeadGrad { out, offset, stride, d, local }
    }

    /// Rows `[r0, r0 + rows)` to accumulate into.
    ///
    /// # Safety
    /// The caller's work item alone owns this head's rows of `out`, and holds one tile at a time.
    unsafe fn tile(&mut self, r0: usize, rows: usize) -> MatMut<'_, T> {
        let d = self.d;
        match &mut self.local {
            Some(buf) => MatMut::row_major(&mut buf[r0 * d..(r0 + rows) * d], rows, d),
            // SAFETY: promised by the caller.
            None => unsafe {
                MatMut::from_raw(self.out.get().add(self.offset + r0 * self.stride), rows, d, self.stride, 1)
            },
        }
    }

    /// Copies a contiguous accumulator back to its rows.
    ///
    /// # Safety
    /// As for [`HeadGrad::tile`].
    unsafe fn finish(self) {
        if let Some(buf) = self.local {
            for (r, row) in buf.chunks_exact(self.d).enumerate() {
                // SAFETY: promised by the caller.
                let dst = unsafe {
                    std::slice::from_raw_parts_mut(self.out.get().add(self.offset + r * self.stride), self.d)
                };
                copy_short(dst, row);
            }
        }
    }
}

/// `dst.copy_from_slice(src)` as inline 8-element moves: a head's row is too short for the
/// `memcpy` call that `copy_from_slice` makes to pay off (with those calls, gathering took 15%
/// of an attention with 32-wide heads).
#[inline(always)]
fn copy_short<T: Copy>(dst: &mut [T], src: &[T]) {
    assert_eq!(dst.len(), src.len(), "copy_short lengths");
    let mut out = dst.chunks_exact_mut(8);
    let mut inp = src.chunks_exact(8);
    for (o, i) in (&mut out).zip(&mut inp) {
        let block: [T; 8] = [i[0], i[1], i[2], i[3], i[4], i[5], i[6], i[7]];
        o.copy_from_slice(&block);
    }
    for (o, &i) in out.into_remainder().iter_mut().zip(inp.remainder()) {
        *o = i;
    }
}

/// Forward; returns `(o [B,T,H,D], lse [B,H,T])`. Rows that may see no key get o = 0 and
/// lse = +∞ (their backward contributes nothing).
pub fn forward<T: Real>(q: &[T], k: &[T], v: &[T], dims: AttnDims, rule: &AttnRule<'_>) -> (Vec<T>, Vec<T>) {
    forward_with(q, k, v, dims, rule, Layout::for_dims::<T>(&dims))
}

// Tile scratch lives on the heap: BR×BC f64 is 128 KB, too much for a worker's stack.
#[allow(clippy::useless_vec)]
fn forward_with<T: Real>(
    q: &[T],
    k: &[T],
    v: &[T],
    dims: AttnDims,
    rule: &AttnRule<'_>,
    layout: Layout,
) -> (Vec<T>, Vec<T>) {
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
        let (q_len, kv_len) = (if layout.q { BR * d } else { 0 }, if layout.kv { BC * d } else { 0 });
        let (mut q_buf, mut v_buf) = (vec![T::ZERO; q_len], vec![T::ZERO; kv_len]);
        let transpose = layout.transpose;
        let (mut k_buf, mut kt_buf) = (
            vec![T::ZERO; if layout.kv && !transpose { s * d } else { 0 }],
            vec![T::ZERO; if transpose { s * d } else { 0 }],
        );
        let k_rows = HeadRows::new(k, b * s * kv_rs + kvh * d, s, d, kv_rs, layout.kv && !transpose, &mut k_buf);
        let k_cols = HeadCols::new(k_rows, s, transpose.then_some(&mut kt_buf[..]));
        let mut m = [T::NEG_INFINITY; BR];
        let mut l = [T::ZERO; BR];
        for i0 in (0..t).step_by(BR) {
            let i1 = (i0 + BR).min(t);
            let br = i1 - i0;
            m[..br].fill(T::NEG_INFINITY);
            l[..br].fill(T::ZERO);
            acc[..br * d].fill(T::ZERO);
            let (lo, hi) = rule.key_range(&dims, i0, i1);
            let q_rows = HeadRows::new(q, (b * t + i0) * q_rs + h * d, br, d, q_rs, layout.q, &mut q_buf);
            for j0 in (lo..hi).step_by(BC) {
                let j1 = (j0 + BC).min(hi);
                let v_rows = HeadRows::new(v, (b * s + j0) * kv_rs + kvh * d, j1 - j0, d, kv_rs, layout.kv, &mut v_buf);
                for (ra, rb, je) in rule.strips(&dims, i0, i1, j0, j1) {
                    let (rows, bc, base) = (rb - ra, je - j0, ra - i0);
                    let st = &mut scores[..rows * bc];
                    matmul_serial(
                        MatMut::row_major(st, rows, bc),
                        q_rows.tile(base, rows),
                        k_cols.cols(j0, bc),
                        scale,
                        false,
                    );
                    if !rule.tile_is_dense(&dims, ra, je, rb, j0) {
                        rule.mask_tile(&dims, b, st, ra, j0, rows, bc);
                    }
                    for r in 0..rows {
                        let row = &mut st[r * bc..(r + 1) * bc];
                        let ri = base + r;
                        let tile_max = super::reduce::max(row);
                        let m_new = m[ri].max(tile_max);
                        let (alpha, rowsum) = if m_new == T::NEG_INFINITY {
                            row.fill(T::ZERO);
                            (T::ONE, T::ZERO)
                        } else {
                            let sum = super::reduce::exp_in_place_sum(row, m_new);
                            let alpha = if m[ri] == T::NEG_INFINITY { T::ZERO } else { (m[ri] - m_new).fast_exp() };
                            (alpha, sum)
                        };
                        l[ri] = l[ri] * alpha + rowsum;
                        m[ri] = m_new;
                        if alpha != T::ONE {
                            for x in acc[ri * d..(ri + 1) * d].iter_mut() {
                                *x *= alpha;
                            }
                        }
                        if rule.dropout > 0.0 {
                            for (c, x) in row.iter_mut().enumerate() {
                                let idx = rule.dropout_index(&dims, b, h, ra + r, j0 + c);
                                *x = if rng::keep(rule.seed, idx, rule.dropout) { *x * keep_scale } else { T::ZERO };
                            }
                        }
                    }
                    matmul_serial(
                        MatMut::row_major(&mut acc[base * d..(base + rows) * d], rows, d),
                        MatRef::row_major(st, rows, bc),
                        v_rows.tile(0, bc),
                        T::ONE,
                        true,
                    );
                }
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
#[allow(clippy::too_many_arguments)]
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
    backward_with(dout, q, k, v, o, lse, dims, rule, Layout::for_dims::<T>(&dims))
}

#[allow(clippy::too_many_arguments, clippy::useless_vec)]
fn backward_with<T: Real>(
    dout: &[T],
    q: &[T],
    k: &[T],
    v: &[T],
    o: &[T],
    lse: &[T],
    dims: AttnDims,
    rule: &AttnRule<'_>,
    layout: Layout,
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
        // This item's key/value head and one query head at a time, read in place or gathered
        // contiguous (see `aliases`); their gradients likewise accumulate in place or in
        // contiguous buffers copied back by `finish`.
        let (q_len, kv_len) = (if layout.q { t * d } else { 0 }, if layout.kv { s * d } else { 0 });
        let mut k_c = vec![T::ZERO; kv_len];
        let (mut q_h, mut do_h) = (vec![T::ZERO; q_len], vec![T::ZERO; q_len]);
        let kv_off = b * s * kv_rs + kvh * d;
        let k_rows = HeadRows::new(k, kv_off, s, d, kv_rs, layout.kv, &mut k_c);
        let transpose = layout.transpose;
        let mut v_c = vec![T::ZERO; if transpose { 0 } else { kv_len }];
        let v_rows = HeadRows::new(v, kv_off, s, d, kv_rs, layout.kv && !transpose, &mut v_c);
        let t_len = if transpose { s * d } else { 0 };
        let (mut kt_buf, mut vt_buf) = (vec![T::ZERO; t_len], vec![T::ZERO; t_len]);
        let k_cols = HeadCols::new(k_rows, s, transpose.then_some(&mut kt_buf[..]));
        let v_cols = HeadCols::new(v_rows, s, transpose.then_some(&mut vt_buf[..]));
        let mut dk_g = HeadGrad::new(dk_p, kv_off, s, d, kv_rs, layout.kv);
        let mut dv_g = HeadGrad::new(dv_p, kv_off, s, d, kv_rs, layout.kv);
        for h in kvh * group..(kvh + 1) * group {
            let q_off = b * t * q_rs + h * d;
            let q_rows = HeadRows::new(q, q_off, t, d, q_rs, layout.q, &mut q_h);
            let do_rows = HeadRows::new(dout, q_off, t, d, q_rs, layout.q, &mut do_h);
            let mut dq_g = HeadGrad::new(dq_p, q_off, t, d, q_rs, layout.q);
            for (i, di) in delta.iter_mut().enumerate() {
                let off = (b * t + i) * q_rs + h * d;
                *di = super::reduce::dot(&dout[off..off + d], &o[off..off + d]);
            }
            let lse_h = &lse[(b * nh + h) * t..(b * nh + h + 1) * t];
            for j0 in (0..s).step_by(BC) {
                let j1 = (j0 + BC).min(s);
                for i0 in (0..t).step_by(BR) {
                    let i1 = (i0 + BR).min(t);
                    let (lo, hi) = rule.key_range(&dims, i0, i1);
                    if j1 <= lo || j0 >= hi {
                        continue;
                    }
                    for (i0, i1, j1) in rule.strips(&dims, i0, i1, j0, j1) {
                        let (br, bc) = (i1 - i0, j1 - j0);
                        let n = br * bc;
                        let (q_tile, do_tile) = (q_rows.tile(i0, br), do_rows.tile(i0, br));
                        let k_tile = k_rows.tile(j0, bc);
                        // P = exp(scale·QKᵀ − lse), zero where masked.
                        let pt = &mut p[..n];
                        matmul_serial(MatMut::row_major(pt, br, bc), q_tile, k_cols.cols(j0, bc), scale, false);
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
                        matmul_serial(MatMut::row_major(dpt, br, bc), do_tile, v_cols.cols(j0, bc), T::ONE, false);
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
                        // SAFETY (the three gradient tiles): this item alone owns the dk/dv rows of
                        // (b, ·, kvh) and the dq rows of (b, ·, h) for the query heads of its group.
                        let dv_tile = unsafe { dv_g.tile(j0, bc) };
                        matmul_serial(dv_tile, MatRef::row_major(p_used, br, bc).t(), do_tile, T::ONE, true);
                        // dS = P ⊙ (dP − δ), stored in dp.
                        for r in 0..br {
                            let dl = delta[i0 + r];
                            for c in 0..bc {
                                let e = r * bc + c;
                                dpt[e] = p[e] * (dpt[e] - dl);
                            }
                        }
                        let ds = MatRef::row_major(&dp[..n], br, bc);
                        matmul_serial(unsafe { dq_g.tile(i0, br) }, ds, k_tile, scale, true);
                        matmul_serial(unsafe { dk_g.tile(j0, bc) }, ds.t(), q_tile, scale, true);
                    }
                }
            }
            // SAFETY: as for the tiles above.
            unsafe { dq_g.finish() };
        }
        // SAFETY: as for the tiles above.
        unsafe {
            dk_g.finish();
            dv_g.finish();
        }
    });
    (dq, dk, dv)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn randn(n: usize, seed: u64) -> Vec<f64> {
        (0..n).map(|i| ((i as f64 + 1.0) * 0.618_033_988_7 + seed as f64 * 0.31).sin() * 1.7).collect()
    }

    /// Gathering tiles into contiguous buffers and transposing keys and values change only
    /// where operands are read from: outputs and gradients match the in-place path, across
    /// tile and strip boundaries, with causal and padding masks, GQA and fewer queries than keys.
    #[test]
    fn gathered_and_transposed_tiles_match_in_place() {
        let cases = [(2, 150, 150, 4, 2, 8, true), (1, 140, 140, 2, 2, 4, false), (2, 37, 170, 4, 1, 6, true)];
        for (b, t, s, h, hkv, d, causal) in cases {
            let dims = AttnDims { b, t, s, h, hkv, d };
            let (q, k, v) = (randn(b * t * h * d, 1), randn(b * s * hkv * d, 2), randn(b * s * hkv * d, 3));
            let dout = randn(b * t * h * d, 4);
            let key_mask: Vec<u8> = (0..b * s).map(|i| u8::from(i % s < s - 9 || i < s)).collect();
            let rule = AttnRule {
                causal,
                key_mask: Some(&key_mask),
                segments: None,
                window: None,
                scale: 0.4,
                dropout: 0.0,
                seed: 0,
            };
            let in_place = Layout { q: false, kv: false, transpose: false };
            let (o0, lse0) = forward_with(&q, &k, &v, dims, &rule, in_place);
            let g0 = backward_with(&dout, &q, &k, &v, &o0, &lse0, dims, &rule, in_place);
            let layouts = (1..8).map(|bits| Layout { q: bits & 1 != 0, kv: bits & 2 != 0, transpose: bits & 4 != 0 });
            for layout in layouts {
                let (o1, lse1) = forward_with(&q, &k, &v, dims, &rule, layout);
                let g1 = backward_with(&dout, &q, &k, &v, &o1, &lse1, dims, &rule, layout);
                let pairs = [(&o0, &o1), (&lse0, &lse1), (&g0.0, &g1.0), (&g0.1, &g1.1), (&g0.2, &g1.2)];
                for (name, (a, c)) in ["o", "lse", "dq", "dk", "dv"].iter().zip(pairs) {
                    let worst = a.iter().zip(c.iter()).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max);
                    assert!(worst < 1e-12, "{name} differs by {worst:e} for {dims:?} with {layout:?}");
                }
            }
        }
    }

    /// Causal tiles straddling the diagonal are cut into strips that stop at the last visible
    /// key; other tiles stay whole.
    #[test]
    fn causal_strips_cover_the_visible_keys() {
        let dims = AttnDims { b: 1, t: 128, s: 128, h: 1, hkv: 1, d: 4 };
        let rule =
            AttnRule { causal: true, key_mask: None, segments: None, window: None, scale: 1.0, dropout: 0.0, seed: 0 };
        assert_eq!(rule.strips(&dims, 0, 128, 0, 128), vec![(0, 32, 32), (32, 64, 64), (64, 96, 96), (96, 128, 128)]);
        let dims = AttnDims { t: 256, s: 256, ..dims };
        assert_eq!(rule.strips(&dims, 128, 256, 0, 128), vec![(128, 256, 128)]);
        // Two queries decoding after six cached keys: one short strip.
        let dims = AttnDims { t: 2, s: 8, ..dims };
        assert_eq!(rule.strips(&dims, 0, 2, 0, 8), vec![(0, 2, 8)]);
        let bidirectional = AttnRule { causal: false, ..rule };
        assert_eq!(bidirectional.strips(&dims, 0, 2, 0, 8), vec![(0, 2, 8)]);
    }
}
