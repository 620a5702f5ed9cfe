//! Parzen estimators: the densities TPE compares. One kernel per observation plus a wide prior
//! kernel; a kernel is a product over parameters of a Gaussian truncated to the parameter's
//! range (numeric) or a smoothed one-hot distribution (categorical). With one parameter this is
//! the univariate estimator of Hyperopt; with all of them, the multivariate one of Falkner et
//! al. (2018) that Optuna uses by default.
//!
//! Bandwidths follow Optuna (5.x, in both modes): per parameter, the larger gap to a
//! neighbouring observation, clipped to `[range / min(100, 1 + kernels), range]` ("magic
//! clip"). The prior kernel sits at the middle
//! of each range with the whole range as its bandwidth.

use rand::Rng;

use crate::space::Param;

/// The prior kernel's weight relative to one observation's.
const PRIOR_WEIGHT: f64 = 1.0;

fn normal_cdf(z: f64) -> f64 {
    0.5 * libm::erfc(-z / std::f64::consts::SQRT_2)
}

fn log_sum_exp(v: &[f64]) -> f64 {
    let m = v.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    if m == f64::NEG_INFINITY {
        return m;
    }
    m + v.iter().map(|x| (x - m).exp()).sum::<f64>().ln()
}

/// Picks an index with probability proportional to `weights`.
fn pick(weights: &[f64], rng: &mut impl Rng) -> usize {
    let total: f64 = weights.iter().sum();
    let mut u = rng.random::<f64>() * total;
    for (i, w) in weights.iter().enumerate() {
        if u < *w {
            return i;
        }
        u -= w;
    }
    weights.len() - 1
}

/// One parameter's kernels (kernel k of every dimension belongs to observation k; the last is
/// the prior).
#[derive(Debug, Clone)]
enum Dim {
    Numeric { low: f64, high: f64, mus: Vec<f64>, sigmas: Vec<f64>, log_norms: Vec<f64> },
    Categorical { probs: Vec<Vec<f64>> },
}

/// Univariate bandwidths: the larger gap to a neighbour (the outermost kernels look inward).
fn neighbour_sigmas(xs: &[f64], low: f64, high: f64) -> Vec<f64> {
    let n = xs.len();
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| xs[a].total_cmp(&xs[b]));
    let mut padded = Vec::with_capacity(n + 2);
    padded.push(low);
    padded.extend(order.iter().map(|&i| xs[i]));
    padded.push(high);
    let mut sorted: Vec<f64> = (1..=n).map(|i| (padded[i] - padded[i - 1]).max(padded[i + 1] - padded[i])).collect();
    if n >= 2 {
        sorted[0] = padded[2] - padded[1];
        sorted[n - 1] = padded[n] - padded[n - 1];
    }
    let mut sigmas = vec![0.0; n];
    for (rank, &i) in order.iter().enumerate() {
        sigmas[i] = sorted[rank];
    }
    sigmas
}

/// A Parzen estimator over some parameters.
#[derive(Debug, Clone)]
pub struct Parzen {
    weights: Vec<f64>,
    log_weights: Vec<f64>,
    dims: Vec<Dim>,
}

impl Parzen {
    /// The estimator of `observations` (rows of internal coordinates of `params`, with their
    /// `weights`).
    pub fn new(params: &[&Param], observations: &[Vec<f64>], weights: &[f64]) -> Parzen {
        let n = observations.len();
        let kernels = n + 1;
        let dims = params
            .iter()
            .enumerate()
            .map(|(j, p)| {
                let xs: Vec<f64> = observations.iter().map(|o| o[j]).collect();
                if p.is_categorical() {
                    let choices = p.choices();
                    let smoothing = PRIOR_WEIGHT / kernels as f64;
                    let mut probs: Vec<Vec<f64>> = xs
                        .iter()
                        .map(|&x| {
                            let c = x.round() as usize;
                            let total = smoothing * choices as f64 + 1.0;
                            (0..choices).map(|i| (smoothing + if i == c { 1.0 } else { 0.0 }) / total).collect()
                        })
                        .collect();
                    probs.push(vec![1.0 / choices as f64; choices]);
                    return Dim::Categorical { probs };
                }
                let (low, high) = p.bounds();
                let range = high - low;
                let raw = neighbour_sigmas(&xs, low, high);
                let min_sigma = range / (1.0 + kernels as f64).min(100.0);
                let mut sigmas: Vec<f64> = raw.iter().map(|s| s.clamp(min_sigma, range)).collect();
                let mut mus = xs;
                mus.push(0.5 * (low + high));
                sigmas.push(range);
                let log_norms = mus
                    .iter()
                    .zip(&sigmas)
                    .map(|(m, s)| (normal_cdf((high - m) / s) - normal_cdf((low - m) / s)).max(1e-300).ln())
                    .collect();
                Dim::Numeric { low, high, mus, sigmas, log_norms }
            })
            .collect();
        let mut w: Vec<f64> = weights.to_vec();
        w.push(PRIOR_WEIGHT);
        let total: f64 = w.iter().sum();
        let weights: Vec<f64> = w.iter().map(|x| x / total).collect();
        let log_weights = weights.iter().map(|w| w.ln()).collect();
        Parzen { weights, log_weights, dims }
    }

    /// Draws a point: a kernel by weight, then each dimension from it (truncated Gaussians by
    /// rejection; every kernel's mean lies in its range, so at least a third of draws are kept).
    pub fn sample(&self, rng: &mut impl Rng) -> Vec<f64> {
        let k = pick(&self.weights, rng);
        self.dims
            .iter()
            .map(|d| match d {
                Dim::Categorical { probs } => pick(&probs[k], rng) as f64,
                Dim::Numeric { low, high, mus, sigmas, .. } => {
                    for _ in 0..1000 {
                        let (u1, u2): (f64, f64) = (rng.random::<f64>().max(1e-300), rng.random());
                        let z = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
                        let x = mus[k] + sigmas[k] * z;
                        if (*low..=*high).contains(&x) {
                            return x;
                        }
                    }
                    mus[k].clamp(*low, *high)
                }
            })
            .collect()
    }

    /// The log density at `x`.
    pub fn log_pdf(&self, x: &[f64]) -> f64 {
        let terms: Vec<f64> = (0..self.weights.len())
            .map(|k| {
                self.log_weights[k]
                    + self
                        .dims
                        .iter()
                        .zip(x)
                        .map(|(d, &v)| match d {
                            Dim::Categorical { probs } => {
                                probs[k].get(v.round() as usize).map_or(f64::NEG_INFINITY, |p| p.ln())
                            }
                            Dim::Numeric { mus, sigmas, log_norms, .. } => {
                                let z = (v - mus[k]) / sigmas[k];
                                -0.5 * z * z - sigmas[k].ln() - 0.5 * std::f64::consts::TAU.ln() - log_norms[k]
                            }
                        })
                        .sum::<f64>()
            })
            .collect();
        log_sum_exp(&terms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn param(spec: &str) -> Param {
        Param::parse("x", &toml::from_str::<toml::Table>(&format!("v = {spec}")).unwrap()["v"]).unwrap()
    }

    #[test]
    fn the_numeric_density_integrates_to_one_on_its_range() {
        let p = param("{ type = \"uniform\", low = 0, high = 1 }");
        {
            let obs = vec![vec![0.1], vec![0.15], vec![0.9]];
            let d = Parzen::new(&[&p], &obs, &[1.0; 3]);
            let n = 20_000;
            let integral: f64 = (0..n).map(|i| d.log_pdf(&[(i as f64 + 0.5) / n as f64]).exp() / n as f64).sum();
            assert!((integral - 1.0).abs() < 1e-3, "{integral}");
            assert!(d.log_pdf(&[0.12]) > d.log_pdf(&[0.5]));
            let mut rng = crate::sampler::trial_rng(0, 0);
            assert!((0..1000).all(|_| (0.0..=1.0).contains(&d.sample(&mut rng)[0])));
        }
    }

    #[test]
    fn the_categorical_distribution_sums_to_one_and_follows_observations() {
        let p = param("[\"a\", \"b\", \"c\"]");
        let d = Parzen::new(&[&p], &[vec![2.0], vec![2.0], vec![0.0]], &[1.0; 3]);
        let probs: Vec<f64> = (0..3).map(|c| d.log_pdf(&[c as f64]).exp()).collect();
        assert!((probs.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        assert!(probs[2] > probs[0] && probs[0] > probs[1], "{probs:?}");
    }

    #[test]
    fn a_joint_density_keeps_the_parameters_together() {
        // Observations on the diagonal: the joint density prefers (0.2, 0.2) to (0.2, 0.8).
        let (a, b) =
            (param("{ type = \"uniform\", low = 0, high = 1 }"), param("{ type = \"uniform\", low = 0, high = 1 }"));
        let obs = vec![vec![0.2, 0.2], vec![0.8, 0.8], vec![0.25, 0.25], vec![0.75, 0.75]];
        let d = Parzen::new(&[&a, &b], &obs, &[1.0; 4]);
        assert!(d.log_pdf(&[0.2, 0.2]) > d.log_pdf(&[0.2, 0.8]) + 1.0);
    }
}
