//! Hugging Face `config.json` → one typed [`ModelConfig`] per supported family, covering the
//! variants real checkpoints use (GQA, q/k/v bias, q/k norm, tied embeddings, RoPE scaling in
//! both the `rope_scaling` and transformers-5 `rope_parameters` spellings, sliding windows).

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};
use tunesmith_engine::ops::{Activation, RopeScaling};

use crate::error::{ModelError, Result};

/// The architecture families tunesmith implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// Llama and relatives: Llama 2/3, TinyLlama, SmolLM, Mistral, Qwen2/2.5, Qwen3.
    Llama,
    /// GPT-2 (Conv1D weights stored transposed).
    Gpt2,
    /// BERT-style encoders: BERT, RoBERTa, MiniLM.
    Bert,
}

/// Everything the model code needs from config.json.
#[derive(Debug, Clone)]
pub struct ModelConfig {
    /// The family implementing this model.
    pub family: Family,
    /// `model_type` as written (llama, mistral, qwen2, qwen3, gpt2, bert, roberta, ...).
    pub model_type: String,
    /// `architectures` as written (e.g. LlamaForCausalLM).
    pub architectures: Vec<String>,
    /// Vocabulary size.
    pub vocab_size: usize,
    /// Model width.
    pub hidden_size: usize,
    /// Number of transformer blocks.
    pub num_layers: usize,
    /// Attention heads.
    pub num_heads: usize,
    /// Key/value heads (GQA when fewer than `num_heads`).
    pub num_kv_heads: usize,
    /// Width of one head.
    pub head_dim: usize,
    /// MLP inner width.
    pub intermediate_size: usize,
    /// Positions the model was trained for (size of learned position tables).
    pub max_position_embeddings: usize,
    /// Epsilon of the normalisation layers.
    pub norm_eps: f64,
    /// MLP activation.
    pub hidden_act: Activation,
    /// RoPE base.
    pub rope_theta: f64,
    /// RoPE frequency scaling.
    pub rope_scaling: RopeScaling,
    /// Fraction of each head that is rotated.
    pub partial_rotary_factor: f64,
    /// Output projection shares the input embedding.
    pub tie_word_embeddings: bool,
    /// q/k/v projections have biases (Qwen2).
    pub qkv_bias: bool,
    /// The attention output projection has a bias.
    pub o_bias: bool,
    /// MLP projections have biases.
    pub mlp_bias: bool,
    /// RMSNorm on q and k per head (Qwen3).
    pub qk_norm: bool,
    /// Sliding-window length per layer (None = full attention).
    pub sliding_window: Vec<Option<usize>>,
    /// Added to every RMSNorm weight (Gemma scales by 1 + γ; 0 elsewhere).
    pub norm_offset: f64,
    /// Multiplier of the token embeddings (Gemma: √hidden_size).
    pub embed_scale: Option<f64>,
    /// Gemma's "sandwich" norms: attention and MLP outputs are normed before the residual add
    /// (`post_attention_layernorm`, `post_feedforward_layernorm`), and the MLP's input norm is
    /// `pre_feedforward_layernorm`.
    pub sandwich_norms: bool,
    /// Attention score scale when it is not 1/√head_dim (Gemma: query_pre_attn_scalar^-½).
    pub attn_scale: Option<f64>,
    /// RoPE base of the sliding-window layers when it differs from `rope_theta` (Gemma 3).
    pub rope_local_theta: Option<f64>,
    /// Segment (token type) vocabulary of BERT-style models.
    pub type_vocab_size: usize,
    /// Offset added to position ids (RoBERTa: padding_idx + 1).
    pub position_offset: usize,
    /// Dropout on embeddings and residual branches.
    pub hidden_dropout: f32,
    /// Dropout on attention weights.
    pub attention_dropout: f32,
    /// Dropout before a classification head (falls back to `hidden_dropout`).
    pub classifier_dropout: Option<f32>,
    /// Number of labels of a classification head.
    pub num_labels: usize,
    /// Label names by id, if the config has them.
    pub id2label: Vec<String>,
    /// "regression", "single_label_classification" or "multi_label_classification", if set.
    pub problem_type: Option<String>,
    /// Begin-of-sequence token.
    pub bos_token_id: Option<u32>,
    /// End-of-sequence tokens.
    pub eos_token_ids: Vec<u32>,
    /// Padding token.
    pub pad_token_id: Option<u32>,
    /// Weight-init standard deviation for new heads.
    pub initializer_range: f64,
    /// The parsed JSON, kept to write the config back with the same extra keys.
    pub raw: Map<String, Value>,
}

struct Reader<'a> {
    path: &'a Path,
    map: &'a Map<String, Value>,
}

impl<'a> Reader<'a> {
    fn err(&self, key: &str, why: impl Into<String>) -> ModelError {
        ModelError::config(self.path, key, why)
    }

    fn usize_opt(&self, key: &str) -> Result<Option<usize>> {
        match self.map.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v
                .as_u64()
                .map(|x| Some(x as usize))
                .ok_or_else(|| self.err(key, format!("expected a non-negative integer, found {v}"))),
        }
    }

    fn usize(&self, key: &str) -> Result<usize> {
        self.usize_opt(key)?.ok_or_else(|| self.err(key, "is required"))
    }

    fn usize_any(&self, keys: &[&str]) -> Result<usize> {
        for k in keys {
            if let Some(v) = self.usize_opt(k)? {
                return Ok(v);
            }
        }
        Err(self.err(keys[0], format!("is required (also accepted: {})", keys[1..].join(", "))))
    }

    fn f64_opt(&self, key: &str) -> Result<Option<f64>> {
        match self.map.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v.as_f64().map(Some).ok_or_else(|| self.err(key, format!("expected a number, found {v}"))),
        }
    }

    fn bool_opt(&self, key: &str) -> Result<Option<bool>> {
        match self.map.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v.as_bool().map(Some).ok_or_else(|| self.err(key, format!("expected true or false, found {v}"))),
        }
    }

    fn str_opt(&self, key: &str) -> Result<Option<&'a str>> {
        match self.map.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v.as_str().map(Some).ok_or_else(|| self.err(key, format!("expected a string, found {v}"))),
        }
    }

    fn token_ids(&self, key: &str) -> Result<Vec<u32>> {
        match self.map.get(key) {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(Value::Number(n)) => {
                n.as_u64().map(|x| vec![x as u32]).ok_or_else(|| self.err(key, "expected a token id"))
            }
            Some(Value::Array(a)) => a
                .iter()
                .map(|v| v.as_u64().map(|x| x as u32).ok_or_else(|| self.err(key, "expected a list of token ids")))
                .collect(),
            Some(v) => Err(self.err(key, format!("expected a token id or a list of them, found {v}"))),
        }
    }

    fn activation(&self, key: &str, default: &str) -> Result<Activation> {
        let name = self.str_opt(key)?.unwrap_or(default);
        Activation::from_hf_name(name).ok_or_else(|| {
            self.err(
                key,
                format!("activation '{name}' is not supported (gelu, gelu_new, gelu_pytorch_tanh, silu, relu, tanh)"),
            )
        })
    }
}

fn rope_scaling(r: &Reader<'_>) -> Result<(f64, RopeScaling)> {
    // transformers ≥ 5 writes `rope_parameters` (with rope_theta inside); older configs write
    // `rope_theta` and `rope_scaling` at top level.
    let (key, params) = match (r.map.get("rope_parameters"), r.map.get("rope_scaling")) {
        (Some(Value::Object(p)), _) => ("rope_parameters", Some(p)),
        (_, Some(Value::Object(p))) => ("rope_scaling", Some(p)),
        _ => ("rope_scaling", None),
    };
    let mut theta = r.f64_opt("rope_theta")?.unwrap_or(10_000.0);
    let Some(p) = params else {
        return Ok((theta, RopeScaling::None));
    };
    let sub = Reader { path: r.path, map: p };
    if let Some(t) = sub.f64_opt("rope_theta")? {
        theta = t;
    }
    let kind = sub.str_opt("rope_type")?.or(sub.str_opt("type")?).unwrap_or("default");
    let factor = || -> Result<f64> {
        sub.f64_opt("factor")?
            .ok_or_else(|| ModelError::config(r.path, format!("{key}.factor"), "is required for this rope_type"))
    };
    let scaling = match kind {
        "default" => RopeScaling::None,
        "linear" => RopeScaling::Linear { factor: factor()? },
        "dynamic" => RopeScaling::Dynamic {
            factor: factor()?,
            original_max_position_embeddings: sub
                .usize_opt("original_max_position_embeddings")?
                .or(r.usize_opt("max_position_embeddings")?)
                .unwrap_or(2048),
        },
        "llama3" => RopeScaling::Llama3 {
            factor: factor()?,
            low_freq_factor: sub.f64_opt("low_freq_factor")?.unwrap_or(1.0),
            high_freq_factor: sub.f64_opt("high_freq_factor")?.unwrap_or(4.0),
            original_max_position_embeddings: sub.usize_opt("original_max_position_embeddings")?.unwrap_or(8192),
        },
        other => {
            return Err(ModelError::config(
                r.path,
                format!("{key}.rope_type"),
                format!("'{other}' is not supported (default, linear, dynamic, llama3)"),
            ))
        }
    };
    Ok((theta, scaling))
}

fn labels(r: &Reader<'_>) -> Result<(usize, Vec<String>)> {
    let mut names: Vec<String> = Vec::new();
    if let Some(Value::Object(m)) = r.map.get("id2label") {
        let mut pairs: Vec<(usize, String)> = Vec::new();
        for (k, v) in m {
            let id = k.parse::<usize>().map_err(|_| r.err("id2label", format!("key '{k}' is not a label id")))?;
            let name = v.as_str().ok_or_else(|| r.err("id2label", format!("label {k} must be a string")))?;
            pairs.push((id, name.to_string()));
        }
        pairs.sort();
        for (i, (id, name)) in pairs.into_iter().enumerate() {
            if id != i {
                return Err(r.err("id2label", format!("ids must be 0..n without gaps; found {id} at position {i}")));
            }
            names.push(name);
        }
    }
    let num = r.usize_opt("num_labels")?.unwrap_or(if names.is_empty() { 2 } else { names.len() });
    Ok((num, names))
}

impl ModelConfig {
    /// Reads `dir/config.json`.
    pub fn from_dir(dir: &Path) -> Result<ModelConfig> {
        Self::from_file(&dir.join("config.json"))
    }

    /// Reads a config.json file.
    pub fn from_file(path: &Path) -> Result<ModelConfig> {
        let text = std::fs::read_to_string(path).map_err(|e| ModelError::io(path, e))?;
        let value: Value =
            serde_json::from_str(&text).map_err(|e| ModelError::Json { path: path.into(), source: e })?;
        Self::from_json(path, value)
    }

    /// Parses an already-read config (`path` is only used in error messages).
    pub fn from_json(path: &Path, value: Value) -> Result<ModelConfig> {
        let Value::Object(map) = value else {
            return Err(ModelError::config(path, "<root>", "config.json must be a JSON object"));
        };
        let r = Reader { path, map: &map };
        let model_type = r.str_opt("model_type")?.ok_or_else(|| r.err("model_type", "is required"))?.to_string();
        let architectures = match map.get("architectures") {
            Some(Value::Array(a)) => a.iter().filter_map(|v| v.as_str().map(String::from)).collect(),
            _ => Vec::new(),
        };
        let family = match model_type.as_str() {
            "llama" | "mistral" | "qwen2" | "qwen3" | "smollm" | "smollm3" | "gemma3_text" => Family::Llama,
            "gpt2" => Family::Gpt2,
            "bert" | "roberta" | "xlm-roberta" => Family::Bert,
            other => {
                return Err(r.err(
                    "model_type",
                    format!(
                        "'{other}' is not supported; supported: llama, mistral, qwen2, qwen3, gemma3_text, gpt2, bert, roberta"
                    ),
                ))
            }
        };
        let (num_labels, id2label) = labels(&r)?;
        let mut eos = r.token_ids("eos_token_id")?;
        eos.dedup();
        let base = |family| -> Result<ModelConfig> {
            Ok(ModelConfig {
                family,
                model_type: model_type.clone(),
                architectures: architectures.clone(),
                vocab_size: r.usize("vocab_size")?,
                hidden_size: 0,
                num_layers: 0,
                num_heads: 0,
                num_kv_heads: 0,
                head_dim: 0,
                intermediate_size: 0,
                max_position_embeddings: 0,
                norm_eps: 1e-5,
                hidden_act: Activation::Silu,
                rope_theta: 10_000.0,
                rope_scaling: RopeScaling::None,
                partial_rotary_factor: 1.0,
                tie_word_embeddings: false,
                qkv_bias: false,
                o_bias: false,
                mlp_bias: false,
                qk_norm: false,
                sliding_window: Vec::new(),
                norm_offset: 0.0,
                embed_scale: None,
                sandwich_norms: false,
                attn_scale: None,
                rope_local_theta: None,
                type_vocab_size: 0,
                position_offset: 0,
                hidden_dropout: 0.0,
                attention_dropout: 0.0,
                classifier_dropout: None,
                num_labels,
                id2label: id2label.clone(),
                problem_type: r.str_opt("problem_type")?.map(String::from),
                bos_token_id: r.token_ids("bos_token_id")?.first().copied(),
                eos_token_ids: eos.clone(),
                pad_token_id: r.token_ids("pad_token_id")?.first().copied(),
                initializer_range: r.f64_opt("initializer_range")?.unwrap_or(0.02),
                raw: map.clone(),
            })
        };
        let mut c = base(family)?;
        match family {
            Family::Llama => {
                c.hidden_size = r.usize("hidden_size")?;
                c.num_layers = r.usize("num_hidden_layers")?;
                c.num_heads = r.usize("num_attention_heads")?;
                c.num_kv_heads = r.usize_opt("num_key_value_heads")?.unwrap_or(c.num_heads);
                c.head_dim = r.usize_opt("head_dim")?.unwrap_or(c.hidden_size / c.num_heads.max(1));
                c.intermediate_size = r.usize("intermediate_size")?;
                c.max_position_embeddings = r.usize_opt("max_position_embeddings")?.unwrap_or(2048);
                c.norm_eps = r.f64_opt("rms_norm_eps")?.unwrap_or(1e-6);
                c.hidden_act = r.activation("hidden_act", "silu")?;
                let (theta, scaling) = rope_scaling(&r)?;
                c.rope_theta = theta;
                c.rope_scaling = scaling;
                c.partial_rotary_factor = r.f64_opt("partial_rotary_factor")?.unwrap_or(1.0);
                c.tie_word_embeddings = r.bool_opt("tie_word_embeddings")?.unwrap_or(false);
                let attention_bias = r.bool_opt("attention_bias")?.unwrap_or(false);
                // Qwen2's q/k/v always carry biases; its o_proj never does.
                c.qkv_bias = model_type == "qwen2" || attention_bias;
                c.o_bias = model_type != "qwen2" && attention_bias;
                c.mlp_bias = r.bool_opt("mlp_bias")?.unwrap_or(false);
                c.qk_norm = model_type == "qwen3";
                c.attention_dropout = r.f64_opt("attention_dropout")?.unwrap_or(0.0) as f32;
                c.sliding_window = sliding_windows(&r, &model_type, c.num_layers)?;
                if model_type == "gemma3_text" {
                    gemma3(&r, &mut c)?;
                }
                if c.num_kv_heads == 0 || c.num_heads % c.num_kv_heads != 0 {
                    return Err(r.err(
                        "num_key_value_heads",
                        format!("{} must divide num_attention_heads {}", c.num_kv_heads, c.num_heads),
                    ));
                }
            }
            Family::Gpt2 => {
                c.hidden_size = r.usize_any(&["n_embd", "hidden_size"])?;
                c.num_layers = r.usize_any(&["n_layer", "num_hidden_layers"])?;
                c.num_heads = r.usize_any(&["n_head", "num_attention_heads"])?;
                c.num_kv_heads = c.num_heads;
                c.head_dim = c.hidden_size / c.num_heads.max(1);
                c.intermediate_size = r.usize_opt("n_inner")?.unwrap_or(4 * c.hidden_size);
                c.max_position_embeddings = r.usize_any(&["n_positions", "max_position_embeddings"])?;
                c.norm_eps = r.f64_opt("layer_norm_epsilon")?.unwrap_or(1e-5);
                c.hidden_act = r.activation("activation_function", "gelu_new")?;
                c.tie_word_embeddings = r.bool_opt("tie_word_embeddings")?.unwrap_or(true);
                c.hidden_dropout = r.f64_opt("resid_pdrop")?.unwrap_or(0.1) as f32;
                c.attention_dropout = r.f64_opt("attn_pdrop")?.unwrap_or(0.1) as f32;
                c.classifier_dropout = r.f64_opt("summary_first_dropout")?.map(|v| v as f32);
                if r.bool_opt("scale_attn_by_inverse_layer_idx")?.unwrap_or(false) {
                    return Err(r.err("scale_attn_by_inverse_layer_idx", "is not supported; set it to false"));
                }
            }
            Family::Bert => {
                c.hidden_size = r.usize("hidden_size")?;
                c.num_layers = r.usize("num_hidden_layers")?;
                c.num_heads = r.usize("num_attention_heads")?;
                c.num_kv_heads = c.num_heads;
                c.head_dim = c.hidden_size / c.num_heads.max(1);
                c.intermediate_size = r.usize("intermediate_size")?;
                c.max_position_embeddings = r.usize_opt("max_position_embeddings")?.unwrap_or(512);
                c.norm_eps = r.f64_opt("layer_norm_eps")?.unwrap_or(1e-12);
                c.hidden_act = r.activation("hidden_act", "gelu")?;
                c.type_vocab_size = r.usize_opt("type_vocab_size")?.unwrap_or(2);
                c.hidden_dropout = r.f64_opt("hidden_dropout_prob")?.unwrap_or(0.1) as f32;
                c.attention_dropout = r.f64_opt("attention_probs_dropout_prob")?.unwrap_or(0.1) as f32;
                c.classifier_dropout = r.f64_opt("classifier_dropout")?.map(|v| v as f32);
                c.tie_word_embeddings = r.bool_opt("tie_word_embeddings")?.unwrap_or(true);
                if matches!(model_type.as_str(), "roberta" | "xlm-roberta") {
                    c.position_offset = c.pad_token_id.unwrap_or(1) as usize + 1;
                }
                if let Some(kind) = r.str_opt("position_embedding_type")? {
                    if kind != "absolute" {
                        return Err(
                            r.err("position_embedding_type", format!("'{kind}' is not supported; only absolute"))
                        );
                    }
                }
            }
        }
        if c.hidden_size == 0 || c.num_heads == 0 || c.num_layers == 0 {
            return Err(r.err("hidden_size", "hidden size, heads and layers must be positive"));
        }
        Ok(c)
    }

    /// Number of rotated features per head.
    pub fn rotary_dim(&self) -> usize {
        let r = (self.head_dim as f64 * self.partial_rotary_factor) as usize;
        r - r % 2
    }

    /// Where this config came from is not stored; this helper builds the JSON to save, with
    /// the architecture and label fields updated.
    pub fn to_json(&self, architecture: &str) -> Value {
        let mut m = self.raw.clone();
        m.insert("architectures".into(), Value::Array(vec![Value::String(architecture.into())]));
        m.insert("num_labels".into(), Value::from(self.num_labels));
        if !self.id2label.is_empty() {
            let id2: Map<String, Value> =
                self.id2label.iter().enumerate().map(|(i, n)| (i.to_string(), Value::String(n.clone()))).collect();
            let l2i: Map<String, Value> =
                self.id2label.iter().enumerate().map(|(i, n)| (n.clone(), Value::from(i))).collect();
            m.insert("id2label".into(), Value::Object(id2));
            m.insert("label2id".into(), Value::Object(l2i));
        }
        if let Some(p) = &self.problem_type {
            m.insert("problem_type".into(), Value::String(p.clone()));
        }
        m.insert("torch_dtype".into(), Value::String("float32".into()));
        m.insert("dtype".into(), Value::String("float32".into()));
        Value::Object(m)
    }
}

fn sliding_windows(r: &Reader<'_>, model_type: &str, layers: usize) -> Result<Vec<Option<usize>>> {
    let window = r.usize_opt("sliding_window")?;
    let uses = match model_type {
        "mistral" => window.is_some(),
        _ => r.bool_opt("use_sliding_window")?.unwrap_or(false),
    };
    if !uses || window.is_none() {
        return Ok(vec![None; layers]);
    }
    if let Some(Value::Array(types)) = r.map.get("layer_types") {
        return Ok(types
            .iter()
            .map(|t| if t.as_str() == Some("sliding_attention") { window } else { None })
            .chain(std::iter::repeat(None))
            .take(layers)
            .collect());
    }
    if model_type == "qwen2" || model_type == "qwen3" {
        // Qwen: layers from max_window_layers onward use the window.
        let from = r.usize_opt("max_window_layers")?.unwrap_or(layers);
        return Ok((0..layers).map(|i| if i >= from { window } else { None }).collect());
    }
    Ok(vec![window; layers])
}

/// Gemma 3's departures from Llama: (1 + γ) norms on the input, the attention and MLP outputs
/// and q/k, √d embedding scale, query_pre_attn_scalar, a GELU-tanh gated MLP, and sliding
/// layers (all but every `sliding_window_pattern`-th, or as `layer_types` says) with their own
/// RoPE base. Soft-capping of logits, which Gemma 2 uses, is refused rather than ignored.
fn gemma3(r: &Reader<'_>, c: &mut ModelConfig) -> Result<()> {
    for key in ["attn_logit_softcapping", "final_logit_softcapping"] {
        if r.f64_opt(key)?.is_some() {
            return Err(r.err(key, "soft-capping is not supported yet; set it to null"));
        }
    }
    c.norm_offset = 1.0;
    c.embed_scale = Some((c.hidden_size as f64).sqrt());
    c.sandwich_norms = true;
    c.qk_norm = true;
    c.hidden_act = r.activation("hidden_activation", "gelu_pytorch_tanh")?;
    c.tie_word_embeddings = r.bool_opt("tie_word_embeddings")?.unwrap_or(true);
    c.attn_scale = Some(r.f64_opt("query_pre_attn_scalar")?.unwrap_or(256.0).powf(-0.5));
    // transformers 5 spells the two RoPE bases as rope_parameters.{full,sliding}_attention.
    let nested = |kind: &str| {
        r.map.get("rope_parameters").and_then(|p| p.get(kind)).and_then(|p| p.get("rope_theta")).and_then(Value::as_f64)
    };
    if let Some(theta) = nested("full_attention") {
        c.rope_theta = theta;
        let full = r.map.get("rope_parameters").and_then(|p| p.get("full_attention"));
        if let Some(factor) = full
            .filter(|p| p.get("rope_type").and_then(Value::as_str) == Some("linear"))
            .and_then(|p| p.get("factor"))
            .and_then(Value::as_f64)
        {
            c.rope_scaling = RopeScaling::Linear { factor };
        }
    }
    c.rope_local_theta = Some(nested("sliding_attention").or(r.f64_opt("rope_local_base_freq")?).unwrap_or(10_000.0));
    let window = r.usize_opt("sliding_window")?.unwrap_or(512);
    c.sliding_window = match r.map.get("layer_types") {
        Some(Value::Array(types)) => (0..c.num_layers)
            .map(|i| (types.get(i).and_then(Value::as_str) == Some("sliding_attention")).then_some(window))
            .collect(),
        _ => {
            let pattern = r.usize_opt("sliding_window_pattern")?.unwrap_or(6).max(1);
            (0..c.num_layers).map(|i| ((i + 1) % pattern != 0).then_some(window)).collect()
        }
    };
    Ok(())
}

/// The `config.json` path of a model folder.
pub fn config_path(dir: &Path) -> PathBuf {
    dir.join("config.json")
}
