//! Grid search: every combination of the parameters' grid points, in a shuffled order (so a
//! study cut short still spreads over the grid), each once.

use rand::seq::SliceRandom;

use super::{trial_rng, Observation, Sampler};
use crate::space::Space;

/// Visits the grid's points one per trial; None once all are taken.
pub struct GridSampler {
    /// The study's seed (orders the points).
    pub seed: u64,
}

impl Sampler for GridSampler {
    fn sample(&self, space: &Space, _history: &[Observation], number: usize) -> Option<Vec<f64>> {
        let size = space.grid_size().ok()?;
        let mut order: Vec<usize> = (0..size).collect();
        order.shuffle(&mut trial_rng(self.seed, usize::MAX));
        let mut index = *order.get(number)?;
        let mut xs = Vec::with_capacity(space.params.len());
        for p in &space.params {
            let v = &p.grid[index % p.grid.len()];
            index /= p.grid.len();
            xs.push(p.from_json(v).ok()?);
        }
        Some(xs)
    }

    fn name(&self) -> &'static str {
        "grid"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_grid_is_covered_once_then_exhausted() {
        let t: toml::Table =
            toml::from_str("\"a\" = [1, 2, 3]\n\"b\" = { type = \"uniform\", low = 0, high = 1, grid = [0.0, 1.0] }")
                .unwrap();
        let space = Space::parse(&t).unwrap();
        let g = GridSampler { seed: 1 };
        let mut seen: Vec<Vec<f64>> = (0..6).map(|n| g.sample(&space, &[], n).unwrap()).collect();
        seen.sort_by(|a, b| a.partial_cmp(b).unwrap());
        seen.dedup();
        assert_eq!(seen.len(), 6);
        assert!(g.sample(&space, &[], 6).is_none());
    }
}
