//! The seam for training objectives whose loss is not `Model::loss` of one batch: pairs of
//! completions (the DPO family, reward models), unpaired completions (KTO) and sampled
//! completions (GRPO). An objective prepares each micro-batch while it may still change the model
//! (sampling, a reference pass with the adapters switched off), then gives the step's loss; the
//! training loop only accumulates, steps and logs. A new objective is a module with its own
//! tests, an `impl Objective`, and one line in [`for_run`].

use std::any::Any;

use serde_json::{json, Map, Value};
use tunesmith_data::batch::{HostBatch, Loader, LoaderOptions};
use tunesmith_data::encode::Encoded;
use tunesmith_data::tokenizer::Tokenizer;
use tunesmith_engine::{Graph, Var};
use tunesmith_models::Model;

use crate::config::TaskKind;
use crate::error::Result;
use crate::prepare::Prepared;
use crate::RunConfig;

/// What [`Objective::prepare`] hands to [`Objective::step`] (each objective its own type).
pub type Batch = Box<dyn Any>;

/// What one micro-batch gives the training loop.
pub struct ObjectiveStep {
    /// The loss to differentiate; its value is the micro-batch's share of the step's loss.
    pub loss: Var,
    /// Tokens read.
    pub tokens: usize,
    /// The micro-batch's metrics.
    pub metrics: Metrics,
}

/// A training objective beside the per-example losses of `Model::loss`.
pub trait Objective {
    /// Prepares loader batch `hb` before the step's graph borrows the model: what needs the
    /// model mutably (sampling, reference passes) happens here. `seed` varies sampling.
    fn prepare(&self, model: &mut Model, loader: &Loader, hb: &HostBatch, seed: u64) -> Result<Batch>;

    /// The loss of a prepared micro-batch, scaled by its share of `normalizer` (the units of the
    /// whole accumulated step, as `loss_units` counts them).
    fn step<'m>(
        &self,
        model: &'m Model,
        g: &Graph<'m>,
        batch: &Batch,
        normalizer: f64,
        checkpoint: bool,
    ) -> Result<ObjectiveStep>;

    /// Optimizer steps taken on each prepared group of micro-batches (PPO's epochs over a
    /// rollout); the schedule and the step count advance once per group.
    fn passes(&self) -> usize {
        1
    }

    /// Validation metrics (with `loss`) over `examples`.
    fn evaluate(&self, model: &mut Model, examples: &[Encoded], opts: &LoaderOptions) -> Result<Map<String, Value>>;
}

/// Metrics summed over micro-batches: weighted means, minima and maxima by name, in order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Metrics {
    entries: Vec<(String, Aggregate)>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Aggregate {
    Mean { sum: f64, weight: f64 },
    Min(f64),
    Max(f64),
}

impl Metrics {
    fn entry(&mut self, name: &str, fresh: Aggregate) -> &mut Aggregate {
        match self.entries.iter().position(|(n, _)| n == name) {
            Some(i) => &mut self.entries[i].1,
            None => {
                self.entries.push((name.to_string(), fresh));
                &mut self.entries.last_mut().expect("just pushed").1
            }
        }
    }

    /// Adds `mean` over `weight` items to the weighted mean `name`.
    pub fn mean(&mut self, name: &str, mean: f64, weight: f64) {
        if let Aggregate::Mean { sum, weight: w } = self.entry(name, Aggregate::Mean { sum: 0.0, weight: 0.0 }) {
            *sum += mean * weight;
            *w += weight;
        }
    }

    /// Lowers the minimum `name` to `value`.
    pub fn min(&mut self, name: &str, value: f64) {
        if let Aggregate::Min(m) = self.entry(name, Aggregate::Min(f64::INFINITY)) {
            *m = m.min(value);
        }
    }

    /// Raises the maximum `name` to `value`.
    pub fn max(&mut self, name: &str, value: f64) {
        if let Aggregate::Max(m) = self.entry(name, Aggregate::Max(f64::NEG_INFINITY)) {
            *m = m.max(value);
        }
    }

    /// Adds another set's metrics.
    pub fn merge(&mut self, other: &Metrics) {
        for (name, a) in &other.entries {
            match *a {
                Aggregate::Mean { sum, weight } if weight > 0.0 => self.mean(name, sum / weight, weight),
                Aggregate::Mean { .. } => {}
                Aggregate::Min(v) => self.min(name, v),
                Aggregate::Max(v) => self.max(name, v),
            }
        }
    }

    /// Every metric's value.
    pub fn values(&self) -> Map<String, Value> {
        self.entries
            .iter()
            .map(|(name, a)| {
                let v = match *a {
                    Aggregate::Mean { sum, weight } => sum / weight.max(f64::MIN_POSITIVE),
                    Aggregate::Min(v) | Aggregate::Max(v) => v,
                };
                (name.clone(), json!(v))
            })
            .collect()
    }

    /// Metrics from a map of means over `weight` items.
    pub fn from_means(means: &Map<String, Value>, weight: f64) -> Metrics {
        let mut m = Metrics::default();
        for (name, v) in means {
            if let Some(x) = v.as_f64() {
                match name.as_str() {
                    "min_reward" => m.min(name, x),
                    "max_reward" => m.max(name, x),
                    _ => m.mean(name, x, weight),
                }
            }
        }
        m
    }
}

/// The objective of a run, when its task is not a per-example loss: preference losses, KTO,
/// reward models, GRPO, PPO.
pub fn for_run(
    cfg: &RunConfig,
    model: &mut Model,
    has_lora: bool,
    data: &Prepared,
    opts: &LoaderOptions,
    tokenizer: &Tokenizer,
    model_dir: &std::path::Path,
) -> Result<Option<Box<dyn Objective>>> {
    Ok(match cfg.task.kind {
        TaskKind::Preference if cfg.task.loss_or_default() == "kto" => {
            Some(Box::new(crate::preference::kto::Kto::for_run(cfg, model, has_lora, data, opts.pad_id)?))
        }
        TaskKind::Preference | TaskKind::Reward => {
            Some(Box::new(crate::preference::Preference::for_run(cfg, model, has_lora, data, opts)?))
        }
        TaskKind::Grpo => Some(Box::new(crate::grpo::Grpo::for_run(cfg, model, has_lora, data, tokenizer, model_dir)?)),
        TaskKind::Ppo => Some(Box::new(crate::ppo::Ppo::for_run(cfg, model, has_lora, data, tokenizer, model_dir)?)),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_merge_as_weighted_means_and_extremes() {
        let mut a = Metrics::default();
        a.mean("reward", 1.0, 2.0);
        a.min("min_reward", -1.0);
        let mut b = Metrics::default();
        b.mean("reward", 4.0, 1.0);
        b.min("min_reward", -3.0);
        b.max("max_reward", 5.0);
        a.merge(&b);
        let v = a.values();
        assert_eq!(v["reward"], 2.0);
        assert_eq!(v["min_reward"], -3.0);
        assert_eq!(v["max_reward"], 5.0);
        assert_eq!(v.keys().collect::<Vec<_>>(), ["reward", "min_reward", "max_reward"]);
    }
}
