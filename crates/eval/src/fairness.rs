//! Subgroup metrics and the group-fairness differences Fairlearn defines, for a binary decision
//! (`prediction == positive`): demographic parity difference (the spread of selection rates
//! across groups) and equalized odds difference (the larger of the spreads of true- and
//! false-positive rates), both "between groups" (max − min), as
//! `fairlearn.metrics.demographic_parity_difference` and `equalized_odds_difference`.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::error::{same_len, EvalError, Result};

/// One group's numbers.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GroupStats {
    /// The group's value of the sensitive column.
    pub group: String,
    /// Its examples.
    pub count: usize,
    /// Accuracy within the group.
    pub accuracy: f64,
    /// Share predicted positive.
    pub selection_rate: f64,
    /// Recall of the positive class (0 without positives).
    pub true_positive_rate: f64,
    /// Share of negatives predicted positive (0 without negatives).
    pub false_positive_rate: f64,
}

/// Subgroup metrics and the fairness differences.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Fairness {
    /// Each group, sorted by name.
    pub groups: Vec<GroupStats>,
    /// Best minus worst group accuracy.
    pub accuracy_gap: f64,
    /// Max − min selection rate.
    pub demographic_parity_difference: f64,
    /// max(TPR spread, FPR spread).
    pub equalized_odds_difference: f64,
}

fn rate(num: usize, den: usize) -> f64 {
    if den == 0 {
        0.0
    } else {
        num as f64 / den as f64
    }
}

fn spread(v: impl Iterator<Item = f64> + Clone) -> f64 {
    let max = v.clone().fold(f64::MIN, f64::max);
    let min = v.fold(f64::MAX, f64::min);
    if max < min {
        0.0
    } else {
        max - min
    }
}

/// Group metrics of class predictions `pred` against `truth` over the `groups` column, with
/// class `positive` as the favourable decision.
pub fn fairness(truth: &[usize], pred: &[usize], groups: &[String], positive: usize) -> Result<Fairness> {
    same_len("fairness", pred.len(), truth.len())?;
    same_len("fairness", groups.len(), truth.len())?;
    if truth.is_empty() {
        return Err(EvalError::invalid("fairness", "no examples"));
    }
    let mut by: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, g) in groups.iter().enumerate() {
        by.entry(g.as_str()).or_default().push(i);
    }
    let groups: Vec<GroupStats> = by
        .into_iter()
        .map(|(g, idx)| {
            let correct = idx.iter().filter(|&&i| pred[i] == truth[i]).count();
            let selected = idx.iter().filter(|&&i| pred[i] == positive).count();
            let pos: Vec<usize> = idx.iter().copied().filter(|&i| truth[i] == positive).collect();
            let neg: Vec<usize> = idx.iter().copied().filter(|&i| truth[i] != positive).collect();
            GroupStats {
                group: g.to_string(),
                count: idx.len(),
                accuracy: rate(correct, idx.len()),
                selection_rate: rate(selected, idx.len()),
                true_positive_rate: rate(pos.iter().filter(|&&i| pred[i] == positive).count(), pos.len()),
                false_positive_rate: rate(neg.iter().filter(|&&i| pred[i] == positive).count(), neg.len()),
            }
        })
        .collect();
    Ok(Fairness {
        accuracy_gap: spread(groups.iter().map(|g| g.accuracy)),
        demographic_parity_difference: spread(groups.iter().map(|g| g.selection_rate)),
        equalized_odds_difference: spread(groups.iter().map(|g| g.true_positive_rate))
            .max(spread(groups.iter().map(|g| g.false_positive_rate))),
        groups,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn differences_follow_the_definitions() {
        // Group a: selection 2/4, TPR 1/2, FPR 1/2; group b: selection 1/4, TPR 1/3, FPR 0/1.
        let truth = [1, 1, 0, 0, 1, 1, 1, 0];
        let pred = [1, 0, 1, 0, 1, 0, 0, 0];
        let groups: Vec<String> = "aaaabbbb".chars().map(String::from).collect();
        let f = fairness(&truth, &pred, &groups, 1).unwrap();
        assert!((f.demographic_parity_difference - 0.25).abs() < 1e-12);
        assert!((f.equalized_odds_difference - 0.5).abs() < 1e-12);
        assert!((f.accuracy_gap - 0.0).abs() < 1e-12, "{f:?}");
        assert_eq!(f.groups[1].count, 4);
        assert!(fairness(&truth, &pred[..3], &groups, 1).is_err());
    }
}
