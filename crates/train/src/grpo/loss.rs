//! GRPO's loss as a function of each completion token's log-probability: group-normalized
//! advantages, the clipped importance ratio against the sampling policy, and the per-token KL to
//! the reference (the k3 estimator, weighted by the ratio), aggregated as TRL's `GRPOTrainer`
//! aggregates them. The value
//! and the hand-written gradient, in f64.

use std::fmt;
use std::str::FromStr;

/// How per-token losses become the batch loss (`task.loss` of a GRPO run).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Aggregation {
    /// The mean over completions of each completion's token mean (TRL's `grpo`).
    Grpo,
    /// The mean over every completion token of the batch (TRL's `bnpo`; `dapo` on one process).
    Bnpo,
    /// The sum over tokens divided by completions × max_new_tokens (TRL's `dr_grpo`).
    DrGrpo,
}

impl Aggregation {
    /// Every aggregation.
    pub const ALL: [Aggregation; 3] = [Aggregation::Grpo, Aggregation::Bnpo, Aggregation::DrGrpo];

    /// The name used in configs.
    pub fn name(self) -> &'static str {
        match self {
            Aggregation::Grpo => "grpo",
            Aggregation::Bnpo => "bnpo",
            Aggregation::DrGrpo => "dr_grpo",
        }
    }
}

impl fmt::Display for Aggregation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Aggregation {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Aggregation::ALL
            .into_iter()
            .find(|a| a.name() == s)
            .ok_or_else(|| format!("unknown GRPO loss \"{s}\"; use one of grpo, bnpo, dr_grpo"))
    }
}

/// How a group's rewards become advantages (`task.advantage`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdvantageKind {
    /// (r − group mean) / (group std + 1e-4), the std unbiased (TRL's default `scale_rewards`).
    Group,
    /// r minus the mean of the group's other rewards (RLOO's leave-one-out baseline).
    Rloo,
}

impl FromStr for AdvantageKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "group" => Ok(AdvantageKind::Group),
            "rloo" => Ok(AdvantageKind::Rloo),
            _ => Err(format!("unknown advantage \"{s}\"; use \"group\" or \"rloo\"")),
        }
    }
}

/// Advantages of `rewards`, consecutive groups of `group` completions of one prompt each.
pub fn advantages(rewards: &[f64], group: usize, kind: AdvantageKind) -> Vec<f64> {
    let mut out = Vec::with_capacity(rewards.len());
    for g in rewards.chunks(group.max(1)) {
        let n = g.len() as f64;
        let mean = g.iter().sum::<f64>() / n;
        match kind {
            AdvantageKind::Group => {
                let var = if g.len() > 1 { g.iter().map(|r| (r - mean).powi(2)).sum::<f64>() / (n - 1.0) } else { 0.0 };
                out.extend(g.iter().map(|r| (r - mean) / (var.sqrt() + 1e-4)));
            }
            AdvantageKind::Rloo => {
                let scale = if g.len() > 1 { n / (n - 1.0) } else { 0.0 };
                out.extend(g.iter().map(|r| (r - mean) * scale));
            }
        }
    }
    out
}

/// The loss's hyper-parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GrpoParams {
    /// The aggregation.
    pub aggregation: Aggregation,
    /// β, the weight of the KL to the reference (0: no reference pass).
    pub beta: f64,
    /// The ratio is clipped to [1 − ε, 1 + ε].
    pub epsilon: f64,
    /// Tokens generated at most (for `dr_grpo`).
    pub max_new_tokens: usize,
}

/// One completion's tokens: log-probs under the policy being trained, the policy that sampled
/// them, and the reference; and the completion's advantage.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Completion {
    /// log π(token) now.
    pub logps: Vec<f64>,
    /// log π_old(token) (equal to `logps` on the first pass over fresh samples).
    pub old_logps: Vec<f64>,
    /// log π_ref(token) (unused when β = 0).
    pub ref_logps: Vec<f64>,
    /// The completion's advantage.
    pub advantage: f64,
}

/// The batch loss, its gradient per token, and what TRL logs with it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct GrpoLoss {
    /// The loss.
    pub value: f64,
    /// ∂loss/∂logps per completion, per token.
    pub grads: Vec<Vec<f64>>,
    /// Mean per-token KL to the reference (over all tokens).
    pub kl: f64,
    /// Fraction of tokens whose ratio was clipped.
    pub clip_ratio: f64,
}

/// The GRPO loss of `completions`.
pub fn grpo_loss(p: &GrpoParams, completions: &[Completion]) -> GrpoLoss {
    let n = completions.len().max(1) as f64;
    let tokens: usize = completions.iter().map(|c| c.logps.len()).sum();
    let mut out = GrpoLoss { grads: Vec::with_capacity(completions.len()), ..GrpoLoss::default() };
    let (mut kl_sum, mut clipped) = (0.0, 0usize);
    for c in completions {
        let weight = match p.aggregation {
            Aggregation::Grpo => 1.0 / (n * c.logps.len().max(1) as f64),
            Aggregation::Bnpo => 1.0 / tokens.max(1) as f64,
            Aggregation::DrGrpo => 1.0 / (n * p.max_new_tokens.max(1) as f64),
        };
        let a = c.advantage;
        let mut grads = Vec::with_capacity(c.logps.len());
        for t in 0..c.logps.len() {
            let r = (c.logps[t] - c.old_logps[t]).exp();
            let clip = r.clamp(1.0 - p.epsilon, 1.0 + p.epsilon);
            let (unclipped, bounded) = (r * a, clip * a);
            let mut loss = -unclipped.min(bounded);
            // Inside the bounds both terms move with r; outside, only when the unclipped term
            // is the smaller one.
            let inside = r == clip;
            clipped += usize::from(!inside);
            let mut d = if inside || unclipped <= bounded { -a * r } else { 0.0 };
            if p.beta != 0.0 {
                // The k3 estimate of KL(π‖π_ref), weighted by the importance ratio because the
                // tokens were sampled from π_old (TRL's use_bias_correction_kl, on by default).
                let delta = c.ref_logps[t] - c.logps[t];
                let kl = delta.exp() - delta - 1.0;
                kl_sum += kl * r;
                loss += p.beta * kl * r;
                d += p.beta * r * (1.0 - delta.exp() + kl);
            }
            out.value += weight * loss;
            grads.push(weight * d);
        }
        out.grads.push(grads);
    }
    out.kl = kl_sum / tokens.max(1) as f64;
    out.clip_ratio = clipped as f64 / tokens.max(1) as f64;
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn completions() -> Vec<Completion> {
        vec![
            Completion {
                logps: vec![-0.5, -2.0, -1.1],
                old_logps: vec![-0.6, -1.5, -1.1],
                ref_logps: vec![-0.7, -1.9, -0.4],
                advantage: 1.3,
            },
            Completion { logps: vec![-3.0], old_logps: vec![-2.0], ref_logps: vec![-2.5], advantage: -0.8 },
            Completion {
                logps: vec![-0.2, -0.9],
                old_logps: vec![-0.25, -1.4],
                ref_logps: vec![-0.1, -1.0],
                advantage: -0.4,
            },
        ]
    }

    #[test]
    fn gradients_match_finite_differences() {
        for aggregation in Aggregation::ALL {
            for beta in [0.0, 0.04] {
                let p = GrpoParams { aggregation, beta, epsilon: 0.2, max_new_tokens: 5 };
                let base = completions();
                let out = grpo_loss(&p, &base);
                let h = 1e-6;
                for (i, c) in base.iter().enumerate() {
                    for t in 0..c.logps.len() {
                        let at = |delta: f64| {
                            let mut x = base.clone();
                            x[i].logps[t] += delta;
                            grpo_loss(&p, &x).value
                        };
                        let numeric = (at(h) - at(-h)) / (2.0 * h);
                        let analytic = out.grads[i][t];
                        assert!(
                            (numeric - analytic).abs() < 1e-6,
                            "{aggregation} beta {beta}: completion {i} token {t}: {numeric} vs {analytic}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn on_fresh_samples_the_gradient_is_the_advantage_weighted_score() {
        // old = now: the ratio is 1 and each token's gradient is −A / (completions · tokens).
        let mut c = completions();
        for x in &mut c {
            x.old_logps = x.logps.clone();
        }
        let p = GrpoParams { aggregation: Aggregation::Grpo, beta: 0.0, epsilon: 0.2, max_new_tokens: 5 };
        let out = grpo_loss(&p, &c);
        assert!((out.grads[0][0] + 1.3 / 9.0).abs() < 1e-12);
        assert!((out.grads[1][0] - 0.8 / 3.0).abs() < 1e-12);
        assert_eq!(out.clip_ratio, 0.0);
        let mean_advantage = (1.3 - 0.8 - 0.4) / 3.0;
        assert!((out.value + mean_advantage).abs() < 1e-12);
    }

    #[test]
    fn advantages_are_normalized_within_groups() {
        let a = advantages(&[1.0, 0.0, 0.0, 1.0, 2.0, 2.0, 2.0, 2.0], 4, AdvantageKind::Group);
        // Group 1: mean 0.5, unbiased std 0.5774.
        assert!((a[0] - 0.5 / (0.5773502691896257 + 1e-4)).abs() < 1e-12);
        assert!(a[4..].iter().all(|&x| x == 0.0), "a constant group has no advantage: {a:?}");
        let r = advantages(&[1.0, 0.0, 0.0, 1.0], 4, AdvantageKind::Rloo);
        // Each reward minus the mean of the other three: 1 − 1/3 and 0 − 2/3.
        assert!((r[0] - 2.0 / 3.0).abs() < 1e-12 && (r[1] + 2.0 / 3.0).abs() < 1e-12);
        assert_eq!("ppo".parse::<AdvantageKind>().unwrap_err(), "unknown advantage \"ppo\"; use \"group\" or \"rloo\"");
    }
}
