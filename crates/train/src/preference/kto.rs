//! KTO (`task.loss = "kto"`): preference optimization from unpaired completions, each marked
//! desirable or not, as TRL's `KTOTrainer`. A completion's implicit reward β·(log π − log π_ref)
//! is compared with a batch-level KL estimate z₀ (the policy against the reference on mismatched
//! prompt/completion pairs: each prompt with the batch's previous completion, clamped at 0 and
//! not differentiated): desirable completions cost w_d·(1 − σ(β(r − z₀))), undesirable ones
//! w_u·(1 − σ(β(z₀ − r))), averaged over the batch.

use serde_json::{json, Map, Value};
use tunesmith_data::batch::HostBatch;
use tunesmith_data::encode::{Encoded, Target, IGNORE};
use tunesmith_engine::{Graph, Tensor, Var};
use tunesmith_models::Model;

use super::sequences::sequence_logps;
use super::Reference;
use crate::error::{Result, TrainError};
use crate::grpo::completion_batch;

/// KTO's hyper-parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct KtoParams {
    /// β.
    pub beta: f64,
    /// The weight of desirable completions' losses.
    pub desirable_weight: f64,
    /// The weight of undesirable completions' losses.
    pub undesirable_weight: f64,
}

/// One completion's summed log-probs under the policy and the reference, and its label.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct KtoItem {
    /// log π(completion | prompt).
    pub logp: f64,
    /// log π_ref(completion | prompt).
    pub ref_logp: f64,
    /// Whether the completion is desirable.
    pub desirable: bool,
}

/// The batch loss (the mean over completions) and its gradient per completion.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct KtoLoss {
    /// The loss.
    pub value: f64,
    /// ∂loss/∂logp per completion.
    pub grads: Vec<f64>,
}

fn sigmoid(x: f64) -> f64 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}

/// The KL estimate z₀ from mismatched pairs' log-probs: their mean log-ratio, at least 0.
pub fn kl_estimate(policy: &[f64], reference: &[f64]) -> f64 {
    if policy.is_empty() {
        return 0.0;
    }
    let mean = policy.iter().zip(reference).map(|(p, r)| p - r).sum::<f64>() / policy.len() as f64;
    mean.max(0.0)
}

/// KTO's loss of `items` given the KL estimate `kl`.
pub fn kto_loss(p: &KtoParams, items: &[KtoItem], kl: f64) -> KtoLoss {
    let n = items.len().max(1) as f64;
    let mut out = KtoLoss { value: 0.0, grads: Vec::with_capacity(items.len()) };
    for x in items {
        let r = x.logp - x.ref_logp;
        // 1 − σ(s) with s = β(r − z₀) (desirable) or β(z₀ − r); d(1 − σ(s))/ds = −σ(s)(1 − σ(s)).
        let (w, s, ds_dr) = if x.desirable {
            (p.desirable_weight, p.beta * (r - kl), p.beta)
        } else {
            (p.undesirable_weight, p.beta * (kl - r), -p.beta)
        };
        let sig = sigmoid(s);
        out.value += w * (1.0 - sig) / n;
        out.grads.push(-w * sig * (1.0 - sig) * ds_dr / n);
    }
    out
}

/// Sums over completions, reported under KTOTrainer's names.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct KtoStats {
    /// Completions.
    pub completions: usize,
    /// Σ loss × completions (so that merging weights batches by size).
    pub loss: f64,
    /// Desirable completions.
    pub desirable: usize,
    /// Σ reward of desirable completions.
    pub chosen_rewards: f64,
    /// Σ reward of undesirable completions.
    pub rejected_rewards: f64,
    /// Σ log π of desirable completions.
    pub chosen_logps: f64,
    /// Σ log π of undesirable completions.
    pub rejected_logps: f64,
    /// Σ KL estimate × completions.
    pub kl: f64,
}

impl KtoStats {
    /// Merges another set's sums.
    pub fn merge(&mut self, o: &KtoStats) {
        self.completions += o.completions;
        self.loss += o.loss;
        self.desirable += o.desirable;
        self.chosen_rewards += o.chosen_rewards;
        self.rejected_rewards += o.rejected_rewards;
        self.chosen_logps += o.chosen_logps;
        self.rejected_logps += o.rejected_logps;
        self.kl += o.kl;
    }

    /// `loss`, `kl`, `rewards/chosen`, `rewards/rejected`, `rewards/margins`, `logps/chosen`,
    /// `logps/rejected`.
    pub fn metrics(&self) -> Map<String, Value> {
        let n = self.completions.max(1) as f64;
        let (d, u) = (self.desirable.max(1) as f64, (self.completions - self.desirable).max(1) as f64);
        let mut m = Map::new();
        m.insert("loss".into(), json!(self.loss / n));
        m.insert("kl".into(), json!(self.kl / n));
        m.insert("rewards/chosen".into(), json!(self.chosen_rewards / d));
        m.insert("rewards/rejected".into(), json!(self.rejected_rewards / u));
        m.insert("rewards/margins".into(), json!(self.chosen_rewards / d - self.rejected_rewards / u));
        m.insert("logps/chosen".into(), json!(self.chosen_logps / d));
        m.insert("logps/rejected".into(), json!(self.rejected_logps / u));
        m
    }
}

/// A batch of completions ready for the loss: the rows, the reference's log-probs and the KL
/// estimate.
pub struct KtoBatch {
    /// Prompt + completion rows, completions trained.
    pub batch: HostBatch,
    /// Whether each completion is desirable.
    pub desirable: Vec<bool>,
    /// log π_ref of each completion.
    pub ref_logps: Vec<f64>,
    /// z₀.
    pub kl: f64,
}

/// What one micro-batch gives the training loop.
pub struct KtoStep {
    /// The loss to differentiate (value: the batch's share of the step's loss).
    pub loss: Var,
    /// Tokens read.
    pub tokens: usize,
    /// Its statistics.
    pub stats: KtoStats,
}

/// The KTO objective of a run.
pub struct Kto {
    /// The loss's hyper-parameters.
    pub params: KtoParams,
    /// The reference (adapters off, or a frozen copy).
    pub reference: Reference,
    /// The pad id of the batches.
    pub pad_id: u32,
}

/// A completion's prompt (the tokens before the first trained one) and completion.
fn split(e: &Encoded) -> Result<(&[u32], &[u32], bool)> {
    let s = &e.sequence;
    let cut = s.labels.iter().position(|&l| l != IGNORE).unwrap_or(s.input_ids.len());
    let Target::Desirable(d) = e.target else {
        return Err(TrainError::Data(format!(
            "{}: KTO needs unpaired rows with a desirable/undesirable label (schema kto)",
            e.loc
        )));
    };
    Ok((&s.input_ids[..cut], &s.input_ids[cut..], d))
}

impl Kto {
    /// The objective of a run (`task.loss = "kto"`): every training and validation example must
    /// be an unpaired, labelled completion; the reference is the adapters switched off for
    /// LoRA, else a frozen copy.
    pub fn for_run(
        cfg: &crate::RunConfig,
        model: &Model,
        has_lora: bool,
        data: &crate::prepare::Prepared,
        pad_id: u32,
    ) -> Result<Kto> {
        for e in data.train.iter().chain(&data.validation) {
            split(e)?;
        }
        let t = &cfg.task;
        let params = KtoParams {
            beta: t.beta_or_default(),
            desirable_weight: t.desirable_weight,
            undesirable_weight: t.undesirable_weight,
        };
        let reference = if has_lora { Reference::AdaptersOff } else { Reference::Frozen(Box::new(model.clone())) };
        Ok(Kto { params, reference, pad_id })
    }

    /// Summed log-probs of each row's completion under `m` (no graph kept).
    fn scores(m: &Model, hb: &HostBatch) -> Result<Vec<f64>> {
        Ok(sequence_logps(m, &Graph::inference(), hb, false, false)?.values)
    }

    /// The reference's scores of `hb` (the adapters switched off, or the frozen copy).
    fn reference_scores(&self, model: &mut Model, hb: &HostBatch) -> Result<Vec<f64>> {
        match &self.reference {
            Reference::AdaptersOff => {
                tunesmith_models::lora::set_active(model, false);
                let out = Self::scores(model, hb);
                tunesmith_models::lora::set_active(model, true);
                out
            }
            Reference::Frozen(m) => Self::scores(m, hb),
            _ => Err(TrainError::Config("KTO needs a reference model (LoRA or a frozen copy)".into())),
        }
    }

    /// The rows of `examples[ids]` (in order) and of their mismatched KL pairs (prompt k with
    /// completion k − 1, the first with the last, as KTOTrainer rotates within a batch), scored
    /// by the reference, with the KL estimate.
    pub fn prepare(&self, model: &mut Model, examples: &[Encoded], ids: &[usize]) -> Result<KtoBatch> {
        let parts = ids.iter().map(|&i| split(&examples[i])).collect::<Result<Vec<_>>>()?;
        let seqs: Vec<(&[u32], &[u32])> = parts.iter().map(|(p, c, _)| (*p, *c)).collect();
        let n = seqs.len();
        let mismatched: Vec<(&[u32], &[u32])> = (0..n).map(|k| (seqs[k].0, seqs[(k + n - 1) % n].1)).collect();
        let (batch, _) = completion_batch(&seqs, self.pad_id);
        let (kl_batch, _) = completion_batch(&mismatched, self.pad_id);
        let ref_logps = self.reference_scores(model, &batch)?;
        let kl = kl_estimate(&Self::scores(model, &kl_batch)?, &self.reference_scores(model, &kl_batch)?);
        Ok(KtoBatch { batch, desirable: parts.iter().map(|p| p.2).collect(), ref_logps, kl })
    }

    /// The loss of a prepared batch, scaled by its completions over `normalizer` (those of the
    /// whole accumulated step).
    pub fn step<'m>(
        &self,
        model: &'m Model,
        g: &Graph<'m>,
        b: &KtoBatch,
        normalizer: f64,
        checkpoint: bool,
    ) -> Result<KtoStep> {
        let s = sequence_logps(model, g, &b.batch, false, checkpoint)?;
        let items: Vec<KtoItem> = s
            .values
            .iter()
            .zip(&b.ref_logps)
            .zip(&b.desirable)
            .map(|((&logp, &ref_logp), &desirable)| KtoItem { logp, ref_logp, desirable })
            .collect();
        let out = kto_loss(&self.params, &items, b.kl);
        let scale = items.len() as f64 / normalizer;
        let w: Vec<f32> = out.grads.iter().map(|d| (d * scale) as f32).collect();
        let dtype = s.sums.value().dtype();
        let weights = g.input(Tensor::from_vec(w.clone(), &[w.len(), 1])?.to_dtype(dtype)?);
        let surrogate = g.sum(&g.mul(&s.sums, &weights)?)?;
        let offset = out.value * scale - s.values.iter().zip(&w).map(|(v, w)| v * f64::from(*w)).sum::<f64>();
        let loss = g.add(&surrogate, &g.input(Tensor::full(&[], offset, dtype, surrogate.value().device())?))?;
        let mut stats =
            KtoStats { completions: items.len(), loss: out.value * items.len() as f64, ..KtoStats::default() };
        stats.kl = b.kl * items.len() as f64;
        for x in &items {
            let reward = self.params.beta * (x.logp - x.ref_logp);
            if x.desirable {
                stats.desirable += 1;
                stats.chosen_rewards += reward;
                stats.chosen_logps += x.logp;
            } else {
                stats.rejected_rewards += reward;
                stats.rejected_logps += x.logp;
            }
        }
        Ok(KtoStep { loss, tokens: b.batch.tokens(), stats })
    }

    /// The loss and KTOTrainer's metrics over `examples`, in batches of `batch_size`.
    pub fn evaluate(&self, model: &mut Model, examples: &[Encoded], batch_size: usize) -> Result<Map<String, Value>> {
        let mut stats = KtoStats::default();
        let ids: Vec<usize> = (0..examples.len()).collect();
        for chunk in ids.chunks(batch_size.max(2)) {
            let b = self.prepare(model, examples, chunk)?;
            let g = Graph::inference();
            stats.merge(&self.step(model, &g, &b, chunk.len() as f64, false)?.stats);
        }
        Ok(stats.metrics())
    }
}

impl KtoStats {
    /// The metrics, each weighted by the completions it averages over.
    fn weighted(&self) -> crate::objective::Metrics {
        let mut m = crate::objective::Metrics::default();
        let means = self.metrics();
        let (n, d) = (self.completions as f64, self.desirable as f64);
        for (name, v) in &means {
            let weight = if name.ends_with("/chosen") {
                d
            } else if name.ends_with("/rejected") {
                n - d
            } else {
                n
            };
            // A margin needs both kinds in the batch.
            if name == "rewards/margins" && (d == 0.0 || d == n) {
                continue;
            }
            if weight > 0.0 {
                m.mean(name, v.as_f64().unwrap_or(0.0), weight);
            }
        }
        m
    }
}

impl crate::objective::Objective for Kto {
    fn prepare(
        &self,
        model: &mut Model,
        loader: &tunesmith_data::batch::Loader,
        hb: &HostBatch,
        _seed: u64,
    ) -> Result<crate::objective::Batch> {
        Ok(Box::new(Kto::prepare(self, model, loader.examples(), &hb.examples)?))
    }

    fn step<'m>(
        &self,
        model: &'m Model,
        g: &Graph<'m>,
        batch: &crate::objective::Batch,
        normalizer: f64,
        checkpoint: bool,
    ) -> Result<crate::objective::ObjectiveStep> {
        let b = batch.downcast_ref::<KtoBatch>().ok_or_else(|| TrainError::Config("not a KTO batch".into()))?;
        let s = Kto::step(self, model, g, b, normalizer, checkpoint)?;
        Ok(crate::objective::ObjectiveStep { loss: s.loss, tokens: s.tokens, metrics: s.stats.weighted() })
    }

    fn evaluate(
        &self,
        model: &mut Model,
        examples: &[Encoded],
        opts: &tunesmith_data::batch::LoaderOptions,
    ) -> Result<Map<String, Value>> {
        Kto::evaluate(self, model, examples, opts.batch_size)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gradients_match_finite_differences() {
        let items = vec![
            KtoItem { logp: -10.0, ref_logp: -11.0, desirable: true },
            KtoItem { logp: -20.0, ref_logp: -18.5, desirable: false },
            KtoItem { logp: -5.0, ref_logp: -5.2, desirable: false },
            KtoItem { logp: -7.0, ref_logp: -9.0, desirable: true },
        ];
        let p = KtoParams { beta: 0.3, desirable_weight: 1.0, undesirable_weight: 1.33 };
        let out = kto_loss(&p, &items, 0.4);
        for k in 0..items.len() {
            let at = |d: f64| {
                let mut x = items.clone();
                x[k].logp += d;
                kto_loss(&p, &x, 0.4).value
            };
            let numeric = (at(1e-6) - at(-1e-6)) / 2e-6;
            assert!((numeric - out.grads[k]).abs() < 1e-8, "item {k}: {numeric} vs {}", out.grads[k]);
        }
        assert_eq!(kl_estimate(&[-3.0, -2.0], &[-1.0, -1.0]), 0.0, "a negative estimate is clamped");
        assert!((kl_estimate(&[-1.0, -2.0], &[-2.0, -2.0]) - 0.5).abs() < 1e-12);
    }
}
