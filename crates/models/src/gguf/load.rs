//! GGUF models as tunesmith models: the file's metadata becomes the config.json transformers
//! derives from it, and its tensors, dequantized to f32, take their Hugging Face names. The
//! q/k projections of `llama`-architecture files are permuted back from llama.cpp's
//! interleaved rotary layout (as transformers' loader does), so the logits equal those of
//! transformers loading the same file.

use std::path::Path;

use serde_json::{json, Map, Value as Json};
use tunesmith_engine::Tensor;

use super::reader::{GgufFile, TensorInfo};
use crate::config::ModelConfig;
use crate::error::{ModelError, Result};
use crate::llama2c::{permute_rotary, permute_rows};
use crate::model::{LoadOptions, LoadReport, Model};
use crate::quantize::BaseQuant;
use crate::weights::Checkpoint;
use tunesmith_engine::quant::QuantMatrix;

/// The architectures (`general.architecture`) this loader reads.
pub const ARCHITECTURES: [&str; 4] = ["llama", "mistral", "qwen2", "gemma3"];

/// The Hugging Face config.json of a GGUF file's model.
pub fn config_json(f: &GgufFile) -> Result<Json> {
    let arch = f.str("general.architecture")?;
    if !ARCHITECTURES.contains(&arch) {
        return Err(ModelError::config(
            f.path(),
            "general.architecture",
            format!("architecture \"{arch}\" is not supported (tunesmith reads {})", ARCHITECTURES.join(", ")),
        ));
    }
    let key = |k: &str| format!("{arch}.{k}");
    let n_vocab = match f.get(&key("vocab_size")).and_then(|v| v.as_u64()) {
        Some(v) => v as usize,
        None => f
            .get("tokenizer.ggml.tokens")
            .and_then(|v| v.as_array())
            .map(|a| a.len())
            .or_else(|| f.tensor("token_embd.weight").map(|t| t.shape()[0]))
            .ok_or_else(|| ModelError::config(f.path(), key("vocab_size"), "missing, and there is no token list"))?,
    };
    let hidden = f.u64(&key("embedding_length"))? as usize;
    let heads = f.u64(&key("attention.head_count"))? as usize;
    if heads == 0 || hidden == 0 {
        return Err(ModelError::config(f.path(), key("attention.head_count"), "heads and width must be positive"));
    }
    let kv_heads = f.get(&key("attention.head_count_kv")).and_then(|v| v.as_u64()).map_or(heads, |v| v as usize);
    let head_dim = f.get(&key("attention.key_length")).and_then(|v| v.as_u64()).map_or(hidden / heads, |v| v as usize);
    let mut c = Map::new();
    c.insert("vocab_size".into(), json!(n_vocab));
    c.insert("hidden_size".into(), json!(hidden));
    c.insert("num_hidden_layers".into(), json!(f.u64(&key("block_count"))?));
    c.insert("intermediate_size".into(), json!(f.u64(&key("feed_forward_length"))?));
    c.insert("num_attention_heads".into(), json!(heads));
    c.insert("num_key_value_heads".into(), json!(kv_heads));
    c.insert("head_dim".into(), json!(head_dim));
    c.insert(
        "max_position_embeddings".into(),
        json!(f.get(&key("context_length")).and_then(|v| v.as_u64()).unwrap_or(2048)),
    );
    c.insert("rms_norm_eps".into(), json!(f.f64_opt(&key("attention.layer_norm_rms_epsilon")).unwrap_or(1e-6)));
    c.insert("rope_theta".into(), json!(f.f64_opt(&key("rope.freq_base")).unwrap_or(10000.0)));
    c.insert("tie_word_embeddings".into(), json!(f.tensor("output.weight").is_none()));
    for (name, k) in [
        ("bos_token_id", "tokenizer.ggml.bos_token_id"),
        ("eos_token_id", "tokenizer.ggml.eos_token_id"),
        ("pad_token_id", "tokenizer.ggml.padding_token_id"),
    ] {
        if let Some(v) = f.get(k).and_then(|v| v.as_u64()) {
            c.insert(name.into(), json!(v));
        }
    }
    if let Some(kind) = f.get(&key("rope.scaling.type")).and_then(|v| v.as_str()) {
        let factor = f.f64_opt(&key("rope.scaling.factor")).unwrap_or(1.0);
        if kind != "none" {
            if kind != "linear" {
                return Err(ModelError::config(
                    f.path(),
                    key("rope.scaling.type"),
                    format!("RoPE scaling \"{kind}\" is not supported in GGUF files (linear is)"),
                ));
            }
            c.insert("rope_scaling".into(), json!({"rope_type": "linear", "factor": factor}));
        }
    }
    let (model_type, class) = match arch {
        "llama" => ("llama", "LlamaForCausalLM"),
        "mistral" => ("mistral", "MistralForCausalLM"),
        "qwen2" => ("qwen2", "Qwen2ForCausalLM"),
        _ => ("gemma3_text", "Gemma3ForCausalLM"),
    };
    c.insert("model_type".into(), json!(model_type));
    c.insert("architectures".into(), json!([class]));
    if arch == "gemma3" {
        c.insert("hidden_activation".into(), json!("gelu_pytorch_tanh"));
        c.insert("query_pre_attn_scalar".into(), json!(head_dim));
        c.insert("rope_local_base_freq".into(), json!(10000.0));
        c.insert(
            "sliding_window".into(),
            json!(f.get(&key("attention.sliding_window")).and_then(|v| v.as_u64()).unwrap_or(512)),
        );
        c.insert("sliding_window_pattern".into(), json!(6));
    } else {
        c.insert("hidden_act".into(), json!("silu"));
    }
    if arch == "qwen2" {
        c.insert("attention_bias".into(), json!(f.tensor("blk.0.attn_q.bias").is_some()));
    }
    Ok(Json::Object(c))
}

/// The Hugging Face name of a GGUF tensor, or `None` for tensors the model does not use
/// (precomputed RoPE tables).
fn hf_name(name: &str) -> Option<String> {
    let fixed = match name {
        "token_embd.weight" => Some("model.embed_tokens.weight"),
        "output_norm.weight" => Some("model.norm.weight"),
        "output.weight" => Some("lm_head.weight"),
        "rope_freqs.weight" => return None,
        _ => None,
    };
    if let Some(n) = fixed {
        return Some(n.to_string());
    }
    let rest = name.strip_prefix("blk.")?;
    let (layer, part) = rest.split_once('.')?;
    let layer: usize = layer.parse().ok()?;
    let (module, suffix) = part.rsplit_once('.')?;
    let hf = match module {
        "attn_norm" => "input_layernorm",
        "ffn_norm" => "post_attention_layernorm",
        "post_attention_norm" => "post_attention_layernorm",
        "post_ffw_norm" => "post_feedforward_layernorm",
        "attn_q" => "self_attn.q_proj",
        "attn_k" => "self_attn.k_proj",
        "attn_v" => "self_attn.v_proj",
        "attn_output" => "self_attn.o_proj",
        "attn_q_norm" => "self_attn.q_norm",
        "attn_k_norm" => "self_attn.k_norm",
        "ffn_gate" => "mlp.gate_proj",
        "ffn_up" => "mlp.up_proj",
        "ffn_down" => "mlp.down_proj",
        _ => return Some(format!("gguf.unknown.{name}")),
    };
    Some(format!("model.layers.{layer}.{hf}.{suffix}"))
}

/// The Hugging Face name of a Gemma 3 GGUF tensor: its `ffn_norm` is the pre-feedforward norm
/// (the post-attention one is `post_attention_norm`).
pub(crate) fn hf_name_for(arch: &str, name: &str) -> Option<String> {
    if arch == "gemma3" && name.contains(".ffn_norm.") {
        return hf_name(name).map(|n| n.replace("post_attention_layernorm", "pre_feedforward_layernorm"));
    }
    hf_name(name)
}

/// One tensor in f32 with its HF name, permuted or shifted as the architecture needs.
fn convert(f: &GgufFile, arch: &str, info: &TensorInfo, cfg: &ModelConfig) -> Result<Option<(String, Tensor)>> {
    let Some(name) = hf_name_for(arch, &info.name) else { return Ok(None) };
    let shape = info.shape();
    let mut data = f.dequantize(info)?;
    if shape.len() == 2 {
        data = permute_for(arch, &name, data, shape[0], shape[1], cfg.num_heads, cfg.num_kv_heads);
    }
    if arch == "gemma3" && name.ends_with("norm.weight") {
        // llama.cpp stores Gemma's RMSNorm weights as 1 + w; transformers' Gemma scales by
        // (1 + w), so the file's values move back by one.
        data.iter_mut().for_each(|w| *w -= 1.0);
    }
    Ok(Some((name, Tensor::from_vec(data, &shape)?)))
}

/// Rows of a q/k projection of a `llama` or `mistral` file (or of its LoRA B), from
/// llama.cpp's interleaved rotary layout to Hugging Face's; other tensors pass unchanged.
fn permute_for(
    arch: &str,
    name: &str,
    data: Vec<f32>,
    rows: usize,
    cols: usize,
    heads: usize,
    kv_heads: usize,
) -> Vec<f32> {
    if arch != "llama" && arch != "mistral" {
        return data;
    }
    if name.contains(".q_proj.") {
        permute_rotary(&data, heads, rows, cols)
    } else if name.contains(".k_proj.") {
        permute_rotary(&data, kv_heads, rows, cols)
    } else {
        data
    }
}

/// The file's own blocks of the matrix `info` (Hugging Face name `hf_name`), kept quantized,
/// with a `llama`/`mistral` q/k projection's rows moved to Hugging Face's rotary layout (rows
/// move whole, so the blocks stay as they are).
pub(crate) fn file_blocks(
    f: &GgufFile,
    arch: &str,
    info: &TensorInfo,
    hf_name: &str,
    heads: usize,
    kv_heads: usize,
) -> Result<QuantMatrix> {
    let shape = info.shape();
    let (rows, cols) = (shape[0], shape[1]);
    let bytes = f.tensor_bytes(info);
    let row_bytes = bytes.len() / rows.max(1);
    let rotary_heads = match (arch == "llama" || arch == "mistral", hf_name) {
        (true, n) if n.contains(".q_proj.") => Some(heads),
        (true, n) if n.contains(".k_proj.") => Some(kv_heads),
        _ => None,
    };
    let bytes = match rotary_heads {
        Some(h) => permute_rows(bytes, h, rows, row_bytes),
        None => bytes.to_vec(),
    };
    Ok(QuantMatrix::from_ggml(info.ty, rows, cols, bytes)?)
}

/// [`permute_for`] for the module `module` (a LoRA B matrix of it) of `model`.
pub(crate) fn to_hf_layout(
    arch: &str,
    module: &str,
    data: Vec<f32>,
    rows: usize,
    cols: usize,
    model: &Model,
) -> Vec<f32> {
    let c = &model.config;
    permute_for(arch, &format!("{module}."), data, rows, cols, c.num_heads, c.num_kv_heads)
}

/// Loads a GGUF file's model for a task (weights dequantized to f32).
pub fn load(path: &Path, opts: &LoadOptions) -> Result<(Model, LoadReport)> {
    let f = GgufFile::open(path)?;
    load_file(&f, opts)
}

/// Loads an opened GGUF file's model for a task.
pub fn load_file(f: &GgufFile, opts: &LoadOptions) -> Result<(Model, LoadReport)> {
    load_file_quantized(f, opts, BaseQuant::None)
}

/// Whether a GGUF tensor is a projection of a block (the weights a quantized base holds).
fn is_block_projection(name: &str) -> bool {
    name.starts_with("blk.")
        && name.ends_with(".weight")
        && ["attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"]
            .iter()
            .any(|m| name.contains(&format!(".{m}.")))
}

/// Loads an opened GGUF file's model with its block projections held as `quant` says, one
/// tensor at a time, so that the f32 model never exists whole: `keep` takes the file's own
/// blocks (q/k rows moved as whole block rows), `nf4` and `q8_0` quantize each dequantized
/// weight. The layers load frozen, with their `weight` parameters empty.
pub fn load_file_quantized(f: &GgufFile, opts: &LoadOptions, quant: BaseQuant) -> Result<(Model, LoadReport)> {
    let arch = f.str("general.architecture")?.to_string();
    let cfg = ModelConfig::from_json(f.path(), config_json(f)?)?;
    let mut tensors = Vec::with_capacity(f.tensors.len());
    let mut quantized = Vec::new();
    for info in &f.tensors {
        if quant != BaseQuant::None && is_block_projection(&info.name) && info.dims.len() == 2 {
            let Some(name) = hf_name_for(&arch, &info.name) else { continue };
            let shape = info.shape();
            let (rows, cols) = (shape[0], shape[1]);
            let matrix = match quant {
                BaseQuant::Keep => file_blocks(f, &arch, info, &name, cfg.num_heads, cfg.num_kv_heads)?,
                _ => {
                    let data =
                        permute_for(&arch, &name, f.dequantize(info)?, rows, cols, cfg.num_heads, cfg.num_kv_heads);
                    match quant {
                        BaseQuant::Nf4 => QuantMatrix::nf4(&data, rows, cols)?,
                        _ => QuantMatrix::q8_0(&data, rows, cols)?,
                    }
                }
            };
            quantized.push((name, matrix));
            continue;
        }
        if let Some(t) = convert(f, &arch, info, &cfg)? {
            tensors.push(t);
        }
    }
    let ck = Checkpoint::from_parts(f.path(), tensors, quantized);
    Model::from_checkpoint(cfg, &ck, opts)
}
