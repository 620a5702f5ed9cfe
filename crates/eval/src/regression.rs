//! Regression metrics: MSE, MAE and R² (as scikit-learn), Pearson and Spearman correlation (as
//! `scipy.stats.pearsonr` / `spearmanr`, Spearman with tie-averaged ranks).

use serde::Serialize;

use crate::error::{same_len, EvalError, Result};

/// The regression scores of a prediction set.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RegressionScores {
    /// Mean squared error.
    pub mse: f64,
    /// Mean absolute error.
    pub mae: f64,
    /// Coefficient of determination.
    pub r2: f64,
    /// Pearson correlation (NaN, reported as null, when either side is constant).
    pub pearson: f64,
    /// Spearman rank correlation.
    pub spearman: f64,
}

fn mean(x: &[f64]) -> f64 {
    x.iter().sum::<f64>() / x.len() as f64
}

/// Pearson's r.
pub fn pearson(x: &[f64], y: &[f64]) -> Result<f64> {
    same_len("pearson", x.len(), y.len())?;
    let (mx, my) = (mean(x), mean(y));
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (a, b) in x.iter().zip(y) {
        let (dx, dy) = (a - mx, b - my);
        sxy += dx * dy;
        sxx += dx * dx;
        syy += dy * dy;
    }
    Ok((sxy / (sxx.sqrt() * syy.sqrt())).clamp(-1.0, 1.0))
}

/// 1-based ranks with ties given their average rank.
pub fn average_ranks(x: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..x.len()).collect();
    order.sort_by(|&a, &b| x[a].total_cmp(&x[b]));
    let mut ranks = vec![0.0; x.len()];
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && x[order[j + 1]] == x[order[i]] {
            j += 1;
        }
        let r = (i + j) as f64 / 2.0 + 1.0;
        for &k in &order[i..=j] {
            ranks[k] = r;
        }
        i = j + 1;
    }
    ranks
}

/// Spearman's ρ: Pearson's r of the tie-averaged ranks.
pub fn spearman(x: &[f64], y: &[f64]) -> Result<f64> {
    same_len("spearman", x.len(), y.len())?;
    pearson(&average_ranks(x), &average_ranks(y))
}

/// All regression scores of `pred` against `truth`.
pub fn regression(truth: &[f64], pred: &[f64]) -> Result<RegressionScores> {
    same_len("regression", pred.len(), truth.len())?;
    if let Some(i) = truth.iter().chain(pred).position(|v| !v.is_finite()) {
        return Err(EvalError::invalid("regression", format!("value {i} is not finite")));
    }
    let n = truth.len() as f64;
    let mse = truth.iter().zip(pred).map(|(t, p)| (t - p).powi(2)).sum::<f64>() / n;
    let mae = truth.iter().zip(pred).map(|(t, p)| (t - p).abs()).sum::<f64>() / n;
    let mt = mean(truth);
    let ss_tot: f64 = truth.iter().map(|t| (t - mt).powi(2)).sum();
    let ss_res = mse * n;
    // scikit-learn: a constant reference gives 1 for a perfect fit, else 0.
    let r2 = if ss_tot == 0.0 {
        if ss_res == 0.0 {
            1.0
        } else {
            0.0
        }
    } else {
        1.0 - ss_res / ss_tot
    };
    Ok(RegressionScores { mse, mae, r2, pearson: pearson(truth, pred)?, spearman: spearman(truth, pred)? })
}
