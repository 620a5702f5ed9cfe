//! PPO (`task.kind = "ppo"`): RLHF against a reward model. Each step samples one completion of
//! every prompt with the KV cache (temperature, top-p), scores it with the reward model of a
//! `reward` run (`task.reward_model`), rewards each token with −β·KL to the reference (the LoRA
//! adapters switched off, or a frozen copy) and the last one with the score, estimates
//! advantages with GAE over a value head on the policy (`v_head.summary`, trained beside it and
//! not exported), and takes `task.ppo_epochs` optimizer steps on the rollout with the clipped
//! policy and value losses. β is fixed, or adapted toward `task.kl_target`.
//! Prompts come from chat data as GRPO's do: the conversation up to the assistant turn.

pub mod gae;
pub mod kl_control;
pub mod loss;

use serde_json::{json, Map, Value};
use tunesmith_data::batch::{HostBatch, Loader, LoaderOptions, Position};
use tunesmith_data::encode::Encoded;
use tunesmith_data::tokenizer::Tokenizer;
use tunesmith_engine::{DType, Device, Graph, ParamId, Tensor, Var};
use tunesmith_models::generate::{generate, FinishReason, GenerationConfig};
use tunesmith_models::model::VALUE_HEAD_PREFIX;
use tunesmith_models::{Model, Task};

use crate::error::{Result, TrainError};
use crate::grpo::{completion_batch, prompts, reference_logps, span_values, surrogate_loss, Prompt, RefPolicy};
use crate::objective::{Batch, Metrics, Objective, ObjectiveStep};
use gae::{targets, Trajectory};
use kl_control::KlController;
use loss::{ppo_loss, PpoParams, Sample};

/// A sampled, scored micro-batch of completions with its PPO targets.
pub struct Rollout {
    /// Prompt + completion rows, the completions' tokens labelled.
    pub batch: HostBatch,
    /// Per completion: (row, first completion position, tokens).
    pub spans: Vec<(usize, usize, usize)>,
    /// Per completion and token: the sampling policy's log-probs.
    pub old_logps: Vec<Vec<f64>>,
    /// Per completion and token: the value head's estimates at sampling time.
    pub old_values: Vec<Vec<f64>>,
    /// Per completion and token: whitened advantages.
    pub advantages: Vec<Vec<f64>>,
    /// Per completion and token: returns.
    pub returns: Vec<Vec<f64>>,
    /// Prompts in the micro-batch.
    pub prompts: usize,
    /// What sampling and scoring saw (means over completions).
    pub metrics: Metrics,
}

/// The PPO objective of a run.
pub struct Ppo {
    /// The clipped losses' settings.
    pub params: PpoParams,
    /// β of the per-token KL penalty.
    pub kl: KlController,
    /// GAE's discount γ.
    pub discount: f64,
    /// GAE's λ.
    pub lambda: f64,
    /// Subtracted from the score of a completion cut at max_new_tokens (no end of sequence).
    pub missing_eos_penalty: Option<f64>,
    /// Optimizer steps per rollout.
    pub epochs: usize,
    /// Sampling settings.
    pub generation: GenerationConfig,
    /// The KL reference.
    pub reference: RefPolicy,
    /// The reward model (one output per sequence).
    pub reward_model: Model,
    /// The value head: weight `[1, D]` and bias `[1]` in the policy's parameter store.
    pub value_head: (ParamId, ParamId),
    /// Training prompts, by example index.
    pub train: Vec<Prompt>,
    /// Validation prompts, by example index.
    pub validation: Vec<Prompt>,
}

/// Adds the value head `v_head.summary` (zero-initialized: every estimate starts at 0) to the
/// policy's parameters, or finds it when a checkpoint's parameters are already there.
fn value_head(model: &mut Model) -> Result<(ParamId, ParamId)> {
    let (w, b) = (format!("{VALUE_HEAD_PREFIX}summary.weight"), format!("{VALUE_HEAD_PREFIX}summary.bias"));
    if let (Some(w), Some(b)) = (model.params.id(&w), model.params.id(&b)) {
        return Ok((w, b));
    }
    let d = model.config.hidden_size;
    let w = model.params.insert(w, Tensor::zeros(&[1, d], DType::F32, Device::Cpu)?, true)?;
    let b = model.params.insert(b, Tensor::zeros(&[1], DType::F32, Device::Cpu)?, true)?;
    Ok((w, b))
}

impl Ppo {
    /// The objective of a run from `[task]`: the reward model, the value head, the reference (the
    /// adapters switched off for LoRA, a frozen copy for a full fine-tune) and the prompts.
    pub fn for_run(
        cfg: &crate::RunConfig,
        model: &mut Model,
        has_lora: bool,
        data: &crate::prepare::Prepared,
        tokenizer: &Tokenizer,
        model_dir: &std::path::Path,
    ) -> Result<Ppo> {
        let t = &cfg.task;
        let path = t.reward_model.as_deref().ok_or_else(|| {
            TrainError::Config("task.reward_model: PPO needs a reward model (a reward run's final/model)".into())
        })?;
        let reward_model = crate::load::load_model(
            path,
            Task::SequenceClassification,
            None,
            0,
            tunesmith_models::quantize::BaseQuant::None,
        )?;
        if reward_model.config.num_labels != 1 {
            return Err(TrainError::Config(format!(
                "task.reward_model = \"{path}\" has {} outputs; a reward model has one (a reward run's final/model)",
                reward_model.config.num_labels
            )));
        }
        if reward_model.config.vocab_size != model.config.vocab_size {
            return Err(TrainError::Config(format!(
                "task.reward_model = \"{path}\": its vocabulary ({} tokens) differs from the policy's ({}); it must share the policy's tokenizer",
                reward_model.config.vocab_size, model.config.vocab_size
            )));
        }
        let beta = t.beta_or_default();
        let reference = RefPolicy::for_run(beta, has_lora, model);
        Ok(Ppo {
            params: PpoParams { epsilon: t.epsilon, value_clip: t.value_clip, vf_coef: t.vf_coef },
            kl: KlController::new(beta, t.kl_target, t.kl_horizon),
            discount: t.discount,
            lambda: t.gae_lambda,
            missing_eos_penalty: t.missing_eos_penalty,
            epochs: t.ppo_epochs,
            generation: crate::grpo::sampling(t, model, tokenizer, model_dir)?,
            reference,
            reward_model,
            value_head: value_head(model)?,
            train: prompts(&data.train, tokenizer)?,
            validation: prompts(&data.validation, tokenizer)?,
        })
    }

    /// The reward model's scores of prompt + completion sequences.
    fn scores(&self, prompts: &[Vec<u32>], completions: &[Vec<u32>]) -> Result<Vec<f64>> {
        crate::preference::win_rate::score(&self.reward_model, prompts, completions, self.generation.pad_token_id)
    }

    /// Samples a completion of each prompt of loader batch `hb`, scores it, and computes the
    /// PPO targets; adapts β to the rollout's KL.
    pub fn rollout(&self, model: &mut Model, hb: &HostBatch, seed: u64) -> Result<Rollout> {
        let ids: Vec<Vec<u32>> = hb.examples.iter().map(|&i| self.train[i].ids.clone()).collect();
        let out = generate(model, &ids, &GenerationConfig { seed, ..self.generation.clone() }, None)?;
        let mut scores = self.scores(&ids, &out.tokens)?;
        let missing_eos: Vec<bool> = out.finish.iter().map(|f| *f == FinishReason::Length).collect();
        if let Some(p) = self.missing_eos_penalty {
            for (s, &m) in scores.iter_mut().zip(&missing_eos) {
                if m {
                    *s -= p;
                }
            }
        }
        let seqs: Vec<(&[u32], &[u32])> =
            ids.iter().zip(&out.tokens).map(|(p, c)| (p.as_slice(), c.as_slice())).collect();
        let (batch, spans) = completion_batch(&seqs, self.generation.pad_token_id);
        let (_, _, old_logps, old_values) = self.forward(model, &Graph::inference(), &batch, &spans, false)?;
        let ref_logps = reference_logps(&self.reference, model, &batch, &spans)?;
        let trajectories: Vec<Trajectory> = (0..spans.len())
            .map(|k| Trajectory {
                logps: old_logps[k].clone(),
                ref_logps: ref_logps.get(k).cloned().unwrap_or_default(),
                values: old_values[k].clone(),
                score: scores[k],
            })
            .collect();
        let beta = self.kl.coef();
        let t = targets(&trajectories, beta, self.discount, self.lambda);
        let n = spans.len() as f64;
        let mean = |f: &dyn Fn(usize) -> f64| (0..spans.len()).map(f).sum::<f64>() / n.max(1.0);
        let kl = mean(&|k| t[k].kl);
        self.kl.update(kl, spans.len());
        let mut metrics = Metrics::default();
        metrics.mean("objective/scores", mean(&|k| scores[k]), n);
        metrics.mean("objective/kl", kl, n);
        metrics.mean("objective/entropy", mean(&|k| -old_logps[k].iter().sum::<f64>()), n);
        metrics.mean("objective/non_score_reward", mean(&|k| -beta * t[k].kl), n);
        metrics.mean("objective/rlhf_reward", mean(&|k| scores[k] - beta * t[k].kl), n);
        metrics.mean("objective/kl_coef", beta, n);
        metrics.mean("completions/mean_length", mean(&|k| spans[k].2 as f64), n);
        metrics.mean("completions/clipped_ratio", mean(&|k| f64::from(u8::from(missing_eos[k]))), n);
        metrics.mean("val/mean_return", t.iter().flat_map(|x| &x.returns).sum::<f64>() / total(&t), total(&t));
        Ok(Rollout {
            batch,
            spans,
            old_logps,
            old_values,
            advantages: t.iter().map(|x| x.advantages.clone()).collect(),
            returns: t.into_iter().map(|x| x.returns).collect(),
            prompts: ids.len(),
            metrics,
        })
    }

    /// One pass of the policy over a completion batch: the per-position log-probs `[B·T]` and
    /// values `[B·T]` (differentiable), and per completion its tokens' log-probs and values.
    #[allow(clippy::type_complexity)]
    fn forward<'m>(
        &self,
        model: &'m Model,
        g: &Graph<'m>,
        hb: &HostBatch,
        spans: &[(usize, usize, usize)],
        checkpoint: bool,
    ) -> Result<(Var, Var, Vec<Vec<f64>>, Vec<Vec<f64>>)> {
        let batch = crate::trainer::to_batch(hb, false, model.config.position_offset)?;
        let labels =
            Tensor::from_vec(hb.labels.iter().map(|&l| i64::from(l)).collect::<Vec<i64>>(), &[hb.rows, hb.len])?;
        let h = model.hidden_states(g, &batch, checkpoint)?;
        let lp = model.token_logprobs_of_hidden(g, &h, &labels)?;
        let d = h.shape()[2];
        let flat = g.reshape(&h, &[hb.rows * hb.len, d])?;
        let (w, b) = (g.param(&model.params, self.value_head.0), g.param(&model.params, self.value_head.1));
        let values = g.reshape(&g.linear(&flat, &w, Some(&b))?, &[hb.rows * hb.len])?;
        // The value read with token j's log-prob is the state's before token j.
        let lps = span_values(&lp.value().to_vec_f64()?, hb.len, spans);
        let vs = span_values(&values.value().to_vec_f64()?, hb.len, spans);
        Ok((lp, values, lps, vs))
    }

    /// The clipped PPO loss of a rollout under the current policy, scaled by its prompts over
    /// `normalizer`: a surrogate whose gradient is the loss's and whose value is the loss.
    pub fn policy_step<'m>(
        &self,
        model: &'m Model,
        g: &Graph<'m>,
        r: &Rollout,
        normalizer: f64,
        checkpoint: bool,
    ) -> Result<ObjectiveStep> {
        let (lp, values, logps, vs) = self.forward(model, g, &r.batch, &r.spans, checkpoint)?;
        let samples: Vec<Sample> = (0..r.spans.len())
            .map(|k| Sample {
                logps: logps[k].clone(),
                old_logps: r.old_logps[k].clone(),
                advantages: r.advantages[k].clone(),
                values: vs[k].clone(),
                old_values: r.old_values[k].clone(),
                returns: r.returns[k].clone(),
            })
            .collect();
        let out = ppo_loss(&self.params, &samples);
        let scale = r.prompts as f64 / normalizer;
        let terms = [(&lp, out.logp_grads.as_slice()), (&values, out.value_grads.as_slice())];
        let loss = surrogate_loss(g, &terms, r.batch.len, &r.spans, scale, out.value)?;
        let mut metrics = r.metrics.clone();
        let c = r.spans.len() as f64;
        metrics.mean("loss/policy_avg", out.policy, c);
        metrics.mean("loss/value_avg", out.value_loss, c);
        metrics.mean("policy/clipfrac_avg", out.clip_fraction, c);
        metrics.mean("val/clipfrac_avg", out.value_clip_fraction, c);
        metrics.mean("policy/approxkl_avg", out.approx_kl, c);
        metrics.mean("val/ratio", out.ratio, c);
        Ok(ObjectiveStep { loss, tokens: r.batch.tokens(), metrics })
    }

    /// Greedy completions of the validation prompts, scored by the reward model: the mean score
    /// (`reward`), the mean length, and the KL to the reference on those completions.
    pub fn evaluate(&self, model: &mut Model, examples: &[Encoded], batch_size: usize) -> Result<Map<String, Value>> {
        let loader = Loader::new(
            examples.to_vec(),
            LoaderOptions { batch_size, shuffle: false, max_length: usize::MAX, ..LoaderOptions::default() },
        )?;
        let cfg = GenerationConfig { do_sample: false, ..self.generation.clone() };
        let (mut reward, mut length, mut kl, mut n) = (0.0, 0usize, 0.0, 0usize);
        for (_, hb) in loader.epoch_from(Position::default()) {
            let ids: Vec<Vec<u32>> = hb.examples.iter().map(|&i| self.validation[i].ids.clone()).collect();
            let out = generate(model, &ids, &cfg, None)?;
            reward += self.scores(&ids, &out.tokens)?.iter().sum::<f64>();
            length += out.tokens.iter().map(Vec::len).sum::<usize>();
            let seqs: Vec<(&[u32], &[u32])> =
                ids.iter().zip(&out.tokens).map(|(p, c)| (p.as_slice(), c.as_slice())).collect();
            let (batch, spans) = completion_batch(&seqs, self.generation.pad_token_id);
            let refs = reference_logps(&self.reference, model, &batch, &spans)?;
            if !refs.is_empty() {
                let (_, _, lps, _) = self.forward(model, &Graph::inference(), &batch, &spans, false)?;
                kl += lps.iter().zip(&refs).map(|(a, b)| a.iter().zip(b).map(|(x, y)| x - y).sum::<f64>()).sum::<f64>();
            }
            n += ids.len();
        }
        let n = n.max(1) as f64;
        let mut m = Map::new();
        m.insert("reward".into(), json!(reward / n));
        m.insert("completions/mean_length".into(), json!(length as f64 / n));
        m.insert("kl".into(), json!(kl / n));
        // Training minimizes a loss; for validation, the negative mean reward stands in for it.
        m.insert("loss".into(), json!(-reward / n));
        Ok(m)
    }
}

fn total(t: &[gae::Targets]) -> f64 {
    t.iter().map(|x| x.returns.len()).sum::<usize>().max(1) as f64
}

impl Objective for Ppo {
    fn prepare(&self, model: &mut Model, _loader: &Loader, hb: &HostBatch, seed: u64) -> Result<Batch> {
        Ok(Box::new(self.rollout(model, hb, seed)?))
    }

    fn step<'m>(
        &self,
        model: &'m Model,
        g: &Graph<'m>,
        batch: &Batch,
        normalizer: f64,
        checkpoint: bool,
    ) -> Result<ObjectiveStep> {
        let r = batch.downcast_ref::<Rollout>().ok_or_else(|| TrainError::Config("not a PPO rollout".into()))?;
        self.policy_step(model, g, r, normalizer, checkpoint)
    }

    fn evaluate(&self, model: &mut Model, examples: &[Encoded], opts: &LoaderOptions) -> Result<Map<String, Value>> {
        Ppo::evaluate(self, model, examples, opts.batch_size)
    }

    fn passes(&self) -> usize {
        self.epochs
    }
}
