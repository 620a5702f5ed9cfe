//! `[privacy]`: DP-SGD's keys, and how they resolve against a run (the noise multiplier solved
//! for a target ε, the steps a target ε allows, δ defaulting to 1/n).

use serde::{Deserialize, Serialize};

use super::{epsilon, noise_for_epsilon, AccountantKind, PrivacyError};
use crate::error::{Result, TrainError};
use crate::RunConfig;

/// `[privacy]`: train with DP-SGD (per-example clipping, Gaussian noise, Poisson sampling).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrivacySection {
    /// Noise standard deviation as a multiple of `max_grad_norm`; solved from
    /// `target_epsilon` when left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub noise_multiplier: Option<f64>,
    /// The bound each example's gradient is clipped to (`train.max_grad_norm`, the global
    /// clip, does not apply under DP-SGD).
    #[serde(default = "default_clip")]
    pub max_grad_norm: f64,
    /// δ (default 1/n, n the training examples).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delta: Option<f64>,
    /// The ε the run may spend: with `noise_multiplier` the run stops before exceeding it;
    /// without, the noise multiplier that spends it over the planned steps is solved for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_epsilon: Option<f64>,
    /// `"rdp"` or `"prv"`.
    #[serde(default)]
    pub accountant: AccountantKind,
}

fn default_clip() -> f64 {
    1.0
}

/// The keys of `[privacy]`, for suggestions.
pub const KEYS: &[&str] = &["noise_multiplier", "max_grad_norm", "delta", "target_epsilon", "accountant"];

/// Whether DP-SGD can train this run; `Err` says why not and what to change. Per-example
/// gradients need one loss term per example: the pair and group objectives (contrastive pairs,
/// preferences, rewards, GRPO/PPO) mix examples, packed rows make a pack the sampling unit, and
/// the quantized-base kernels give no per-example split.
pub fn check_run(cfg: &RunConfig) -> std::result::Result<(), String> {
    use crate::config::TaskKind;
    if !matches!(
        cfg.task.kind,
        TaskKind::Classification | TaskKind::Regression | TaskKind::CausalLm | TaskKind::TokenClassification
    ) {
        return Err(format!(
            "DP-SGD trains classification, regression, token classification and causal_lm tasks; task.kind = \"{}\" mixes examples in its loss",
            serde_json::to_value(cfg.task.kind).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default()
        ));
    }
    if cfg.data.packing {
        return Err("needs data.packing = false (a pack would be the privacy unit); data.padding_free = true keeps batches dense".into());
    }
    if cfg.model.quantize != "none" {
        return Err("needs model.quantize = \"none\": quantized-base layers give no per-example gradients".into());
    }
    Ok(())
}

/// DP-SGD's parameters for one run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DpPlan {
    /// Noise multiplier σ.
    pub noise_multiplier: f64,
    /// Per-example clipping bound C.
    pub max_grad_norm: f64,
    /// δ.
    pub delta: f64,
    /// Poisson sampling rate q (expected batch / examples).
    pub sample_rate: f64,
    /// Expected examples per step (q·n): the divisor of the noisy sum.
    pub expected_batch: f64,
    /// Optimizer steps the run takes (fewer than planned when a target ε is reached first).
    pub steps: u64,
    /// The accountant.
    pub accountant: AccountantKind,
}

fn bad(key: &str, why: String) -> TrainError {
    TrainError::Config(format!("`privacy.{key}` {why}"))
}

impl PrivacySection {
    /// Resolves the section for `examples` training examples, `expected_batch` examples per
    /// step and `planned_steps` steps.
    pub fn plan(&self, examples: usize, expected_batch: usize, planned_steps: u64) -> Result<DpPlan> {
        if examples == 0 {
            return Err(bad("noise_multiplier", "needs training examples".into()));
        }
        if !(self.max_grad_norm > 0.0 && self.max_grad_norm.is_finite()) {
            return Err(bad("max_grad_norm", format!("must be a positive number, got {}", self.max_grad_norm)));
        }
        let delta = self.delta.unwrap_or(1.0 / examples as f64);
        if !(delta > 0.0 && delta < 1.0) {
            return Err(bad("delta", format!("must be in (0, 1), got {delta}")));
        }
        if let Some(t) = self.target_epsilon {
            if !(t > 0.0 && t.is_finite()) {
                return Err(bad("target_epsilon", format!("must be a positive number, got {t}")));
            }
        }
        let sample_rate = (expected_batch as f64 / examples as f64).min(1.0);
        let accountant = self.accountant;
        let priv_err = |key: &str, e: PrivacyError| bad(key, e.to_string());
        let (noise_multiplier, steps) = match (self.noise_multiplier, self.target_epsilon) {
            (Some(s), _) if !(s > 0.0 && s.is_finite()) => {
                return Err(bad("noise_multiplier", format!("must be a positive number, got {s}")));
            }
            (Some(sigma), None) => (sigma, planned_steps),
            (Some(sigma), Some(target)) => {
                let spent = |steps: u64| epsilon(accountant, &[(sigma, sample_rate, steps)], delta);
                let steps = if spent(planned_steps).map_err(|e| priv_err("target_epsilon", e))? <= target {
                    planned_steps
                } else {
                    // The largest step count whose ε stays within the target.
                    let (mut lo, mut hi) = (0u64, planned_steps);
                    while hi - lo > 1 {
                        let mid = lo + (hi - lo) / 2;
                        if spent(mid).map_err(|e| priv_err("target_epsilon", e))? <= target {
                            lo = mid;
                        } else {
                            hi = mid;
                        }
                    }
                    lo
                };
                if steps == 0 {
                    return Err(bad(
                        "target_epsilon",
                        format!(
                            "= {target} cannot be reached: one step at noise_multiplier {sigma} and sample rate {sample_rate:.4} already spends ε = {:.3} at δ = {delta:e}; raise target_epsilon or noise_multiplier, or lower the batch size",
                            spent(1).map_err(|e| priv_err("target_epsilon", e))?
                        ),
                    ));
                }
                (sigma, steps)
            }
            (None, Some(target)) => {
                let sigma = noise_for_epsilon(accountant, target, delta, sample_rate, planned_steps)
                    .map_err(|e| priv_err("target_epsilon", e))?;
                (sigma, planned_steps)
            }
            (None, None) => {
                return Err(bad(
                    "noise_multiplier",
                    "is needed: set it, or set privacy.target_epsilon to solve for it".into(),
                ));
            }
        };
        Ok(DpPlan {
            noise_multiplier,
            max_grad_norm: self.max_grad_norm,
            delta,
            sample_rate,
            expected_batch: sample_rate * examples as f64,
            steps,
            accountant,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn section(toml_text: &str) -> PrivacySection {
        toml::from_str(toml_text).unwrap()
    }

    #[test]
    fn delta_defaults_to_one_over_n_and_noise_is_solved() {
        let p = section("target_epsilon = 8.0").plan(1000, 32, 200).unwrap();
        assert_eq!(p.delta, 1e-3);
        assert!((p.sample_rate - 0.032).abs() < 1e-12);
        let spent = epsilon(AccountantKind::Rdp, &[(p.noise_multiplier, p.sample_rate, 200)], p.delta).unwrap();
        assert!(spent <= 8.0 && spent > 7.9, "{spent}");
    }

    #[test]
    fn a_target_caps_the_steps() {
        let p = section("noise_multiplier = 0.8\ntarget_epsilon = 2.0").plan(1000, 32, 10_000).unwrap();
        assert!(p.steps > 0 && p.steps < 10_000, "{}", p.steps);
        let at = |s| epsilon(AccountantKind::Rdp, &[(0.8, p.sample_rate, s)], p.delta).unwrap();
        assert!(at(p.steps) <= 2.0 && at(p.steps + 1) > 2.0);
    }

    #[test]
    fn unreachable_targets_and_bad_values_are_config_errors() {
        let e = section("noise_multiplier = 0.3\ntarget_epsilon = 0.01").plan(100, 50, 10).unwrap_err();
        assert!(e.to_string().contains("cannot be reached"), "{e}");
        assert!(e.is_bad_input());
        let e = section("target_epsilon = 1e-9\ndelta = 1e-5").plan(100, 100, 1_000_000).unwrap_err();
        assert!(e.to_string().contains("cannot be reached"), "{e}");
        assert!(section("").plan(100, 10, 10).unwrap_err().to_string().contains("noise_multiplier"));
        assert!(section("noise_multiplier = 1.0\ndelta = 2.0").plan(100, 10, 10).is_err());
        assert!(section("noise_multiplier = 1.0\nmax_grad_norm = 0.0").plan(100, 10, 10).is_err());
    }
}
