//! Row-wise softmax and log-softmax over the last dimension, and L2 normalisation.

use rayon::prelude::*;

use super::reduce;
use crate::dtype::Real;

/// softmax over rows of length `cols`.
pub fn softmax<T: Real>(x: &[T], cols: usize) -> Vec<T> {
    let mut y = x.to_vec();
    y.par_chunks_mut(cols.max(1)).for_each(|row| {
        let m = reduce::max(row);
        let s = reduce::exp_in_place_sum(row, m);
        let inv = T::ONE / s;
        row.iter_mut().for_each(|v| *v *= inv);
    });
    y
}

/// softmax backward from its output: dx = y ⊙ (dy − Σ dy·y).
pub fn softmax_backward<T: Real>(dy: &[T], y: &[T], cols: usize) -> Vec<T> {
    let mut dx = vec![T::ZERO; y.len()];
    dx.par_chunks_mut(cols.max(1)).zip(dy.par_chunks(cols.max(1)).zip(y.par_chunks(cols.max(1)))).for_each(
        |(o, (g, yr))| {
            let s = reduce::dot(g, yr);
            for i in 0..o.len() {
                o[i] = yr[i] * (g[i] - s);
            }
        },
    );
    dx
}

/// log-softmax over rows of length `cols`.
pub fn log_softmax<T: Real>(x: &[T], cols: usize) -> Vec<T> {
    let mut y = x.to_vec();
    y.par_chunks_mut(cols.max(1)).for_each(|row| {
        let m = reduce::max(row);
        let lse = m + reduce::exp_sum(row, m).ln();
        row.iter_mut().for_each(|v| *v -= lse);
    });
    y
}

/// log-softmax backward from its output: dx = dy − softmax·Σ dy.
pub fn log_softmax_backward<T: Real>(dy: &[T], y: &[T], cols: usize) -> Vec<T> {
    let mut dx = vec![T::ZERO; y.len()];
    dx.par_chunks_mut(cols.max(1)).zip(dy.par_chunks(cols.max(1)).zip(y.par_chunks(cols.max(1)))).for_each(
        |(o, (g, yr))| {
            let s = reduce::sum(g);
            for i in 0..o.len() {
                o[i] = g[i] - yr[i].fast_exp() * s;
            }
        },
    );
    dx
}

/// y = x / max(‖x‖₂, eps) per row; returns `(y, norms)`.
pub fn l2_normalize<T: Real>(x: &[T], cols: usize, eps: f64) -> (Vec<T>, Vec<T>) {
    let rows = x.len() / cols.max(1);
    let mut y = vec![T::ZERO; x.len()];
    let mut norms = vec![T::ZERO; rows];
    let eps = T::from_f64(eps);
    y.par_chunks_mut(cols.max(1)).zip(x.par_chunks(cols.max(1)).zip(norms.par_iter_mut())).for_each(|(o, (xr, n))| {
        let norm = reduce::dot(xr, xr).sqrt().max(eps);
        *n = norm;
        let inv = T::ONE / norm;
        o.iter_mut().zip(xr).for_each(|(a, &b)| *a = b * inv);
    });
    (y, norms)
}

/// Backward of [`l2_normalize`]: dx = (dy − y·(dy·y))/n where the norm exceeded eps, else dy/eps.
pub fn l2_normalize_backward<T: Real>(dy: &[T], y: &[T], norms: &[T], cols: usize, eps: f64) -> Vec<T> {
    let mut dx = vec![T::ZERO; y.len()];
    let eps = T::from_f64(eps);
    dx.par_chunks_mut(cols.max(1))
        .zip(dy.par_chunks(cols.max(1)).zip(y.par_chunks(cols.max(1))).zip(norms.par_iter()))
        .for_each(|(o, ((g, yr), &n))| {
            let inv = T::ONE / n;
            if n > eps {
                let s = reduce::dot(g, yr);
                for i in 0..o.len() {
                    o[i] = (g[i] - yr[i] * s) * inv;
                }
            } else {
                for i in 0..o.len() {
                    o[i] = g[i] * inv;
                }
            }
        });
    dx
}
