//! Packing of the bf16 kernels' operands, rounding each f32 to bf16 as it is copied.
//!
//! - `a` (m × k) becomes bf16 rows of `kp` elements (k padded with zeros to a multiple of
//!   [`BLOCK`]), `m_pad` rows (zero rows past m): block `mb` is rows `32·mb..32·mb + 32`.
//! - `b` (k × n) becomes column panels of [`BLOCK`] columns. Panel `p` holds `kp / 2` pair
//!   rows; pair row `r` is 32 `(b[2r][j], b[2r + 1][j])` pairs, one per column `j` of the
//!   panel: the "VNNI" layout that AMX's TDPBF16PS and AVX512-BF16's VDPBF16PS read.

use rayon::prelude::*;

use super::{to_bf16_bits, BLOCK};
use crate::cpu::gemm::MatRef;

/// `a` rounded to bf16 as `m_pad` rows of `kp` elements, zero-padded.
pub fn pack_a(a: MatRef<'_, f32>, m_pad: usize, kp: usize, parallel: bool) -> Vec<u16> {
    debug_assert!(m_pad >= a.rows && kp >= a.cols && kp.is_multiple_of(BLOCK));
    let mut out = vec![0u16; m_pad * kp];
    let (rows, cols) = (a.rows, a.cols);
    let fill = |(i, row): (usize, &mut [u16])| {
        if i < rows {
            for (j, o) in row[..cols].iter_mut().enumerate() {
                *o = to_bf16_bits(a.at(i, j));
            }
        }
    };
    if parallel {
        out.par_chunks_mut(kp).enumerate().for_each(fill);
    } else {
        out.chunks_mut(kp).enumerate().for_each(fill);
    }
    out
}

/// `b` rounded to bf16 in column panels of [`BLOCK`] in pair-row ("VNNI") order, for `n_pad`
/// columns and `kp` rows, zero-padded.
pub fn pack_b(b: MatRef<'_, f32>, n_pad: usize, kp: usize, parallel: bool) -> Vec<u16> {
    debug_assert!(n_pad >= b.cols && kp >= b.rows && kp.is_multiple_of(BLOCK) && n_pad.is_multiple_of(BLOCK));
    let mut out = vec![0u16; n_pad * kp];
    let (rows, cols) = (b.rows, b.cols);
    let fill = |(panel, dst): (usize, &mut [u16])| {
        let j0 = panel * BLOCK;
        let width = BLOCK.min(cols.saturating_sub(j0));
        for k in 0..rows {
            let (pair_row, half) = (k / 2, k % 2);
            let line = &mut dst[pair_row * 2 * BLOCK..(pair_row + 1) * 2 * BLOCK];
            for j in 0..width {
                line[2 * j + half] = to_bf16_bits(b.at(k, j0 + j));
            }
        }
    };
    if parallel {
        out.par_chunks_mut(BLOCK * kp).enumerate().for_each(fill);
    } else {
        out.chunks_mut(BLOCK * kp).enumerate().for_each(fill);
    }
    out
}

/// A 32 × 32 block of `a_rows · b_panel` in f32 from the packed layouts, one product at a time
/// in f64 then rounded: the definition the vector kernels are tested against.
#[cfg(test)]
pub fn reference_block(a_rows: &[u16], b_panel: &[u16], kp: usize, acc: &mut [f32; BLOCK * BLOCK]) {
    use super::from_bf16_bits;
    for i in 0..BLOCK {
        for j in 0..BLOCK {
            let mut s = 0f64;
            for k in 0..kp {
                let b = b_panel[(k / 2) * 2 * BLOCK + 2 * j + k % 2];
                s += from_bf16_bits(a_rows[i * kp + k]) as f64 * from_bf16_bits(b) as f64;
            }
            acc[i * BLOCK + j] = s as f32;
        }
    }
}
