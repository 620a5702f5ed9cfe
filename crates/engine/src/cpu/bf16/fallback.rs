//! The portable bf16 product: both inputs rounded to bf16 (kept as f32 values), then the f32
//! GEMM. A product of two bf16 values is exact in f32, so this is the arithmetic of the
//! packed kernels (f32 sums of exact products) up to the order of the sums, on any CPU.

use super::round_to_bf16;
use crate::cpu::gemm::{gemm_f32, MatMut, MatRef};
use rayon::prelude::*;

/// `dst = [dst] + alpha·(round(a) × round(b))`.
pub fn matmul(
    dst: MatMut<'_, f32>,
    a: MatRef<'_, f32>,
    b: MatRef<'_, f32>,
    alpha: f32,
    accumulate: bool,
    parallel: bool,
) {
    let ra = rounded(a, parallel);
    let rb = rounded(b, parallel);
    let par = if parallel { gemm::Parallelism::Rayon(crate::threads::num_threads()) } else { gemm::Parallelism::None };
    gemm_f32(
        dst,
        MatRef::row_major(&ra, a.rows, a.cols),
        MatRef::row_major(&rb, b.rows, b.cols),
        alpha,
        accumulate,
        par,
    );
}

/// A row-major copy of `m` with every value rounded to bf16.
fn rounded(m: MatRef<'_, f32>, parallel: bool) -> Vec<f32> {
    let mut out = vec![0f32; m.rows * m.cols];
    let fill = |(i, row): (usize, &mut [f32])| {
        for (j, o) in row.iter_mut().enumerate() {
            *o = round_to_bf16(m.at(i, j));
        }
    };
    if parallel {
        out.par_chunks_mut(m.cols.max(1)).enumerate().for_each(fill);
    } else {
        out.chunks_mut(m.cols.max(1)).enumerate().for_each(fill);
    }
    out
}
