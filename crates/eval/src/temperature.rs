//! Temperature scaling (Guo et al., 2017): one scalar T > 0 dividing the logits, fitted to
//! minimize the negative log-likelihood on validation data. The NLL is convex in β = 1/T, so a
//! safeguarded Newton iteration on β finds the optimum; the predicted classes never change.

use serde::Serialize;

use crate::error::{same_len, EvalError, Result};

fn softmax(logits: &[f64], beta: f64) -> Vec<f64> {
    let m = logits.iter().map(|l| l * beta).fold(f64::NEG_INFINITY, f64::max);
    let e: Vec<f64> = logits.iter().map(|l| (l * beta - m).exp()).collect();
    let z: f64 = e.iter().sum();
    e.into_iter().map(|x| x / z).collect()
}

/// The probabilities of `logits` at temperature `t`.
pub fn scaled_probs(logits: &[Vec<f64>], t: f64) -> Vec<Vec<f64>> {
    logits.iter().map(|l| softmax(l, 1.0 / t)).collect()
}

/// Mean negative log-likelihood of `truth` under softmax(logits / t).
pub fn nll(truth: &[usize], logits: &[Vec<f64>], t: f64) -> f64 {
    let beta = 1.0 / t;
    truth
        .iter()
        .zip(logits)
        .map(|(&y, l)| {
            let m = l.iter().map(|x| x * beta).fold(f64::NEG_INFINITY, f64::max);
            let lse = m + l.iter().map(|x| (x * beta - m).exp()).sum::<f64>().ln();
            lse - l[y] * beta
        })
        .sum::<f64>()
        / truth.len() as f64
}

/// A fitted temperature.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Temperature {
    /// T (> 1 softens over-confident models).
    pub temperature: f64,
    /// Validation NLL at T = 1.
    pub nll_before: f64,
    /// Validation NLL at T.
    pub nll_after: f64,
}

/// Fits T on validation `logits` and `truth`.
pub fn fit_temperature(truth: &[usize], logits: &[Vec<f64>]) -> Result<Temperature> {
    same_len("temperature", logits.len(), truth.len())?;
    if truth.is_empty() {
        return Err(EvalError::invalid("temperature", "no validation examples"));
    }
    if let Some(i) = truth.iter().zip(logits).position(|(&y, l)| y >= l.len() || l.iter().any(|x| !x.is_finite())) {
        return Err(EvalError::invalid(
            "temperature",
            format!("row {i}: its class has no logit or a logit is not finite"),
        ));
    }
    let n = truth.len() as f64;
    // d/dβ NLL = mean(E_p[z] − z_y); d²/dβ² = mean(Var_p[z]) ≥ 0.
    let derivatives = |beta: f64| {
        let (mut g, mut h) = (0.0, 0.0);
        for (&y, l) in truth.iter().zip(logits) {
            let p = softmax(l, beta);
            let mean: f64 = p.iter().zip(l).map(|(p, z)| p * z).sum();
            let var: f64 = p.iter().zip(l).map(|(p, z)| p * (z - mean).powi(2)).sum();
            g += mean - l[y];
            h += var;
        }
        (g / n, h / n)
    };
    let (mut lo, mut hi) = (1e-3, 1e3);
    let mut beta: f64 = 1.0;
    for _ in 0..100 {
        let (g, h) = derivatives(beta);
        if g.abs() < 1e-12 {
            break;
        }
        if g > 0.0 {
            hi = beta;
        } else {
            lo = beta;
        }
        let newton = beta - g / h.max(1e-12);
        beta = if newton > lo && newton < hi { newton } else { (lo * hi).sqrt() };
        if hi / lo < 1.0 + 1e-12 {
            break;
        }
    }
    let t = 1.0 / beta;
    Ok(Temperature { temperature: t, nll_before: nll(truth, logits, 1.0), nll_after: nll(truth, logits, t) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_overconfident_model_gets_a_temperature_above_one_that_minimizes_nll() {
        // Logits three times too large for 70%-correct predictions.
        let mut logits = Vec::new();
        let mut truth = Vec::new();
        for i in 0..100 {
            logits.push(vec![6.0, -6.0]);
            truth.push(if i % 10 < 7 { 0 } else { 1 });
        }
        let t = fit_temperature(&truth, &logits).unwrap();
        // The optimum: softmax(12 / T) = 0.7, T = 12 / ln(7/3).
        let want = 12.0 / (7.0f64 / 3.0).ln();
        assert!((t.temperature - want).abs() < 1e-6, "{} vs {want}", t.temperature);
        assert!(t.nll_after < t.nll_before);
        for dt in [0.9, 1.1] {
            assert!(nll(&truth, &logits, t.temperature * dt) > t.nll_after);
        }
        let p = scaled_probs(&logits[..1], t.temperature);
        assert!((p[0][0] - 0.7).abs() < 1e-9);
    }
}
