//! One DP-SGD step's pieces (Abadi et al. 2016, as Opacus runs it): Poisson sampling of the
//! step's examples, each example's rows for the per-example backward, Opacus' scaling of
//! per-example gradients, and the Gaussian noise added to the clipped sum before dividing by
//! the expected batch size.
//!
//! The noise comes from the run's seeded generator, so runs are reproducible; like Opacus
//! without `secure_mode`, that generator is not cryptographically secure.

use tunesmith_data::batch::HostBatch;
use tunesmith_engine::rng::{derive_seed, Rng};
use tunesmith_engine::{ClipStats, ExampleRows, Grads, ParamStore, Tensor};

use super::{epsilon, DpPlan, PrivacyError};
use crate::error::Result;

/// DP-SGD for one run.
#[derive(Debug, Clone)]
pub struct DpSgd {
    /// The resolved parameters.
    pub plan: DpPlan,
    seed: u64,
}

impl DpSgd {
    /// DP-SGD with `plan`, drawing samples and noise from `seed`'s streams.
    pub fn new(plan: DpPlan, seed: u64) -> Self {
        DpSgd { plan, seed }
    }

    /// The loader rows of optimizer step `step`: each of `rows` independently with probability
    /// q (so the batch size varies, and may be 0), a pure function of (seed, step).
    pub fn sample(&self, step: u64, rows: usize) -> Vec<usize> {
        let mut rng = Rng::new(derive_seed(self.seed, step.wrapping_mul(2)));
        (0..rows).filter(|_| rng.uniform() < self.plan.sample_rate).collect()
    }

    /// Adds N(0, (σ·C)²) to every trainable parameter's summed clipped gradient (creating it when
    /// no example reached the parameter), then divides by the expected batch size.
    pub fn add_noise(&self, step: u64, params: &ParamStore, grads: &mut Grads) -> Result<()> {
        let std = self.plan.noise_multiplier * self.plan.max_grad_norm;
        let mut rng = Rng::new(derive_seed(self.seed, step.wrapping_mul(2) + 1));
        for id in params.trainable_ids() {
            let p = params.get(id);
            let sum = match grads.take(id) {
                Some(g) => g.to_vec_f64()?,
                None => vec![0.0; p.value.numel()],
            };
            let noisy: Vec<f32> =
                sum.iter().map(|&s| ((s + std * rng.normal()) / self.plan.expected_batch) as f32).collect();
            grads.add_param(id, Tensor::from_vec(noisy, p.value.shape())?.to_dtype(p.value.dtype())?)?;
        }
        Ok(())
    }

    /// ε spent after `steps` steps.
    pub fn epsilon(&self, steps: u64) -> std::result::Result<f64, PrivacyError> {
        epsilon(self.plan.accountant, &[(self.plan.noise_multiplier, self.plan.sample_rate, steps)], self.plan.delta)
    }
}

/// Clipping statistics summed over a step's micro-batches.
#[derive(Debug, Clone, Copy, Default)]
pub struct ClipTotals {
    examples: usize,
    clipped: usize,
    norm_sum: f64,
}

impl ClipTotals {
    /// Adds one micro-batch's.
    pub fn add(&mut self, s: ClipStats) {
        self.examples += s.examples;
        self.clipped += s.clipped;
        self.norm_sum += s.mean_norm * s.examples as f64;
    }

    /// The fraction of examples whose gradient was clipped.
    pub fn clipped_fraction(&self) -> f64 {
        self.clipped as f64 / self.examples.max(1) as f64
    }

    /// The mean per-example gradient norm before clipping.
    pub fn mean_norm(&self) -> f64 {
        self.norm_sum / self.examples.max(1) as f64
    }
}

/// The example (index into the batch's `examples`) of every token row of `hb`, padding none:
/// row r for unpacked batches, the row's segment for packed ones.
pub fn example_rows(hb: &HostBatch) -> Result<ExampleRows> {
    let mut owner = Vec::with_capacity(hb.rows * hb.len);
    let mut offset = 0usize;
    for r in 0..hb.rows {
        let row = r * hb.len..(r + 1) * hb.len;
        match &hb.segment_ids {
            Some(seg) => {
                for i in row.clone() {
                    owner.push((hb.attention_mask[i] != 0 && seg[i] >= 0).then(|| offset + seg[i] as usize));
                }
                offset += seg[row].iter().copied().max().map_or(1, |m| (m + 1).max(1) as usize);
            }
            None => {
                owner.extend(row.map(|i| (hb.attention_mask[i] != 0).then_some(r)));
                offset += 1;
            }
        }
    }
    Ok(ExampleRows::from_token_examples(&owner, hb.examples.len())?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::privacy::AccountantKind;

    fn plan(q: f64) -> DpPlan {
        DpPlan {
            noise_multiplier: 1.0,
            max_grad_norm: 2.0,
            delta: 1e-5,
            sample_rate: q,
            expected_batch: q * 1000.0,
            steps: 10,
            accountant: AccountantKind::Rdp,
        }
    }

    #[test]
    fn poisson_samples_are_reproducible_with_the_expected_size() {
        let dp = DpSgd::new(plan(0.1), 7);
        assert_eq!(dp.sample(3, 1000), dp.sample(3, 1000));
        assert_ne!(dp.sample(3, 1000), dp.sample(4, 1000));
        let mean = (0..200).map(|s| dp.sample(s, 1000).len()).sum::<usize>() as f64 / 200.0;
        assert!((mean - 100.0).abs() < 3.0, "{mean}");
    }

    #[test]
    fn noise_has_the_configured_deviation() {
        let mut store = ParamStore::new();
        let id = store.insert("w", Tensor::from_vec(vec![0f32; 20_000], &[20_000]).unwrap(), true).unwrap();
        let dp = DpSgd::new(plan(0.01), 1);
        let mut grads = Grads::new();
        dp.add_noise(0, &store, &mut grads).unwrap();
        let v = grads.get(id).unwrap().to_vec_f64().unwrap();
        let sd = (v.iter().map(|x| x * x).sum::<f64>() / v.len() as f64).sqrt();
        // σ·C / (q·n) = 1·2 / 10.
        assert!((sd - 0.2).abs() < 0.005, "{sd}");
    }

    #[test]
    fn packed_rows_map_segments_to_examples() {
        let hb = HostBatch {
            rows: 2,
            len: 3,
            input_ids: vec![1; 6],
            attention_mask: vec![1, 1, 1, 1, 1, 0],
            position_ids: vec![0; 6],
            labels: vec![0; 6],
            segment_ids: Some(vec![0, 1, 1, 0, 0, -1]),
            token_type_ids: None,
            targets: vec![],
            examples: vec![5, 9, 2],
        };
        let rows = example_rows(&hb).unwrap();
        let want = ExampleRows::from_token_examples(&[Some(0), Some(1), Some(1), Some(2), Some(2), None], 3).unwrap();
        assert_eq!(rows, want);
    }
}
