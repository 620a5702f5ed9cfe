//! Out-of-distribution detection scores and how well they separate in- from
//! out-of-distribution inputs: the maximum softmax probability (Hendrycks & Gimpel, 2017) and
//! the negative energy `T · logsumexp(logits / T)` (Liu et al., 2020), each scored by ROC-AUC
//! with in-distribution as the positive class (as `sklearn.metrics.roc_auc_score`).

use serde::Serialize;

use crate::error::Result;
use crate::roc::roc_auc_binary;

/// The maximum softmax probability of logits.
pub fn max_softmax(logits: &[f64]) -> f64 {
    let m = logits.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let z: f64 = logits.iter().map(|l| (l - m).exp()).sum();
    1.0 / z
}

/// The negative energy of logits at temperature `t` (higher means more in-distribution).
pub fn neg_energy(logits: &[f64], t: f64) -> f64 {
    let m = logits.iter().map(|l| l / t).fold(f64::NEG_INFINITY, f64::max);
    t * (m + logits.iter().map(|l| (l / t - m).exp()).sum::<f64>().ln())
}

/// Separation of in- from out-of-distribution examples.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OodScores {
    /// ROC-AUC of the maximum softmax probability.
    pub auroc_max_softmax: f64,
    /// ROC-AUC of the negative energy (T = 1).
    pub auroc_energy: f64,
    /// In-distribution examples.
    pub in_distribution: usize,
    /// Out-of-distribution examples.
    pub out_of_distribution: usize,
}

/// ROC-AUC of both scores from the logits of in- and out-of-distribution examples.
pub fn ood_scores(in_logits: &[Vec<f64>], out_logits: &[Vec<f64>]) -> Result<OodScores> {
    let positive: Vec<bool> = in_logits.iter().map(|_| true).chain(out_logits.iter().map(|_| false)).collect();
    let all = || in_logits.iter().chain(out_logits);
    let msp: Vec<f64> = all().map(|l| max_softmax(l)).collect();
    let energy: Vec<f64> = all().map(|l| neg_energy(l, 1.0)).collect();
    Ok(OodScores {
        auroc_max_softmax: roc_auc_binary(&positive, &msp)?,
        auroc_energy: roc_auc_binary(&positive, &energy)?,
        in_distribution: in_logits.len(),
        out_of_distribution: out_logits.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn confident_inputs_score_as_in_distribution() {
        assert!((max_softmax(&[0.0, 0.0]) - 0.5).abs() < 1e-12);
        assert!((neg_energy(&[0.0, 0.0], 1.0) - 2f64.ln()).abs() < 1e-12);
        let ind = vec![vec![4.0, -4.0], vec![-5.0, 5.0]];
        let ood = vec![vec![0.1, 0.0], vec![0.0, 0.2]];
        let s = ood_scores(&ind, &ood).unwrap();
        assert_eq!((s.auroc_max_softmax, s.auroc_energy), (1.0, 1.0));
    }
}
