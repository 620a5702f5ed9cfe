//! Learning-rate schedules with warmup: linear, cosine, constant and cosine with a floor, as the
//! multiplier of the peak learning rate at each optimizer step.

/// A schedule over `total` optimizer steps with `warmup` linear warmup steps.
#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    /// "linear", "cosine", "constant" or "cosine_min_lr".
    pub kind: String,
    /// Warmup steps.
    pub warmup: usize,
    /// All optimizer steps of the run.
    pub total: usize,
    /// Floor of cosine_min_lr, as a fraction of the peak.
    pub min_ratio: f64,
}

impl Schedule {
    /// The lr multiplier for optimizer step `step` (0-based), as transformers' schedulers give
    /// it: warmup ramps from 0, then decays over the remaining steps.
    pub fn factor(&self, step: usize) -> f64 {
        if step < self.warmup {
            return step as f64 / self.warmup.max(1) as f64;
        }
        let span = self.total.saturating_sub(self.warmup).max(1) as f64;
        let progress = ((step - self.warmup) as f64 / span).min(1.0);
        match self.kind.as_str() {
            "constant" => 1.0,
            "cosine" => 0.5 * (1.0 + (std::f64::consts::PI * progress).cos()),
            "cosine_min_lr" => {
                self.min_ratio + (1.0 - self.min_ratio) * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos())
            }
            _ => (1.0 - progress).max(0.0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(kind: &str) -> Schedule {
        Schedule { kind: kind.into(), warmup: 10, total: 110, min_ratio: 0.1 }
    }

    #[test]
    fn warmup_then_decay_match_transformers_formulas() {
        for k in ["linear", "cosine", "constant", "cosine_min_lr"] {
            assert_eq!(s(k).factor(0), 0.0, "{k} starts at 0");
            assert!((s(k).factor(5) - 0.5).abs() < 1e-12, "{k} warms up linearly");
            assert!((s(k).factor(10) - 1.0).abs() < 1e-12, "{k} peaks after warmup");
        }
        assert!((s("linear").factor(60) - 0.5).abs() < 1e-12);
        assert!((s("cosine").factor(60) - 0.5).abs() < 1e-12);
        assert!((s("cosine").factor(110)).abs() < 1e-12);
        assert!((s("cosine_min_lr").factor(110) - 0.1).abs() < 1e-12);
        assert_eq!(s("constant").factor(100), 1.0);
    }
}
