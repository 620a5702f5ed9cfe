//! rms_norm over the last dimension: y = x·rstd·(γ + offset), rstd = 1/√(mean(x²) + ε).
//! `offset` is 0 for Llama-style weights and 1 for Gemma-style (1 + w) weights.

use rayon::prelude::*;

use super::reduce;
use crate::dtype::Real;

const ROW_BLOCK: usize = 32;

/// Forward over `x [rows, dim]`; returns `(y, rstd [rows])`.
pub fn forward<T: Real>(x: &[T], gamma: &[T], offset: f64, rows: usize, dim: usize, eps: f64) -> (Vec<T>, Vec<T>) {
    let mut y = vec![T::ZERO; rows * dim];
    let mut rstd = vec![T::ZERO; rows];
    let inv_d = T::from_f64(1.0 / dim as f64);
    let eps = T::from_f64(eps);
    let off = T::from_f64(offset);
    y.par_chunks_mut(dim.max(1)).zip(x.par_chunks(dim.max(1))).zip(rstd.par_iter_mut()).for_each(|((yr, xr), r)| {
        let ms = reduce::dot(xr, xr) * inv_d;
        let rs = T::ONE / (ms + eps).sqrt();
        *r = rs;
        for i in 0..dim {
            yr[i] = xr[i] * rs * (gamma[i] + off);
        }
    });
    (y, rstd)
}

/// Backward from `dy`; returns `(dx, dgamma)`, each only if requested.
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
    let inv_d = T::from_f64(1.0 / dim as f64);
    let off = T::from_f64(offset);
    let mut dx = if need_dx { vec![T::ZERO; rows * dim] } else { Vec::new() };
    let work = |b: usize, dx_block: Option<&mut [T]>| -> Vec<T> {
        let r0 = b * ROW_BLOCK;
        let r1 = (r0 + ROW_BLOCK).min(rows);
        let mut dg = if need_dgamma { vec![T::ZERO; dim] } else { Vec::new() };
        let mut dx_block = dx_block;
        let mut gdy = vec![T::ZERO; dim];
        for r in r0..r1 {
            let xr = &x[r * dim..(r + 1) * dim];
            let gr = &dy[r * dim..(r + 1) * dim];
            let rs = rstd[r];
            if need_dgamma {
                for i in 0..dim {
                    dg[i] = (gr[i] * xr[i]).mul_add(rs, dg[i]);
                }
            }
            if let Some(dxb) = dx_block.as_deref_mut() {
                // dx = rs·(γ·dy − x·rs²·mean(γ·dy·x))
                for i in 0..dim {
                    gdy[i] = gr[i] * (gamma[i] + off);
                }
                let c = reduce::dot(&gdy, xr) * inv_d * rs * rs;
                let out = &mut dxb[(r - r0) * dim..(r - r0 + 1) * dim];
                for i in 0..dim {
                    out[i] = rs * (gdy[i] - xr[i] * c);
                }
            }
        }
        dg
    };
    let partials: Vec<Vec<T>> = if need_dx {
        dx.par_chunks_mut(ROW_BLOCK * dim.max(1)).enumerate().map(|(b, chunk)| work(b, Some(chunk))).collect()
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
