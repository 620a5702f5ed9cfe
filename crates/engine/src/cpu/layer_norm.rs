//! layer_norm over the last dimension: y = (x − mean)·rstd·γ + β.
//! Forward saves per-row mean and rstd; backward uses the standard closed form. Outputs are
//! written once into uninitialised buffers (zero-filling them first would add a full pass over
//! memory to an op that is bound by memory).

use std::mem::MaybeUninit;

use rayon::prelude::*;

use super::reduce::{self, LANES};
use crate::dtype::Real;

/// Rows per parallel block; per-block γ/β partial sums are combined in block order.
const ROW_BLOCK: usize = 32;

/// Forward over `x [rows, dim]`; returns `(y, mean [rows], rstd [rows])`. A missing γ acts as
/// ones and a missing β as zeros (bit-identical to leaving them out: ·1 and +0 are exact).
pub fn forward<T: Real>(
    x: &[T],
    gamma: Option<&[T]>,
    beta: Option<&[T]>,
    rows: usize,
    dim: usize,
    eps: f64,
) -> (Vec<T>, Vec<T>, Vec<T>) {
    // The write loops below stop at the shortest operand; these make "every element written"
    // (which the uninitialised output relies on) a checked fact. The op validates shapes first.
    assert_eq!(x.len(), rows * dim, "layer_norm: x is not rows × dim");
    assert!(gamma.is_none_or(|g| g.len() == dim) && beta.is_none_or(|b| b.len() == dim), "layer_norm: γ/β not [dim]");
    let mut y: Vec<T> = Vec::with_capacity(rows * dim);
    let mut mean = vec![T::ZERO; rows];
    let mut rstd = vec![T::ZERO; rows];
    let ones = vec![T::ONE; if gamma.is_some() { 0 } else { dim }];
    let zeros = vec![T::ZERO; if beta.is_some() { 0 } else { dim }];
    let (g, b) = (gamma.unwrap_or(&ones), beta.unwrap_or(&zeros));
    let inv_d = T::from_f64(1.0 / dim as f64);
    let eps = T::from_f64(eps);
    let block = ROW_BLOCK * dim.max(1);
    y.spare_capacity_mut()[..rows * dim]
        .par_chunks_mut(block)
        .zip(x.par_chunks(block))
        .zip(mean.par_chunks_mut(ROW_BLOCK).zip(rstd.par_chunks_mut(ROW_BLOCK)))
        .for_each(|((yb, xb), (mb, rb))| {
            for (((yr, xr), m), r) in yb.chunks_mut(dim).zip(xb.chunks(dim)).zip(mb).zip(rb) {
                let mu = reduce::sum(xr) * inv_d;
                let var = reduce::sum_sq_centered(xr, mu) * inv_d;
                let rs = T::ONE / (var + eps).sqrt();
                *m = mu;
                *r = rs;
                for (((y, &x), &g), &b) in yr.iter_mut().zip(xr).zip(g).zip(b) {
                    y.write(((x - mu) * rs).mul_add(g, b));
                }
            }
        });
    // SAFETY: the loop above wrote every one of the rows × dim elements: the blocks cover all
    // rows of `x`, and each row's loop writes all `dim` elements of its row (every operand it
    // zips holds `dim`, asserted at entry).
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

/// One row's `(Σ ĝ, Σ ĝ·x̂)` with ĝ = dy·γ and x̂ = (x − μ)·rstd: the two means of the dx
/// formula, before dividing by `dim`, in one pass.
#[inline(always)]
fn row_sums<T: Real>(dy: &[T], x: &[T], g: &[T], mu: T, rs: T) -> (T, T) {
    let (mut s1, mut s2) = ([T::ZERO; LANES], [T::ZERO; LANES]);
    let (dyc, xc, gc) = (dy.chunks_exact(LANES), x.chunks_exact(LANES), g.chunks_exact(LANES));
    let (dyt, xt, gt) = (dyc.remainder(), xc.remainder(), gc.remainder());
    for ((dy, x), g) in dyc.zip(xc).zip(gc) {
        for l in 0..LANES {
            let gd = dy[l] * g[l];
            s1[l] += gd;
            s2[l] = gd.mul_add((x[l] - mu) * rs, s2[l]);
        }
    }
    let (mut t1, mut t2) = (T::ZERO, T::ZERO);
    for ((&dy, &x), &g) in dyt.iter().zip(xt).zip(gt) {
        let gd = dy * g;
        t1 += gd;
        t2 = gd.mul_add((x - mu) * rs, t2);
    }
    (reduce::combine(s1) + t1, reduce::combine(s2) + t2)
}

/// One row of dx = rstd·(ĝ − mean(ĝ) − x̂·mean(ĝ·x̂)), given those means `m1`, `m2`.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn dx_row<T: Real>(out: &mut [MaybeUninit<T>], dy: &[T], x: &[T], g: &[T], mu: T, rs: T, m1: T, m2: T) {
    for (((o, &dy), &x), &g) in out.iter_mut().zip(dy).zip(x).zip(g) {
        let xh = (x - mu) * rs;
        o.write(rs * (dy * g - m1 - xh * m2));
    }
}

/// [`dx_row`] that also adds the row's terms to dγ (+= dy·x̂) and dβ (+= dy) in the same pass.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn dx_and_affine_row<T: Real>(
    out: &mut [MaybeUninit<T>],
    dy: &[T],
    x: &[T],
    g: &[T],
    (mu, rs, m1, m2): (T, T, T, T),
    dg: &mut [T],
    db: &mut [T],
) {
    for (((((o, &dy), &x), &g), dg), db) in out.iter_mut().zip(dy).zip(x).zip(g).zip(dg.iter_mut()).zip(db.iter_mut()) {
        let xh = (x - mu) * rs;
        o.write(rs * (dy * g - m1 - xh * m2));
        *dg = dy.mul_add(xh, *dg);
        *db += dy;
    }
}

/// Adds one row's terms to dγ and/or dβ.
#[inline(always)]
fn affine_row<T: Real>(dy: &[T], x: &[T], mu: T, rs: T, dg: &mut [T], db: &mut [T]) {
    for ((&dy, &x), dg) in dy.iter().zip(x).zip(dg.iter_mut()) {
        *dg = dy.mul_add((x - mu) * rs, *dg);
    }
    for (&dy, db) in dy.iter().zip(db.iter_mut()) {
        *db += dy;
    }
}

/// Backward from `dy [rows, dim]`. Each row takes two passes over its (L1-resident) data: one
/// for the two means, one writing dx and accumulating dγ, dβ.
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
    assert!(x.len() == rows * dim && dy.len() == rows * dim, "layer_norm backward: x/dy are not rows × dim");
    assert!(gamma.is_none_or(|g| g.len() == dim), "layer_norm backward: γ is not [dim]");
    assert!(mean.len() == rows && rstd.len() == rows, "layer_norm backward: mean/rstd are not [rows]");
    let mut dx: Vec<T> = Vec::with_capacity(if need_dx { rows * dim } else { 0 });
    let ones = vec![T::ONE; if gamma.is_some() { 0 } else { dim }];
    let g = gamma.unwrap_or(&ones);
    let inv_d = T::from_f64(1.0 / dim as f64);
    let blocks = rows.div_ceil(ROW_BLOCK);
    let work = |b: usize, dx_block: Option<&mut [MaybeUninit<T>]>| -> (Vec<T>, Vec<T>) {
        let r0 = b * ROW_BLOCK;
        let r1 = (r0 + ROW_BLOCK).min(rows);
        let mut dg = vec![T::ZERO; if need_dgamma { dim } else { 0 }];
        let mut dbt = vec![T::ZERO; if need_dbeta { dim } else { 0 }];
        let mut dx_block = dx_block;
        for r in r0..r1 {
            let xr = &x[r * dim..(r + 1) * dim];
            let gr = &dy[r * dim..(r + 1) * dim];
            let (mu, rs) = (mean[r], rstd[r]);
            match dx_block.as_deref_mut() {
                Some(dxb) => {
                    let out = &mut dxb[(r - r0) * dim..(r - r0 + 1) * dim];
                    let (s1, s2) = row_sums(gr, xr, g, mu, rs);
                    let (m1, m2) = (s1 * inv_d, s2 * inv_d);
                    if need_dgamma && need_dbeta {
                        dx_and_affine_row(out, gr, xr, g, (mu, rs, m1, m2), &mut dg, &mut dbt);
                    } else {
                        dx_row(out, gr, xr, g, mu, rs, m1, m2);
                        affine_row(gr, xr, mu, rs, &mut dg, &mut dbt);
                    }
                }
                None => affine_row(gr, xr, mu, rs, &mut dg, &mut dbt),
            }
        }
        (dg, dbt)
    };
    let partials: Vec<(Vec<T>, Vec<T>)> = if need_dx {
        let out = dx.spare_capacity_mut()[..rows * dim].par_chunks_mut(ROW_BLOCK * dim.max(1));
        let partials = out.enumerate().map(|(b, chunk)| work(b, Some(chunk))).collect();
        // SAFETY: each block wrote all `dim` elements of each of its rows (every operand the row
        // loops zip holds `dim`, asserted at entry), and the blocks cover all `rows` rows.
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::test_support::{assert_close, values};

    /// The textbook formulas, one row at a time.
    #[allow(clippy::type_complexity)]
    fn reference(
        x: &[f64],
        dy: &[f64],
        g: Option<&[f64]>,
        b: Option<&[f64]>,
        dim: usize,
    ) -> (Vec<f64>, Vec<f64>, Vec<f64>, Vec<f64>) {
        let (mut y, mut dx, mut dg, mut db) = (vec![], vec![], vec![0.0; dim], vec![0.0; dim]);
        for (xr, gr) in x.chunks(dim).zip(dy.chunks(dim)) {
            let mu = xr.iter().sum::<f64>() / dim as f64;
            let var = xr.iter().map(|v| (v - mu) * (v - mu)).sum::<f64>() / dim as f64;
            let rs = 1.0 / (var + 1e-5).sqrt();
            let xh: Vec<f64> = xr.iter().map(|v| (v - mu) * rs).collect();
            let gam = |i: usize| g.map_or(1.0, |g| g[i]);
            y.extend((0..dim).map(|i| xh[i] * gam(i) + b.map_or(0.0, |b| b[i])));
            let gh: Vec<f64> = (0..dim).map(|i| gr[i] * gam(i)).collect();
            let m1 = gh.iter().sum::<f64>() / dim as f64;
            let m2 = gh.iter().zip(&xh).map(|(a, b)| a * b).sum::<f64>() / dim as f64;
            dx.extend((0..dim).map(|i| rs * (gh[i] - m1 - xh[i] * m2)));
            for i in 0..dim {
                dg[i] += gr[i] * xh[i];
                db[i] += gr[i];
            }
        }
        (y, dx, dg, db)
    }

    #[test]
    fn kernels_match_the_formulas_for_every_option_and_shape() {
        // Widths around the 16-lane chunks, row counts around the 32-row blocks.
        for (rows, dim) in [(1, 1), (3, 7), (33, 16), (65, 33), (40, 100)] {
            let (x, dy) = (values(rows * dim, 1), values(rows * dim, 2));
            let (g, b) = (values(dim, 3), values(dim, 4));
            for (gamma, beta) in
                [(Some(&g[..]), Some(&b[..])), (Some(&g[..]), None), (None, Some(&b[..])), (None, None)]
            {
                let (y, mean, rstd) = forward(&x, gamma, beta, rows, dim, 1e-5);
                let (want_y, want_dx, want_dg, want_db) = reference(&x, &dy, gamma, beta, dim);
                assert_close("y", &y, &want_y, 1e-10);
                for need in 0..8u8 {
                    let (ndx, ndg, ndb) = (need & 1 != 0, need & 2 != 0, need & 4 != 0);
                    let got = backward(&dy, &x, gamma, &mean, &rstd, rows, dim, ndx, ndg, ndb);
                    assert_eq!(got.dx.is_some(), ndx);
                    assert_eq!(got.dgamma.is_some(), ndg);
                    assert_eq!(got.dbeta.is_some(), ndb);
                    if let Some(dx) = got.dx {
                        assert_close("dx", &dx, &want_dx, 1e-10);
                    }
                    if let Some(dg) = got.dgamma {
                        assert_close("dgamma", &dg, &want_dg, 1e-10);
                    }
                    if let Some(db) = got.dbeta {
                        assert_close("dbeta", &db, &want_db, 1e-10);
                    }
                }
            }
        }
    }

    #[test]
    fn empty_input_gives_empty_outputs() {
        let (y, mean, rstd) = forward::<f32>(&[], None, None, 0, 8, 1e-5);
        assert!(y.is_empty() && mean.is_empty() && rstd.is_empty());
        let got = backward::<f32>(&[], &[], None, &[], &[], 0, 8, true, true, true);
        assert!(got.dx.unwrap().is_empty());
        assert_eq!(got.dgamma.unwrap(), vec![0.0; 8]);
    }
}
