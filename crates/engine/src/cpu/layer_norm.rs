//! layer_norm over the last dimension: y = (x − mean)·rstd·γ + β.
//! Forward saves per-row mean and rstd; backward uses the standard closed form. Outputs are
//! written once into uninitialised buffers (zero-filling them first would add a full pass over
//! memory to an op that is bound by memory).

use std::mem::MaybeUninit;

use rayon::prelude::*;

use super::reduce;
use crate::dtype::Real;

/// Rows per parallel block; per-block γ/β partial sums are combined in block order.
const ROW_BLOCK: usize = 32;

/// Forward over `x [rows, dim]`; returns `(y, mean [rows], rstd [rows])`.
pub fn forward<T: Real>(
    x: &[T],
    gamma: Option<&[T]>,
    beta: Option<&[T]>,
    rows: usize,
    dim: usize,
    eps: f64,
) -> (Vec<T>, Vec<T>, Vec<T>) {
    let mut y: Vec<T> = Vec::with_capacity(rows * dim);
    let mut mean = vec![T::ZERO; rows];
    let mut rstd = vec![T::ZERO; rows];
    let inv_d = T::from_f64(1.0 / dim as f64);
    let eps = T::from_f64(eps);
    y.spare_capacity_mut()[..rows * dim]
        .par_chunks_mut(dim.max(1))
        .zip(x.par_chunks(dim.max(1)))
        .zip(mean.par_iter_mut().zip(rstd.par_iter_mut()))
        .for_each(|((yr, xr), (m, r))| {
            let mu = reduce::sum(xr) * inv_d;
            let var = reduce::sum_sq_centered(xr, mu) * inv_d;
            let rs = T::ONE / (var + eps).sqrt();
            *m = mu;
            *r = rs;
            match (gamma, beta) {
                (Some(g), Some(b)) => {
                    for i in 0..dim {
                        yr[i] = MaybeUninit::new(((xr[i] - mu) * rs).mul_add(g[i], b[i]));
                    }
                }
                (Some(g), None) => {
                    for i in 0..dim {
                        yr[i] = MaybeUninit::new((xr[i] - mu) * rs * g[i]);
                    }
                }
                (None, Some(b)) => {
                    for i in 0..dim {
                        yr[i] = MaybeUninit::new((xr[i] - mu) * rs + b[i]);
                    }
                }
                (None, None) => {
                    for i in 0..dim {
                        yr[i] = MaybeUninit::new((xr[i] - mu) * rs);
                    }
                }
            }
        });
    // SAFETY: the loop above wrote every one of the rows × dim elements (each row chunk of
    // `dim` elements, every index 0..dim, for all `rows` rows of `x`).
    unsafe { y.set_len(rows * dim) };
    (y, mean, rstd)
}

/// Gradients of layer_norm.
pub struct LayerNormGrads<T> {
    /// `[rows, dim]`
    pub dx: Option<Vec<T>>,
    /// `[dim]`
    pub dgamma: Option<Vec<T>>,
    /// `[dim]`
    pub dbeta: Option<Vec<T>>,
}

/// Backward from `dy [rows, dim]`.
#[allow(clippy::too_many_arguments)]
pub fn backward<T: Real>(
    dy: &[T],
    x: &[T],
    gamma: Option<&[T]>,
    mean: &[T],
    rstd: &[T],
    rows: usize,
    dim: usize,
    need_dx: bool,
    need_dgamma: bool,
    need_dbeta: bool,
) -> LayerNormGrads<T> {
    let mut dx: Vec<T> = Vec::with_capacity(if need_dx { rows * dim } else { 0 });
    let inv_d = T::from_f64(1.0 / dim as f64);
    let blocks = rows.div_ceil(ROW_BLOCK);
    let work = |b: usize, dx_block: Option<&mut [MaybeUninit<T>]>| -> (Vec<T>, Vec<T>) {
        let r0 = b * ROW_BLOCK;
        let r1 = (r0 + ROW_BLOCK).min(rows);
        let mut dg = if need_dgamma { vec![T::ZERO; dim] } else { Vec::new() };
        let mut dbt = if need_dbeta { vec![T::ZERO; dim] } else { Vec::new() };
        let mut dxhat = vec![T::ZERO; dim];
        let mut xhat = vec![T::ZERO; dim];
        let mut dx_block = dx_block;
        for r in r0..r1 {
            let xr = &x[r * dim..(r + 1) * dim];
            let gr = &dy[r * dim..(r + 1) * dim];
            let (mu, rs) = (mean[r], rstd[r]);
            for i in 0..dim {
                xhat[i] = (xr[i] - mu) * rs;
            }
            if need_dgamma {
                for i in 0..dim {
                    dg[i] = gr[i].mul_add(xhat[i], dg[i]);
                }
            }
            if need_dbeta {
                for i in 0..dim {
                    dbt[i] += gr[i];
                }
            }
            if let Some(dxb) = dx_block.as_deref_mut() {
                match gamma {
                    Some(g) => {
                        for i in 0..dim {
                            dxhat[i] = gr[i] * g[i];
                        }
                    }
                    None => dxhat.copy_from_slice(gr),
                }
                let m1 = reduce::sum(&dxhat) * inv_d;
                let m2 = reduce::dot(&dxhat, &xhat) * inv_d;
                let out = &mut dxb[(r - r0) * dim..(r - r0 + 1) * dim];
                for i in 0..dim {
                    out[i] = MaybeUninit::new(rs * (dxhat[i] - m1 - xhat[i] * m2));
                }
            }
        }
        (dg, dbt)
    };
    let partials: Vec<(Vec<T>, Vec<T>)> = if need_dx {
        let out = dx.spare_capacity_mut()[..rows * dim].par_chunks_mut(ROW_BLOCK * dim.max(1));
        let partials = out.enumerate().map(|(b, chunk)| work(b, Some(chunk))).collect();
        // SAFETY: each block wrote all `dim` elements of each of its rows, and the blocks cover
        // all `rows` rows.
        unsafe { dx.set_len(rows * dim) };
        partials
    } else {
        (0..blocks).into_par_iter().map(|b| work(b, None)).collect()
    };
    let mut dgamma = need_dgamma.then(|| vec![T::ZERO; dim]);
    let mut dbeta = need_dbeta.then(|| vec![T::ZERO; dim]);
    for (dg, dbt) in partials {
        if let Some(acc) = dgamma.as_mut() {
            acc.iter_mut().zip(dg).for_each(|(a, v)| *a += v);
        }
        if let Some(acc) = dbeta.as_mut() {
            acc.iter_mut().zip(dbt).for_each(|(a, v)| *a += v);
        }
    }
    LayerNormGrads { dx: need_dx.then_some(dx), dgamma, dbeta }
}
