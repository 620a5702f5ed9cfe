//! The reward model's loss (`task.kind = "reward"`): Bradley–Terry on the scalar rewards of each
//! pair's chosen and rejected sequences, as TRL's `RewardTrainer`:
//! −log σ(r_chosen − r_rejected − margin), plus `center` · (r_chosen + r_rejected)² when
//! centering the rewards. Value and hand-written gradient, in f64.

use super::loss::{PairLogps, PairLoss};

/// The reward loss's hyper-parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RewardParams {
    /// The margin the chosen reward must beat the rejected one by (`task.margin`).
    pub margin: f64,
    /// The weight of the centering term (`task.center_rewards`, TRL's
    /// `center_rewards_coefficient`; 0 for none).
    pub center: f64,
}

/// The loss of reward pairs: each pair's `chosen` and `rejected` are the two rewards.
pub fn bradley_terry(p: &RewardParams, pairs: &[PairLogps]) -> PairLoss {
    let n = pairs.len();
    let mut out = PairLoss {
        sum: 0.0,
        d_chosen: vec![0.0; n],
        d_rejected: vec![0.0; n],
        chosen_rewards: pairs.iter().map(|x| x.chosen).collect(),
        rejected_rewards: pairs.iter().map(|x| x.rejected).collect(),
    };
    for (k, x) in pairs.iter().enumerate() {
        let z = x.chosen - x.rejected - p.margin;
        let (s, c) = (x.chosen + x.rejected, 2.0 * p.center * (x.chosen + x.rejected));
        // −log σ(z) and its derivative −σ(−z), stably.
        let (loss, d) = if z >= 0.0 {
            let e = (-z).exp();
            (e.ln_1p(), -e / (1.0 + e))
        } else {
            let e = z.exp();
            (-z + e.ln_1p(), -1.0 / (1.0 + e))
        };
        out.sum += loss + p.center * s * s;
        out.d_chosen[k] = d + c;
        out.d_rejected[k] = -d + c;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gradients_match_finite_differences_and_ties_cost_log_two() {
        let pairs: Vec<PairLogps> = [(0.3, -1.2), (-2.0, 1.5), (40.0, -40.0), (-30.0, 35.0)]
            .iter()
            .map(|&(c, r)| PairLogps { chosen: c, rejected: r, ..PairLogps::default() })
            .collect();
        for p in [RewardParams { margin: 0.0, center: 0.0 }, RewardParams { margin: 0.5, center: 0.01 }] {
            let out = bradley_terry(&p, &pairs);
            let h = 1e-6;
            for k in 0..pairs.len() {
                for rejected in [false, true] {
                    let at = |delta: f64| {
                        let mut x = pairs.clone();
                        if rejected {
                            x[k].rejected += delta;
                        } else {
                            x[k].chosen += delta;
                        }
                        bradley_terry(&p, &x).sum
                    };
                    let numeric = (at(h) - at(-h)) / (2.0 * h);
                    let analytic = if rejected { out.d_rejected[k] } else { out.d_chosen[k] };
                    assert!(
                        (numeric - analytic).abs() < 1e-5 * (1.0 + numeric.abs()),
                        "{p:?} pair {k}: {numeric} vs {analytic}"
                    );
                }
            }
        }
        let tie = PairLogps { chosen: 1.0, rejected: 1.0, ..PairLogps::default() };
        let out = bradley_terry(&RewardParams { margin: 0.0, center: 0.0 }, &[tie]);
        assert!((out.sum - std::f64::consts::LN_2).abs() < 1e-12);
    }
}
