//! Samplers: what the next trial tries, given the trials so far. [`grid`], [`random`] and
//! [`tpe`] (the Tree-structured Parzen Estimator, as in Optuna and Hyperopt).

pub mod grid;
pub mod parzen;
pub mod random;
pub mod tpe;

use rand::SeedableRng;

use crate::space::Space;

/// A finished or running trial as a sampler sees it.
#[derive(Debug, Clone)]
pub struct Observation {
    /// The trial number (chronological).
    pub number: usize,
    /// Internal coordinates of its parameters (see [`crate::space`]).
    pub xs: Vec<f64>,
    /// The objective, oriented so that lower is better; None while running or when failed.
    pub loss: Option<f64>,
    /// Whether it was pruned (its `loss` is then its last reported value).
    pub pruned: bool,
}

/// Chooses the parameters of trial `number`.
pub trait Sampler: Send + Sync {
    /// The internal coordinates to try, or None when the sampler has nothing left (a finished
    /// grid).
    fn sample(&self, space: &Space, history: &[Observation], number: usize) -> Option<Vec<f64>>;
    /// The sampler's name, for the journal and the report.
    fn name(&self) -> &'static str;
}

/// The random stream of trial `number` of a study seeded with `seed`: the same trial draws the
/// same values in any process, so a resumed study continues exactly.
pub fn trial_rng(seed: u64, number: usize) -> rand::rngs::StdRng {
    let mut z = seed ^ (number as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    rand::rngs::StdRng::seed_from_u64(z ^ (z >> 31))
}
