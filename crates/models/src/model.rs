//! A loaded model: its config, parameters, backbone and task head. Forward passes produce
//! hidden states, logits or a loss; saving writes a folder transformers can load.

use std::path::{Path, PathBuf};

use tunesmith_engine::ops::CrossEntropySpec;
use tunesmith_engine::rng::Rng;
use tunesmith_engine::{DType, Graph, ParamStore, Tensor, Var};

use crate::attention::AttnMasks;
use crate::batch::{Batch, KvCache};
use crate::bert::Bert;
use crate::checkpoint_names::{find, transposed};
use crate::config::{Family, ModelConfig};
use crate::error::{list_names, ModelError, Result};
use crate::gpt2::Gpt2;
use crate::layers::{Adapter, Linear};
use crate::llama::Llama;
use crate::weights::Checkpoint;

/// What the model is used for; selects the head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Task {
    /// Next-token prediction (language modelling, SFT).
    CausalLm,
    /// One label (or one regression value when num_labels = 1) per sequence.
    SequenceClassification,
    /// One label per token.
    TokenClassification,
    /// Sentence embeddings: masked mean pooling + L2 normalisation.
    Embedding,
}

/// The family-specific part of the network.
#[derive(Debug, Clone)]
pub enum Backbone {
    /// Llama-family decoder.
    Llama(Llama),
    /// GPT-2 decoder.
    Gpt2(Gpt2),
    /// BERT-style encoder.
    Bert(Bert),
}

/// How a sequence classifier picks its input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pooling {
    /// The first token (encoders).
    First,
    /// The last non-padding token (decoders).
    LastToken,
    /// Every token (token classification).
    PerToken,
}

/// A classification head.
#[derive(Debug, Clone)]
pub struct ClassifierHead {
    /// Dense + tanh before the output layer (RoBERTa's `classifier.dense`).
    pub dense: Option<Linear>,
    /// Pass the first token through the backbone's pooler (BERT).
    pub use_pooler: bool,
    /// Output projection to the labels.
    pub out: Linear,
    /// Which positions feed the head.
    pub pooling: Pooling,
    /// Dropout before the output projection.
    pub dropout: f32,
}

/// The task head.
#[derive(Debug, Clone)]
pub enum Head {
    /// Logits over the vocabulary; `None` means tied to the input embedding.
    CausalLm {
        /// `lm_head`, unless tied.
        lm_head: Option<Linear>,
    },
    /// Per-sequence labels.
    SequenceClassification(ClassifierHead),
    /// Per-token labels.
    TokenClassification(ClassifierHead),
    /// Sentence embeddings.
    Embedding {
        /// L2-normalise the pooled vector.
        normalize: bool,
    },
}

/// What loading found beyond the plain case.
#[derive(Debug, Clone, Default)]
pub struct LoadReport {
    /// Parameters not in the checkpoint, initialised fresh (a new head).
    pub initialized: Vec<String>,
    /// Checkpoint tensors of other heads that this task does not use.
    pub unused: Vec<String>,
}

/// Options of [`Model::load`].
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// The task (head) to build.
    pub task: Task,
    /// Labels of a classification head (overrides the config's).
    pub labels: Option<Vec<String>>,
    /// Seed of freshly initialised parameters.
    pub seed: u64,
    /// Keep only the first N transformer blocks (a smaller student for distillation); the
    /// checkpoint's later blocks are left unread.
    pub num_layers: Option<usize>,
}

impl LoadOptions {
    /// Options for `task` with the config's labels.
    pub fn new(task: Task) -> LoadOptions {
        LoadOptions { task, labels: None, seed: 0, num_layers: None }
    }
}

/// Training targets for [`Model::loss`].
#[derive(Debug, Clone)]
pub enum Targets {
    /// `[B, T]` token labels, −100 = ignore. For causal LM they are aligned with input_ids (the
    /// model shifts them); for token classification they label each position.
    Tokens(Tensor),
    /// `[B]` class ids.
    Classes(Tensor),
    /// `[B]` or `[B, num_labels]` regression targets.
    Values(Tensor),
}

/// Options of the training loss.
#[derive(Debug, Clone, Default)]
pub struct LossOptions {
    /// Label smoothing ε.
    pub label_smoothing: f64,
    /// `[B, T]` per-token weights (aligned like the labels).
    pub token_weights: Option<Tensor>,
    /// Divide by this instead of the number (weight) of counted tokens.
    pub normalizer: Option<f64>,
}

/// A loss with what metrics need.
#[derive(Debug, Clone)]
pub struct ModelLoss {
    /// The scalar loss.
    pub loss: Var,
    /// Tokens (or sequences) that counted.
    pub counted: usize,
    /// Per-token log p(label) (causal LM and token classification), 0 where ignored.
    pub token_logprobs: Option<Tensor>,
    /// Classification or regression outputs `[B, num_labels]` (not differentiable).
    pub logits: Option<Tensor>,
}

/// The prefix of PPO's value head parameters (TRL's `v_head.summary`): trained beside the policy,
/// never exported with it.
pub const VALUE_HEAD_PREFIX: &str = "v_head.";

/// The prefix of training-only parameters (a distillation projection): trained, never exported.
pub const AUX_PREFIX: &str = "aux.";

/// A model ready to run and train.
#[derive(Debug, Clone)]
pub struct Model {
    /// Parsed config.json.
    pub config: ModelConfig,
    /// Every parameter by HF name.
    pub params: ParamStore,
    /// The network body.
    pub backbone: Backbone,
    /// The task head.
    pub head: Head,
    /// Where the model was loaded from.
    pub source: PathBuf,
}

fn is_ignorable_buffer(name: &str) -> bool {
    crate::gpt2::is_buffer(name) || crate::bert::is_buffer(name) || name.ends_with("rotary_emb.inv_freq")
}

fn is_other_head(name: &str) -> bool {
    let heads = ["lm_head.", "score.", "classifier.", "cls.", "pooler.", "qa_outputs.", "lm_head", "mlm."];
    heads.iter().any(|h| name.starts_with(h))
        || name.contains(".pooler.")
        || name.starts_with("bert.pooler")
        || name.starts_with("roberta.pooler")
}

fn head_dropout(cfg: &ModelConfig) -> f32 {
    cfg.classifier_dropout.unwrap_or(match cfg.family {
        Family::Llama => 0.1,
        _ => cfg.hidden_dropout,
    })
}

/// Takes a linear layer from the checkpoint if present, else initialises it N(0, σ) with zero
/// bias (transformers' init for new heads).
#[allow(clippy::too_many_arguments)]
fn load_or_init_linear(
    ck: &Checkpoint,
    store: &mut ParamStore,
    module: &str,
    inp: usize,
    out: usize,
    bias: bool,
    rng: &mut Rng,
    std: f64,
    report: &mut LoadReport,
) -> Result<Linear> {
    let wname = format!("{module}.weight");
    if find(ck, &wname, &[]).is_some() {
        let has_expected_shape = ck.shape(&find(ck, &wname, &[]).unwrap_or_default()) == Some(&[out, inp][..]);
        if has_expected_shape {
            return Linear::load(ck, store, module, inp, out, bias, false);
        }
    }
    let w: Vec<f32> = (0..out * inp).map(|_| (rng.normal() * std) as f32).collect();
    let weight = store.insert(wname.clone(), Tensor::from_vec(w, &[out, inp])?, true)?;
    report.initialized.push(wname);
    let bias = if bias {
        let bname = format!("{module}.bias");
        report.initialized.push(bname.clone());
        Some(store.insert(bname, Tensor::zeros(&[out], DType::F32, tunesmith_engine::Device::Cpu)?, true)?)
    } else {
        None
    };
    Ok(Linear {
        module: module.into(),
        weight,
        bias,
        in_features: inp,
        out_features: out,
        stored_transposed: false,
        adapter: None,
        quantized: None,
    })
}

impl Model {
    /// Loads a model folder (config.json + safetensors) for a task.
    pub fn load(dir: &Path, opts: &LoadOptions) -> Result<(Model, LoadReport)> {
        let config = ModelConfig::from_dir(dir)?;
        let ck = Checkpoint::open_dir(dir)?;
        Self::from_checkpoint(config, &ck, opts)
    }

    /// Builds a model from a parsed config and an open checkpoint.
    pub fn from_checkpoint(
        mut config: ModelConfig,
        ck: &Checkpoint,
        opts: &LoadOptions,
    ) -> Result<(Model, LoadReport)> {
        if let Some(labels) = &opts.labels {
            if labels.is_empty() {
                return Err(ModelError::Invalid("a classification task needs at least one label".into()));
            }
            config.num_labels = labels.len();
            config.id2label = labels.clone();
        }
        let kept_layers = match opts.num_layers {
            Some(0) => return Err(ModelError::Invalid("num_layers must be at least 1".into())),
            Some(n) if n > config.num_layers => {
                return Err(ModelError::Invalid(format!(
                    "{}: num_layers = {n}, but the model has only {} blocks",
                    ck.root().display(),
                    config.num_layers
                )))
            }
            Some(n) => {
                config.num_layers = n;
                config.sliding_window.truncate(n);
                for key in ["num_hidden_layers", "n_layer"] {
                    if config.raw.contains_key(key) {
                        config.raw.insert(key.into(), serde_json::Value::from(n));
                    }
                }
                n
            }
            None => config.num_layers,
        };
        let mut params = ParamStore::new();
        let mut report = LoadReport::default();
        let backbone = match config.family {
            Family::Llama => Backbone::Llama(Llama::load(&config, ck, &mut params)?),
            Family::Gpt2 => Backbone::Gpt2(Gpt2::load(&config, ck, &mut params)?),
            Family::Bert => Backbone::Bert(Bert::load(&config, ck, &mut params)?),
        };
        let mut rng = Rng::new(opts.seed ^ 0x4ead);
        let std = config.initializer_range;
        let d = config.hidden_size;
        let n = config.num_labels;
        let head = match (opts.task, config.family) {
            (Task::CausalLm, Family::Bert) => {
                return Err(ModelError::Invalid(format!(
                    "{}: a BERT-style encoder cannot be trained as a causal LM; use a classification, token \
                     classification or embedding task",
                    ck.root().display()
                )))
            }
            (Task::CausalLm, _) => {
                let tied = config.tie_word_embeddings && find(ck, "lm_head.weight", &[]).is_none();
                let lm_head = if tied {
                    None
                } else {
                    Some(Linear::load(ck, &mut params, "lm_head", d, config.vocab_size, false, false)?)
                };
                Head::CausalLm { lm_head }
            }
            (Task::SequenceClassification, Family::Bert) if config.model_type != "bert" => {
                let dense =
                    load_or_init_linear(ck, &mut params, "classifier.dense", d, d, true, &mut rng, std, &mut report)?;
                let out = load_or_init_linear(
                    ck,
                    &mut params,
                    "classifier.out_proj",
                    d,
                    n,
                    true,
                    &mut rng,
                    std,
                    &mut report,
                )?;
                Head::SequenceClassification(ClassifierHead {
                    dense: Some(dense),
                    use_pooler: false,
                    out,
                    pooling: Pooling::First,
                    dropout: head_dropout(&config),
                })
            }
            (Task::SequenceClassification, Family::Bert) => {
                if let Backbone::Bert(b) = &backbone {
                    if b.pooler.is_none() {
                        return Err(ModelError::Invalid(format!(
                            "{}: BertForSequenceClassification needs the pooler (bert.pooler.dense), which this checkpoint lacks",
                            ck.root().display()
                        )));
                    }
                }
                let out = load_or_init_linear(ck, &mut params, "classifier", d, n, true, &mut rng, std, &mut report)?;
                Head::SequenceClassification(ClassifierHead {
                    dense: None,
                    use_pooler: true,
                    out,
                    pooling: Pooling::First,
                    dropout: head_dropout(&config),
                })
            }
            (Task::SequenceClassification, _) => {
                let out = load_or_init_linear(ck, &mut params, "score", d, n, false, &mut rng, std, &mut report)?;
                Head::SequenceClassification(ClassifierHead {
                    dense: None,
                    use_pooler: false,
                    out,
                    pooling: Pooling::LastToken,
                    dropout: 0.0,
                })
            }
            (Task::TokenClassification, family) => {
                let name = if family == Family::Llama { "score" } else { "classifier" };
                let out = load_or_init_linear(ck, &mut params, name, d, n, true, &mut rng, std, &mut report)?;
                Head::TokenClassification(ClassifierHead {
                    dense: None,
                    use_pooler: false,
                    out,
                    pooling: Pooling::PerToken,
                    dropout: head_dropout(&config),
                })
            }
            (Task::Embedding, _) => Head::Embedding { normalize: true },
        };
        // Blocks past a requested `num_layers` are dropped on purpose.
        let dropped = |n: &str| opts.num_layers.is_some() && Model::layer_of(n).is_some_and(|l| l >= kept_layers);
        let leftovers = ck.untaken(|n| is_ignorable_buffer(n) || dropped(n));
        let (unused, unexpected): (Vec<String>, Vec<String>) = leftovers.into_iter().partition(|n| is_other_head(n));
        if !unexpected.is_empty() {
            return Err(ModelError::UnexpectedTensors {
                path: ck.root().to_path_buf(),
                count: unexpected.len(),
                names: list_names(&unexpected, 5),
            });
        }
        report.unused = unused;
        let model = Model { config, params, backbone, head, source: ck.root().to_path_buf() };
        Ok((model, report))
    }

    /// The task this model's head serves.
    pub fn task(&self) -> Task {
        match self.head {
            Head::CausalLm { .. } => Task::CausalLm,
            Head::SequenceClassification(_) => Task::SequenceClassification,
            Head::TokenClassification(_) => Task::TokenClassification,
            Head::Embedding { .. } => Task::Embedding,
        }
    }

    /// Sets every dropout probability of the model (hidden states, attention weights and the
    /// classification head) to `p`, overriding config.json's values.
    pub fn set_dropout(&mut self, p: f32) {
        self.config.hidden_dropout = p;
        self.config.attention_dropout = p;
        self.config.classifier_dropout = Some(p);
        if let Head::SequenceClassification(h) | Head::TokenClassification(h) = &mut self.head {
            h.dropout = p;
        }
    }

    /// Number of transformer blocks.
    pub fn num_layers(&self) -> usize {
        self.config.num_layers
    }

    /// The block index a parameter belongs to (None for embeddings, final norms and heads).
    pub fn layer_of(name: &str) -> Option<usize> {
        for marker in [".layers.", ".h.", ".layer."] {
            if let Some(pos) = name.find(marker) {
                let rest = &name[pos + marker.len()..];
                let idx: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
                if let Ok(i) = idx.parse() {
                    return Some(i);
                }
            }
        }
        None
    }

    /// Every linear layer of backbone and head (for adapters), in module order.
    pub fn linears_mut(&mut self) -> Vec<&mut Linear> {
        let mut v = match &mut self.backbone {
            Backbone::Llama(m) => m.linears_mut(),
            Backbone::Gpt2(m) => m.linears_mut(),
            Backbone::Bert(m) => m.linears_mut(),
        };
        match &mut self.head {
            Head::CausalLm { lm_head: Some(l) } => v.push(l),
            Head::SequenceClassification(h) | Head::TokenClassification(h) => {
                v.extend(h.dense.as_mut());
                v.push(&mut h.out);
            }
            _ => {}
        }
        v
    }

    /// The backbone's linear layers (not the LM head or a task head).
    pub fn backbone_linears_mut(&mut self) -> Vec<&mut Linear> {
        match &mut self.backbone {
            Backbone::Llama(m) => m.linears_mut(),
            Backbone::Gpt2(m) => m.linears_mut(),
            Backbone::Bert(m) => m.linears_mut(),
        }
    }

    /// Every linear layer, read-only, in the same order as [`Model::linears_mut`].
    pub fn linears(&self) -> Vec<&Linear> {
        let mut v: Vec<&Linear> = Vec::new();
        match &self.backbone {
            Backbone::Llama(m) => {
                for b in &m.blocks {
                    v.extend([&b.q_proj, &b.k_proj, &b.v_proj, &b.o_proj, &b.gate_proj, &b.up_proj, &b.down_proj]);
                }
            }
            Backbone::Gpt2(m) => {
                for b in &m.blocks {
                    v.extend([&b.c_attn, &b.attn_proj, &b.c_fc, &b.mlp_proj]);
                }
            }
            Backbone::Bert(m) => {
                for b in &m.blocks {
                    v.extend([&b.query, &b.key, &b.value, &b.attn_out, &b.intermediate, &b.output]);
                }
                v.extend(m.pooler.as_ref());
            }
        }
        match &self.head {
            Head::CausalLm { lm_head: Some(l) } => v.push(l),
            Head::SequenceClassification(h) | Head::TokenClassification(h) => {
                v.extend(h.dense.as_ref());
                v.push(&h.out);
            }
            _ => {}
        }
        v
    }

    fn masks(&self, batch: &Batch) -> Result<AttnMasks> {
        let key_mask = match &batch.attention_mask {
            Some(m) if batch.mask_values()?.contains(&0) => Some(m.clone()),
            _ => None,
        };
        Ok(AttnMasks { key_mask, segments: batch.segment_ids.clone() })
    }

    fn positions(&self, batch: &Batch) -> Result<Vec<i64>> {
        if batch.position_ids.is_none() && self.config.family == Family::Bert {
            let (b, t) = batch.dims();
            let ids: Vec<i64> = batch.input_ids.to_vec_f64()?.into_iter().map(|x| x as i64).collect();
            return Ok(Bert::positions(&self.config, &ids, b, t));
        }
        batch.positions()
    }

    /// Final hidden states `[B, T, D]`. `checkpoint` recomputes each block in the backward
    /// instead of keeping its activations.
    pub fn hidden_states<'m>(&'m self, g: &Graph<'m>, batch: &Batch, checkpoint: bool) -> Result<Var> {
        self.encode(g, batch, checkpoint, false)
    }

    /// Whether the head reads only the first token of each row, so that the encoder's last
    /// block may skip the others: first-token sequence classification of unpacked rows.
    fn head_reads_first_token_only(&self, batch: &Batch) -> bool {
        matches!(&self.head, Head::SequenceClassification(h) if h.pooling == Pooling::First)
            && matches!(self.backbone, Backbone::Bert(_))
            && batch.segment_ids.is_none()
    }

    /// Hidden states for the head: `[B, T, D]`, or `[B, 1, D]` when the head reads only the
    /// first token (the same values, without the last block's work on the other tokens).
    /// [`Model::head_loss`] and [`Model::head_forward`] both read them, so that a loss and the
    /// logits another term needs share one pass.
    pub fn hidden_states_for_head<'m>(&'m self, g: &Graph<'m>, batch: &Batch, checkpoint: bool) -> Result<Var> {
        self.encode(g, batch, checkpoint, self.head_reads_first_token_only(batch))
    }

    fn encode<'m>(&'m self, g: &Graph<'m>, batch: &Batch, checkpoint: bool, first_token_only: bool) -> Result<Var> {
        batch.validate()?;
        let masks = self.masks(batch)?;
        let positions = self.positions(batch)?;
        let types = batch.token_type_ids.as_ref();
        self.backbone_forward(g, &batch.input_ids, &positions, types, &masks, None, checkpoint, first_token_only)
    }

    /// Hidden states of new tokens `ids [B, T]` given a key/value cache; `key_mask [B, S+T]`
    /// covers cached and new keys. Decoder families only.
    pub fn hidden_states_cached<'m>(
        &'m self,
        g: &Graph<'m>,
        ids: &Tensor,
        positions: &[i64],
        key_mask: Option<&Tensor>,
        cache: &mut KvCache,
    ) -> Result<Var> {
        if self.config.family == Family::Bert {
            return Err(ModelError::Invalid("encoders do not generate text".into()));
        }
        let masks = AttnMasks { key_mask: key_mask.cloned(), segments: None };
        self.backbone_forward(g, ids, positions, None, &masks, Some(cache), false, false)
    }

    /// The backbone's hidden states; `first_token_only` lets an encoder compute only each
    /// row's first token in its last block (see [`Bert::forward`]).
    #[allow(clippy::too_many_arguments)]
    fn backbone_forward<'m>(
        &'m self,
        g: &Graph<'m>,
        ids: &Tensor,
        positions: &[i64],
        token_types: Option<&Tensor>,
        masks: &AttnMasks,
        cache: Option<&mut KvCache>,
        checkpoint: bool,
        first_token_only: bool,
    ) -> Result<Var> {
        let (p, cfg) = (&self.params, &self.config);
        match &self.backbone {
            Backbone::Llama(m) => m.forward(g, p, cfg, ids, positions, masks, cache, checkpoint),
            Backbone::Gpt2(m) => m.forward(g, p, cfg, ids, positions, token_types, masks, cache, checkpoint),
            Backbone::Bert(m) => m.forward(g, p, cfg, ids, positions, token_types, masks, checkpoint, first_token_only),
        }
    }

    /// The output projection of a causal LM: (weight `[V, D]`, bias).
    pub fn lm_head<'m>(&'m self, g: &Graph<'m>) -> Result<(Var, Option<Var>)> {
        let Head::CausalLm { lm_head } = &self.head else {
            return Err(ModelError::Invalid("this model has no language-model head".into()));
        };
        Ok(match lm_head {
            Some(l) => (g.param(&self.params, l.weight), l.bias.map(|b| g.param(&self.params, b))),
            None => {
                let embed = match &self.backbone {
                    Backbone::Llama(m) => m.embed,
                    Backbone::Gpt2(m) => m.wte,
                    Backbone::Bert(m) => m.word,
                };
                (g.param(&self.params, embed), None)
            }
        })
    }

    /// Indices (into the flattened `[B·T]` positions) of each row's last real token, as
    /// transformers picks it: the rightmost token that is not the pad token. When the config has
    /// no pad token (transformers then refuses padded batches), the last attended position.
    fn last_token_rows(&self, batch: &Batch) -> Result<Vec<i64>> {
        let (b, t) = batch.dims();
        let ids: Vec<i64> = batch.input_ids.to_vec_f64()?.into_iter().map(|x| x as i64).collect();
        let mask: Option<Vec<f64>> = batch.attention_mask.as_ref().map(Tensor::to_vec_f64).transpose()?;
        Ok((0..b)
            .map(|r| {
                let last = match (self.config.pad_token_id, &mask) {
                    (Some(pad), _) => (0..t).filter(|&c| ids[r * t + c] != pad as i64).max().unwrap_or(0),
                    (None, Some(m)) => (0..t).filter(|&c| m[r * t + c] != 0.0).max().unwrap_or(0),
                    (None, None) => t - 1,
                };
                (r * t + last) as i64
            })
            .collect())
    }

    /// Features that feed a classifier's output layer: `[B, D]` or `[B, T, D]`; for packed
    /// batches (segment ids) `[N, D]`, one row per packed example in row-major order.
    fn classifier_features<'m>(&'m self, g: &Graph<'m>, head: &ClassifierHead, h: &Var, batch: &Batch) -> Result<Var> {
        let s = h.shape().to_vec();
        let x = match (head.pooling, &batch.segment_ids) {
            (Pooling::PerToken, _) => h.clone(),
            (pooling, Some(segments)) => {
                let spans = segment_spans(segments)?;
                let picked: Vec<i64> =
                    spans.iter().map(|&(a, b)| if pooling == Pooling::First { a } else { b - 1 } as i64).collect();
                let rows = Tensor::from_vec(picked, &[spans.len()])?;
                let flat = g.reshape(h, &[s[0] * s[1], s[2]])?;
                g.embedding(&rows, &flat)?
            }
            (Pooling::First, None) => g.cls_pool(h)?,
            (Pooling::LastToken, None) => {
                let rows = Tensor::from_vec(self.last_token_rows(batch)?, &[s[0]])?;
                let flat = g.reshape(h, &[s[0] * s[1], s[2]])?;
                g.embedding(&rows, &flat)?
            }
        };
        let x = if head.use_pooler {
            let Backbone::Bert(b) = &self.backbone else {
                return Err(ModelError::Invalid("only encoders have a pooler".into()));
            };
            let pooler = b.pooler.as_ref().ok_or_else(|| ModelError::Invalid("the encoder has no pooler".into()))?;
            g.tanh(&pooler.forward(g, &self.params, &x)?)?
        } else {
            x
        };
        let x = match &head.dense {
            Some(dense) => {
                let x = g.dropout(&x, head.dropout)?;
                g.tanh(&dense.forward(g, &self.params, &x)?)?
            }
            None => x,
        };
        Ok(g.dropout(&x, head.dropout)?)
    }

    /// The head's output: LM logits `[B, T, V]`, class logits `[B, L]` / `[B, T, L]`, or
    /// sentence embeddings `[B, D]`.
    pub fn forward<'m>(&'m self, g: &Graph<'m>, batch: &Batch, checkpoint: bool) -> Result<Var> {
        let h = self.hidden_states_for_head(g, batch, checkpoint)?;
        self.head_forward(g, &h, batch)
    }

    /// The features a sequence classifier's output layer reads, `[B, D]` (pooled, through the
    /// pooler or dense layer, after dropout): several output layers (one per task) can share
    /// them.
    pub fn classifier_input<'m>(&'m self, g: &Graph<'m>, batch: &Batch, checkpoint: bool) -> Result<Var> {
        let Head::SequenceClassification(head) = &self.head else {
            return Err(ModelError::Invalid("only a sequence classification model has classifier features".into()));
        };
        let h = self.hidden_states_for_head(g, batch, checkpoint)?;
        self.classifier_features(g, head, &h, batch)
    }

    /// Applies the head to hidden states.
    pub fn head_forward<'m>(&'m self, g: &Graph<'m>, h: &Var, batch: &Batch) -> Result<Var> {
        match &self.head {
            Head::CausalLm { .. } => {
                let (w, b) = self.lm_head(g)?;
                Ok(g.linear(h, &w, b.as_ref())?)
            }
            Head::SequenceClassification(head) | Head::TokenClassification(head) => {
                let x = self.classifier_features(g, head, h, batch)?;
                head.out.forward(g, &self.params, &x)
            }
            Head::Embedding { normalize } => {
                if let Some(segments) = &batch.segment_ids {
                    // Mean over each packed example's tokens: an averaging matrix [N, B·T] times
                    // the flattened hidden states.
                    let s = h.shape().to_vec();
                    let spans = segment_spans(segments)?;
                    let bt = s[0] * s[1];
                    let mut avg = vec![0f32; spans.len() * bt];
                    for (k, &(a, b)) in spans.iter().enumerate() {
                        avg[k * bt + a..k * bt + b].fill(1.0 / (b - a) as f32);
                    }
                    let avg = g.input(Tensor::from_vec(avg, &[spans.len(), bt])?.to_dtype(h.value().dtype())?);
                    let pooled = g.matmul(&avg, &g.reshape(h, &[bt, s[2]])?, false, false)?;
                    return Ok(if *normalize { g.l2_normalize(&pooled, 1e-12)? } else { pooled });
                }
                let (b, t) = batch.dims();
                let mask = match &batch.attention_mask {
                    Some(m) => m.clone(),
                    None => Tensor::from_vec(vec![1i64; b * t], &[b, t])?,
                };
                let pooled = g.mean_pool(h, &mask)?;
                Ok(if *normalize { g.l2_normalize(&pooled, 1e-12)? } else { pooled })
            }
        }
    }

    /// Differentiable log p(next label) per position of a causal LM, `[B·T]`: position t scores
    /// `labels[t + 1]` (labels `[B, T]`, −100 where not trained; those positions, and each row's
    /// last, hold 0). A preference loss sums these per sequence.
    pub fn token_logprobs<'m>(
        &'m self,
        g: &Graph<'m>,
        batch: &Batch,
        labels: &Tensor,
        checkpoint: bool,
    ) -> Result<Var> {
        let (b, t) = batch.dims();
        if labels.shape() != [b, t] {
            return Err(ModelError::Invalid(format!("labels {:?} must match input_ids [{b}, {t}]", labels.shape())));
        }
        let h = self.hidden_states(g, batch, checkpoint)?;
        self.token_logprobs_of_hidden(g, &h, labels)
    }

    /// [`Model::token_logprobs`] from hidden states `[B, T, D]` already computed (when another
    /// head, such as PPO's value head, reads them too).
    pub fn token_logprobs_of_hidden<'m>(&'m self, g: &Graph<'m>, h: &Var, labels: &Tensor) -> Result<Var> {
        let s = h.shape().to_vec();
        if s.len() != 3 || labels.shape() != [s[0], s[1]] {
            return Err(ModelError::Invalid(format!("labels {:?} must match hidden states {s:?}", labels.shape())));
        }
        let (w, bias) = self.lm_head(g)?;
        let flat = g.reshape(h, &[s[0] * s[1], s[2]])?;
        Ok(g.token_logprobs(&flat, &w, bias.as_ref(), &shift_left(labels, -100)?, -100)?)
    }

    /// The training loss of the head for `targets`.
    pub fn loss<'m>(
        &'m self,
        g: &Graph<'m>,
        batch: &Batch,
        targets: &Targets,
        opts: &LossOptions,
        checkpoint: bool,
    ) -> Result<ModelLoss> {
        let h = self.hidden_states_for_head(g, batch, checkpoint)?;
        self.head_loss(g, &h, batch, targets, opts)
    }

    /// The loss given hidden states.
    pub fn head_loss<'m>(
        &'m self,
        g: &Graph<'m>,
        h: &Var,
        batch: &Batch,
        targets: &Targets,
        opts: &LossOptions,
    ) -> Result<ModelLoss> {
        let spec =
            CrossEntropySpec { ignore_index: -100, label_smoothing: opts.label_smoothing, normalizer: opts.normalizer };
        match (&self.head, targets) {
            (Head::CausalLm { .. }, Targets::Tokens(labels)) => {
                let (b, t) = batch.dims();
                if labels.shape() != [b, t] {
                    return Err(ModelError::Invalid(format!(
                        "labels {:?} must match input_ids [{b}, {t}]",
                        labels.shape()
                    )));
                }
                let shifted = shift_left(labels, -100)?;
                let weights = opts.token_weights.as_ref().map(shift_weights).transpose()?;
                let (w, bias) = self.lm_head(g)?;
                let out = g.linear_cross_entropy(h, &w, bias.as_ref(), &shifted, weights.as_ref(), spec)?;
                Ok(ModelLoss {
                    loss: out.loss,
                    counted: out.counted,
                    token_logprobs: Some(out.token_logprobs),
                    logits: None,
                })
            }
            (Head::TokenClassification(head), Targets::Tokens(labels)) => {
                let x = self.classifier_features(g, head, h, batch)?;
                let (w, bias) =
                    (g.param(&self.params, head.out.weight), head.out.bias.map(|b| g.param(&self.params, b)));
                let out = g.linear_cross_entropy(&x, &w, bias.as_ref(), labels, opts.token_weights.as_ref(), spec)?;
                Ok(ModelLoss {
                    loss: out.loss,
                    counted: out.counted,
                    token_logprobs: Some(out.token_logprobs),
                    logits: None,
                })
            }
            (Head::SequenceClassification(head), Targets::Classes(labels)) => {
                let x = self.classifier_features(g, head, h, batch)?;
                let logits = head.out.forward(g, &self.params, &x)?.value().clone();
                let (w, bias) =
                    (g.param(&self.params, head.out.weight), head.out.bias.map(|b| g.param(&self.params, b)));
                let out = g.linear_cross_entropy(&x, &w, bias.as_ref(), labels, None, spec)?;
                Ok(ModelLoss { loss: out.loss, counted: out.counted, token_logprobs: None, logits: Some(logits) })
            }
            (Head::SequenceClassification(head), Targets::Values(values)) => {
                let x = self.classifier_features(g, head, h, batch)?;
                let pred = head.out.forward(g, &self.params, &x)?;
                let target = g.input(values.reshape(pred.shape())?.to_dtype(pred.value().dtype())?);
                let loss = g.mse(&pred, &target)?;
                Ok(ModelLoss {
                    counted: pred.shape()[0],
                    logits: Some(pred.value().clone()),
                    loss,
                    token_logprobs: None,
                })
            }
            (Head::Embedding { .. }, _) => Err(ModelError::Invalid(
                "embedding models are trained with a pairwise loss on their embeddings, not per-example targets".into(),
            )),
            (_, t) => Err(ModelError::Invalid(format!(
                "targets {} do not fit this model's {:?} head",
                targets_name(t),
                self.task()
            ))),
        }
    }

    /// The architecture name transformers uses for this family and head.
    pub fn architecture(&self) -> String {
        let base = match self.config.model_type.as_str() {
            "mistral" => "Mistral",
            "qwen2" => "Qwen2",
            "qwen3" => "Qwen3",
            "gpt2" => "GPT2",
            "roberta" => "Roberta",
            "xlm-roberta" => "XLMRoberta",
            "bert" => "Bert",
            _ => "Llama",
        };
        let suffix = match (&self.head, self.config.family) {
            (Head::CausalLm { .. }, Family::Gpt2) => "LMHeadModel",
            (Head::CausalLm { .. }, _) => "ForCausalLM",
            (Head::SequenceClassification(_), _) => "ForSequenceClassification",
            (Head::TokenClassification(_), _) => "ForTokenClassification",
            (Head::Embedding { .. }, _) => "Model",
        };
        format!("{base}{suffix}")
    }

    /// The tensors as they would be written: adapter and value-head parameters excluded, GPT-2 Conv1D
    /// weights transposed back to `[in, out]`. Merge adapters first to export them.
    pub fn export_tensors(&self) -> Result<Vec<(String, Tensor)>> {
        let mut adapter_params = std::collections::HashSet::new();
        let mut transposed_weights = std::collections::HashSet::new();
        let mut quantized = std::collections::HashMap::new();
        for l in self.linears() {
            if l.quantized.is_some() {
                quantized.insert(l.weight, l.weight_f32(&self.params)?);
            }
            if let Some(Adapter::Lora(a)) = &l.adapter {
                adapter_params.insert(a.a);
                adapter_params.insert(a.b);
            }
            if l.stored_transposed {
                transposed_weights.insert(l.weight);
            }
        }
        let mut out = Vec::new();
        for (id, p) in self.params.iter() {
            // Adapter tensors never go into a full checkpoint (after merge_and_unload they are
            // still in the store, detached).
            if adapter_params.contains(&id)
                || p.name.contains(".lora_A.")
                || p.name.contains(".lora_B.")
                || p.name.starts_with(VALUE_HEAD_PREFIX)
                || p.name.starts_with(AUX_PREFIX)
            {
                continue;
            }
            let value = quantized.remove(&id).unwrap_or_else(|| p.value.clone());
            let t = if transposed_weights.contains(&id) { transposed(&value)? } else { value };
            // A bare backbone (`BertModel`, `LlamaModel`, ...) has no base-model prefix.
            let name = match self.head {
                Head::Embedding { .. } => crate::checkpoint_names::BASE_PREFIXES
                    .iter()
                    .find_map(|pre| p.name.strip_prefix(pre))
                    .unwrap_or(&p.name)
                    .to_string(),
                _ => p.name.clone(),
            };
            out.push((name, t));
        }
        Ok(out)
    }

    /// Writes a Hugging Face folder (config.json + model.safetensors) atomically. Unmerged
    /// adapters are not included; see [`crate::lora::merge`].
    pub fn save_pretrained(&self, dir: &Path) -> Result<()> {
        let tensors = self.export_tensors()?;
        let mut cfg = self.config.clone();
        if let Head::CausalLm { lm_head } = &self.head {
            cfg.raw.insert("tie_word_embeddings".into(), serde_json::Value::Bool(lm_head.is_none()));
        }
        let config = cfg.to_json(&self.architecture());
        crate::io::write_dir_atomic(dir, |tmp| {
            crate::io::write_json_atomic(&tmp.join("config.json"), &config)?;
            let meta = [("format".to_string(), "pt".to_string())].into_iter().collect();
            crate::weights::save_safetensors(&tmp.join("model.safetensors"), &tensors, Some(meta))
        })
    }
}

fn targets_name(t: &Targets) -> &'static str {
    match t {
        Targets::Tokens(_) => "token labels",
        Targets::Classes(_) => "class labels",
        Targets::Values(_) => "regression values",
    }
}

/// Spans `[start, end)` (indices into the flattened `[B·T]` tokens) of the packed examples of
/// `segments [B, T]`, in row-major order: a span is a run of one segment id ≥ 0 within a row
/// (negative ids mark padding).
pub fn segment_spans(segments: &Tensor) -> Result<Vec<(usize, usize)>> {
    let s = segments.shape();
    if s.len() != 2 {
        return Err(ModelError::Invalid(format!("segment_ids must be [batch, seq], got {s:?}")));
    }
    let (b, t) = (s[0], s[1]);
    let ids: Vec<i64> = segments.to_vec_f64()?.into_iter().map(|x| x as i64).collect();
    let mut spans = Vec::new();
    for r in 0..b {
        let row = &ids[r * t..(r + 1) * t];
        let mut c = 0;
        while c < t {
            let end = c + row[c..].iter().take_while(|&&x| x == row[c]).count();
            if row[c] >= 0 {
                spans.push((r * t + c, r * t + end));
            }
            c = end;
        }
    }
    Ok(spans)
}

/// labels[b, t] ← labels[b, t+1]; the last position gets `fill`.
pub fn shift_left(labels: &Tensor, fill: i64) -> Result<Tensor> {
    let s = labels.shape().to_vec();
    let (b, t) = (s[0], s[1]);
    let v: Vec<i64> = labels.to_vec_f64()?.into_iter().map(|x| x as i64).collect();
    let mut out = vec![fill; b * t];
    for r in 0..b {
        for c in 0..t.saturating_sub(1) {
            out[r * t + c] = v[r * t + c + 1];
        }
    }
    Ok(Tensor::from_vec(out, &[b * t])?)
}

fn shift_weights(w: &Tensor) -> Result<Tensor> {
    let s = w.shape().to_vec();
    let (b, t) = (s[0], s[1]);
    let v = w.to_vec_f32()?;
    let mut out = vec![0.0f32; b * t];
    for r in 0..b {
        for c in 0..t.saturating_sub(1) {
            out[r * t + c] = v[r * t + c + 1];
        }
    }
    Ok(Tensor::from_vec(out, &[b * t])?)
}
