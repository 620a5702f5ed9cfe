//! ROC-AUC, binary and one-vs-rest, as `sklearn.metrics.roc_auc_score` computes it.
//!
//! The area under the ROC curve equals the probability that a random positive scores above a
//! random negative, ties counting one half; it is computed here from average ranks in
//! O(n log n), which is the same number scikit-learn's trapezoid over the curve gives.

use crate::error::{same_len, EvalError, Result};

/// Binary ROC-AUC of `scores` (higher means positive) against `positive` labels.
pub fn roc_auc_binary(positive: &[bool], scores: &[f64]) -> Result<f64> {
    same_len("roc_auc", scores.len(), positive.len())?;
    if let Some(i) = scores.iter().position(|s| !s.is_finite()) {
        return Err(EvalError::invalid("roc_auc", format!("score {i} is {}; scores must be finite", scores[i])));
    }
    let n_pos = positive.iter().filter(|&&p| p).count();
    let n_neg = positive.len() - n_pos;
    if n_pos == 0 || n_neg == 0 {
        return Err(EvalError::invalid(
            "roc_auc",
            "only one class is present in the references; ROC-AUC is undefined".to_string(),
        ));
    }
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    // Sum of the (1-based, tie-averaged) ranks of the positives.
    let mut rank_sum = 0.0f64;
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && scores[order[j + 1]] == scores[order[i]] {
            j += 1;
        }
        let avg_rank = (i + j) as f64 / 2.0 + 1.0;
        let pos_in_tie = order[i..=j].iter().filter(|&&k| positive[k]).count();
        rank_sum += avg_rank * pos_in_tie as f64;
        i = j + 1;
    }
    let (p, n) = (n_pos as f64, n_neg as f64);
    Ok((rank_sum - p * (p + 1.0) / 2.0) / (p * n))
}

/// One-vs-rest ROC-AUC of class probabilities (`probs[i][k]`) against class ids, macro-averaged
/// (as `roc_auc_score(..., multi_class="ovr", average="macro")`); with two columns, the binary
/// AUC of the second.
pub fn roc_auc_ovr(truth: &[usize], probs: &[Vec<f64>]) -> Result<f64> {
    same_len("roc_auc", probs.len(), truth.len())?;
    let k = probs[0].len();
    if probs.iter().any(|p| p.len() != k) {
        return Err(EvalError::invalid("roc_auc", "rows of probabilities have different lengths"));
    }
    if let Some(t) = truth.iter().find(|&&t| t >= k) {
        return Err(EvalError::invalid("roc_auc", format!("class {t} has no probability column (there are {k})")));
    }
    let column = |c: usize| -> (Vec<bool>, Vec<f64>) {
        (truth.iter().map(|&t| t == c).collect(), probs.iter().map(|p| p[c]).collect())
    };
    if k == 2 {
        let (pos, s) = column(1);
        return roc_auc_binary(&pos, &s);
    }
    let mut sum = 0.0;
    for c in 0..k {
        let (pos, s) = column(c);
        sum += roc_auc_binary(&pos, &s).map_err(|e| EvalError::invalid("roc_auc", format!("class {c}: {e}")))?;
    }
    Ok(sum / k as f64)
}
