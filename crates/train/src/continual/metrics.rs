//! What continual-learning papers report from the accuracy matrix `R[i][j]` (accuracy on task
//! i after training task j, tasks in order): average accuracy after the last task, backward
//! transfer (Lopez-Paz & Ranzato, 2017: mean of `R[i][T−1] − R[i][i]` over i < T−1) and forgetting
//! (Chaudhry et al., 2018: mean over i < T−1 of the best earlier accuracy on task i minus the
//! final one).

use serde::Serialize;

/// Scores of one accuracy matrix.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ContinualScores {
    /// Mean accuracy over all tasks after the last.
    pub average_accuracy: f64,
    /// Backward transfer (negative: forgetting).
    pub backward_transfer: f64,
    /// Mean forgetting of the earlier tasks.
    pub forgetting: f64,
}

/// Scores of a lower-triangular matrix: `r[i][j]` for j ≥ i (`r[i]` holds task i's accuracy
/// after tasks i, i+1, …, as `r[i][j - i]`).
pub fn scores(r: &[Vec<f64>]) -> ContinualScores {
    let t = r.len();
    if t == 0 {
        return ContinualScores { average_accuracy: 0.0, backward_transfer: 0.0, forgetting: 0.0 };
    }
    let last = |i: usize| *r[i].last().unwrap_or(&0.0);
    let average_accuracy = (0..t).map(last).sum::<f64>() / t as f64;
    if t == 1 {
        return ContinualScores { average_accuracy, backward_transfer: 0.0, forgetting: 0.0 };
    }
    let earlier = t - 1;
    let backward_transfer = (0..earlier).map(|i| last(i) - r[i][0]).sum::<f64>() / earlier as f64;
    let forgetting = (0..earlier)
        .map(|i| {
            let best = r[i][..r[i].len() - 1].iter().copied().fold(f64::NEG_INFINITY, f64::max);
            best - last(i)
        })
        .sum::<f64>()
        / earlier as f64;
    ContinualScores { average_accuracy, backward_transfer, forgetting }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn three_tasks_by_hand() {
        // Task 0: 0.9 → 0.7 → 0.6; task 1: 0.8 → 0.85; task 2: 0.95.
        let r = vec![vec![0.9, 0.7, 0.6], vec![0.8, 0.85], vec![0.95]];
        let s = scores(&r);
        assert!((s.average_accuracy - (0.6 + 0.85 + 0.95) / 3.0).abs() < 1e-12);
        assert!((s.backward_transfer - ((0.6 - 0.9) + (0.85 - 0.8)) / 2.0).abs() < 1e-12);
        // Forgetting uses the best earlier accuracy: task 0 best 0.9 → 0.3; task 1 best 0.8,
        // now 0.85 → −0.05.
        assert!((s.forgetting - (0.3 - 0.05) / 2.0).abs() < 1e-12);
    }

    #[test]
    fn one_task_has_nothing_to_forget() {
        let s = scores(&[vec![0.7]]);
        assert_eq!((s.average_accuracy, s.backward_transfer, s.forgetting), (0.7, 0.0, 0.0));
    }
}
