//! Seeded bootstrap confidence intervals for any corpus metric, and the paired bootstrap test
//! between two systems scored on the same examples (Koehn, 2004).
//!
//! A metric is given as a function of a resample: the indices of the examples drawn (with
//! repetition). Corpus metrics with sufficient statistics (BLEU, chrF) sum them over the
//! indices; mean metrics average per-example values.

use rayon::prelude::*;
use serde::Serialize;

/// A percentile bootstrap interval.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Interval {
    /// The metric on the full set.
    pub score: f64,
    /// Lower bound.
    pub low: f64,
    /// Upper bound.
    pub high: f64,
    /// Coverage, e.g. 0.95.
    pub confidence: f64,
    /// Standard deviation of the resampled scores.
    pub std: f64,
    /// Resamples drawn.
    pub samples: usize,
}

/// The outcome of a paired bootstrap test of system B against system A.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct PairedTest {
    /// Score of A on the full set.
    pub score_a: f64,
    /// Score of B on the full set.
    pub score_b: f64,
    /// B − A on the full set.
    pub delta: f64,
    /// Interval of B − A over the resamples.
    pub delta_interval: Interval,
    /// One-sided p-value of "B is not better than A" when delta > 0 (of "A is not better than B"
    /// when delta < 0): the share of resamples where the sign flips or ties, with +1 smoothing.
    pub p_value: f64,
}

/// SplitMix64: a small, fast, well-mixed generator; one stream per resample keeps results
/// identical whatever the thread count.
fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The indices of resample `r` of `n` examples under `seed`.
pub fn resample(n: usize, seed: u64, r: usize) -> Vec<usize> {
    let mut s = seed ^ (r as u64).wrapping_mul(0xD1B5_4A32_D192_ED03);
    (0..n).map(|_| ((splitmix(&mut s) as u128 * n as u128) >> 64) as usize).collect()
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    // Linear interpolation between closest ranks (numpy's default).
    let pos = q * (sorted.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}

fn interval(score: f64, mut values: Vec<f64>, confidence: f64) -> Interval {
    values.sort_by(f64::total_cmp);
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    let std = (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n).sqrt();
    let tail = (1.0 - confidence) / 2.0;
    Interval {
        score,
        low: percentile(&values, tail),
        high: percentile(&values, 1.0 - tail),
        confidence,
        std,
        samples: values.len(),
    }
}

/// A `confidence` percentile interval of `metric` over `samples` resamples of `n` examples.
pub fn bootstrap<F>(n: usize, samples: usize, seed: u64, confidence: f64, metric: F) -> Interval
where
    F: Fn(&[usize]) -> f64 + Sync,
{
    let all: Vec<usize> = (0..n).collect();
    let score = metric(&all);
    let values: Vec<f64> = (0..samples.max(1)).into_par_iter().map(|r| metric(&resample(n, seed, r))).collect();
    interval(score, values, confidence)
}

/// Paired bootstrap test: both systems are scored on the same resamples.
pub fn paired_bootstrap<A, B>(n: usize, samples: usize, seed: u64, metric_a: A, metric_b: B) -> PairedTest
where
    A: Fn(&[usize]) -> f64 + Sync,
    B: Fn(&[usize]) -> f64 + Sync,
{
    let all: Vec<usize> = (0..n).collect();
    let (score_a, score_b) = (metric_a(&all), metric_b(&all));
    let delta = score_b - score_a;
    let deltas: Vec<f64> = (0..samples.max(1))
        .into_par_iter()
        .map(|r| {
            let idx = resample(n, seed, r);
            metric_b(&idx) - metric_a(&idx)
        })
        .collect();
    let against = deltas.iter().filter(|&&d| if delta >= 0.0 { d <= 0.0 } else { d >= 0.0 }).count();
    let p_value = (against as f64 + 1.0) / (deltas.len() as f64 + 1.0);
    PairedTest { score_a, score_b, delta, delta_interval: interval(delta, deltas, 0.95), p_value }
}
