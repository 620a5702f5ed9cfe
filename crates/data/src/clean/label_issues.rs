//! Likely label errors by confident learning (Northcutt et al., 2021), as cleanlab's
//! `find_label_issues` with `filter_by="prune_by_noise_rate"`: from out-of-sample predicted
//! probabilities, per-class confidence thresholds (the mean probability of each class over the
//! rows labeled with it) give the confident joint of given and likely true labels; calibrated to
//! the label counts, each off-diagonal count says how many rows of a given label to flag, taken
//! by the largest margin p(true) − p(given); rows the model predicts as labeled are never flagged.
//! Flagged rows are ranked by self-confidence p(given), lowest first.

use serde::Serialize;

/// One flagged row.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LabelIssue {
    /// The row's index.
    pub index: usize,
    /// Its given class.
    pub given: usize,
    /// The model's most likely class.
    pub suggested: usize,
    /// p(given): lower means more likely wrong.
    pub self_confidence: f64,
}

fn argmax(p: &[f64]) -> usize {
    p.iter().enumerate().fold((0, f64::MIN), |b, (i, &x)| if x > b.1 { (i, x) } else { b }).0
}

/// Rounds each row of a matrix to integers that keep the row's (rounded) total, giving the
/// remainder to the largest fractional parts.
fn round_preserving_row_totals(m: &[Vec<f64>]) -> Vec<Vec<i64>> {
    m.iter()
        .map(|row| {
            let total = row.iter().sum::<f64>().round() as i64;
            let mut out: Vec<i64> = row.iter().map(|x| x.floor() as i64).collect();
            let mut order: Vec<usize> = (0..row.len()).collect();
            order.sort_by(|&a, &b| (row[b] - row[b].floor()).total_cmp(&(row[a] - row[a].floor())));
            let mut rest = total - out.iter().sum::<i64>();
            for &i in order.iter().cycle().take(row.len() * 2) {
                if rest <= 0 {
                    break;
                }
                out[i] += 1;
                rest -= 1;
            }
            out
        })
        .collect()
}

/// The calibrated confident joint: `[given][true]` counts summing to each given label's count.
pub fn confident_joint(given: &[usize], probs: &[Vec<f64>], k: usize) -> Vec<Vec<i64>> {
    let mut counts = vec![0usize; k];
    let mut sums = vec![0.0f64; k];
    for (&g, p) in given.iter().zip(probs) {
        counts[g] += 1;
        sums[g] += p[g];
    }
    let thresholds: Vec<f64> = (0..k).map(|j| if counts[j] > 0 { sums[j] / counts[j] as f64 } else { 0.0 }).collect();
    let mut joint = vec![vec![0.0f64; k]; k];
    for (&g, p) in given.iter().zip(probs) {
        let above: Vec<usize> = (0..k).filter(|&j| p[j] >= thresholds[j] - 1e-6).collect();
        let guess = match above.len() {
            0 => continue,
            1 => above[0],
            _ => *above.iter().max_by(|&&a, &&b| p[a].total_cmp(&p[b])).unwrap_or(&above[0]),
        };
        joint[g][guess] += 1.0;
    }
    // Calibrate each given row to its label count, then the whole to the number of rows.
    for (g, row) in joint.iter_mut().enumerate() {
        let total: f64 = row.iter().sum::<f64>().max(1.0);
        for x in row.iter_mut() {
            *x = *x / total * counts[g] as f64;
        }
    }
    let all: f64 = joint.iter().flatten().sum::<f64>().max(1e-300);
    let n = given.len() as f64;
    for x in joint.iter_mut().flatten() {
        *x = *x / all * n;
    }
    round_preserving_row_totals(&joint)
}

/// Rows whose given label is likely wrong, most likely first.
pub fn find_label_issues(given: &[usize], probs: &[Vec<f64>]) -> Vec<LabelIssue> {
    let k = probs.first().map_or(0, Vec::len);
    if k < 2 || given.len() != probs.len() {
        return Vec::new();
    }
    let cj = confident_joint(given, probs, k);
    let mut flagged = vec![false; given.len()];
    for g in 0..k {
        let rows: Vec<usize> = (0..given.len()).filter(|&i| given[i] == g).collect();
        // At least one row of each class stays unflagged (cleanlab's min_examples_per_class).
        let diag = cj[g][g].max(1);
        let off: i64 = (0..k).filter(|&t| t != g).map(|t| cj[g][t]).sum();
        let budget = (rows.len() as i64 - diag).max(0).min(off);
        let scale = if off > 0 { budget as f64 / off as f64 } else { 0.0 };
        for t in (0..k).filter(|&t| t != g) {
            let n = ((cj[g][t] as f64) * scale).round() as usize;
            if n == 0 {
                continue;
            }
            let mut by_margin = rows.clone();
            by_margin.sort_by(|&a, &b| (probs[b][t] - probs[b][g]).total_cmp(&(probs[a][t] - probs[a][g])));
            for &i in by_margin.iter().take(n) {
                flagged[i] = true;
            }
        }
    }
    let mut issues: Vec<LabelIssue> = (0..given.len())
        .filter(|&i| flagged[i] && argmax(&probs[i]) != given[i])
        .map(|i| LabelIssue {
            index: i,
            given: given[i],
            suggested: argmax(&probs[i]),
            self_confidence: probs[i][given[i]],
        })
        .collect();
    issues.sort_by(|a, b| a.self_confidence.total_cmp(&b.self_confidence).then(a.index.cmp(&b.index)));
    issues
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_the_model_confidently_contradicts_are_flagged_first() {
        // 20 rows of each class; rows 3 and 25 are labeled against a confident model.
        let mut given = Vec::new();
        let mut probs = Vec::new();
        for i in 0..40 {
            let truth = usize::from(i >= 20);
            let label = if i == 3 || i == 25 { 1 - truth } else { truth };
            let conf = if i == 3 {
                0.97
            } else if i == 25 {
                0.9
            } else {
                0.8
            };
            let mut p = vec![1.0 - conf; 2];
            p[truth] = conf;
            given.push(label);
            probs.push(p);
        }
        let issues = find_label_issues(&given, &probs);
        let idx: Vec<usize> = issues.iter().map(|i| i.index).collect();
        assert_eq!(idx, vec![3, 25], "{issues:?}");
        assert_eq!(issues[0].suggested, 0);
        assert!((issues[0].self_confidence - 0.03).abs() < 1e-12);
        let cj = confident_joint(&given, &probs, 2);
        assert_eq!(cj.iter().flatten().sum::<i64>(), 40);
    }

    #[test]
    fn rounding_keeps_row_totals() {
        let r = round_preserving_row_totals(&[vec![1.4, 1.4, 1.2], vec![0.5, 0.5]]);
        assert_eq!(r[0].iter().sum::<i64>(), 4);
        assert_eq!(r[1].iter().sum::<i64>(), 1);
    }
}
