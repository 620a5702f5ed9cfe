//! The AVX512-BF16 block kernel (VDPBF16PS: sixteen f32 lanes, each adding the two products
//! of a bf16 pair), for CPUs without AMX: Cooper Lake, Zen 4 and Zen 5.
//!
//! A 32 × 32 block runs as four strips of 8 rows; a strip keeps its 8 × 32 sums in sixteen
//! zmm registers over the whole inner dimension. Each pair row of `b`'s panel is two
//! registers (columns 0–15 and 16–31); each row of the strip broadcasts its `a` pair.

use super::BLOCK;

/// Rows of `a` per strip: 16 accumulators, 2 `b` registers and a broadcast fit the 32 zmm.
const STRIP: usize = 8;

/// Whether the CPU has AVX512-BF16 (and AVX-512 F).
pub fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f") && std::arch::is_x86_feature_detected!("avx512bf16")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// `acc = a_rows · b_panel` for one block from the packed layouts ([`super::pack`]).
///
/// Panics unless [`available`]: callers dispatch on it.
pub fn block(a_rows: &[u16], b_panel: &[u16], kp: usize, acc: &mut [f32; BLOCK * BLOCK]) {
    assert!(available(), "AVX512-BF16 kernel called on a CPU without it");
    assert!(a_rows.len() >= BLOCK * kp && b_panel.len() >= BLOCK * kp && kp.is_multiple_of(2));
    #[cfg(target_arch = "x86_64")]
    // SAFETY: the CPU has the features (asserted above) and the slices hold a whole block.
    unsafe {
        block_x86(a_rows, b_panel, kp, acc)
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bf16")]
unsafe fn block_x86(a_rows: &[u16], b_panel: &[u16], kp: usize, acc: &mut [f32; BLOCK * BLOCK]) {
    use std::arch::x86_64::*;
    let (a, b) = (a_rows.as_ptr(), b_panel.as_ptr());
    for strip in 0..BLOCK / STRIP {
        let mut sums = [[_mm512_setzero_ps(); 2]; STRIP];
        let a_strip = a.add(strip * STRIP * kp);
        for pair in 0..kp / 2 {
            let line = b.add(pair * 2 * BLOCK);
            let b_lo: __m512bh = std::mem::transmute(_mm512_loadu_si512(line.cast()));
            let b_hi: __m512bh = std::mem::transmute(_mm512_loadu_si512(line.add(BLOCK).cast()));
            for (r, row) in sums.iter_mut().enumerate() {
                let pair_bits = a_strip.add(r * kp + 2 * pair).cast::<i32>().read_unaligned();
                let a_pair: __m512bh = std::mem::transmute(_mm512_set1_epi32(pair_bits));
                row[0] = _mm512_dpbf16_ps(row[0], a_pair, b_lo);
                row[1] = _mm512_dpbf16_ps(row[1], a_pair, b_hi);
            }
        }
        for (r, row) in sums.iter().enumerate() {
            let out = acc.as_mut_ptr().add((strip * STRIP + r) * BLOCK);
            _mm512_storeu_ps(out, row[0]);
            _mm512_storeu_ps(out.add(16), row[1]);
        }
    }
}
