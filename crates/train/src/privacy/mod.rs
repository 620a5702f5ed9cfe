//! Differential privacy: the accountants that turn a DP-SGD run's noise multiplier, sampling
//! rate and step count into (ε, δ), and the noise multiplier that reaches a target ε.

pub mod config;
pub mod dp_sgd;
pub mod prv;
mod quadrature;
pub mod rdp;
mod special;

use serde::{Deserialize, Serialize};

pub use config::{DpPlan, PrivacySection};

/// Which analysis bounds ε.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum AccountantKind {
    /// Rényi DP over Opacus' default orders.
    #[default]
    Rdp,
    /// Numerical composition of privacy-loss random variables (tighter).
    Prv,
}

/// Why ε (or a noise multiplier) could not be given.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PrivacyError {
    /// The PRV accountant's numerical domain cannot resolve this δ or ε.
    #[error("{0}")]
    Prv(String),
    /// No noise multiplier up to 10⁶ reaches the target.
    #[error("epsilon {target} at delta {delta} cannot be reached in {steps} steps at sample rate {sample_rate}: even a noise multiplier of 1e6 spends more; raise target_epsilon, lower the steps or the batch size")]
    Unreachable {
        /// The target ε.
        target: f64,
        /// δ.
        delta: f64,
        /// The planned steps.
        steps: u64,
        /// The sampling rate.
        sample_rate: f64,
    },
}

/// ε at `delta` of a history of `(noise multiplier, sampling rate, steps)` segments.
pub fn epsilon(kind: AccountantKind, history: &[(f64, f64, u64)], delta: f64) -> Result<f64, PrivacyError> {
    match kind {
        AccountantKind::Rdp => Ok(rdp::epsilon(history, delta)),
        AccountantKind::Prv => prv::epsilon(history, delta, 0.01).map_err(|e| PrivacyError::Prv(e.to_string())),
    }
}

/// The noise multiplier that spends at most `target` ε at `delta` after `steps` steps of
/// sampling rate `sample_rate`, within 0.01 of the target (Opacus' `get_noise_multiplier`
/// search: double until under the target, then bisect).
pub fn noise_for_epsilon(
    kind: AccountantKind,
    target: f64,
    delta: f64,
    sample_rate: f64,
    steps: u64,
) -> Result<f64, PrivacyError> {
    const MAX_SIGMA: f64 = 1e6;
    let eps_at = |sigma: f64| epsilon(kind, &[(sigma, sample_rate, steps)], delta);
    let unreachable = PrivacyError::Unreachable { target, delta, steps, sample_rate };
    let (mut low, mut high) = (0.0_f64, 10.0_f64);
    let mut eps_high = f64::INFINITY;
    while eps_high > target {
        high *= 2.0;
        if high > MAX_SIGMA {
            return Err(unreachable);
        }
        eps_high = eps_at(high)?;
    }
    while target - eps_high > 0.01 {
        let mid = (low + high) / 2.0;
        let eps = eps_at(mid)?;
        if eps < target {
            high = mid;
            eps_high = eps;
        } else {
            low = mid;
        }
    }
    Ok(high)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_impossible_target_is_refused() {
        let err = noise_for_epsilon(AccountantKind::Rdp, 1e-9, 1e-5, 1.0, 1_000_000).unwrap_err();
        assert!(matches!(err, PrivacyError::Unreachable { .. }), "{err}");
    }
}
