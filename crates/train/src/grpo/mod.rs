//! GRPO (`task.kind = "grpo"`): reinforcement learning from verifiable rewards. Each step
//! samples `task.num_generations` completions of every prompt with the KV cache, scores them with
//! the reward functions (`task.rewards`), normalizes the rewards within each prompt's group into
//! advantages, and takes a policy-gradient step with the clipped ratio and a KL penalty to the
//! reference (the LoRA adapters switched off, or a frozen copy), as TRL's `GRPOTrainer`.
//! Prompts are the dataset's conversations up to the assistant turn; the assistant turn is the
//! reference answer the rewards may compare against.

pub mod loss;
pub mod rewards;

use serde_json::{json, Map, Value};
use tunesmith_data::batch::{HostBatch, Loader, LoaderOptions, Position};
use tunesmith_data::encode::{Encoded, IGNORE};
use tunesmith_data::tokenizer::Tokenizer;
use tunesmith_engine::{Graph, Tensor, Var};
use tunesmith_models::generate::{generate, GenerationConfig};
use tunesmith_models::Model;

use crate::error::{Result, TrainError};
use loss::{advantages, grpo_loss, AdvantageKind, Completion, GrpoParams};
use rewards::{RewardFn, Scored};

/// A prompt to sample from.
#[derive(Debug, Clone)]
pub struct Prompt {
    /// Its tokens, ending where the assistant's answer begins.
    pub ids: Vec<u32>,
    /// Its text.
    pub text: String,
    /// The reference answer's text (the dataset's assistant turn).
    pub reference: String,
}

/// An encoded example's prompt: its tokens before the first trained one.
pub fn prompt_ids(e: &Encoded) -> &[u32] {
    let s = &e.sequence;
    &s.input_ids[..s.labels.iter().position(|&l| l != IGNORE).unwrap_or(s.input_ids.len())]
}

/// Prompts from encoded chats: the tokens before the first trained one, and the trained tokens
/// decoded as the reference answer.
pub fn prompts(examples: &[Encoded], tokenizer: &Tokenizer) -> Result<Vec<Prompt>> {
    examples
        .iter()
        .map(|e| {
            let s = &e.sequence;
            let ids = prompt_ids(e);
            if ids.is_empty() {
                return Err(TrainError::Data(format!("{}: the prompt is empty", e.loc)));
            }
            let answer: Vec<u32> =
                s.input_ids.iter().zip(&s.labels).filter(|(_, &l)| l != IGNORE).map(|(&t, _)| t).collect();
            Ok(Prompt {
                ids: ids.to_vec(),
                text: tokenizer.decode(ids, false)?,
                reference: tokenizer.decode(&answer, true)?,
            })
        })
        .collect()
}

/// The reference policy of the KL penalty.
pub enum RefPolicy {
    /// β = 0: no reference pass.
    None,
    /// The policy with its LoRA adapters switched off.
    AdaptersOff,
    /// A frozen copy of the starting model (full fine-tuning).
    Frozen(Box<Model>),
}

impl RefPolicy {
    /// The reference of a run with KL strength `beta`: none when β = 0, the adapters switched
    /// off with LoRA, else a frozen copy of `model` as it starts.
    pub fn for_run(beta: f64, has_lora: bool, model: &Model) -> RefPolicy {
        if beta == 0.0 {
            RefPolicy::None
        } else if has_lora {
            RefPolicy::AdaptersOff
        } else {
            RefPolicy::Frozen(Box::new(model.clone()))
        }
    }
}

/// Sums over sampled completions, reported under TRL's GRPO metric names.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GrpoStats {
    /// Completions.
    pub completions: usize,
    /// Σ total reward.
    pub reward: f64,
    /// Σ over groups of the group's reward std.
    pub group_std: f64,
    /// Groups.
    pub groups: usize,
    /// Σ reward per function, by name.
    pub by_function: Vec<(String, f64)>,
    /// Σ completion length in tokens.
    pub length: usize,
    /// Completions cut at max_new_tokens.
    pub truncated: usize,
    /// Σ per-micro-batch mean KL (weighted by completions).
    pub kl: f64,
    /// Σ per-micro-batch clip ratio (weighted by completions).
    pub clip_ratio: f64,
}

impl GrpoStats {
    /// Merges another set's sums.
    pub fn merge(&mut self, o: &GrpoStats) {
        self.completions += o.completions;
        self.reward += o.reward;
        self.group_std += o.group_std;
        self.groups += o.groups;
        for (name, v) in &o.by_function {
            match self.by_function.iter_mut().find(|(n, _)| n == name) {
                Some((_, s)) => *s += v,
                None => self.by_function.push((name.clone(), *v)),
            }
        }
        self.length += o.length;
        self.truncated += o.truncated;
        self.kl += o.kl;
        self.clip_ratio += o.clip_ratio;
    }

    /// The means: `reward`, `reward_std`, `rewards/<fn>/mean`, `completions/mean_length`,
    /// `completions/clipped_ratio`, `kl`, `clip_ratio`.
    pub fn metrics(&self) -> Map<String, Value> {
        let n = self.completions.max(1) as f64;
        let mut m = Map::new();
        m.insert("reward".into(), json!(self.reward / n));
        m.insert("reward_std".into(), json!(self.group_std / self.groups.max(1) as f64));
        for (name, v) in &self.by_function {
            m.insert(format!("rewards/{name}/mean"), json!(v / n));
        }
        m.insert("completions/mean_length".into(), json!(self.length as f64 / n));
        m.insert("completions/clipped_ratio".into(), json!(self.truncated as f64 / n));
        m.insert("kl".into(), json!(self.kl / n));
        m.insert("clip_ratio".into(), json!(self.clip_ratio / n));
        m
    }
}

/// Sampled and scored completions of a micro-batch of prompts, ready for the loss.
pub struct Rollout {
    /// Prompt + completion rows, the completions' tokens trained.
    pub batch: HostBatch,
    /// Per completion: (row, first completion position, tokens).
    pub spans: Vec<(usize, usize, usize)>,
    /// Per completion: its advantage.
    pub advantages: Vec<f64>,
    /// Per completion: the reference's log-probs of its tokens (empty when β = 0).
    pub ref_logps: Vec<Vec<f64>>,
    /// Per completion: the sampling policy's log-probs when it differs from the policy being
    /// trained (a second pass over the same samples); empty for fresh samples.
    pub old_logps: Vec<Vec<f64>>,
    /// Prompts in the micro-batch.
    pub prompts: usize,
    /// What sampling and scoring saw.
    pub stats: GrpoStats,
}

/// What one micro-batch gives the training loop.
pub struct GrpoStep {
    /// The loss to differentiate (value: the micro-batch's share of the step's loss).
    pub loss: Var,
    /// Tokens read (prompts and completions).
    pub tokens: usize,
    /// Sampling, scoring and loss statistics.
    pub stats: GrpoStats,
}

/// The GRPO objective of a run.
pub struct Grpo {
    /// The loss.
    pub params: GrpoParams,
    /// How rewards become advantages.
    pub advantage: AdvantageKind,
    /// Completions per prompt.
    pub group: usize,
    /// Reward functions and their weights.
    pub rewards: Vec<(RewardFn, f64)>,
    /// Sampling settings (temperature, top-p, max_new_tokens, stop ids).
    pub generation: GenerationConfig,
    /// The KL reference.
    pub reference: RefPolicy,
    /// Training prompts, by example index.
    pub train: Vec<Prompt>,
    /// Validation prompts, by example index.
    pub validation: Vec<Prompt>,
    /// Decodes completions for the rewards.
    pub tokenizer: Tokenizer,
}

impl Grpo {
    /// Samples `group` completions of each prompt of loader batch `hb`, scores them and builds
    /// the loss's batch; `seed` varies the samples from step to step.
    pub fn rollout(&self, model: &mut Model, hb: &HostBatch, seed: u64) -> Result<Rollout> {
        let prompts: Vec<&Prompt> = hb.examples.iter().map(|&i| &self.train[i]).collect();
        let ids: Vec<Vec<u32>> = prompts.iter().flat_map(|p| std::iter::repeat_n(p.ids.clone(), self.group)).collect();
        let cfg = GenerationConfig { seed, ..self.generation.clone() };
        let out = generate(model, &ids, &cfg, None)?;
        let texts: Vec<String> =
            out.tokens.iter().map(|t| self.tokenizer.decode(t, true)).collect::<std::result::Result<_, _>>()?;
        let items: Vec<Scored<'_>> = texts
            .iter()
            .enumerate()
            .map(|(k, c)| {
                let p = prompts[k / self.group];
                Scored { prompt: &p.text, completion: c, reference: &p.reference }
            })
            .collect();
        let mut stats = GrpoStats { completions: items.len(), groups: prompts.len(), ..GrpoStats::default() };
        let mut total = vec![0.0; items.len()];
        for (f, w) in &self.rewards {
            let r = f.score(&items)?;
            stats.by_function.push((f.name(), r.iter().sum()));
            for (t, x) in total.iter_mut().zip(&r) {
                *t += w * x;
            }
        }
        stats.reward = total.iter().sum();
        for g in total.chunks(self.group) {
            let mean = g.iter().sum::<f64>() / g.len() as f64;
            let var = g.iter().map(|r| (r - mean).powi(2)).sum::<f64>() / (g.len().max(2) - 1) as f64;
            stats.group_std += var.sqrt();
        }
        stats.length = out.tokens.iter().map(Vec::len).sum();
        stats.truncated = out.finish.iter().filter(|f| **f == tunesmith_models::generate::FinishReason::Length).count();
        let seqs: Vec<(&[u32], &[u32])> =
            ids.iter().zip(&out.tokens).map(|(p, c)| (p.as_slice(), c.as_slice())).collect();
        let (batch, spans) = completion_batch(&seqs, self.generation.pad_token_id);
        let ref_logps = reference_logps(&self.reference, model, &batch, &spans)?;
        Ok(Rollout {
            batch,
            spans,
            advantages: advantages(&total, self.group, self.advantage),
            ref_logps,
            old_logps: Vec::new(),
            prompts: prompts.len(),
            stats,
        })
    }

    /// Greedy completions of the validation prompts, scored: the mean reward (overall and per
    /// function) and the mean completion length.
    pub fn evaluate(&self, model: &Model, examples: &[Encoded], batch_size: usize) -> Result<Map<String, Value>> {
        let loader = Loader::new(
            examples.to_vec(),
            LoaderOptions { batch_size, shuffle: false, max_length: usize::MAX, ..LoaderOptions::default() },
        )?;
        let cfg = GenerationConfig { do_sample: false, ..self.generation.clone() };
        let mut stats = GrpoStats::default();
        for (_, hb) in loader.epoch_from(Position::default()) {
            let prompts: Vec<&Prompt> = hb.examples.iter().map(|&i| &self.validation[i]).collect();
            let ids: Vec<Vec<u32>> = prompts.iter().map(|p| p.ids.clone()).collect();
            let out = generate(model, &ids, &cfg, None)?;
            let texts: Vec<String> =
                out.tokens.iter().map(|t| self.tokenizer.decode(t, true)).collect::<std::result::Result<_, _>>()?;
            let items: Vec<Scored<'_>> = texts
                .iter()
                .zip(&prompts)
                .map(|(c, p)| Scored { prompt: &p.text, completion: c, reference: &p.reference })
                .collect();
            let mut part = GrpoStats { completions: items.len(), ..GrpoStats::default() };
            for (f, w) in &self.rewards {
                let r = f.score(&items)?;
                part.reward += w * r.iter().sum::<f64>();
                part.by_function.push((f.name(), r.iter().sum()));
            }
            part.length = out.tokens.iter().map(Vec::len).sum();
            stats.merge(&part);
        }
        let mut m = stats.metrics();
        for k in ["reward_std", "kl", "clip_ratio", "completions/clipped_ratio"] {
            m.remove(k);
        }
        // Training minimizes a loss; for validation, the negative mean reward stands in for it.
        m.insert("loss".into(), json!(-stats.reward / stats.completions.max(1) as f64));
        Ok(m)
    }
}

impl crate::objective::Objective for Grpo {
    fn prepare(
        &self,
        model: &mut Model,
        _loader: &Loader,
        hb: &HostBatch,
        seed: u64,
    ) -> Result<crate::objective::Batch> {
        Ok(Box::new(self.rollout(model, hb, seed)?))
    }

    fn step<'m>(
        &self,
        model: &'m Model,
        g: &Graph<'m>,
        batch: &crate::objective::Batch,
        normalizer: f64,
        checkpoint: bool,
    ) -> Result<crate::objective::ObjectiveStep> {
        let r = batch.downcast_ref::<Rollout>().ok_or_else(|| TrainError::Config("not a GRPO rollout".into()))?;
        let s = policy_step(&self.params, model, g, r, normalizer, checkpoint)?;
        let metrics = crate::objective::Metrics::from_means(&s.stats.metrics(), s.stats.completions as f64);
        Ok(crate::objective::ObjectiveStep { loss: s.loss, tokens: s.tokens, metrics })
    }

    fn evaluate(&self, model: &mut Model, examples: &[Encoded], opts: &LoaderOptions) -> Result<Map<String, Value>> {
        Grpo::evaluate(self, model, examples, opts.batch_size)
    }
}

/// Rows of prompt + completion (right-padded with `pad`), the completion tokens trained, and each
/// completion's (row, first position, length).
pub fn completion_batch(seqs: &[(&[u32], &[u32])], pad: u32) -> (HostBatch, Vec<(usize, usize, usize)>) {
    let len = seqs.iter().map(|(p, c)| p.len() + c.len()).max().unwrap_or(0);
    let rows = seqs.len();
    let mut hb = HostBatch {
        rows,
        len,
        input_ids: vec![pad; rows * len],
        attention_mask: vec![0; rows * len],
        position_ids: vec![0; rows * len],
        labels: vec![IGNORE; rows * len],
        segment_ids: None,
        token_type_ids: None,
        targets: Vec::new(),
        examples: (0..rows).collect(),
    };
    let mut spans = Vec::with_capacity(rows);
    for (r, (p, c)) in seqs.iter().enumerate() {
        let at = r * len;
        for (j, &t) in p.iter().chain(c.iter()).enumerate() {
            hb.input_ids[at + j] = t;
            hb.attention_mask[at + j] = 1;
            hb.position_ids[at + j] = j as u32;
        }
        for (j, &t) in c.iter().enumerate() {
            hb.labels[at + p.len() + j] = t as i32;
        }
        spans.push((r, p.len(), c.len()));
    }
    (hb, spans)
}

/// The per-position log-probs `[B·T]` of a completion batch and, per completion, its tokens'
/// values.
pub(crate) fn completion_logps<'m>(
    model: &'m Model,
    g: &Graph<'m>,
    hb: &HostBatch,
    spans: &[(usize, usize, usize)],
    checkpoint: bool,
) -> Result<(Var, Vec<Vec<f64>>)> {
    let batch = crate::trainer::to_batch(hb, false, model.config.position_offset)?;
    let labels = Tensor::from_vec(hb.labels.iter().map(|&l| i64::from(l)).collect::<Vec<i64>>(), &[hb.rows, hb.len])?;
    let lp = model.token_logprobs(g, &batch, &labels, checkpoint)?;
    let values = span_values(&lp.value().to_vec_f64()?, hb.len, spans);
    Ok((lp, values))
}

/// Per completion, the values of its tokens in per-position values `v` of rows `row_len` long:
/// output position p scores token p + 1, so token j of a completion starting at `start` is read
/// at `start + j − 1`.
pub fn span_values(v: &[f64], row_len: usize, spans: &[(usize, usize, usize)]) -> Vec<Vec<f64>> {
    spans.iter().map(|&(row, start, len)| (0..len).map(|j| v[row * row_len + start + j - 1]).collect()).collect()
}

/// A scalar whose value is `value · scale` and whose gradient with respect to each per-position
/// var `[B·T]` of `terms` is `scale` times its per-token gradients (laid out per completion as
/// [`span_values`] reads them): Σ w·x over the terms plus a constant. Host-computed losses
/// (GRPO's, PPO's) reach the graph this way.
pub fn surrogate_loss<'m>(
    g: &Graph<'m>,
    terms: &[(&Var, &[Vec<f64>])],
    row_len: usize,
    spans: &[(usize, usize, usize)],
    scale: f64,
    value: f64,
) -> Result<Var> {
    let mut total: Option<Var> = None;
    let mut dot = 0.0;
    for (x, grads) in terms {
        let xv = x.value().to_vec_f64()?;
        let mut w = vec![0f32; xv.len()];
        for (k, &(row, start, _)) in spans.iter().enumerate() {
            for (j, grad) in grads[k].iter().enumerate() {
                let at = row * row_len + start + j - 1;
                w[at] = (grad * scale) as f32;
                dot += f64::from(w[at]) * xv[at];
            }
        }
        let weights = g.input(Tensor::from_vec(w, &[xv.len()])?.to_dtype(x.value().dtype())?);
        let term = g.sum(&g.mul(x, &weights)?)?;
        total = Some(match total {
            Some(t) => g.add(&t, &term)?,
            None => term,
        });
    }
    let total = total.ok_or_else(|| TrainError::Config("a surrogate loss needs at least one term".into()))?;
    let (dtype, device) = (total.value().dtype(), total.value().device());
    Ok(g.add(&total, &g.input(Tensor::full(&[], value * scale - dot, dtype, device)?))?)
}

impl Grpo {
    /// The objective of a run from `[task]`: its prompts, rewards and sampling settings
    /// (`generation_config.json`'s stop ids), and the reference (the adapters switched off for
    /// LoRA, a frozen copy for a full fine-tune; none when β = 0).
    pub fn for_run(
        cfg: &crate::RunConfig,
        model: &mut Model,
        has_lora: bool,
        data: &crate::prepare::Prepared,
        tokenizer: &Tokenizer,
        model_dir: &std::path::Path,
    ) -> Result<Grpo> {
        let t = &cfg.task;
        let bad = |key: &str, why: String| TrainError::Config(format!("{key}: {why}"));
        let aggregation = t.loss_or_default().parse().map_err(|w| bad("task.loss", w))?;
        let beta = t.beta_or_default();
        let params = GrpoParams { aggregation, beta, epsilon: t.epsilon, max_new_tokens: t.max_new_tokens };
        let rewards = t
            .rewards
            .iter()
            .enumerate()
            .map(|(i, r)| {
                Ok((
                    RewardFn::parse(r).map_err(|w| bad("task.rewards", w))?,
                    t.reward_weights.get(i).copied().unwrap_or(1.0),
                ))
            })
            .collect::<Result<Vec<_>>>()?;
        let generation = sampling(t, model, tokenizer, model_dir)?;
        let reference = RefPolicy::for_run(beta, has_lora, model);
        Ok(Grpo {
            params,
            advantage: t.advantage.parse().map_err(|w| bad("task.advantage", w))?,
            group: t.num_generations,
            rewards,
            generation,
            reference,
            train: prompts(&data.train, tokenizer)?,
            validation: prompts(&data.validation, tokenizer)?,
            tokenizer: tokenizer.clone(),
        })
    }
}

/// The sampling settings of an RL task (GRPO, PPO): `generation_config.json`'s stop ids and the
/// tokenizer's end of sequence, `task.sampling_temperature`, `task.top_p` and
/// `task.max_new_tokens`, no top-k and no repetition penalty (the loss must see the policy's own
/// distribution).
pub fn sampling(
    t: &crate::config::TaskSection,
    model: &Model,
    tokenizer: &Tokenizer,
    model_dir: &std::path::Path,
) -> Result<GenerationConfig> {
    let mut generation = GenerationConfig::for_model(model, model_dir)?;
    if let Some(eos) = tokenizer.special().eos {
        if !generation.eos_token_ids.contains(&eos.1) {
            generation.eos_token_ids.push(eos.1);
        }
    }
    generation.do_sample = true;
    generation.temperature = t.sampling_temperature;
    generation.top_p = t.top_p;
    generation.top_k = 0;
    generation.repetition_penalty = 1.0;
    generation.max_new_tokens = t.max_new_tokens;
    Ok(generation)
}

/// The GRPO loss of a rollout under `model`, scaled by its prompts over `normalizer`: a
/// surrogate whose gradient is the loss's (computed per token on the host) and whose value is the
/// loss.
pub fn policy_step<'m>(
    params: &GrpoParams,
    model: &'m Model,
    g: &Graph<'m>,
    r: &Rollout,
    normalizer: f64,
    checkpoint: bool,
) -> Result<GrpoStep> {
    let (lp, values) = completion_logps(model, g, &r.batch, &r.spans, checkpoint)?;
    let completions: Vec<Completion> = values
        .iter()
        .enumerate()
        .map(|(k, v)| Completion {
            logps: v.clone(),
            // Fresh samples: the sampling policy is the current one.
            old_logps: r.old_logps.get(k).cloned().unwrap_or_else(|| v.clone()),
            ref_logps: r.ref_logps.get(k).cloned().unwrap_or_default(),
            advantage: r.advantages[k],
        })
        .collect();
    let out = grpo_loss(params, &completions);
    let scale = r.prompts as f64 / normalizer;
    let loss = surrogate_loss(g, &[(&lp, &out.grads)], r.batch.len, &r.spans, scale, out.value)?;
    let mut stats = r.stats.clone();
    stats.kl = out.kl * stats.completions as f64;
    stats.clip_ratio = out.clip_ratio * stats.completions as f64;
    Ok(GrpoStep { loss, tokens: r.batch.tokens(), stats })
}

/// The reference's log-probs of each completion's tokens (none when there is no reference).
pub fn reference_logps(
    reference: &RefPolicy,
    model: &mut Model,
    batch: &HostBatch,
    spans: &[(usize, usize, usize)],
) -> Result<Vec<Vec<f64>>> {
    Ok(match reference {
        RefPolicy::None => Vec::new(),
        RefPolicy::AdaptersOff => {
            tunesmith_models::lora::set_active(model, false);
            let r = completion_logps(model, &Graph::inference(), batch, spans, false).map(|(_, v)| v);
            tunesmith_models::lora::set_active(model, true);
            r?
        }
        RefPolicy::Frozen(m) => completion_logps(m, &Graph::inference(), batch, spans, false)?.1,
    })
}
