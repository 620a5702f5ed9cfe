//! The KL coefficient β of PPO's per-token penalty: fixed, or adapted toward a target KL
//! (Ziegler et al. 2019, "Fine-Tuning Language Models from Human Preferences"): after each
//! rollout of n completions whose mean KL is k, β ← β·(1 + clip(k/target − 1, −0.2, 0.2)·n/horizon).

use std::cell::Cell;

/// β, fixed or adaptive.
#[derive(Debug, Clone)]
pub struct KlController {
    coef: Cell<f64>,
    target: Option<f64>,
    horizon: f64,
}

impl KlController {
    /// A controller starting at `coef`; with `target`, adapted over `horizon` completions.
    pub fn new(coef: f64, target: Option<f64>, horizon: f64) -> KlController {
        KlController { coef: Cell::new(coef), target, horizon }
    }

    /// The current β.
    pub fn coef(&self) -> f64 {
        self.coef.get()
    }

    /// The target KL, when adaptive.
    pub fn target(&self) -> Option<f64> {
        self.target
    }

    /// Adapts β after a rollout of `completions` whose mean sequence KL was `kl`.
    pub fn update(&self, kl: f64, completions: usize) {
        let Some(target) = self.target else { return };
        if !kl.is_finite() {
            return;
        }
        let error = (kl / target - 1.0).clamp(-0.2, 0.2);
        self.coef.set(self.coef.get() * (1.0 + error * completions as f64 / self.horizon));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fixed_coefficient_never_moves() {
        let c = KlController::new(0.05, None, 100.0);
        c.update(10.0, 8);
        assert_eq!(c.coef(), 0.05);
    }

    #[test]
    fn beta_rises_above_the_target_and_falls_below_it_with_a_bounded_step() {
        let c = KlController::new(0.1, Some(1.0), 10.0);
        c.update(1.5, 5);
        assert!((c.coef() - 0.1 * (1.0 + 0.2 * 0.5)).abs() < 1e-12);
        let c = KlController::new(0.1, Some(1.0), 10.0);
        c.update(0.9, 10);
        assert!((c.coef() - 0.1 * 0.9).abs() < 1e-12);
        c.update(f64::NAN, 10);
        assert!((c.coef() - 0.09).abs() < 1e-12);
    }
}
