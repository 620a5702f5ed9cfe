//! The run configuration: a TOML file whose every key can be overridden on the command line
//! (`--set train.lr=2e-5`). Unknown keys are errors that name the key and suggest the nearest
//! valid one.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Result, TrainError};

/// The whole run configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunConfig {
    /// The pre-trained model.
    pub model: ModelSection,
    /// What the model is trained to do.
    pub task: TaskSection,
    /// The training data.
    pub data: DataSection,
    /// How the model is adapted.
    #[serde(default)]
    pub method: MethodSection,
    /// Optimization.
    #[serde(default)]
    pub train: TrainSection,
    /// Evaluation during training.
    #[serde(default)]
    pub eval: EvalSection,
    /// Where results go.
    #[serde(default)]
    pub output: OutputSection,
    /// DP-SGD (absent: no differential privacy).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub privacy: Option<crate::privacy::PrivacySection>,
    /// Knowledge distillation from a teacher (absent: none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub distill: Option<crate::distill::DistillSection>,
    /// A sequence of tasks trained one after another (absent: one task, `[data]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub continual: Option<crate::continual::ContinualSection>,
    /// Several tasks trained together, one head each (absent: one task, `[data]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub multitask: Option<crate::multitask::MultitaskSection>,
}

/// `[model]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSection {
    /// A model folder, a Hub id (`org/name`), a GGUF file or a llama2.c checkpoint.
    pub path: String,
    /// Compute dtype (only "f32" on CPU today).
    #[serde(default = "default_dtype")]
    pub dtype: String,
    /// How the frozen base of an adapter method is held: "none" (f32), "nf4" (QLoRA's 4-bit
    /// NormalFloat), "q8_0", or "keep" (a GGUF base's own blocks).
    #[serde(default = "default_quantize")]
    pub quantize: String,
    /// Keep only the first N transformer blocks of a model folder (a smaller student).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub num_layers: Option<usize>,
}

fn default_quantize() -> String {
    "none".into()
}

fn default_dtype() -> String {
    "f32".into()
}

/// The kinds of task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskKind {
    /// One label per text (or text pair).
    Classification,
    /// One number per text.
    Regression,
    /// Next-token prediction on text or chats (SFT).
    CausalLm,
    /// Sentence embeddings from (anchor, positive[, negative]) pairs, trained with in-batch
    /// negatives.
    Embedding,
    /// One tag per word (named entities, parts of speech).
    TokenClassification,
    /// Preference optimization (DPO and its family) on prompt / chosen / rejected pairs.
    Preference,
    /// A reward model: a scalar head trained with the Bradley–Terry loss on preference pairs.
    Reward,
    /// GRPO: sampled completions of each prompt scored by verifiable rewards.
    Grpo,
    /// PPO (RLHF): sampled completions scored by a reward model, a value head, GAE and clipped
    /// policy and value losses, with a KL penalty to the reference.
    Ppo,
}

impl TaskKind {
    /// The name used in configs.
    pub fn name(self) -> &'static str {
        match self {
            TaskKind::Classification => "classification",
            TaskKind::Regression => "regression",
            TaskKind::CausalLm => "causal_lm",
            TaskKind::Embedding => "embedding",
            TaskKind::TokenClassification => "token_classification",
            TaskKind::Preference => "preference",
            TaskKind::Reward => "reward",
            TaskKind::Grpo => "grpo",
            TaskKind::Ppo => "ppo",
        }
    }
}

/// `[task]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskSection {
    /// The task.
    pub kind: TaskKind,
    /// Class names in id order (default: from the training data).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<Vec<String>>,
    /// Embedding: the softmax temperature of the in-batch-negatives loss (similarities are
    /// divided by it; sentence-transformers' default scale 20 is 0.05).
    #[serde(default = "default_temperature")]
    pub temperature: f64,
    /// Preference: the loss, one of dpo (default), cdpo, ipo, hinge, simpo, orpo, kto. GRPO: how
    /// per-token losses are averaged, grpo (default), bnpo or dr_grpo.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss: Option<String>,
    /// β: the KL strength of the DPO family (default 0.1; SimPO's reward scale; ORPO's λ) and of
    /// GRPO's penalty to the reference (default 0.04; 0 skips the reference pass).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub beta: Option<f64>,
    /// Preference: SimPO's target reward margin γ.
    #[serde(default = "default_gamma")]
    pub gamma: f64,
    /// Preference: the probability ε that a pair's labels are flipped (cdpo, simpo).
    #[serde(default)]
    pub label_smoothing: f64,
    /// Preference: compute the reference log-probs once before training instead of running the
    /// reference in every step (a full fine-tune then keeps no frozen copy of the model).
    #[serde(default)]
    pub precompute_ref: bool,
    /// Reward: the margin by which the chosen reward should beat the rejected one.
    #[serde(default)]
    pub margin: f64,
    /// Reward: the weight of the (r_chosen + r_rejected)² term that centres rewards on 0 (TRL's
    /// `center_rewards_coefficient`; 0 for none).
    #[serde(default)]
    pub center_rewards: f64,
    /// KTO: the weight of desirable completions' losses.
    #[serde(default = "default_one")]
    pub desirable_weight: f64,
    /// KTO: the weight of undesirable completions' losses.
    #[serde(default = "default_one")]
    pub undesirable_weight: f64,
    /// GRPO: the reward functions (gsm8k, json, regex:PATTERN, length:MIN-MAX, command:CMD).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rewards: Vec<String>,
    /// GRPO: a weight per reward function (default: 1 each).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reward_weights: Vec<f64>,
    /// GRPO: completions sampled per prompt.
    #[serde(default = "default_num_generations")]
    pub num_generations: usize,
    /// GRPO: tokens generated per completion at most.
    #[serde(default = "default_max_new_tokens")]
    pub max_new_tokens: usize,
    /// GRPO: the sampling temperature.
    #[serde(default = "default_one")]
    pub sampling_temperature: f64,
    /// GRPO: nucleus sampling's p (1 = off).
    #[serde(default = "default_one")]
    pub top_p: f64,
    /// GRPO: the importance ratio is clipped to [1 − ε, 1 + ε].
    #[serde(default = "default_epsilon")]
    pub epsilon: f64,
    /// GRPO: "group" (rewards normalized within each prompt's group) or "rloo".
    #[serde(default = "default_advantage")]
    pub advantage: String,
    /// PPO: the reward model, a `reward` run's final/model (sharing the policy's tokenizer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reward_model: Option<String>,
    /// PPO: optimizer steps on each rollout.
    #[serde(default = "default_ppo_epochs")]
    pub ppo_epochs: usize,
    /// PPO: the KL to the reference (per sequence) that β is adapted toward; fixed β without it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kl_target: Option<f64>,
    /// PPO: how many sampled completions β takes to move by its largest step (20%).
    #[serde(default = "default_kl_horizon")]
    pub kl_horizon: f64,
    /// PPO: GAE's discount γ.
    #[serde(default = "default_one")]
    pub discount: f64,
    /// PPO: GAE's λ.
    #[serde(default = "default_gae_lambda")]
    pub gae_lambda: f64,
    /// PPO: the value loss's weight.
    #[serde(default = "default_vf_coef")]
    pub vf_coef: f64,
    /// PPO: how far the value may move from its sampling-time estimate before it is clipped.
    #[serde(default = "default_epsilon")]
    pub value_clip: f64,
    /// PPO: subtracted from the score of a completion that reached max_new_tokens without ending.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub missing_eos_penalty: Option<f64>,
}

fn default_ppo_epochs() -> usize {
    4
}

fn default_kl_horizon() -> f64 {
    10_000.0
}

fn default_gae_lambda() -> f64 {
    0.95
}

fn default_vf_coef() -> f64 {
    0.1
}

fn default_num_generations() -> usize {
    4
}

fn default_max_new_tokens() -> usize {
    128
}

fn default_one() -> f64 {
    1.0
}

fn default_epsilon() -> f64 {
    0.2
}

fn default_advantage() -> String {
    "group".into()
}

impl TaskSection {
    /// β, or the default of the task kind.
    pub fn beta_or_default(&self) -> f64 {
        self.beta.unwrap_or(match self.kind {
            TaskKind::Grpo => 0.04,
            TaskKind::Ppo => 0.05,
            _ => 0.1,
        })
    }

    /// The loss name, or the default of the task kind.
    pub fn loss_or_default(&self) -> &str {
        self.loss.as_deref().unwrap_or(if self.kind == TaskKind::Grpo { "grpo" } else { "dpo" })
    }

    /// The first invalid sampling key (GRPO, PPO) and why.
    fn sampling_problem(&self) -> Option<(&'static str, String)> {
        if self.max_new_tokens == 0 {
            return Some(("task.max_new_tokens", "must be at least 1".into()));
        }
        if !(self.sampling_temperature > 0.0 && self.sampling_temperature.is_finite()) {
            return Some(("task.sampling_temperature", format!("must be positive, got {}", self.sampling_temperature)));
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return Some(("task.top_p", format!("must be in (0, 1], got {}", self.top_p)));
        }
        None
    }

    /// The first invalid PPO key and why.
    fn ppo_problem(&self) -> Option<(&'static str, String)> {
        if self.reward_model.as_deref().is_none_or(str::is_empty) {
            return Some((
                "task.reward_model",
                "is missing; PPO needs a reward model (a reward run's final/model)".into(),
            ));
        }
        if self.ppo_epochs == 0 {
            return Some(("task.ppo_epochs", "must be at least 1".into()));
        }
        if let Some(problem) = self.sampling_problem() {
            return Some(problem);
        }
        for (key, v) in [("task.epsilon", self.epsilon), ("task.value_clip", self.value_clip)] {
            if !(v > 0.0 && v.is_finite()) {
                return Some((key, format!("must be positive, got {v}")));
            }
        }
        for (key, v) in [("task.discount", self.discount), ("task.gae_lambda", self.gae_lambda)] {
            if !(0.0..=1.0).contains(&v) {
                return Some((key, format!("must be in [0, 1], got {v}")));
            }
        }
        if !(self.vf_coef >= 0.0 && self.vf_coef.is_finite()) {
            return Some(("task.vf_coef", format!("must be 0 or more, got {}", self.vf_coef)));
        }
        if let Some(t) = self.kl_target {
            if !(t > 0.0 && t.is_finite()) {
                return Some(("task.kl_target", format!("must be positive, got {t}")));
            }
        }
        if !(self.kl_horizon > 0.0 && self.kl_horizon.is_finite()) {
            return Some(("task.kl_horizon", format!("must be positive, got {}", self.kl_horizon)));
        }
        if let Some(p) = self.missing_eos_penalty {
            if !p.is_finite() {
                return Some(("task.missing_eos_penalty", format!("must be a finite number, got {p}")));
            }
        }
        let beta = self.beta_or_default();
        if !(beta >= 0.0 && beta.is_finite()) {
            return Some(("task.beta", format!("must be 0 or more, got {beta}")));
        }
        None
    }

    /// The first invalid GRPO key and why.
    fn grpo_problem(&self) -> Option<(&'static str, String)> {
        if let Err(why) = self.loss_or_default().parse::<crate::grpo::loss::Aggregation>() {
            return Some(("task.loss", why));
        }
        if self.rewards.is_empty() {
            return Some(("task.rewards", "is empty; GRPO needs at least one reward, e.g. [\"gsm8k\"]".into()));
        }
        if let Some(why) = self.rewards.iter().find_map(|r| crate::grpo::rewards::RewardFn::parse(r).err()) {
            return Some(("task.rewards", why));
        }
        if !self.reward_weights.is_empty() && self.reward_weights.len() != self.rewards.len() {
            let why = format!("has {} weights for {} rewards", self.reward_weights.len(), self.rewards.len());
            return Some(("task.reward_weights", why));
        }
        if self.num_generations < 2 {
            return Some((
                "task.num_generations",
                format!("must be at least 2 (a group), got {}", self.num_generations),
            ));
        }
        if let Some(problem) = self.sampling_problem() {
            return Some(problem);
        }
        if !(self.epsilon > 0.0 && self.epsilon < 1.0) {
            return Some(("task.epsilon", format!("must be in (0, 1), got {}", self.epsilon)));
        }
        if let Err(why) = self.advantage.parse::<crate::grpo::loss::AdvantageKind>() {
            return Some(("task.advantage", why));
        }
        let beta = self.beta_or_default();
        if !(beta >= 0.0 && beta.is_finite()) {
            return Some(("task.beta", format!("must be 0 or more, got {beta}")));
        }
        None
    }
}

fn default_temperature() -> f64 {
    0.05
}

fn default_gamma() -> f64 {
    0.5
}

/// `[data]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataSection {
    /// Training file, folder or Hub dataset (`[continual]` and `[multitask]` runs name their
    /// tasks' files there instead).
    #[serde(default)]
    pub train: String,
    /// Validation data; without it, `validation_split` of the training rows are held out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validation: Option<String>,
    /// Fraction of training rows held out when there is no validation file (0 = none).
    #[serde(default = "default_validation_split")]
    pub validation_split: f64,
    /// The schema name, or "auto".
    #[serde(default = "default_auto")]
    pub schema: String,
    /// Chat template: "model" (the tokenizer's), "chatml", "llama3", "alpaca" or a file.
    #[serde(default = "default_model")]
    pub template: String,
    /// Longest sequence in tokens.
    #[serde(default = "default_max_length")]
    pub max_length: usize,
    /// Truncation: "right", "left" or "drop".
    #[serde(default = "default_right")]
    pub truncation: String,
    /// Pack several examples per row across the dataset (causal LM): a batch is then
    /// `batch_size` full rows.
    #[serde(default)]
    pub packing: bool,
    /// Padding-free batches: the examples of each batch are laid end to end in rows of
    /// `max_length` (attention kept within each example), so no compute is spent on padding.
    /// The batches and the results are those of padded batches, up to float rounding.
    #[serde(default = "default_true")]
    pub padding_free: bool,
    /// Which tokens train: "assistant", "last_assistant" or "all".
    #[serde(default = "default_assistant")]
    pub train_on: String,
    /// Cap on training rows (0 = all), after shuffling with the seed.
    #[serde(default)]
    pub max_train_rows: usize,
    /// Cross-validation: split `train` into this many folds (stratified by class for
    /// classification, seeded by `train.seed`); 0 = off. `tunesmith train --cv K` sets it.
    #[serde(default)]
    pub cv_folds: usize,
    /// Which fold (0-based) is the validation data when `cv_folds` > 0; the others train.
    #[serde(default)]
    pub cv_fold: usize,
    /// EDA augmentation at load: augmented training rows added per training row (0.5: one
    /// copy for half of them), classification only; 0 = off.
    #[serde(default)]
    pub augment_ratio: f64,
    /// EDA's share of words changed per operation.
    #[serde(default = "default_augment_alpha")]
    pub augment_alpha: f64,
    /// EDA operations used in turn: "sr" (synonym replacement), "ri" (random insertion), "rs"
    /// (random swap), "rd" (random deletion).
    #[serde(default = "default_augment_ops")]
    pub augment_ops: Vec<String>,
}

fn default_augment_alpha() -> f64 {
    0.1
}

fn default_augment_ops() -> Vec<String> {
    ["sr", "ri", "rs", "rd"].map(String::from).to_vec()
}

fn default_true() -> bool {
    true
}

fn default_validation_split() -> f64 {
    0.1
}
fn default_auto() -> String {
    "auto".into()
}
fn default_model() -> String {
    "model".into()
}
fn default_max_length() -> usize {
    256
}
fn default_right() -> String {
    "right".into()
}
fn default_assistant() -> String {
    "assistant".into()
}

/// The fine-tuning methods.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MethodKind {
    /// Every parameter trains.
    Full,
    /// The base is frozen; only the task head trains.
    FeatureExtraction,
    /// Layers or name patterns are frozen (`freeze_layers`, `freeze_patterns`).
    Partial,
    /// Blocks unfreeze top-down, one more every `unfreeze_every` (ULMFiT).
    GradualUnfreeze,
    /// Low-rank adapters on the target modules; the base is frozen.
    Lora,
}

impl MethodKind {
    /// Every method, in the order `init --method` lists them.
    pub const ALL: [MethodKind; 5] = [
        MethodKind::Full,
        MethodKind::FeatureExtraction,
        MethodKind::Partial,
        MethodKind::GradualUnfreeze,
        MethodKind::Lora,
    ];

    /// The name used in configs.
    pub fn name(self) -> &'static str {
        match self {
            MethodKind::Full => "full",
            MethodKind::FeatureExtraction => "feature_extraction",
            MethodKind::Partial => "partial",
            MethodKind::GradualUnfreeze => "gradual_unfreeze",
            MethodKind::Lora => "lora",
        }
    }

    /// The method named `name`, if any.
    pub fn parse(name: &str) -> Option<MethodKind> {
        MethodKind::ALL.into_iter().find(|m| m.name() == name)
    }
}

/// `[method]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MethodSection {
    /// The method.
    #[serde(default = "default_method")]
    pub kind: MethodKind,
    /// Partial: freeze blocks `first..=last`, written "0-3" (blocks are numbered from the input).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub freeze_layers: Option<String>,
    /// Partial: freeze parameters whose name contains one of these (e.g. "embeddings").
    #[serde(default)]
    pub freeze_patterns: Vec<String>,
    /// Layer-wise learning-rate decay: block i of n trains at lr · decay^(n − i); the head at lr.
    #[serde(default = "one")]
    pub layer_lr_decay: f64,
    /// Gradual unfreezing: "epoch" or a number of steps.
    #[serde(default = "default_epoch")]
    pub unfreeze_every: String,
    /// LoRA rank.
    #[serde(default = "default_r")]
    pub lora_r: usize,
    /// LoRA alpha (scale = alpha / r, or alpha / sqrt(r) with rsLoRA).
    #[serde(default = "default_alpha")]
    pub lora_alpha: f64,
    /// Dropout on the LoRA path.
    #[serde(default)]
    pub lora_dropout: f64,
    /// Target modules: "all-linear" or name suffixes such as ["q_proj", "v_proj"].
    #[serde(default = "default_targets")]
    pub lora_targets: Vec<String>,
    /// rsLoRA scaling.
    #[serde(default)]
    pub use_rslora: bool,
    /// LoRA+ (Hayou et al. 2024, PEFT's `loraplus_lr_ratio`): the B matrices train at
    /// `lr × ratio` (16 is the paper's default), A and everything else at `lr`. 1 is plain LoRA.
    #[serde(default = "one")]
    pub loraplus_lr_ratio: f64,
    /// Biases that train with LoRA: "none", "all" or "lora_only".
    #[serde(default = "default_none")]
    pub lora_bias: String,
}

fn default_method() -> MethodKind {
    MethodKind::Full
}
fn one() -> f64 {
    1.0
}
fn default_epoch() -> String {
    "epoch".into()
}
fn default_r() -> usize {
    8
}
fn default_alpha() -> f64 {
    16.0
}
fn default_targets() -> Vec<String> {
    vec!["all-linear".into()]
}
fn default_none() -> String {
    "none".into()
}

impl Default for MethodSection {
    fn default() -> Self {
        toml::from_str("").expect("every [method] key has a default")
    }
}

/// `[train]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainSection {
    /// Passes over the training data.
    #[serde(default = "default_epochs")]
    pub epochs: usize,
    /// Stop after this many optimizer steps (0 = run all epochs).
    #[serde(default)]
    pub max_steps: usize,
    /// Sequences per micro-batch.
    #[serde(default = "default_batch")]
    pub batch_size: usize,
    /// Micro-batches per optimizer step; the loss is normalized by the tokens of all of them.
    #[serde(default = "one_usize")]
    pub grad_accum: usize,
    /// Peak learning rate.
    #[serde(default = "default_lr")]
    pub lr: f64,
    /// "adamw" or "sgd".
    #[serde(default = "default_adamw")]
    pub optimizer: String,
    /// SGD momentum.
    #[serde(default)]
    pub momentum: f64,
    /// AdamW β1, β2.
    #[serde(default = "default_betas")]
    pub betas: [f64; 2],
    /// AdamW ε.
    #[serde(default = "default_eps")]
    pub eps: f64,
    /// Decoupled weight decay (never on biases and norms).
    #[serde(default)]
    pub weight_decay: f64,
    /// "linear", "cosine", "constant" or "cosine_min_lr".
    #[serde(default = "default_linear")]
    pub schedule: String,
    /// Floor of cosine_min_lr as a fraction of lr.
    #[serde(default = "default_min_lr")]
    pub min_lr_ratio: f64,
    /// Warmup steps (takes precedence over warmup_ratio when > 0).
    #[serde(default)]
    pub warmup_steps: usize,
    /// Warmup as a fraction of all steps.
    #[serde(default)]
    pub warmup_ratio: f64,
    /// Clip the global gradient norm (0 = off).
    #[serde(default = "one")]
    pub max_grad_norm: f64,
    /// Label smoothing ε.
    #[serde(default)]
    pub label_smoothing: f64,
    /// Dropout probability for the whole model (hidden states, attention weights, the head);
    /// unset keeps config.json's values.
    #[serde(default)]
    pub dropout: Option<f64>,
    /// Activation checkpointing.
    #[serde(default)]
    pub activation_checkpointing: bool,
    /// Seed of everything random (order, dropout, new heads).
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// Threads (0 = TUNESMITH_THREADS or all cores).
    #[serde(default)]
    pub threads: usize,
    /// On a NaN/Inf loss: "stop" (keep the last good checkpoint) or "skip" the batch.
    #[serde(default = "default_stop")]
    pub on_nan: String,
    /// Log every N optimizer steps.
    #[serde(default = "one_usize")]
    pub log_every: usize,
    /// Matrix-product precision: "fp32" or "bf16" (mixed precision as PyTorch's autocast: the
    /// products' inputs rounded to bf16, f32 sums, f32 master weights, norms, loss and
    /// optimizer).
    #[serde(default = "default_precision")]
    pub precision: String,
}

fn default_epochs() -> usize {
    3
}
fn default_batch() -> usize {
    16
}
fn one_usize() -> usize {
    1
}
fn default_lr() -> f64 {
    5e-5
}
fn default_adamw() -> String {
    "adamw".into()
}
fn default_betas() -> [f64; 2] {
    [0.9, 0.999]
}
fn default_eps() -> f64 {
    1e-8
}
fn default_linear() -> String {
    "linear".into()
}
fn default_min_lr() -> f64 {
    0.1
}
fn default_seed() -> u64 {
    42
}
fn default_stop() -> String {
    "stop".into()
}
fn default_precision() -> String {
    "fp32".into()
}

impl Default for TrainSection {
    fn default() -> Self {
        toml::from_str("").expect("every [train] key has a default")
    }
}

/// `[eval]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvalSection {
    /// Evaluate every N optimizer steps (0 = at the end of each epoch).
    #[serde(default)]
    pub every_steps: usize,
    /// The metric that picks the best checkpoint and drives early stopping.
    #[serde(default = "default_metric")]
    pub metric: String,
    /// Stop after this many evaluations without improvement (0 = never).
    #[serde(default)]
    pub patience: usize,
    /// The smallest change that counts as an improvement.
    #[serde(default)]
    pub min_delta: f64,
    /// Sequences per evaluation batch.
    #[serde(default = "default_eval_batch")]
    pub batch_size: usize,
    /// Evaluate once before training too (the "before" of the run's summary).
    #[serde(default = "yes")]
    pub at_start: bool,
}

fn yes() -> bool {
    true
}

fn default_metric() -> String {
    "loss".into()
}
fn default_eval_batch() -> usize {
    64
}

impl Default for EvalSection {
    fn default() -> Self {
        toml::from_str("").expect("every [eval] key has a default")
    }
}

/// `[output]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputSection {
    /// The run directory.
    #[serde(default = "default_dir")]
    pub dir: PathBuf,
    /// Checkpoint every N optimizer steps (0 = at the end of each epoch).
    #[serde(default)]
    pub save_every_steps: usize,
    /// Checkpoints kept besides the best.
    #[serde(default = "default_keep")]
    pub keep_last: usize,
    /// Write the merged full model (HF format) at the end (LoRA runs always write the adapter).
    #[serde(default)]
    pub save_merged: bool,
    /// Write checkpoints (off: no resume, as HF's `save_strategy="no"`).
    #[serde(default = "yes")]
    pub save_checkpoints: bool,
}

fn default_dir() -> PathBuf {
    PathBuf::from("runs/run")
}
fn default_keep() -> usize {
    2
}

impl Default for OutputSection {
    fn default() -> Self {
        toml::from_str("").expect("every [output] key has a default")
    }
}

/// Every valid dotted key, for suggestions.
pub fn valid_keys() -> Vec<String> {
    let sections: [(&str, &[&str]); 11] = [
        ("privacy", crate::privacy::config::KEYS),
        ("distill", crate::distill::KEYS),
        ("continual", crate::continual::KEYS),
        ("multitask", crate::multitask::KEYS),
        ("model", &["path", "dtype", "quantize", "num_layers"]),
        (
            "task",
            &[
                "kind",
                "labels",
                "temperature",
                "loss",
                "beta",
                "gamma",
                "label_smoothing",
                "precompute_ref",
                "margin",
                "center_rewards",
                "desirable_weight",
                "undesirable_weight",
                "rewards",
                "reward_weights",
                "num_generations",
                "max_new_tokens",
                "sampling_temperature",
                "top_p",
                "epsilon",
                "advantage",
                "reward_model",
                "ppo_epochs",
                "kl_target",
                "kl_horizon",
                "discount",
                "gae_lambda",
                "vf_coef",
                "value_clip",
                "missing_eos_penalty",
            ],
        ),
        (
            "data",
            &[
                "train",
                "validation",
                "validation_split",
                "schema",
                "template",
                "max_length",
                "truncation",
                "packing",
                "padding_free",
                "train_on",
                "max_train_rows",
                "cv_folds",
                "cv_fold",
                "augment_ratio",
                "augment_alpha",
                "augment_ops",
            ],
        ),
        (
            "method",
            &[
                "kind",
                "freeze_layers",
                "freeze_patterns",
                "layer_lr_decay",
                "unfreeze_every",
                "lora_r",
                "lora_alpha",
                "lora_dropout",
                "lora_targets",
                "use_rslora",
                "loraplus_lr_ratio",
                "lora_bias",
            ],
        ),
        (
            "train",
            &[
                "epochs",
                "max_steps",
                "batch_size",
                "grad_accum",
                "lr",
                "optimizer",
                "momentum",
                "betas",
                "eps",
                "weight_decay",
                "schedule",
                "min_lr_ratio",
                "warmup_steps",
                "warmup_ratio",
                "max_grad_norm",
                "label_smoothing",
                "dropout",
                "activation_checkpointing",
                "seed",
                "threads",
                "on_nan",
                "log_every",
                "precision",
            ],
        ),
        ("eval", &["every_steps", "metric", "patience", "min_delta", "batch_size", "at_start"]),
        ("output", &["dir", "save_every_steps", "keep_last", "save_merged", "save_checkpoints"]),
    ];
    let mut keys = Vec::new();
    for (s, ks) in sections {
        keys.push(s.to_string());
        keys.extend(ks.iter().map(|k| format!("{s}.{k}")));
    }
    keys
}

/// The valid key nearest to `key` (by edit distance, within reason).
pub fn suggest(key: &str) -> Option<String> {
    let keys = valid_keys();
    let (section, _) = key.rsplit_once('.').unwrap_or(("", key));
    keys.into_iter()
        .filter(|k| section.is_empty() || k.starts_with(&format!("{section}.")) || !k.contains('.'))
        .map(|k| (strsim::levenshtein(key, &k), k))
        .filter(|(d, k)| *d <= (k.len() / 3).max(2))
        .min()
        .map(|(_, k)| k)
}

/// Whether smaller values of evaluation metric `name` are better (losses and errors).
pub fn lower_is_better(name: &str) -> bool {
    ["loss", "perplexity", "mse", "mae", "rmse", "ece", "brier"].contains(&name)
}

/// Checks every key of a parsed config against the schema.
fn check_keys(table: &toml::Table, prefix: &str, source: &str) -> Result<()> {
    let valid = valid_keys();
    for (k, v) in table {
        let key = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
        if !valid.contains(&key) {
            let hint = suggest(&key).map(|s| format!("; did you mean `{s}`?")).unwrap_or_default();
            return Err(TrainError::Config(format!("{source}: unknown key `{key}`{hint}")));
        }
        if prefix.is_empty() {
            match v {
                toml::Value::Table(t) => check_keys(t, &key, source)?,
                _ => return Err(TrainError::Config(format!("{source}: `{key}` must be a [{key}] section"))),
            }
        }
    }
    Ok(())
}

/// Applies one `key=value` override; the value is read as TOML, else as a string.
fn apply_override(table: &mut toml::Table, spec: &str) -> Result<()> {
    let (key, raw) = spec
        .split_once('=')
        .ok_or_else(|| TrainError::Config(format!("--set {spec}: write it as section.key=value")))?;
    let key = key.trim();
    if !valid_keys().contains(&key.to_string()) || !key.contains('.') {
        let hint = suggest(key).map(|s| format!("; did you mean `{s}`?")).unwrap_or_default();
        return Err(TrainError::Config(format!("--set {spec}: unknown key `{key}`{hint}")));
    }
    let value = match toml::from_str::<toml::Table>(&format!("v = {raw}")) {
        Ok(mut t) => t.remove("v").unwrap_or(toml::Value::String(raw.to_string())),
        Err(_) => toml::Value::String(raw.trim().to_string()),
    };
    let (section, name) = key.split_once('.').unwrap_or(("", key));
    let entry = table.entry(section.to_string()).or_insert_with(|| toml::Value::Table(toml::Table::new()));
    match entry {
        toml::Value::Table(t) => {
            t.insert(name.to_string(), value);
            Ok(())
        }
        _ => Err(TrainError::Config(format!("--set {spec}: `{section}` is not a section"))),
    }
}

impl RunConfig {
    /// Parses TOML text (`source` names it in errors) with `key=value` overrides applied.
    pub fn parse(text: &str, source: &str, overrides: &[String]) -> Result<RunConfig> {
        let mut table: toml::Table =
            toml::from_str(text).map_err(|e| TrainError::Config(format!("{source}: {}", one_line(&e.to_string()))))?;
        check_keys(&table, "", source)?;
        for o in overrides {
            apply_override(&mut table, o)?;
        }
        let cfg: RunConfig = toml::Value::Table(table)
            .try_into()
            .map_err(|e: toml::de::Error| TrainError::Config(format!("{source}: {}", one_line(&e.to_string()))))?;
        cfg.validate(source)?;
        Ok(cfg)
    }

    /// Reads a config file with overrides; relative data and output paths stay relative to the
    /// working directory (as users type them).
    pub fn load(path: &Path, overrides: &[String]) -> Result<RunConfig> {
        let text = std::fs::read_to_string(path).map_err(|e| TrainError::io(path, e))?;
        RunConfig::parse(&text, &path.display().to_string(), overrides)
    }

    /// Checks values that the types cannot.
    pub fn validate(&self, source: &str) -> Result<()> {
        let bad = |key: &str, why: String| Err(TrainError::Config(format!("{source}: `{key}` {why}")));
        let tasks = self.continual.is_some() as u8 + self.multitask.is_some() as u8;
        if tasks > 1 {
            return bad(
                "continual",
                "and [multitask] cannot both be set: choose one way to train several tasks".into(),
            );
        }
        if tasks == 1 && !self.data.train.is_empty() {
            return bad(
                "data.train",
                "is not read when [continual] or [multitask] lists the tasks; move it into a task entry".into(),
            );
        }
        if tasks == 0 && self.data.train.is_empty() {
            return bad("data.train", "is missing: name the training file, folder or Hub dataset".into());
        }
        if let Some(c) = &self.continual {
            if let Err((key, why)) = c.check(self) {
                return bad(&format!("continual.{key}"), why);
            }
        }
        if let Some(m) = &self.multitask {
            if let Err((key, why)) = m.check(self) {
                return bad(&format!("multitask.{key}"), why);
            }
        }
        if let Some(d) = &self.distill {
            if let Err((key, why)) = d.check(self) {
                return bad(&format!("distill.{key}"), why);
            }
        }
        if self.privacy.is_some() && tasks > 0 {
            return bad("privacy", "trains one task: it cannot be combined with [continual] or [multitask]".into());
        }
        if self.privacy.is_some() {
            if let Err(why) = crate::privacy::config::check_run(self) {
                return bad("privacy", why);
            }
        }
        if self.model.num_layers == Some(0) {
            return bad("model.num_layers", "must be at least 1 (the transformer blocks to keep)".into());
        }
        if tunesmith_models::quantize::BaseQuant::parse(&self.model.quantize).is_none() {
            return bad(
                "model.quantize",
                format!("must be \"none\", \"nf4\", \"q8_0\" or \"keep\", got \"{}\"", self.model.quantize),
            );
        }
        if self.model.quantize != "none"
            && !matches!(self.method.kind, MethodKind::Lora | MethodKind::FeatureExtraction)
        {
            return bad(
                "model.quantize",
                "quantizes a frozen base: use method.kind = \"lora\" (or \"feature_extraction\")".into(),
            );
        }
        let ratio = self.method.loraplus_lr_ratio;
        if !(ratio > 0.0 && ratio.is_finite()) {
            return bad("method.loraplus_lr_ratio", format!("must be a positive number, got {ratio}"));
        }
        if ratio != 1.0 && self.method.kind != MethodKind::Lora {
            return bad(
                "method.loraplus_lr_ratio",
                "sets the learning rate of LoRA's B matrices: use method.kind = \"lora\"".into(),
            );
        }
        if self.model.quantize == "keep" && !tunesmith_models::gguf::is_gguf_reference(&self.model.path) {
            return bad(
                "model.quantize",
                format!(
                    "\"keep\" keeps a GGUF file's blocks, but model.path \"{}\" is not a GGUF file (or does not exist)",
                    self.model.path
                ),
            );
        }
        let t = &self.train;
        if !(t.lr > 0.0 && t.lr.is_finite()) {
            return bad("train.lr", format!("must be a positive number, got {}", t.lr));
        }
        if t.batch_size == 0 || t.grad_accum == 0 {
            return bad("train.batch_size", "and train.grad_accum must be at least 1".into());
        }
        if !["adamw", "sgd"].contains(&t.optimizer.as_str()) {
            return bad("train.optimizer", format!("must be \"adamw\" or \"sgd\", got \"{}\"", t.optimizer));
        }
        if !["linear", "cosine", "constant", "cosine_min_lr"].contains(&t.schedule.as_str()) {
            return bad(
                "train.schedule",
                format!("must be linear, cosine, constant or cosine_min_lr, got \"{}\"", t.schedule),
            );
        }
        if tunesmith_engine::precision::Precision::parse(&t.precision).is_none() {
            return bad("train.precision", format!("must be \"fp32\" or \"bf16\", got \"{}\"", t.precision));
        }
        if !["stop", "skip"].contains(&t.on_nan.as_str()) {
            return bad("train.on_nan", format!("must be \"stop\" or \"skip\", got \"{}\"", t.on_nan));
        }
        if let Some(p) = t.dropout {
            if !(0.0..1.0).contains(&p) {
                return bad("train.dropout", format!("must be in [0, 1), got {p}"));
            }
        }
        if !(self.task.temperature > 0.0 && self.task.temperature.is_finite()) {
            return bad("task.temperature", format!("must be a positive number, got {}", self.task.temperature));
        }
        if self.task.kind == TaskKind::Reward {
            if !self.task.margin.is_finite() {
                return bad("task.margin", format!("must be a finite number, got {}", self.task.margin));
            }
            if !(self.task.center_rewards >= 0.0 && self.task.center_rewards.is_finite()) {
                return bad("task.center_rewards", format!("must be 0 or more, got {}", self.task.center_rewards));
            }
        }
        if self.task.kind == TaskKind::Grpo {
            if let Some((key, why)) = self.task.grpo_problem() {
                return bad(key, why);
            }
        }
        if self.task.kind == TaskKind::Ppo {
            if let Some((key, why)) = self.task.ppo_problem() {
                return bad(key, why);
            }
        }
        if matches!(self.task.kind, TaskKind::Preference | TaskKind::Reward | TaskKind::Grpo | TaskKind::Ppo)
            && self.data.packing
        {
            return bad(
                "data.packing",
                "cannot pack preference pairs across batches; a pair's sequences must batch together (data.padding_free packs each batch without padding)".into(),
            );
        }
        if self.task.kind == TaskKind::Preference {
            let task = &self.task;
            let loss = task.loss_or_default();
            if loss != "kto" {
                if let Err(why) = loss.parse::<crate::preference::loss::PreferenceLoss>() {
                    return bad("task.loss", format!("{why}, kto"));
                }
            }
            for (key, w) in
                [("task.desirable_weight", task.desirable_weight), ("task.undesirable_weight", task.undesirable_weight)]
            {
                if !(w > 0.0 && w.is_finite()) {
                    return bad(key, format!("must be a positive number, got {w}"));
                }
            }
            let beta = task.beta_or_default();
            if !(beta > 0.0 && beta.is_finite()) {
                return bad("task.beta", format!("must be a positive number, got {beta}"));
            }
            if !task.gamma.is_finite() {
                return bad("task.gamma", format!("must be a finite number, got {}", task.gamma));
            }
            if !(0.0..0.5).contains(&task.label_smoothing) {
                return bad("task.label_smoothing", format!("must be in [0, 0.5), got {}", task.label_smoothing));
            }
        }
        if self.task.kind == TaskKind::Embedding && self.data.packing {
            return bad(
                "data.packing",
                "cannot pack embedding pairs across batches; every anchor needs its own positive beside it (padding_free already avoids padding)".into(),
            );
        }
        if !(0.0..1.0).contains(&t.warmup_ratio) {
            return bad("train.warmup_ratio", format!("must be in [0, 1), got {}", t.warmup_ratio));
        }
        if !(0.0..1.0).contains(&self.data.validation_split) {
            return bad("data.validation_split", format!("must be in [0, 1), got {}", self.data.validation_split));
        }
        if !(0.0..=16.0).contains(&self.data.augment_ratio) {
            return bad("data.augment_ratio", format!("must be in [0, 16], got {}", self.data.augment_ratio));
        }
        if !(self.data.augment_alpha > 0.0 && self.data.augment_alpha <= 1.0) {
            return bad("data.augment_alpha", format!("must be in (0, 1], got {}", self.data.augment_alpha));
        }
        if let Some(op) = self.data.augment_ops.iter().find(|o| tunesmith_data::augment::eda::EdaOp::parse(o).is_none())
        {
            return bad("data.augment_ops", format!("has \"{op}\"; use \"sr\", \"ri\", \"rs\" or \"rd\""));
        }
        if self.data.augment_ratio > 0.0 && self.task.kind != TaskKind::Classification {
            return bad(
                "data.augment_ratio",
                "augments labeled texts: use it with task.kind = \"classification\"".into(),
            );
        }
        if self.data.cv_folds == 1 {
            return bad("data.cv_folds", "must be 0 (off) or at least 2".into());
        }
        if self.data.cv_folds > 1 && self.data.cv_fold >= self.data.cv_folds {
            return bad(
                "data.cv_fold",
                format!("= {} must be below data.cv_folds = {}", self.data.cv_fold, self.data.cv_folds),
            );
        }
        if self.data.cv_folds > 1 && self.data.validation.is_some() {
            return bad(
                "data.validation",
                "is set, but cross-validation validates on folds of data.train; remove one of them".into(),
            );
        }
        if self.data.max_length < 2 {
            return bad("data.max_length", "must be at least 2".into());
        }
        if self.train.epochs == 0 && self.train.max_steps == 0 {
            return bad("train.epochs", "and train.max_steps are both 0: nothing to train".into());
        }
        if self.method.kind == MethodKind::Lora && self.method.lora_r == 0 {
            return bad("method.lora_r", "must be at least 1".into());
        }
        if let Some(r) = &self.method.freeze_layers {
            parse_layer_range(r)
                .map_err(|why| TrainError::Config(format!("{source}: `method.freeze_layers` {why}")))?;
        }
        if !["none", "all", "lora_only"].contains(&self.method.lora_bias.as_str()) {
            return bad(
                "method.lora_bias",
                format!("must be none, all or lora_only, got \"{}\"", self.method.lora_bias),
            );
        }
        if self.method.unfreeze_every != "epoch" && self.method.unfreeze_every.parse::<usize>().map_or(true, |n| n == 0)
        {
            return bad(
                "method.unfreeze_every",
                format!("must be \"epoch\" or a step count, got \"{}\"", self.method.unfreeze_every),
            );
        }
        Ok(())
    }

    /// The config as TOML (what the run manifest and checkpoints record).
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_default()
    }
}

/// Parses "a-b" (or "a") into an inclusive block range.
pub fn parse_layer_range(s: &str) -> std::result::Result<(usize, usize), String> {
    let parse = |x: &str| x.trim().parse::<usize>().map_err(|_| format!("must look like \"0-3\", got \"{s}\""));
    let (a, b) = match s.split_once('-') {
        Some((a, b)) => (parse(a)?, parse(b)?),
        None => (parse(s)?, parse(s)?),
    };
    if a > b {
        return Err(format!("starts after it ends: \"{s}\""));
    }
    Ok((a, b))
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The commented starter config `tunesmith init` writes.
pub const STARTER: &str = include_str!("starter.toml");

/// The starter config for `method` (`tunesmith init --method`): [`STARTER`] with
/// `method.kind` set and that method's own keys uncommented, with the learning rate its
/// users start from (1e-3 where only a head or adapters train).
pub fn starter_for(method: MethodKind) -> String {
    let keys: &[&str] = match method {
        MethodKind::Full | MethodKind::FeatureExtraction => &[],
        MethodKind::Partial => &["freeze_layers"],
        MethodKind::GradualUnfreeze => &["unfreeze_every"],
        MethodKind::Lora => &["lora_r", "lora_alpha", "lora_dropout", "lora_targets"],
    };
    let light = matches!(method, MethodKind::Lora | MethodKind::FeatureExtraction);
    let mut section = "";
    let mut out = String::with_capacity(STARTER.len());
    for line in STARTER.lines() {
        if line.starts_with('[') {
            section = line;
        }
        let key = line.trim_start_matches("# ").split(" =").next().unwrap_or("");
        let text = if section == "[method]" && line.starts_with("kind = ") {
            format!("kind = \"{}\"", method.name())
        } else if section == "[method]" && line.starts_with("# ") && keys.contains(&key) {
            line.trim_start_matches("# ").to_string()
        } else if section == "[train]" && light && line.starts_with("lr = ") {
            "lr = 1e-3".to_string()
        } else {
            line.to_string()
        };
        out.push_str(&text);
        out.push('\n');
    }
    out
}
