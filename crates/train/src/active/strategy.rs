//! Acquisition strategies for active learning: which unlabeled rows to label next. Uncertainty
//! sampling ranks rows by least confidence (1 − max p), margin (the gap between the two most
//! likely classes, smallest first) or entropy; k-center (Sener & Savarese, 2018) picks rows
//! that cover the feature space, each the farthest from everything labeled or picked so far;
//! random is the baseline.

use serde::Serialize;

/// How rows are chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// A seeded random choice.
    Random,
    /// Lowest top-class probability first.
    LeastConfidence,
    /// Smallest gap between the top two classes first.
    Margin,
    /// Highest predictive entropy first.
    Entropy,
    /// Greedy k-center coverage of the classifier's features.
    KCenter,
}

impl Strategy {
    /// Every strategy.
    pub const ALL: [Strategy; 5] =
        [Strategy::Random, Strategy::LeastConfidence, Strategy::Margin, Strategy::Entropy, Strategy::KCenter];

    /// The strategy's name.
    pub fn name(self) -> &'static str {
        match self {
            Strategy::Random => "random",
            Strategy::LeastConfidence => "least_confidence",
            Strategy::Margin => "margin",
            Strategy::Entropy => "entropy",
            Strategy::KCenter => "kcenter",
        }
    }

    /// The strategy named `name`.
    pub fn parse(name: &str) -> Option<Strategy> {
        Strategy::ALL.into_iter().find(|s| s.name() == name)
    }

    /// Whether it needs the classifier's features.
    pub fn needs_features(self) -> bool {
        self == Strategy::KCenter
    }
}

fn softmax(l: &[f64]) -> Vec<f64> {
    let m = l.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let e: Vec<f64> = l.iter().map(|x| (x - m).exp()).collect();
    let z: f64 = e.iter().sum();
    e.into_iter().map(|x| x / z).collect()
}

/// The uncertainty of one row's logits under `strategy` (higher = label it sooner).
pub fn uncertainty(strategy: Strategy, logits: &[f64]) -> f64 {
    let p = softmax(logits);
    let mut sorted = p.clone();
    sorted.sort_by(|a, b| b.total_cmp(a));
    match strategy {
        Strategy::LeastConfidence => 1.0 - sorted[0],
        Strategy::Margin => -(sorted[0] - sorted.get(1).copied().unwrap_or(0.0)),
        Strategy::Entropy => -p.iter().filter(|&&x| x > 0.0).map(|x| x * x.ln()).sum::<f64>(),
        Strategy::Random | Strategy::KCenter => 0.0,
    }
}

fn dist2(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum()
}

/// Picks `k` of the `pool` rows: `(index, score)` in the order chosen. `logits` and `features`
/// are the pool's; `labeled` holds the features of rows already labeled (k-center covers them
/// first); `seed` drives random choices.
pub fn select(
    strategy: Strategy,
    logits: &[Vec<f64>],
    features: &[Vec<f64>],
    labeled: &[Vec<f64>],
    k: usize,
    seed: u64,
) -> Vec<(usize, f64)> {
    let n = logits.len().max(features.len());
    let k = k.min(n);
    match strategy {
        Strategy::Random => {
            let mut order: Vec<usize> = (0..n).collect();
            tunesmith_data::batch::SplitMix64::new(seed).shuffle(&mut order);
            order.into_iter().take(k).map(|i| (i, 0.0)).collect()
        }
        Strategy::KCenter => {
            // Distance of each row to its nearest labeled or chosen row.
            let mut nearest: Vec<f64> =
                features.iter().map(|f| labeled.iter().map(|l| dist2(f, l)).fold(f64::INFINITY, f64::min)).collect();
            let mut chosen = Vec::with_capacity(k);
            let mut rng = tunesmith_data::batch::SplitMix64::new(seed);
            for step in 0..k {
                let pick = if labeled.is_empty() && step == 0 {
                    rng.below(n)
                } else {
                    (0..n).max_by(|&a, &b| nearest[a].total_cmp(&nearest[b])).unwrap_or(0)
                };
                chosen.push((pick, nearest[pick].sqrt()));
                for (i, f) in features.iter().enumerate() {
                    nearest[i] = nearest[i].min(dist2(f, &features[pick]));
                }
            }
            chosen
        }
        _ => {
            let mut scored: Vec<(usize, f64)> =
                logits.iter().enumerate().map(|(i, l)| (i, uncertainty(strategy, l))).collect();
            scored.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
            scored.truncate(k);
            scored
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uncertainty_strategies_pick_the_least_certain_rows() {
        let logits = [vec![5.0, -5.0], vec![0.1, 0.0], vec![2.0, 0.0], vec![0.0, 0.0, 0.0]];
        for s in [Strategy::LeastConfidence, Strategy::Margin, Strategy::Entropy] {
            let picked: Vec<usize> = select(s, &logits[..3], &[], &[], 2, 0).iter().map(|p| p.0).collect();
            assert_eq!(picked, vec![1, 2], "{s:?}");
        }
        assert!((uncertainty(Strategy::Entropy, &logits[3]) - 3f64.ln()).abs() < 1e-12);
        assert!((uncertainty(Strategy::LeastConfidence, &logits[3]) - 2.0 / 3.0).abs() < 1e-12);
    }

    #[test]
    fn kcenter_covers_the_space_and_random_is_seeded() {
        // Two clusters; one labeled point in the first: k-center picks from the second first.
        let features: Vec<Vec<f64>> = vec![vec![0.0, 0.0], vec![0.1, 0.0], vec![10.0, 10.0], vec![10.0, 10.1]];
        let picked = select(Strategy::KCenter, &[], &features, &[vec![0.0, 0.05]], 2, 0);
        assert!(picked[0].0 >= 2, "{picked:?}");
        assert!(picked[1].0 < 2 || picked[1].1 < 1.0, "{picked:?}");
        let r1 = select(Strategy::Random, &vec![vec![0.0]; 50], &[], &[], 5, 9);
        assert_eq!(r1, select(Strategy::Random, &vec![vec![0.0]; 50], &[], &[], 5, 9));
        assert_ne!(r1, select(Strategy::Random, &vec![vec![0.0]; 50], &[], &[], 5, 10));
        assert_eq!(Strategy::parse("kcenter"), Some(Strategy::KCenter));
    }
}
