//! Quantization into the ggml formats tunesmith writes besides Q8_0: Q5_0 (32-weight blocks)
//! and the K-quants Q4_K and Q6_K (256-weight blocks), the three a Q4_K_M file is made of.
//! Each writes the exact byte layout the dequantizers in `legacy` and `kquants` read (and
//! llama.cpp and gguf-py read). Scales are fitted per sub-block: Q5_0 and Q6_K map the
//! largest-magnitude weight onto the most negative level, as llama.cpp does; Q4_K fits each
//! sub-block's scale and minimum by alternating rounding and least squares. The results are
//! not bit-identical to llama.cpp's searches, only close to them in error.

use super::kquants::QK_K;
use super::legacy::QK;

fn put_f16(out: &mut [u8], v: f32) {
    out[..2].copy_from_slice(&half::f16::from_f32(v).to_bits().to_le_bytes());
}

fn f16_round(v: f32) -> f32 {
    half::f16::from_f32(v).to_f32()
}

/// The weight of largest magnitude, with its sign.
fn signed_max(x: &[f32]) -> f32 {
    x.iter().fold(0f32, |m, &v| if v.abs() > m.abs() { v } else { m })
}

/// Q5_0 (22 bytes per 32 weights): `d = max / −16` for the largest-magnitude weight `max`,
/// `q = round(x / d) + 16` in 0..=31; the fifth bits go to a little-endian u32.
pub fn quantize_q5_0(x: &[f32], out: &mut [u8]) {
    debug_assert!(x.len() == QK && out.len() == 22);
    let d = signed_max(x) / -16.0;
    let id = if d == 0.0 { 0.0 } else { 1.0 / d };
    put_f16(out, d);
    let mut qh = 0u32;
    for j in 0..16 {
        let q0 = ((x[j] * id + 16.5) as i32).clamp(0, 31) as u32;
        let q1 = ((x[j + 16] * id + 16.5) as i32).clamp(0, 31) as u32;
        out[6 + j] = ((q0 & 0x0F) | ((q1 & 0x0F) << 4)) as u8;
        qh |= ((q0 >> 4) & 1) << j;
        qh |= ((q1 >> 4) & 1) << (j + 16);
    }
    out[2..6].copy_from_slice(&qh.to_le_bytes());
}

/// Q6_K (210 bytes per 256 weights): sixteen groups of 16, each with a signed 8-bit scale
/// against one f16 `d`; weights are 6-bit, offset by 32.
pub fn quantize_q6_k(x: &[f32], out: &mut [u8]) {
    debug_assert!(x.len() == QK_K && out.len() == 210);
    // Per group: the scale that maps its largest-magnitude weight to −32.
    let mut group_scale = [0f32; 16];
    for (g, s) in group_scale.iter_mut().enumerate() {
        *s = signed_max(&x[16 * g..16 * g + 16]) / -32.0;
    }
    let max_scale = signed_max(&group_scale);
    let (ql, rest) = out.split_at_mut(128);
    let (qh, rest) = rest.split_at_mut(64);
    let (scales, dbytes) = rest.split_at_mut(16);
    ql.fill(0);
    qh.fill(0);
    if max_scale == 0.0 {
        scales.fill(0);
        put_f16(dbytes, 0.0);
        return;
    }
    let iscale = -128.0 / max_scale;
    let d = f16_round(1.0 / iscale);
    put_f16(dbytes, d);
    for (g, s) in scales.iter_mut().enumerate() {
        *s = ((iscale * group_scale[g]).round().clamp(-128.0, 127.0) as i8) as u8;
    }
    for (e, &v) in x.iter().enumerate() {
        let dl = d * (scales[e / 16] as i8) as f32;
        let q = if dl == 0.0 { 0 } else { ((v / dl).round() as i32).clamp(-32, 31) };
        let q = (q + 32) as u8;
        let (h, p) = (e / 128, e % 128);
        ql[64 * h + p % 64] |= (q & 0x0F) << (4 * (p / 64));
        qh[32 * h + p % 32] |= (q >> 4) << (2 * (p / 32));
    }
}

/// The (scale, minimum) of `x ≈ scale·q − min` with `q` in `0..=nmax`, `min ≥ 0`: starts from
/// the range and alternates rounding with a least-squares refit, keeping the best error.
fn fit_scale_min(x: &[f32], nmax: f32) -> (f32, f32) {
    let lo = x.iter().fold(0f32, |m, &v| m.min(v));
    let hi = x.iter().fold(f32::MIN, |m, &v| m.max(v));
    if hi <= lo {
        return (0.0, -lo);
    }
    let err = |s: f32, m: f32| -> f32 {
        x.iter()
            .map(|&v| {
                let q = ((v + m) / s).round().clamp(0.0, nmax);
                (s * q - m - v).powi(2)
            })
            .sum()
    };
    let (mut scale, mut min) = ((hi - lo) / nmax, -lo);
    let mut best = (scale, min, err(scale, min));
    for _ in 0..4 {
        // Least squares of x = s·q − m over the current rounding.
        let n = x.len() as f32;
        let (mut sq, mut sqq, mut sx, mut sqx) = (0f32, 0f32, 0f32, 0f32);
        for &v in x {
            let q = ((v + min) / scale).round().clamp(0.0, nmax);
            sq += q;
            sqq += q * q;
            sx += v;
            sqx += q * v;
        }
        let det = n * sqq - sq * sq;
        if det <= 0.0 {
            break;
        }
        let s = (n * sqx - sq * sx) / det;
        let m = (s * sq - sx) / n;
        if s <= 0.0 {
            break;
        }
        // The format stores min ≥ 0 (the block's lowest level is −min ≤ 0).
        let m = m.max(0.0);
        let e = err(s, m);
        if e >= best.2 {
            break;
        }
        (scale, min) = (s, m);
        best = (s, m, e);
    }
    (best.0, best.1)
}

/// Q4_K (144 bytes per 256 weights): eight sub-blocks of 32, `x ≈ d·sc·q − dmin·mn` with
/// 4-bit `q` and 6-bit `sc`, `mn` packed as `kquants::scale_min_k4` unpacks them.
pub fn quantize_q4_k(x: &[f32], out: &mut [u8]) {
    debug_assert!(x.len() == QK_K && out.len() == 144);
    let mut scales = [0f32; 8];
    let mut mins = [0f32; 8];
    for j in 0..8 {
        (scales[j], mins[j]) = fit_scale_min(&x[32 * j..32 * j + 32], 15.0);
    }
    let max_scale = scales.iter().fold(0f32, |m, &v| m.max(v));
    let max_min = mins.iter().fold(0f32, |m, &v| m.max(v));
    let inv_scale = if max_scale > 0.0 { 63.0 / max_scale } else { 0.0 };
    let inv_min = if max_min > 0.0 { 63.0 / max_min } else { 0.0 };
    let mut sc = [0u8; 8];
    let mut mn = [0u8; 8];
    for j in 0..8 {
        sc[j] = (inv_scale * scales[j]).round().min(63.0) as u8;
        mn[j] = (inv_min * mins[j]).round().min(63.0) as u8;
    }
    let d = f16_round(max_scale / 63.0);
    let dmin = f16_round(max_min / 63.0);
    put_f16(&mut out[0..2], d);
    put_f16(&mut out[2..4], dmin);
    let s = &mut out[4..16];
    for j in 0..4 {
        s[j] = (sc[j] & 0x3F) | ((sc[4 + j] & 0x30) << 2);
        s[4 + j] = (mn[j] & 0x3F) | ((mn[4 + j] & 0x30) << 2);
        s[8 + j] = (sc[4 + j] & 0x0F) | ((mn[4 + j] & 0x0F) << 4);
    }
    let qs = &mut out[16..144];
    qs.fill(0);
    for (e, &v) in x.iter().enumerate() {
        let j = e / 32;
        let (dl, ml) = (d * sc[j] as f32, dmin * mn[j] as f32);
        let q = if dl == 0.0 { 0 } else { ((v + ml) / dl).round().clamp(0.0, 15.0) as u8 };
        let (c, n, l) = (e / 64, (e / 32) % 2, e % 32);
        qs[32 * c + l] |= q << (4 * n);
    }
}
