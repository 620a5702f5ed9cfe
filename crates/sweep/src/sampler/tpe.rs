//! The Tree-structured Parzen Estimator (Bergstra et al., 2011), univariate, with Optuna's
//! defaults: random trials until `startup_trials` have finished; then the finished trials are
//! split into the best `min(⌈0.1·n⌉, 25)` ("below") and the rest plus every pruned trial
//! ("above"); `candidates` points are drawn from the below density l(x) and the one with the
//! largest l(x)/g(x) is kept, jointly over all parameters (multivariate, Optuna's default) or
//! for each parameter on its own. Observations older than the newest 25 get
//! linearly smaller weights.

use super::parzen::Parzen;
use super::random::{draw, RandomSampler};
use super::{trial_rng, Observation, Sampler};
use crate::space::{Param, Space};

/// TPE's settings.
#[derive(Debug, Clone)]
pub struct TpeSampler {
    /// The study's seed.
    pub seed: u64,
    /// Finished trials before TPE takes over from random sampling.
    pub startup_trials: usize,
    /// Points drawn from l(x); the best by l/g is kept.
    pub candidates: usize,
    /// One joint density over all parameters (Optuna's default since 5.0) rather than one per
    /// parameter.
    pub multivariate: bool,
}

impl TpeSampler {
    /// Optuna's defaults: 10 startup trials, 24 candidates, multivariate.
    pub fn new(seed: u64) -> TpeSampler {
        TpeSampler { seed, startup_trials: 10, candidates: 24, multivariate: true }
    }
}

/// How many of `n` finished trials count as good.
fn gamma(n: usize) -> usize {
    (n.div_ceil(10)).clamp(1, 25)
}

/// Weights of `n` observations in chronological order: equal for the newest 25, a linear ramp
/// from 1/n below them.
fn weights(n: usize) -> Vec<f64> {
    if n < 25 {
        return vec![1.0; n];
    }
    let ramp = n - 25;
    let mut w: Vec<f64> = (0..ramp)
        .map(|i| {
            if ramp == 1 {
                1.0 / n as f64
            } else {
                1.0 / n as f64 + (1.0 - 1.0 / n as f64) * i as f64 / (ramp - 1) as f64
            }
        })
        .collect();
    w.extend(std::iter::repeat_n(1.0, 25));
    w
}

impl Sampler for TpeSampler {
    fn sample(&self, space: &Space, history: &[Observation], number: usize) -> Option<Vec<f64>> {
        let mut finished: Vec<&Observation> = history.iter().filter(|o| o.loss.is_some() && !o.pruned).collect();
        // As Optuna: complete and pruned trials both count toward the start-up phase (a study
        // whose early trials are mostly pruned must not stay random).
        let ended = finished.len() + history.iter().filter(|o| o.pruned).count();
        if ended < self.startup_trials.max(1) || finished.is_empty() {
            return RandomSampler { seed: self.seed }.sample(space, history, number);
        }
        finished.sort_by(|a, b| a.loss.unwrap_or(f64::INFINITY).total_cmp(&b.loss.unwrap_or(f64::INFINITY)));
        // As Optuna: the share is of every ended trial; the good ones are complete trials.
        let n_below = gamma(ended).min(finished.len());
        let mut below: Vec<&Observation> = finished[..n_below].to_vec();
        let mut above: Vec<&Observation> = finished[n_below..].to_vec();
        above.extend(history.iter().filter(|o| o.pruned));
        below.sort_by_key(|o| o.number);
        above.sort_by_key(|o| o.number);
        let (wb, wa) = (weights(below.len()), weights(above.len()));
        let mut rng = trial_rng(self.seed, number);
        // Multivariate: one joint estimator over every parameter; univariate: one per parameter.
        let groups: Vec<Vec<usize>> = if self.multivariate {
            vec![(0..space.params.len()).collect()]
        } else {
            (0..space.params.len()).map(|j| vec![j]).collect()
        };
        let mut xs = vec![0.0; space.params.len()];
        for group in groups {
            let params: Vec<&Param> = group.iter().map(|&j| &space.params[j]).collect();
            let rows = |set: &[&Observation]| -> Vec<Vec<f64>> {
                set.iter().map(|o| group.iter().map(|&j| o.xs[j]).collect()).collect()
            };
            let l = Parzen::new(&params, &rows(&below), &wb);
            let g = Parzen::new(&params, &rows(&above), &wa);
            let score = |x: &[f64]| l.log_pdf(x) - g.log_pdf(x);
            let best = (0..self.candidates.max(1))
                .map(|_| l.sample(&mut rng))
                .max_by(|a, b| score(a).total_cmp(&score(b)))
                .unwrap_or_else(|| params.iter().map(|p| draw(p, &mut rng)).collect());
            for (&j, x) in group.iter().zip(best) {
                xs[j] = x;
            }
        }
        Some(xs)
    }

    fn name(&self) -> &'static str {
        "tpe"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gamma_and_weights_follow_optuna() {
        assert_eq!(gamma(10), 1);
        assert_eq!(gamma(11), 2);
        assert_eq!(gamma(1000), 25);
        assert_eq!(weights(3), vec![1.0; 3]);
        let w = weights(30);
        assert_eq!(w.len(), 30);
        assert!((w[0] - 1.0 / 30.0).abs() < 1e-12 && w[4] == 1.0 && w[29] == 1.0);
        assert!(w.windows(2).all(|p| p[0] <= p[1]));
    }

    #[test]
    fn pruned_trials_count_toward_the_start_up_phase() {
        let t: toml::Table = toml::from_str("\"x\" = { type = \"uniform\", low = 0, high = 10 }").unwrap();
        let space = Space::parse(&t).unwrap();
        // Two complete trials near 2, eight pruned ones far away: TPE (start-up 10) takes over.
        let mut history: Vec<Observation> = (0..2)
            .map(|i| Observation { number: i, xs: vec![2.0 + 0.1 * i as f64], loss: Some(0.0), pruned: false })
            .collect();
        history.extend((2..10).map(|i| Observation {
            number: i,
            xs: vec![6.0 + 0.4 * (i - 2) as f64],
            loss: Some(1.0),
            pruned: true,
        }));
        let tpe = TpeSampler::new(0);
        let random = RandomSampler { seed: 0 };
        let n = 10;
        assert_ne!(
            tpe.sample(&space, &history, n),
            random.sample(&space, &history, n),
            "still random after 10 ended trials"
        );
        let near = (10..40).filter(|&n| tpe.sample(&space, &history, n).unwrap()[0] < 5.0).count();
        assert!(near >= 20, "{near} of 30 TPE samples near the complete trials");
    }

    #[test]
    fn after_startup_it_samples_near_the_good_trials() {
        let t: toml::Table = toml::from_str("\"x\" = { type = \"uniform\", low = 0, high = 10 }").unwrap();
        let space = Space::parse(&t).unwrap();
        // Loss = |x − 2|: trials spread over the range.
        let history: Vec<Observation> = (0..20)
            .map(|i| {
                let x = i as f64 / 2.0;
                Observation { number: i, xs: vec![x], loss: Some((x - 2.0).abs()), pruned: false }
            })
            .collect();
        for multivariate in [true, false] {
            let tpe = TpeSampler { multivariate, ..TpeSampler::new(0) };
            let near = (20..60).filter(|&n| (tpe.sample(&space, &history, n).unwrap()[0] - 2.0).abs() < 1.5).count();
            assert!(near >= 30, "only {near} of 40 samples within 1.5 of the optimum");
        }
    }
}
