//! The products of a linear layer whose weight stays quantized: W (`[out, in]`) is
//! dequantized a panel of rows at a time into a buffer of at most ~2 MB, which the GEMM reads
//! in place of W. Dequantizing is one pass over W per product, small next to the GEMM's
//! 2·n·out·in flops for the batch sizes of training.

use super::gemm::{matmul, MatMut, MatRef};
use crate::quant::QuantMatrix;

/// Rows of W per panel: about 2 MB of f32, at least 16.
fn panel_rows(w: &QuantMatrix) -> usize {
    ((2 << 20) / (4 * w.cols().max(1))).clamp(16, w.rows().max(16))
}

/// Calls `f(first_row, rows, panel)` for each panel of W, dequantized into one reused buffer.
fn for_each_panel(w: &QuantMatrix, mut f: impl FnMut(usize, usize, &[f32])) {
    let (out, inp) = (w.rows(), w.cols());
    let panel = panel_rows(w);
    let mut buf = vec![0f32; panel.min(out) * inp];
    for p0 in (0..out).step_by(panel) {
        let rows = panel.min(out - p0);
        let wp = &mut buf[..rows * inp];
        w.dequantize_rows(p0, wp);
        f(p0, rows, wp);
    }
}

/// y = x·Wᵀ (+ bias) for `x` `[n, in]`; returns `[n, out]`.
pub fn forward(x: &[f32], n: usize, w: &QuantMatrix, bias: Option<&[f32]>) -> Vec<f32> {
    let (out, inp) = (w.rows(), w.cols());
    let mut y = vec![0f32; n * out];
    for_each_panel(w, |p0, rows, wp| {
        matmul(
            MatMut::strided(&mut y, p0, n, rows, out, 1),
            MatRef::row_major(x, n, inp),
            MatRef::row_major(wp, rows, inp).t(),
            1.0,
            false,
        );
    });
    if let Some(b) = bias {
        for row in y.chunks_exact_mut(out) {
            row.iter_mut().zip(b).for_each(|(v, b)| *v += b);
        }
    }
    y
}

/// dx = dy·W for `dy` `[n, out]`; returns `[n, in]`.
pub fn backward_dx(dy: &[f32], n: usize, w: &QuantMatrix) -> Vec<f32> {
    let (out, inp) = (w.rows(), w.cols());
    let mut dx = vec![0f32; n * inp];
    for_each_panel(w, |p0, rows, wp| {
        matmul(
            MatMut::row_major(&mut dx, n, inp),
            MatRef::strided(dy, p0, n, rows, out, 1),
            MatRef::row_major(wp, rows, inp),
            1.0,
            p0 > 0,
        );
    });
    dx
}
