//! How a multi-task run mixes its datasets: proportional to size (every example once),
//! temperature-scaled (task t drawn with probability ∝ n_t^(1/T), as in multilingual and T5
//! mixtures) or uniform. The mixture is fixed per run: a task's share of the epoch is filled by
//! whole shuffled passes over its examples and a seeded part of one more, so small tasks repeat
//! and large ones are subsampled, with no example drawn twice before every one is drawn once.

use tunesmith_data::batch::SplitMix64;

/// A mixing strategy.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Sampling {
    /// Every example once.
    Proportional,
    /// ∝ n^(1/T).
    Temperature(f64),
    /// Equal shares.
    Uniform,
}

/// Examples drawn from each task for an epoch of `Σ sizes` examples.
pub fn counts(sizes: &[usize], sampling: Sampling) -> Vec<usize> {
    let total: usize = sizes.iter().sum();
    let weights: Vec<f64> = match sampling {
        Sampling::Proportional => return sizes.to_vec(),
        Sampling::Temperature(t) => sizes.iter().map(|&n| (n as f64).powf(1.0 / t)).collect(),
        Sampling::Uniform => sizes.iter().map(|&n| if n > 0 { 1.0 } else { 0.0 }).collect(),
    };
    let sum: f64 = weights.iter().sum();
    let mut out: Vec<usize> = weights.iter().map(|w| (w / sum * total as f64).floor() as usize).collect();
    // Hand the rounding remainder to the largest fractional parts.
    let mut rest: Vec<(usize, f64)> =
        weights.iter().enumerate().map(|(i, w)| (i, w / sum * total as f64 - out[i] as f64)).collect();
    rest.sort_by(|a, b| b.1.total_cmp(&a.1));
    for (i, _) in rest.into_iter().take(total - out.iter().sum::<usize>()) {
        out[i] += 1;
    }
    out
}

/// `count` indices into `0..n`: whole seeded shuffles of it, then part of one more.
pub fn draw(n: usize, count: usize, seed: u64) -> Vec<usize> {
    let mut rng = SplitMix64::new(seed);
    let mut out = Vec::with_capacity(count);
    while out.len() < count && n > 0 {
        let mut pass: Vec<usize> = (0..n).collect();
        rng.shuffle(&mut pass);
        out.extend(pass.into_iter().take(count - out.len()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proportional_keeps_sizes_and_uniform_equalizes() {
        assert_eq!(counts(&[100, 10, 1], Sampling::Proportional), vec![100, 10, 1]);
        let u = counts(&[100, 10, 1], Sampling::Uniform);
        assert_eq!(u.iter().sum::<usize>(), 111);
        assert!(u.iter().all(|&c| c == 37));
    }

    #[test]
    fn temperature_flattens_toward_uniform() {
        let t1 = counts(&[900, 100], Sampling::Temperature(1.0));
        assert_eq!(t1, vec![900, 100]);
        let t2 = counts(&[900, 100], Sampling::Temperature(2.0));
        // √900 : √100 = 3 : 1.
        assert_eq!(t2, vec![750, 250]);
        let t_big = counts(&[900, 100], Sampling::Temperature(1e6));
        assert!((t_big[0] as i64 - 500).abs() <= 1);
    }

    #[test]
    fn draws_cover_every_example_before_repeating() {
        let d = draw(10, 25, 7);
        assert_eq!(d.len(), 25);
        let mut first: Vec<usize> = d[..10].to_vec();
        first.sort_unstable();
        assert_eq!(first, (0..10).collect::<Vec<_>>());
        assert_eq!(draw(10, 4, 7).len(), 4);
        assert!(draw(0, 4, 7).is_empty());
    }
}
