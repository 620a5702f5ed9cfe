//! The pairwise preference losses (DPO and its family) as functions of each sequence's summed
//! log-probability: the value and its hand-written gradient, in f64, for a batch of pairs.
//! The model side only has to deliver differentiable per-sequence sums; see `super::sequences`.

use std::fmt;
use std::str::FromStr;

/// Which preference loss (`task.loss`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PreferenceLoss {
    /// DPO: −log σ(β·z), z the chosen-minus-rejected log-ratio against the reference (TRL's
    /// `sigmoid`).
    Dpo,
    /// Conservative DPO: labels flipped with probability ε (`task.label_smoothing`):
    /// −(1−ε)·log σ(β·z) − ε·log σ(−β·z).
    Cdpo,
    /// IPO: (z̄ − 1/(2β))², z̄ the log-ratio margin per completion token (TRL's `ipo`).
    Ipo,
    /// The hinge loss of SLiC: max(0, 1 − β·z) (TRL's `hinge`).
    Hinge,
    /// SimPO (reference-free): −log σ(β·(mean log p chosen − mean log p rejected) − γ), as TRL's
    /// `CPOTrainer(loss_type="simpo")` (with ε, labels flipped as in cDPO).
    Simpo,
    /// ORPO (reference-free): the chosen completion's token-mean NLL minus β·log σ(log odds
    /// ratio), as TRL's `ORPOTrainer`.
    Orpo,
}

impl PreferenceLoss {
    /// Every loss, in the order of the docs.
    pub const ALL: [PreferenceLoss; 6] = [
        PreferenceLoss::Dpo,
        PreferenceLoss::Cdpo,
        PreferenceLoss::Ipo,
        PreferenceLoss::Hinge,
        PreferenceLoss::Simpo,
        PreferenceLoss::Orpo,
    ];

    /// The name used in configs.
    pub fn name(self) -> &'static str {
        match self {
            PreferenceLoss::Dpo => "dpo",
            PreferenceLoss::Cdpo => "cdpo",
            PreferenceLoss::Ipo => "ipo",
            PreferenceLoss::Hinge => "hinge",
            PreferenceLoss::Simpo => "simpo",
            PreferenceLoss::Orpo => "orpo",
        }
    }

    /// Whether the loss compares against a reference model (SimPO and ORPO do not).
    pub fn needs_reference(self) -> bool {
        !matches!(self, PreferenceLoss::Simpo | PreferenceLoss::Orpo)
    }
}

impl fmt::Display for PreferenceLoss {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for PreferenceLoss {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        PreferenceLoss::ALL.into_iter().find(|l| l.name() == s).ok_or_else(|| {
            let names: Vec<&str> = PreferenceLoss::ALL.iter().map(|l| l.name()).collect();
            format!("unknown preference loss \"{s}\"; use one of {}", names.join(", "))
        })
    }
}

/// The loss's hyper-parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LossParams {
    /// The loss.
    pub loss: PreferenceLoss,
    /// β: the KL strength (DPO family), the reward scale (SimPO) or the odds-ratio weight (ORPO).
    pub beta: f64,
    /// γ: SimPO's target reward margin.
    pub gamma: f64,
    /// ε: the label-flip probability of cDPO and SimPO.
    pub label_smoothing: f64,
}

/// Summed log-probabilities of one pair's completions under the policy and the reference (0
/// for reference-free losses), and their trained-token counts.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct PairLogps {
    /// log π(chosen | prompt).
    pub chosen: f64,
    /// log π(rejected | prompt).
    pub rejected: f64,
    /// log π_ref(chosen | prompt).
    pub ref_chosen: f64,
    /// log π_ref(rejected | prompt).
    pub ref_rejected: f64,
    /// Completion tokens of chosen.
    pub chosen_tokens: usize,
    /// Completion tokens of rejected.
    pub rejected_tokens: usize,
}

/// The loss of a batch of pairs and its gradient.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PairLoss {
    /// Σ over pairs of each pair's loss (ORPO: plus the batch's NLL term times the pair count),
    /// so that dividing by the pairs gives TRL's batch mean.
    pub sum: f64,
    /// ∂sum/∂chosen per pair.
    pub d_chosen: Vec<f64>,
    /// ∂sum/∂rejected per pair.
    pub d_rejected: Vec<f64>,
    /// The implicit reward of chosen per pair (TRL's `rewards/chosen`).
    pub chosen_rewards: Vec<f64>,
    /// The implicit reward of rejected per pair.
    pub rejected_rewards: Vec<f64>,
}

/// log σ(x), stable for large |x|.
fn log_sigmoid(x: f64) -> f64 {
    if x >= 0.0 {
        -(-x).exp().ln_1p()
    } else {
        x - x.exp().ln_1p()
    }
}

/// σ(x).
fn sigmoid(x: f64) -> f64 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}

/// log(1 − eˣ) for x < 0, stable on both sides of −ln 2.
fn log1m_exp(x: f64) -> f64 {
    if x > -std::f64::consts::LN_2 {
        (-x.exp_m1()).ln()
    } else {
        (-x.exp()).ln_1p()
    }
}

/// The loss, gradients and rewards of `pairs`.
pub fn pair_loss(p: &LossParams, pairs: &[PairLogps]) -> PairLoss {
    let n = pairs.len();
    let mut out = PairLoss {
        sum: 0.0,
        d_chosen: vec![0.0; n],
        d_rejected: vec![0.0; n],
        chosen_rewards: vec![0.0; n],
        rejected_rewards: vec![0.0; n],
    };
    let beta = p.beta;
    for (k, x) in pairs.iter().enumerate() {
        let (lc, lr) = (x.chosen - x.ref_chosen, x.rejected - x.ref_rejected);
        let z = lc - lr;
        let (loss, dc, dr, rc, rr) = match p.loss {
            PreferenceLoss::Dpo => {
                let d = -beta * sigmoid(-beta * z);
                (-log_sigmoid(beta * z), d, -d, beta * lc, beta * lr)
            }
            PreferenceLoss::Cdpo => {
                let e = p.label_smoothing;
                let loss = -(1.0 - e) * log_sigmoid(beta * z) - e * log_sigmoid(-beta * z);
                let d = -beta * (1.0 - e) * sigmoid(-beta * z) + beta * e * sigmoid(beta * z);
                (loss, d, -d, beta * lc, beta * lr)
            }
            PreferenceLoss::Ipo => {
                let (nc, nr) = (x.chosen_tokens.max(1) as f64, x.rejected_tokens.max(1) as f64);
                let u = lc / nc - lr / nr - 1.0 / (2.0 * beta);
                (u * u, 2.0 * u / nc, -2.0 * u / nr, beta * lc, beta * lr)
            }
            PreferenceLoss::Hinge => {
                let m = 1.0 - beta * z;
                let d = if m > 0.0 { -beta } else { 0.0 };
                (m.max(0.0), d, -d, beta * lc, beta * lr)
            }
            PreferenceLoss::Simpo => {
                let (nc, nr) = (x.chosen_tokens.max(1) as f64, x.rejected_tokens.max(1) as f64);
                let (ac, ar) = (x.chosen / nc, x.rejected / nr);
                let (u, e) = (beta * (ac - ar) - p.gamma, p.label_smoothing);
                let loss = -(1.0 - e) * log_sigmoid(u) - e * log_sigmoid(-u);
                let d = beta * (-(1.0 - e) * sigmoid(-u) + e * sigmoid(u));
                (loss, d / nc, -d / nr, beta * ac, beta * ar)
            }
            PreferenceLoss::Orpo => {
                let (nc, nr) = (x.chosen_tokens.max(1) as f64, x.rejected_tokens.max(1) as f64);
                let (ac, ar) = (x.chosen / nc, x.rejected / nr);
                let log_odds = (ac - ar) - (log1m_exp(ac) - log1m_exp(ar));
                // d log_odds / d a = 1/(1 − eᵃ) for the chosen mean, the negative for rejected.
                let d = -beta * sigmoid(-log_odds);
                let (dac, dar) = (d / -ac.exp_m1(), -d / -ar.exp_m1());
                (-beta * log_sigmoid(log_odds), dac / nc, dar / nr, beta * ac, beta * ar)
            }
        };
        out.sum += loss;
        out.d_chosen[k] = dc;
        out.d_rejected[k] = dr;
        out.chosen_rewards[k] = rc;
        out.rejected_rewards[k] = rr;
    }
    if p.loss == PreferenceLoss::Orpo {
        // The SFT term: mean NLL over every chosen token of the batch, weighted by the pairs.
        let tokens: usize = pairs.iter().map(|x| x.chosen_tokens).sum();
        let total: f64 = pairs.iter().map(|x| x.chosen).sum();
        let w = n as f64 / tokens.max(1) as f64;
        out.sum += -total * w;
        for d in &mut out.d_chosen {
            *d -= w;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs() -> Vec<PairLogps> {
        vec![
            PairLogps {
                chosen: -12.5,
                rejected: -14.0,
                ref_chosen: -13.0,
                ref_rejected: -13.2,
                chosen_tokens: 7,
                rejected_tokens: 9,
            },
            PairLogps {
                chosen: -30.25,
                rejected: -21.0,
                ref_chosen: -29.0,
                ref_rejected: -22.5,
                chosen_tokens: 15,
                rejected_tokens: 11,
            },
            PairLogps {
                chosen: -3.0,
                rejected: -2.0,
                ref_chosen: -3.5,
                ref_rejected: -1.0,
                chosen_tokens: 2,
                rejected_tokens: 1,
            },
        ]
    }

    /// Every loss's hand-written gradient equals central finite differences.
    #[test]
    fn gradients_match_finite_differences() {
        for loss in PreferenceLoss::ALL {
            let p = LossParams { loss, beta: 0.3, gamma: 0.4, label_smoothing: 0.1 };
            let base = pairs();
            let g = pair_loss(&p, &base);
            let h = 1e-6;
            for k in 0..base.len() {
                for rejected in [false, true] {
                    let at = |delta: f64| {
                        let mut x = base.clone();
                        if rejected {
                            x[k].rejected += delta;
                        } else {
                            x[k].chosen += delta;
                        }
                        pair_loss(&p, &x).sum
                    };
                    let numeric = (at(h) - at(-h)) / (2.0 * h);
                    let analytic = if rejected { g.d_rejected[k] } else { g.d_chosen[k] };
                    assert!(
                        (numeric - analytic).abs() < 1e-6 * (1.0 + numeric.abs()),
                        "{loss}: pair {k} rejected={rejected}: numeric {numeric} vs analytic {analytic}"
                    );
                }
            }
        }
    }

    #[test]
    fn dpo_at_the_reference_is_log_two_and_rewards_are_zero() {
        let x = PairLogps { chosen: -5.0, rejected: -6.0, ref_chosen: -5.0, ref_rejected: -6.0, ..Default::default() };
        let p = LossParams { loss: PreferenceLoss::Dpo, beta: 0.1, gamma: 0.0, label_smoothing: 0.0 };
        let out = pair_loss(&p, &[x]);
        assert!((out.sum - std::f64::consts::LN_2).abs() < 1e-12);
        assert_eq!(out.chosen_rewards, vec![0.0]);
        assert_eq!(out.rejected_rewards, vec![0.0]);
        // Raising chosen lowers the loss; raising rejected raises it.
        assert!(out.d_chosen[0] < 0.0 && out.d_rejected[0] > 0.0);
    }

    #[test]
    fn stable_helpers_hold_at_extremes() {
        assert!((log_sigmoid(-800.0) + 800.0).abs() < 1e-9);
        assert!(log_sigmoid(800.0).abs() < 1e-300);
        assert!((log1m_exp(-1e-10) - (1e-10f64).ln()).abs() < 1e-6);
        assert!((log1m_exp(-50.0) + (-50.0f64).exp()).abs() < 1e-30);
        assert_eq!("simpo".parse::<PreferenceLoss>(), Ok(PreferenceLoss::Simpo));
        assert!("dop".parse::<PreferenceLoss>().unwrap_err().contains("dpo, cdpo"));
    }
}
