//! ggml's 256-weight "K" block formats, Q2_K to Q6_K. Each block has sub-block scales
//! (and minimums) quantized against one or two f16 super-scales; the weights' bits are
//! spread over bit planes as llama.cpp lays them out. The index arithmetic below names the
//! plane each weight's bits come from.

use super::f16_at;

/// Weights per K block.
pub const QK_K: usize = 256;

/// Q2_K (84 bytes): scales[16] (low nibble: scale, high: minimum), qs[64], d, dmin.
/// Weight `e = 128c + 32s + l` is bits `2s..2s+2` of `qs[32c + l]`, in group `e / 16`.
pub fn q2_k(b: &[u8], out: &mut [f32]) {
    let (scales, qs) = (&b[0..16], &b[16..80]);
    let (d, dmin) = (f16_at(b, 80), f16_at(b, 82));
    for (e, o) in out.iter_mut().enumerate().take(QK_K) {
        let (c, s, l) = (e / 128, (e / 32) % 4, e % 32);
        let q = (qs[32 * c + l] >> (2 * s)) & 3;
        let g = e / 16;
        let dl = d * (scales[g] & 0x0F) as f32;
        let ml = dmin * (scales[g] >> 4) as f32;
        *o = dl * q as f32 - ml;
    }
}

/// The sixteen signed 6-bit group scales of a Q3_K block.
fn q3_k_scales(s: &[u8]) -> [f32; 16] {
    let mut out = [0f32; 16];
    for (i, o) in out.iter_mut().enumerate() {
        let low = if i < 8 { s[i] & 0x0F } else { s[i - 8] >> 4 };
        let high = (s[8 + i % 4] >> (2 * (i / 4))) & 3;
        *o = (((low | (high << 4)) as i8) - 32) as f32;
    }
    out
}

/// Q3_K (110 bytes): hmask[32], qs[64], scales[12], d. Weight `e = 128c + 32s + l` has its
/// low two bits at bits `2s` of `qs[32c + l]` and its third (inverted) bit at bit `4c + s` of
/// `hmask[l]`; a set mask bit means no offset, a clear one means −4.
pub fn q3_k(b: &[u8], out: &mut [f32]) {
    let (hmask, qs) = (&b[0..32], &b[32..96]);
    let scales = q3_k_scales(&b[96..108]);
    let d = f16_at(b, 108);
    for (e, o) in out.iter_mut().enumerate().take(QK_K) {
        let (c, s, l) = (e / 128, (e / 32) % 4, e % 32);
        let low = ((qs[32 * c + l] >> (2 * s)) & 3) as i8;
        let high = ((hmask[l] >> (4 * c + s)) & 1) ^ 1;
        let q = low - ((high << 2) as i8);
        let dl = d * scales[e / 16];
        *o = dl * q as f32;
    }
}

/// The eight 6-bit scales and minimums of a Q4_K / Q5_K block from its 12 bytes.
pub(crate) fn scale_min_k4(s: &[u8]) -> ([u8; 8], [u8; 8]) {
    let (mut sc, mut mn) = ([0u8; 8], [0u8; 8]);
    for j in 0..4 {
        sc[j] = s[j] & 0x3F;
        mn[j] = s[4 + j] & 0x3F;
        sc[4 + j] = (s[8 + j] & 0x0F) | ((s[j] >> 2) & 0x30);
        mn[4 + j] = (s[8 + j] >> 4) | ((s[4 + j] >> 2) & 0x30);
    }
    (sc, mn)
}

/// Q4_K (144 bytes): d, dmin, scales[12], qs[128]. Weight `e = 64c + 32n + l` is nibble `n`
/// of `qs[32c + l]`, in sub-block `e / 32`.
pub fn q4_k(b: &[u8], out: &mut [f32]) {
    let (d, dmin) = (f16_at(b, 0), f16_at(b, 2));
    let (sc, mn) = scale_min_k4(&b[4..16]);
    let qs = &b[16..144];
    for (e, o) in out.iter_mut().enumerate().take(QK_K) {
        let (c, n, l) = (e / 64, (e / 32) % 2, e % 32);
        let q = (qs[32 * c + l] >> (4 * n)) & 0x0F;
        let j = e / 32;
        let (dl, ml) = (d * sc[j] as f32, dmin * mn[j] as f32);
        *o = dl * q as f32 - ml;
    }
}

/// Q5_K (176 bytes): d, dmin, scales[12], qh[32], qs[128]. As Q4_K, with the fifth bit of
/// weight `e` at bit `e / 32` of `qh[e % 32]`.
pub fn q5_k(b: &[u8], out: &mut [f32]) {
    let (d, dmin) = (f16_at(b, 0), f16_at(b, 2));
    let (sc, mn) = scale_min_k4(&b[4..16]);
    let (qh, qs) = (&b[16..48], &b[48..176]);
    for (e, o) in out.iter_mut().enumerate().take(QK_K) {
        let (c, n, l) = (e / 64, (e / 32) % 2, e % 32);
        let low = (qs[32 * c + l] >> (4 * n)) & 0x0F;
        let high = (qh[l] >> (e / 32)) & 1;
        let q = low | (high << 4);
        let j = e / 32;
        let (dl, ml) = (d * sc[j] as f32, dmin * mn[j] as f32);
        *o = dl * q as f32 - ml;
    }
}

/// Q6_K (210 bytes): ql[128], qh[64], scales[16] (signed), d. Weight `e = 128h + p` has its
/// low nibble at nibble `p / 64` of `ql[64h + p % 64]` and its top two bits at bits
/// `2·(p / 32)` of `qh[32h + p % 32]`; it is offset by −32, in group `e / 16`.
pub fn q6_k(b: &[u8], out: &mut [f32]) {
    let (ql, qh, scales) = (&b[0..128], &b[128..192], &b[192..208]);
    let d = f16_at(b, 208);
    for (e, o) in out.iter_mut().enumerate().take(QK_K) {
        let (h, p) = (e / 128, e % 128);
        let low = (ql[64 * h + p % 64] >> (4 * (p / 64))) & 0x0F;
        let high = (qh[32 * h + p % 32] >> (2 * (p / 32))) & 3;
        let q = ((low | (high << 4)) as i8) - 32;
        let dl = d * (scales[e / 16] as i8) as f32;
        *o = dl * q as f32;
    }
}
