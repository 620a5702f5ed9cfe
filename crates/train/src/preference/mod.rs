//! Learning from prompt / chosen / rejected pairs: preference optimization of a policy
//! (`task.kind = "preference"`, DPO and its family) and reward models (`task.kind = "reward"`,
//! Bradley–Terry on a scalar head). Both sequences of every pair go through the model in one
//! forward pass (stacked, or packed without padding). A policy loss compares against a reference,
//! the frozen base: the same weights with the LoRA adapters switched off, a frozen copy for a full
//! fine-tune, or log-probs computed once before training (`task.precompute_ref`).

pub mod kto;
pub mod loss;
pub mod reward;
mod sequences;
pub mod stats;
pub mod win_rate;

use serde_json::{Map, Value};
use tunesmith_data::batch::{HostBatch, Loader, LoaderOptions, Position};
use tunesmith_data::encode::Encoded;
use tunesmith_data::pairs::stack;
use tunesmith_engine::{Graph, Tensor, Var};
use tunesmith_models::Model;

use crate::error::{Result, TrainError};
use loss::{pair_loss, LossParams, PairLogps};
use reward::{bradley_terry, RewardParams};
use sequences::{reward_scores, sequence_logps, SequenceLogps};
pub use stats::PairStats;

/// What a pair's two sequences are scored by, and the loss on the two scores.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum PairObjective {
    /// The policy's summed log-probs of each completion, with a DPO-family loss.
    Policy(LossParams),
    /// A reward model's scalar output for each whole sequence, with the Bradley–Terry loss.
    Reward(RewardParams),
}

/// Where the reference log-probabilities come from.
pub enum Reference {
    /// Reference-free losses (SimPO, ORPO).
    None,
    /// The policy with its LoRA adapters switched off: no second copy of the weights.
    AdaptersOff,
    /// A frozen copy of the starting model (full fine-tuning).
    Frozen(Box<Model>),
    /// Computed once before training, per example: `[chosen, rejected]` for the training and the
    /// validation examples.
    Precomputed { train: Vec<[f64; 2]>, validation: Vec<[f64; 2]> },
}

/// What one micro-batch of pairs gives the training loop.
pub struct PairStep {
    /// The loss to differentiate: its value is the batch's loss over `normalizer`, its gradient
    /// that of the preference loss.
    pub loss: Var,
    /// Tokens read (both completions).
    pub tokens: usize,
    /// The batch's statistics.
    pub stats: PairStats,
}

/// Turns encoded preference pairs into loader examples: the chosen sequence first, the rejected
/// one as the example's second part (so that both batch together).
pub fn as_loader_examples(examples: Vec<Encoded>) -> Result<Vec<Encoded>> {
    examples
        .into_iter()
        .map(|mut e| match e.rejected.take() {
            Some(r) => {
                e.others = vec![r];
                Ok(e)
            }
            None => Err(TrainError::Data(format!(
                "{}: this preference loss needs chosen and rejected completions; for unpaired rows with a \
                 desirable/undesirable label use task.loss = \"kto\"",
                e.loc
            ))),
        })
        .collect()
}

/// A prepared pair batch: both completions of each pair and their reference log-probs.
struct PreparedPairs {
    both: HostBatch,
    reference: Vec<f64>,
}

impl crate::objective::Objective for Preference {
    fn prepare(
        &self,
        model: &mut Model,
        loader: &Loader,
        hb: &HostBatch,
        _seed: u64,
    ) -> Result<crate::objective::Batch> {
        let both = Self::pair_batch(loader, hb);
        let reference = self.reference_logps(model, &both, true)?;
        Ok(Box::new(PreparedPairs { both, reference }))
    }

    fn step<'m>(
        &self,
        model: &'m Model,
        g: &Graph<'m>,
        batch: &crate::objective::Batch,
        normalizer: f64,
        checkpoint: bool,
    ) -> Result<crate::objective::ObjectiveStep> {
        let b = batch.downcast_ref::<PreparedPairs>().ok_or_else(|| TrainError::Config("not a pair batch".into()))?;
        let s = Preference::step(self, model, g, &b.both, &b.reference, normalizer, checkpoint)?;
        let metrics = crate::objective::Metrics::from_means(&self.metrics(&s.stats), s.stats.pairs as f64);
        Ok(crate::objective::ObjectiveStep { loss: s.loss, tokens: s.tokens, metrics })
    }

    fn evaluate(&self, model: &mut Model, examples: &[Encoded], opts: &LoaderOptions) -> Result<Map<String, Value>> {
        Preference::evaluate(self, model, examples, opts)
    }
}

/// Loader options for scoring (evaluation, precomputing): `opts`' batch size, length and pad
/// id, in a fixed order sorted by length, unpacked.
fn scoring(opts: &LoaderOptions) -> LoaderOptions {
    LoaderOptions {
        batch_size: opts.batch_size,
        max_length: opts.max_length,
        pad_id: opts.pad_id,
        shuffle: false,
        group_by_length: true,
        packing: false,
        padding_free: false,
        ..LoaderOptions::default()
    }
}

/// The pairwise objective of a run.
pub struct Preference {
    /// The scores and the loss.
    pub objective: PairObjective,
    /// The reference.
    pub reference: Reference,
    /// Whether training batches are packed without padding (`data.padding_free`).
    pub packed: bool,
}

impl Preference {
    /// The objective of a run: its loss from `[task]` and its reference, chosen as TRL chooses
    /// it: precomputed when asked, the adapters switched off for LoRA, else a frozen copy.
    pub fn for_run(
        cfg: &crate::RunConfig,
        model: &mut Model,
        has_lora: bool,
        data: &crate::prepare::Prepared,
        opts: &LoaderOptions,
    ) -> Result<Preference> {
        let t = &cfg.task;
        let packed = cfg.data.padding_free;
        if t.kind == crate::config::TaskKind::Reward {
            let objective = PairObjective::Reward(RewardParams { margin: t.margin, center: t.center_rewards });
            return Ok(Preference { objective, reference: Reference::None, packed });
        }
        let loss = t
            .loss_or_default()
            .parse::<loss::PreferenceLoss>()
            .map_err(|why| TrainError::Config(format!("task.loss: {why}")))?;
        let params = LossParams { loss, beta: t.beta_or_default(), gamma: t.gamma, label_smoothing: t.label_smoothing };
        let reference = if !loss.needs_reference() {
            Reference::None
        } else if t.precompute_ref {
            let opts = LoaderOptions { batch_size: cfg.eval.batch_size, ..opts.clone() };
            // The reference is the model before training: its adapters (fresh ones are zero) off.
            tunesmith_models::lora::set_active(model, false);
            let train = Self::precompute(model, &data.train, &opts);
            let validation = Self::precompute(model, &data.validation, &opts);
            tunesmith_models::lora::set_active(model, true);
            Reference::Precomputed { train: train?, validation: validation? }
        } else if has_lora {
            Reference::AdaptersOff
        } else {
            Reference::Frozen(Box::new(model.clone()))
        };
        Ok(Preference { objective: PairObjective::Policy(params), reference, packed })
    }

    /// Both completions of the pairs in loader batch `hb` (its chosen sequences) as one batch.
    pub fn pair_batch(loader: &Loader, hb: &HostBatch) -> HostBatch {
        // Preference runs never pack across examples: loader rows are example ids.
        let rejected = loader.collate_part(&hb.examples, 1);
        stack(&[hb.clone(), rejected], loader.options().pad_id)
    }

    /// The reference log-probs of a pair batch's members (in its member order); `train` picks
    /// the precomputed set. Zeros for reference-free losses.
    pub fn reference_logps(&self, model: &mut Model, both: &HostBatch, train: bool) -> Result<Vec<f64>> {
        let packed = train && self.packed;
        let n = both.examples.len() / 2;
        let from_model = |m: &Model| -> Result<Vec<f64>> {
            let g = Graph::inference();
            Ok(sequence_logps(m, &g, both, packed, false)?.values)
        };
        match &self.reference {
            Reference::None => Ok(vec![0.0; 2 * n]),
            Reference::AdaptersOff => {
                tunesmith_models::lora::set_active(model, false);
                let out = from_model(model);
                tunesmith_models::lora::set_active(model, true);
                out
            }
            Reference::Frozen(m) => from_model(m),
            Reference::Precomputed { train: t, validation: v } => {
                let table = if train { t } else { v };
                // Members 0..n are chosen completions, the rest rejected ones.
                let pick = |k: usize| table.get(both.examples[k]).map_or(0.0, |r| r[usize::from(k >= n)]);
                Ok((0..2 * n).map(pick).collect())
            }
        }
    }

    /// The loss of a pair batch (`both`, from [`Preference::pair_batch`]) divided by
    /// `normalizer` (the pairs of the whole accumulated batch).
    pub fn step<'m>(
        &self,
        model: &'m Model,
        g: &Graph<'m>,
        both: &HostBatch,
        reference: &[f64],
        normalizer: f64,
        checkpoint: bool,
    ) -> Result<PairStep> {
        let s = self.member_scores(model, g, both, self.packed, checkpoint)?;
        let (pairs, rejected_of, out) = self.score(both, &s, reference);
        let mut grad = vec![0f32; s.values.len()];
        for (k, &j) in rejected_of.iter().enumerate() {
            grad[k] = (out.d_chosen[k] / normalizer) as f32;
            grad[j] = (out.d_rejected[k] / normalizer) as f32;
        }
        let dtype = s.sums.value().dtype();
        let weights = g.input(Tensor::from_vec(grad.clone(), &[grad.len(), 1])?.to_dtype(dtype)?);
        let surrogate = g.sum(&g.mul(&s.sums, &weights)?)?;
        // The surrogate has the loss's gradient; a constant brings its value to the loss's.
        let offset = out.sum / normalizer - s.values.iter().zip(&grad).map(|(v, w)| v * f64::from(*w)).sum::<f64>();
        let loss = g.add(&surrogate, &g.input(Tensor::full(&[], offset, dtype, surrogate.value().device())?))?;
        let mut stats = PairStats::default();
        stats.add(&pairs, &out);
        Ok(PairStep { loss, tokens: both.tokens(), stats })
    }

    /// Pairs and their loss from member log-probs and the reference (per member), with the
    /// member index of each pair's rejected completion. The chosen completions are members
    /// 0..n in the order of the loader batch; packing may order the rejected ones differently.
    fn score(
        &self,
        both: &HostBatch,
        s: &SequenceLogps,
        reference: &[f64],
    ) -> (Vec<PairLogps>, Vec<usize>, loss::PairLoss) {
        let n = s.values.len() / 2;
        let rejected_of: Vec<usize> =
            (0..n).map(|k| (n..2 * n).find(|&j| both.examples[j] == both.examples[k]).unwrap_or(n + k)).collect();
        let pairs: Vec<PairLogps> = (0..n)
            .map(|k| {
                let j = rejected_of[k];
                PairLogps {
                    chosen: s.values[k],
                    rejected: s.values[j],
                    ref_chosen: reference.get(k).copied().unwrap_or(0.0),
                    ref_rejected: reference.get(j).copied().unwrap_or(0.0),
                    chosen_tokens: s.tokens[k],
                    rejected_tokens: s.tokens[j],
                }
            })
            .collect();
        let out = match &self.objective {
            PairObjective::Policy(p) => pair_loss(p, &pairs),
            PairObjective::Reward(p) => bradley_terry(p, &pairs),
        };
        (pairs, rejected_of, out)
    }

    /// Each member sequence's score: its summed log-probs (a policy) or its reward.
    fn member_scores<'m>(
        &self,
        model: &'m Model,
        g: &Graph<'m>,
        both: &HostBatch,
        packed: bool,
        checkpoint: bool,
    ) -> Result<SequenceLogps> {
        match self.objective {
            PairObjective::Policy(_) => sequence_logps(model, g, both, packed, checkpoint),
            PairObjective::Reward(_) => reward_scores(model, g, both, packed, checkpoint),
        }
    }

    /// A stats summary under the names of the TRL trainer of this objective.
    pub fn metrics(&self, stats: &PairStats) -> Map<String, Value> {
        match self.objective {
            PairObjective::Policy(_) => stats.metrics(),
            PairObjective::Reward(_) => stats.reward_metrics(),
        }
    }

    /// Scores validation pairs: the loss and TRL's reward metrics over all of them.
    pub fn evaluate(
        &self,
        model: &mut Model,
        examples: &[Encoded],
        opts: &LoaderOptions,
    ) -> Result<Map<String, Value>> {
        let loader = Loader::new(examples.to_vec(), scoring(opts))?;
        let mut stats = PairStats::default();
        for (_, hb) in loader.epoch_from(Position::default()) {
            let both = Self::pair_batch(&loader, &hb);
            let reference = self.reference_logps(model, &both, false)?;
            let g = Graph::inference();
            let s = self.member_scores(model, &g, &both, false, false)?;
            let (pairs, _, out) = self.score(&both, &s, &reference);
            stats.add(&pairs, &out);
        }
        Ok(self.metrics(&stats))
    }

    /// Reference log-probs `[chosen, rejected]` of every example, computed once (batched).
    pub fn precompute(model: &Model, examples: &[Encoded], opts: &LoaderOptions) -> Result<Vec<[f64; 2]>> {
        let mut out = vec![[0.0; 2]; examples.len()];
        if examples.is_empty() {
            return Ok(out);
        }
        let loader = Loader::new(examples.to_vec(), scoring(opts))?;
        for (_, hb) in loader.epoch_from(Position::default()) {
            let both = Self::pair_batch(&loader, &hb);
            let g = Graph::inference();
            let v = sequence_logps(model, &g, &both, false, false)?.values;
            let n = v.len() / 2;
            for (k, &x) in v.iter().enumerate() {
                out[both.examples[k]][usize::from(k >= n)] = x;
            }
        }
        Ok(out)
    }
}
