//! llama2.c checkpoints (`.bin`): a header of seven i32 (dim, hidden_dim, n_layers, n_heads,
//! n_kv_heads, vocab_size — negative when the classifier is not shared — and seq_len), then the
//! f32 weights in a fixed order. They load as a Llama model; the q/k rows are permuted from
//! llama2.c's interleaved rotary layout to Hugging Face's rotate-half layout (the same
//! permutation transformers' conversion script applies), so the attention scores are identical.

use std::path::Path;

use serde_json::json;
use tunesmith_engine::Tensor;

use crate::config::ModelConfig;
use crate::error::{ModelError, Result};
use crate::model::{LoadOptions, LoadReport, Model};
use crate::weights::Checkpoint;

/// The llama2.c header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Llama2cHeader {
    /// Model width.
    pub dim: usize,
    /// MLP width.
    pub hidden_dim: usize,
    /// Blocks.
    pub n_layers: usize,
    /// Query heads.
    pub n_heads: usize,
    /// Key/value heads.
    pub n_kv_heads: usize,
    /// Vocabulary size.
    pub vocab_size: usize,
    /// Trained context length.
    pub seq_len: usize,
    /// The output classifier is the token embedding.
    pub shared_classifier: bool,
}

/// For each row of a q/k projection in Hugging Face's rotate-half layout (i, i + head/2 of a
/// head), the row it comes from in the interleaved rotary layout of llama2.c and llama.cpp
/// (pairs 2i, 2i+1).
pub(crate) fn interleaved_source_rows(n_heads: usize, rows: usize) -> Vec<usize> {
    let head = rows / n_heads;
    let half = head / 2;
    let mut order = vec![0; rows];
    for h in 0..n_heads {
        for j in 0..head {
            order[h * head + (j % 2) * half + j / 2] = h * head + j;
        }
    }
    order
}

/// Rows of `w` (each `width` elements) reordered: row `i` of the result is row `order[i]`.
pub(crate) fn gather_rows<T: Copy>(w: &[T], order: &[usize], width: usize) -> Vec<T> {
    order.iter().flat_map(|&src| w[src * width..(src + 1) * width].iter().copied()).collect()
}

/// Rows of each head of a q/k projection from the interleaved rotary layout to Hugging Face's.
pub(crate) fn permute_rotary(w: &[f32], n_heads: usize, rows: usize, cols: usize) -> Vec<f32> {
    gather_rows(w, &interleaved_source_rows(n_heads, rows), cols)
}

/// [`permute_rotary`] on rows of raw bytes (`row_bytes` each), as quantized rows are moved.
pub(crate) fn permute_rows(w: &[u8], n_heads: usize, rows: usize, row_bytes: usize) -> Vec<u8> {
    gather_rows(w, &interleaved_source_rows(n_heads, rows), row_bytes)
}

/// The header (the first 28 bytes) of a llama2.c checkpoint, checked for plausibility.
fn parse_header(path: &Path, bytes: &[u8]) -> Result<Llama2cHeader> {
    if bytes.len() < 28 {
        return Err(ModelError::format(path, "too short for a llama2.c header"));
    }
    let h: Vec<i32> = bytes[..28].chunks_exact(4).map(|c| i32::from_le_bytes(c.try_into().expect("4 bytes"))).collect();
    if h.iter().enumerate().any(|(i, &v)| v == 0 || (v < 0 && i != 5)) {
        return Err(ModelError::format(path, format!("implausible llama2.c header {h:?}")));
    }
    Ok(Llama2cHeader {
        dim: h[0] as usize,
        hidden_dim: h[1] as usize,
        n_layers: h[2] as usize,
        n_heads: h[3] as usize,
        n_kv_heads: h[4] as usize,
        vocab_size: h[5].unsigned_abs() as usize,
        seq_len: h[6] as usize,
        shared_classifier: h[5] > 0,
    })
}

/// Reads only the header of a llama2.c checkpoint (its vocabulary size names the tokenizer).
pub fn read_header(path: &Path) -> Result<Llama2cHeader> {
    use std::io::Read;
    let mut bytes = Vec::with_capacity(28);
    std::fs::File::open(path).and_then(|f| f.take(28).read_to_end(&mut bytes)).map_err(|e| ModelError::io(path, e))?;
    parse_header(path, &bytes)
}

/// Reads a llama2.c checkpoint into a causal-LM [`Model`].
pub fn load(path: &Path) -> Result<(Model, LoadReport, Llama2cHeader)> {
    load_with(path, &LoadOptions::new(crate::Task::CausalLm))
}

/// Loads a llama2.c checkpoint with a head for `opts.task` (a sequence-classification
/// head, e.g. a reward model's, is created fresh from `opts`' labels and seed).
pub fn load_with(path: &Path, opts: &LoadOptions) -> Result<(Model, LoadReport, Llama2cHeader)> {
    let bytes = std::fs::read(path).map_err(|e| ModelError::io(path, e))?;
    let hdr = parse_header(path, &bytes)?;
    let (d, hd_all, l) = (hdr.dim, hdr.hidden_dim, hdr.n_layers);
    if d % hdr.n_heads != 0 || !hdr.n_heads.is_multiple_of(hdr.n_kv_heads) {
        return Err(ModelError::format(
            path,
            format!("dim {d} / heads {} / kv heads {} do not divide", hdr.n_heads, hdr.n_kv_heads),
        ));
    }
    let head = d / hdr.n_heads;
    let kv = hdr.n_kv_heads * head;
    let floats: Vec<f32> =
        bytes[28..].chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes"))).collect();
    let mut at = 0usize;
    let mut next = |n: usize| -> Result<Vec<f32>> {
        let s = floats
            .get(at..at + n)
            .ok_or_else(|| ModelError::format(path, format!("file ends at float {at}, {n} more needed")))?
            .to_vec();
        at += n;
        Ok(s)
    };
    let embed = next(hdr.vocab_size * d)?;
    let att_norm = next(l * d)?;
    let wq = next(l * d * d)?;
    let wk = next(l * d * kv)?;
    let wv = next(l * d * kv)?;
    let wo = next(l * d * d)?;
    let ffn_norm = next(l * d)?;
    let w1 = next(l * d * hd_all)?;
    let w2 = next(l * hd_all * d)?;
    let w3 = next(l * d * hd_all)?;
    let final_norm = next(d)?;
    let _freq_real = next(hdr.seq_len * head / 2)?;
    let _freq_imag = next(hdr.seq_len * head / 2)?;
    let wcls = if hdr.shared_classifier { None } else { Some(next(hdr.vocab_size * d)?) };
    let t = |v: Vec<f32>, s: &[usize]| Tensor::from_vec(v, s).map_err(ModelError::from);
    let mut tensors = vec![
        ("model.embed_tokens.weight".to_string(), t(embed, &[hdr.vocab_size, d])?),
        ("model.norm.weight".to_string(), t(final_norm, &[d])?),
    ];
    for i in 0..l {
        let p = format!("model.layers.{i}");
        let slice = |v: &[f32], n: usize| v[i * n..(i + 1) * n].to_vec();
        tensors.push((format!("{p}.input_layernorm.weight"), t(slice(&att_norm, d), &[d])?));
        tensors.push((format!("{p}.post_attention_layernorm.weight"), t(slice(&ffn_norm, d), &[d])?));
        tensors.push((
            format!("{p}.self_attn.q_proj.weight"),
            t(permute_rotary(&slice(&wq, d * d), hdr.n_heads, d, d), &[d, d])?,
        ));
        tensors.push((
            format!("{p}.self_attn.k_proj.weight"),
            t(permute_rotary(&slice(&wk, kv * d), hdr.n_kv_heads, kv, d), &[kv, d])?,
        ));
        tensors.push((format!("{p}.self_attn.v_proj.weight"), t(slice(&wv, kv * d), &[kv, d])?));
        tensors.push((format!("{p}.self_attn.o_proj.weight"), t(slice(&wo, d * d), &[d, d])?));
        tensors.push((format!("{p}.mlp.gate_proj.weight"), t(slice(&w1, hd_all * d), &[hd_all, d])?));
        tensors.push((format!("{p}.mlp.down_proj.weight"), t(slice(&w2, d * hd_all), &[d, hd_all])?));
        tensors.push((format!("{p}.mlp.up_proj.weight"), t(slice(&w3, hd_all * d), &[hd_all, d])?));
    }
    if let Some(w) = wcls {
        tensors.push(("lm_head.weight".to_string(), t(w, &[hdr.vocab_size, d])?));
    }
    let config = json!({
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": hdr.vocab_size,
        "hidden_size": d,
        "intermediate_size": hd_all,
        "num_hidden_layers": l,
        "num_attention_heads": hdr.n_heads,
        "num_key_value_heads": hdr.n_kv_heads,
        "max_position_embeddings": hdr.seq_len,
        "rms_norm_eps": 1e-5,
        "rope_theta": 10000.0,
        "tie_word_embeddings": hdr.shared_classifier,
        "bos_token_id": 1,
        "eos_token_id": 2,
        "hidden_act": "silu",
    });
    let cfg = ModelConfig::from_json(path, config)?;
    let ck = Checkpoint::from_tensors(path, tensors);
    let (model, report) = Model::from_checkpoint(cfg, &ck, opts)?;
    Ok((model, report, hdr))
}
