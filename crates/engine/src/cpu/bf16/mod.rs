//! bf16 matrix products for mixed precision ([`crate::precision`]): `dst = [dst] + α·a·b` with
//! f32 operands rounded to bf16 (round to nearest even) and f32 accumulation.
//!
//! Both operands are packed once per product, rounding as they are copied ([`pack`]): `a` as
//! bf16 rows and `b` as column panels of 32 in the "VNNI" pair layout that AMX and
//! AVX512-BF16 both read. The product then runs in 32×32 output blocks spread over the
//! threads, each block over the whole inner dimension, on the [`amx`] tiles or the
//! [`avx512`] dot products. Small or thin products (under 16 in any dimension) and CPUs with
//! neither run [`fallback`]: the same rounding, then the f32 GEMM.

pub mod amx;
pub mod avx512;
pub mod fallback;
pub mod pack;

use rayon::prelude::*;

use super::gemm::{MatMut, MatRef, SendPtr};
use crate::precision::Bf16Kernel;
use crate::threads;

/// Output rows and columns of one block of the packed kernels.
pub const BLOCK: usize = 32;

/// The bf16 bits nearest to `x` (ties to even); NaN stays NaN (quiet).
#[inline(always)]
pub fn to_bf16_bits(x: f32) -> u16 {
    let bits = x.to_bits();
    let rounded = bits.wrapping_add(0x7FFF + ((bits >> 16) & 1)) >> 16;
    let nan = (bits & 0x7FFF_FFFF) > 0x7F80_0000;
    if nan {
        ((bits >> 16) | 0x40) as u16
    } else {
        rounded as u16
    }
}

/// The f32 value of bf16 bits.
#[inline(always)]
pub fn from_bf16_bits(b: u16) -> f32 {
    f32::from_bits((b as u32) << 16)
}

/// `x` rounded to the nearest bf16 value, as f32.
#[inline(always)]
pub fn round_to_bf16(x: f32) -> f32 {
    from_bf16_bits(to_bf16_bits(x))
}

/// The best bf16 kernel this CPU and OS support.
pub fn best_kernel() -> Bf16Kernel {
    [Bf16Kernel::Amx, Bf16Kernel::Avx512Bf16].into_iter().find(|&k| supports(k)).unwrap_or(Bf16Kernel::Fallback)
}

/// Whether this machine can run `kernel` (for AMX: the CPU has the tiles and Linux granted
/// this process their state).
pub fn supports(kernel: Bf16Kernel) -> bool {
    match kernel {
        Bf16Kernel::Amx => amx::available(),
        Bf16Kernel::Avx512Bf16 => avx512::available(),
        Bf16Kernel::Fallback => true,
    }
}

/// `dst = [dst if accumulate] + alpha·(a × b)` from bf16-rounded inputs with f32 sums, on
/// `kernel`; `parallel` spreads the blocks over the engine's threads.
pub fn matmul(
    dst: MatMut<'_, f32>,
    a: MatRef<'_, f32>,
    b: MatRef<'_, f32>,
    alpha: f32,
    accumulate: bool,
    kernel: Bf16Kernel,
    parallel: bool,
) {
    let (m, n, k) = (a.rows, b.cols, a.cols);
    assert_eq!(b.rows, k, "gemm inner dimensions");
    assert_eq!((dst.rows, dst.cols), (m, n), "gemm output shape");
    if m == 0 || n == 0 {
        return;
    }
    if kernel == Bf16Kernel::Fallback || m.min(n).min(k) < 16 {
        fallback::matmul(dst, a, b, alpha, accumulate, parallel);
        return;
    }
    let kp = k.next_multiple_of(BLOCK);
    let (mblocks, nblocks) = (m.div_ceil(BLOCK), n.div_ceil(BLOCK));
    let ap = pack::pack_a(a, mblocks * BLOCK, kp, parallel);
    let bp = pack::pack_b(b, nblocks * BLOCK, kp, parallel);
    let tasks_per_panel = if parallel { (4 * threads::num_threads()).div_ceil(nblocks).min(mblocks) } else { 1 };
    let dst_ptr = SendPtr(dst.ptr);
    let (drs, dcs) = (dst.rs, dst.cs);
    let run = |task: usize| {
        let (panel, part) = (task / tasks_per_panel, task % tasks_per_panel);
        let (mb0, mb1) = (part * mblocks / tasks_per_panel, (part + 1) * mblocks / tasks_per_panel);
        let b_panel = &bp[panel * BLOCK * kp..(panel + 1) * BLOCK * kp];
        let mut acc = [0f32; BLOCK * BLOCK];
        for mb in mb0..mb1 {
            let a_rows = &ap[mb * BLOCK * kp..(mb + 1) * BLOCK * kp];
            match kernel {
                Bf16Kernel::Amx => amx::block(a_rows, b_panel, kp, &mut acc),
                _ => avx512::block(a_rows, b_panel, kp, &mut acc),
            }
            let (i0, j0) = (mb * BLOCK, panel * BLOCK);
            let (rows, cols) = (BLOCK.min(m - i0), BLOCK.min(n - j0));
            // SAFETY: blocks are disjoint and inside dst's view (rows, cols clipped to m, n).
            unsafe { store_block(dst_ptr, drs, dcs, i0, j0, rows, cols, &acc, alpha, accumulate) };
        }
    };
    let tasks = nblocks * tasks_per_panel;
    if parallel && tasks > 1 {
        (0..tasks).into_par_iter().for_each(run);
    } else {
        (0..tasks).for_each(run);
    }
}

/// Writes a block's `acc` (row-major, [`BLOCK`] wide) into `dst` at `(i0, j0)`.
///
/// # Safety
/// The `rows × cols` region at `(i0, j0)` of the strided view at `dst` must be valid for
/// writes and touched by no other thread.
#[allow(clippy::too_many_arguments)]
unsafe fn store_block(
    dst: SendPtr<f32>,
    rs: isize,
    cs: isize,
    i0: usize,
    j0: usize,
    rows: usize,
    cols: usize,
    acc: &[f32; BLOCK * BLOCK],
    alpha: f32,
    accumulate: bool,
) {
    for i in 0..rows {
        let src = &acc[i * BLOCK..i * BLOCK + cols];
        let row = dst.get().offset((i0 + i) as isize * rs + j0 as isize * cs);
        if cs == 1 {
            let out = std::slice::from_raw_parts_mut(row, cols);
            if accumulate {
                out.iter_mut().zip(src).for_each(|(o, &v)| *o += alpha * v);
            } else {
                out.iter_mut().zip(src).for_each(|(o, &v)| *o = alpha * v);
            }
        } else {
            for (j, &v) in src.iter().enumerate() {
                let o = row.offset(j as isize * cs);
                *o = if accumulate { *o + alpha * v } else { alpha * v };
            }
        }
    }
}

#[cfg(test)]
mod tests;
