//! Calibration: expected calibration error with equal-width confidence bins, the reliability
//! table behind it, and the Brier score (as `sklearn.metrics.brier_score_loss`).

use serde::{Deserialize, Serialize};

use crate::classification::argmax;
use crate::error::{same_len, EvalError, Result};

/// The number of bins tunesmith's ECE uses (the common choice since Guo et al., 2017).
pub const ECE_BINS: usize = 15;

/// One confidence bin of a reliability diagram.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReliabilityBin {
    /// Lower edge (exclusive, except for the first bin, which starts at 0 inclusive).
    pub lower: f64,
    /// Upper edge (inclusive).
    pub upper: f64,
    /// Examples whose confidence falls in the bin.
    pub count: u64,
    /// Mean confidence of those examples (0 when empty).
    pub confidence: f64,
    /// Their accuracy (0 when empty).
    pub accuracy: f64,
}

/// Expected calibration error and its reliability table.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Calibration {
    /// Σ_b (n_b / n) · |accuracy_b − confidence_b|.
    pub ece: f64,
    /// The bins, lowest confidence first.
    pub bins: Vec<ReliabilityBin>,
}

fn check_probs(metric: &'static str, truth: &[usize], probs: &[Vec<f64>]) -> Result<usize> {
    same_len(metric, probs.len(), truth.len())?;
    let k = probs[0].len();
    for (i, p) in probs.iter().enumerate() {
        if p.len() != k {
            return Err(EvalError::invalid(metric, format!("row {i} has {} probabilities, row 0 has {k}", p.len())));
        }
        if p.iter().any(|x| !x.is_finite()) {
            return Err(EvalError::invalid(metric, format!("row {i} has a non-finite probability")));
        }
    }
    if let Some(t) = truth.iter().find(|&&t| t >= k) {
        return Err(EvalError::invalid(metric, format!("class {t} has no probability column (there are {k})")));
    }
    Ok(k)
}

/// ECE over `bins` equal-width bins of the top-class confidence. A confidence `c` falls in bin
/// `b` when `b/bins < c <= (b+1)/bins` (0 goes to the first bin).
pub fn calibration(truth: &[usize], probs: &[Vec<f64>], bins: usize) -> Result<Calibration> {
    check_probs("ece", truth, probs)?;
    if bins == 0 {
        return Err(EvalError::invalid("ece", "bins must be at least 1"));
    }
    let edge = |b: usize| b as f64 / bins as f64;
    let mut count = vec![0u64; bins];
    let mut conf_sum = vec![0.0f64; bins];
    let mut hits = vec![0u64; bins];
    for (&t, p) in truth.iter().zip(probs) {
        let pred = argmax(p);
        let c = p[pred];
        let b = (0..bins).find(|&b| c <= edge(b + 1)).unwrap_or(bins - 1);
        count[b] += 1;
        conf_sum[b] += c;
        hits[b] += u64::from(pred == t);
    }
    let n = truth.len() as f64;
    let mut ece = 0.0;
    let table = (0..bins)
        .map(|b| {
            let (confidence, accuracy) = if count[b] == 0 {
                (0.0, 0.0)
            } else {
                (conf_sum[b] / count[b] as f64, hits[b] as f64 / count[b] as f64)
            };
            ece += count[b] as f64 / n * (accuracy - confidence).abs();
            ReliabilityBin { lower: edge(b), upper: edge(b + 1), count: count[b], confidence, accuracy }
        })
        .collect();
    Ok(Calibration { ece, bins: table })
}

/// The Brier score: mean squared distance between the probabilities and the one-hot reference.
/// As scikit-learn (`scale_by_half="auto"`), the binary score is halved, i.e. it is the mean of
/// (p(positive) − y)², in [0, 1]; the multiclass score is the full sum over classes, in [0, 2].
pub fn brier(truth: &[usize], probs: &[Vec<f64>]) -> Result<f64> {
    let k = check_probs("brier", truth, probs)?;
    let total: f64 = truth
        .iter()
        .zip(probs)
        .map(|(&t, p)| p.iter().enumerate().map(|(c, &x)| (x - f64::from(u8::from(c == t))).powi(2)).sum::<f64>())
        .sum();
    let mean = total / truth.len() as f64;
    Ok(if k == 2 { mean / 2.0 } else { mean })
}
