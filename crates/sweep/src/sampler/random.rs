//! Random search: every parameter drawn independently from its distribution.

use rand::Rng;

use super::{trial_rng, Observation, Sampler};
use crate::space::{Param, Space};

/// Draws each parameter uniformly in its internal coordinate (so log-uniform in log space).
pub struct RandomSampler {
    /// The study's seed.
    pub seed: u64,
}

/// One uniform draw of `p`'s internal coordinate.
pub fn draw(p: &Param, rng: &mut impl Rng) -> f64 {
    if p.is_categorical() {
        return rng.random_range(0..p.choices()) as f64;
    }
    let (lo, hi) = p.bounds();
    lo + (hi - lo) * rng.random::<f64>()
}

impl Sampler for RandomSampler {
    fn sample(&self, space: &Space, _history: &[Observation], number: usize) -> Option<Vec<f64>> {
        let mut rng = trial_rng(self.seed, number);
        Some(space.params.iter().map(|p| draw(p, &mut rng)).collect())
    }

    fn name(&self) -> &'static str {
        "random"
    }
}
