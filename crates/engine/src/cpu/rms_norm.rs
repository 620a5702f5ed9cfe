//! rms_norm over the last dimension: y = x·rstd·(γ + offset), rstd = 1/√(mean(x²) + ε).
//! `offset` is 0 for Llama-style weights and 1 for Gemma-style (1 + w) weights.
//! Outputs are written once into uninitialised buffers, and each row of the backward takes two
//! passes over its (L1-resident) data, as in [`super::layer_norm`].

use std::mem::MaybeUninit;

use rayon::prelude::*;

use super::reduce::{self, LANES};
use crate::dtype::Real;

/// Rows per parallel block; per-block γ partial sums are combined in block order.
const ROW_BLOCK: usize = 32;

/// γ + offset, the effective per-column scale.
fn effective_gamma<T: Real>(gamma: &[T], offset: f64) -> Vec<T> {
    let off = T::from_f64(offset);
    gamma.iter().map(|&g| g + off).collect()
}

/// Forward over `x [rows, dim]`; returns `(y, rstd [rows])`.
pub fn forward<T: Real>(x: &[T], gamma: &[T], offset: f64, rows: usize, dim: usize, eps: f64) -> (Vec<T>, Vec<T>) {
    // The write loop stops at the shortest operand; this makes "every element written" (which
    // the uninitialised output relies on) a checked fact. The op validates shapes first.
    assert!(x.len() == rows * dim && gamma.len() == dim, "rms_norm: x/γ are not rows × dim / [dim]");
    let mut y: Vec<T> = Vec::with_capacity(rows * dim);
    let mut rstd = vec![T::ZERO; rows];
    let g = effective_gamma(gamma, offset);
    let inv_d = T::from_f64(1.0 / dim as f64);
    let eps = T::from_f64(eps);
    let block = ROW_BLOCK * dim.max(1);
    y.spare_capacity_mut()[..rows * dim]
        .par_chunks_mut(block)
        .zip(x.par_chunks(block))
        .zip(rstd.par_chunks_mut(ROW_BLOCK))
        .for_each(|((yb, xb), rb)| {
            for ((yr, xr), r) in yb.chunks_mut(dim).zip(xb.chunks(dim)).zip(rb) {
                let rs = T::ONE / (reduce::dot(xr, xr) * inv_d + eps).sqrt();
                *r = rs;
                for ((y, &x), &g) in yr.iter_mut().zip(xr).zip(&g) {
                    y.write(x * rs * g);
                }
            }
        });
    // SAFETY: the blocks cover all rows of `x`, and each row's loop writes all `dim` elements
    // (every operand it zips holds `dim`, asserted at entry).
    unsafe { y.set_len(rows * dim) };
    (y, rstd)
}

/// Σ dy·g·x over one row: the mean in the dx formula, before scaling.
#[inline(always)]
fn row_sum<T: Real>(dy: &[T], x: &[T], g: &[T]) -> T {
    let mut acc = [T::ZERO; LANES];
    let (dyc, xc, gc) = (dy.chunks_exact(LANES), x.chunks_exact(LANES), g.chunks_exact(LANES));
    let (dyt, xt, gt) = (dyc.remainder(), xc.remainder(), gc.remainder());
    for ((dy, x), g) in dyc.zip(xc).zip(gc) {
        for l in 0..LANES {
            acc[l] = (dy[l] * g[l]).mul_add(x[l], acc[l]);
        }
    }
    let mut tail = T::ZERO;
    for ((&dy, &x), &g) in dyt.iter().zip(xt).zip(gt) {
        tail = (dy * g).mul_add(x, tail);
    }
    reduce::combine(acc) + tail
}

/// Backward from `dy`; returns `(dx, dgamma)`, each only if requested.
/// dx = rs·(γ·dy − x·rs²·mean(γ·dy·x)), dγ = Σ_rows dy·x·rs.
#[allow(clippy::too_many_arguments)]
pub fn backward<T: Real>(
    dy: &[T],
    x: &[T],
    gamma: &[T],
    offset: f64,
    rstd: &[T],
    rows: usize,
    dim: usize,
    need_dx: bool,
    need_dgamma: bool,
) -> (Option<Vec<T>>, Option<Vec<T>>) {
    assert!(x.len() == rows * dim && dy.len() == rows * dim, "rms_norm backward: x/dy are not rows × dim");
    assert!(gamma.len() == dim && rstd.len() == rows, "rms_norm backward: γ/rstd are not [dim]/[rows]");
    let inv_d = T::from_f64(1.0 / dim as f64);
    let g = effective_gamma(gamma, offset);
    let mut dx: Vec<T> = Vec::with_capacity(if need_dx { rows * dim } else { 0 });
    let work = |b: usize, dx_block: Option<&mut [MaybeUninit<T>]>| -> Vec<T> {
        let r0 = b * ROW_BLOCK;
        let r1 = (r0 + ROW_BLOCK).min(rows);
        let mut dg = vec![T::ZERO; if need_dgamma { dim } else { 0 }];
        let mut dx_block = dx_block;
        for r in r0..r1 {
            let xr = &x[r * dim..(r + 1) * dim];
            let gr = &dy[r * dim..(r + 1) * dim];
            let rs = rstd[r];
            match dx_block.as_deref_mut() {
                Some(dxb) => {
                    let out = &mut dxb[(r - r0) * dim..(r - r0 + 1) * dim];
                    let c = row_sum(gr, xr, &g) * inv_d * rs * rs;
                    if need_dgamma {
                        for ((((o, &dy), &x), &g), dg) in out.iter_mut().zip(gr).zip(xr).zip(&g).zip(dg.iter_mut()) {
                            o.write(rs * (dy * g - x * c));
                            *dg = (dy * x).mul_add(rs, *dg);
                        }
                    } else {
                        for (((o, &dy), &x), &g) in out.iter_mut().zip(gr).zip(xr).zip(&g) {
                            o.write(rs * (dy * g - x * c));
                        }
                    }
                }
                None => {
                    for ((&dy, &x), dg) in gr.iter().zip(xr).zip(dg.iter_mut()) {
                        *dg = (dy * x).mul_add(rs, *dg);
                    }
                }
            }
        }
        dg
    };
    let partials: Vec<Vec<T>> = if need_dx {
        let out = dx.spare_capacity_mut()[..rows * dim].par_chunks_mut(ROW_BLOCK * dim.max(1));
        let partials = out.enumerate().map(|(b, chunk)| work(b, Some(chunk))).collect();
        // SAFETY: each block wrote all `dim` elements of each of its rows (every operand the row
        // loop zips holds `dim`, asserted at entry), and the blocks cover all `rows` rows.
        unsafe { dx.set_len(rows * dim) };
        partials
    } else {
        (0..rows.div_ceil(ROW_BLOCK)).into_par_iter().map(|b| work(b, None)).collect()
    };
    let dgamma = need_dgamma.then(|| {
        let mut acc = vec![T::ZERO; dim];
        for p in partials {
            acc.iter_mut().zip(p).for_each(|(a, v)| *a += v);
        }
        acc
    });
    (need_dx.then_some(dx), dgamma)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::test_support::{assert_close, values};

    #[test]
    fn kernels_match_the_formulas_for_every_option_and_shape() {
        for (rows, dim) in [(1, 1), (3, 7), (33, 16), (65, 33), (40, 100)] {
            let (x, dy, g) = (values(rows * dim, 1), values(rows * dim, 2), values(dim, 3));
            for offset in [0.0, 1.0] {
                let (mut want_y, mut want_dx, mut want_dg) = (vec![], vec![], vec![0.0; dim]);
                for (xr, gr) in x.chunks(dim).zip(dy.chunks(dim)) {
                    let rs = 1.0 / (xr.iter().map(|v| v * v).sum::<f64>() / dim as f64 + 1e-6).sqrt();
                    let w: Vec<f64> = g.iter().map(|v| v + offset).collect();
                    want_y.extend((0..dim).map(|i| xr[i] * rs * w[i]));
                    let m = (0..dim).map(|i| gr[i] * w[i] * xr[i]).sum::<f64>() / dim as f64;
                    want_dx.extend((0..dim).map(|i| rs * (gr[i] * w[i] - xr[i] * rs * rs * m)));
                    for i in 0..dim {
                        want_dg[i] += gr[i] * xr[i] * rs;
                    }
                }
                let (y, rstd) = forward(&x, &g, offset, rows, dim, 1e-6);
                assert_close("y", &y, &want_y, 1e-10);
                for (ndx, ndg) in [(true, true), (true, false), (false, true), (false, false)] {
                    let (dx, dg) = backward(&dy, &x, &g, offset, &rstd, rows, dim, ndx, ndg);
                    assert_eq!((dx.is_some(), dg.is_some()), (ndx, ndg));
                    if let Some(dx) = dx {
                        assert_close("dx", &dx, &want_dx, 1e-10);
                    }
                    if let Some(dg) = dg {
                        assert_close("dgamma", &dg, &want_dg, 1e-10);
                    }
                }
            }
        }
    }
}
