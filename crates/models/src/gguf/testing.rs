//! A tiny random GGUF model, for tests and examples that need a real file without fetching
//! one: a one-block Llama (width 64, 2 heads, 1 KV head) with a byte-level vocabulary.

use tunesmith_engine::quant::GgmlType;

use super::{GgufWriter, Value};

/// GPT-2's byte alphabet as token strings: the printable stand-in of every byte, as
/// byte-level vocabularies spell tokens.
pub fn byte_tokens() -> Vec<String> {
    super::tokenizer::byte_alphabet().iter().map(|c| c.to_string()).collect()
}

/// `n` deterministic small f32 values as little-endian bytes.
fn f32_bytes(n: usize, seed: f32) -> Vec<u8> {
    (0..n).flat_map(|i| (((i as f32 * 0.618 + seed).sin()) * 0.2).to_le_bytes()).collect()
}

/// A one-block model of architecture `arch` (width 64, 2 heads, 1 KV head) with a byte-level vocabulary of 256 bytes
/// plus `<|endoftext|>`, weights in F32 and Q8_0.
pub fn tiny_llama(arch: &str) -> GgufWriter {
    let (d, ff, kv) = (64usize, 128usize, 32usize);
    let mut tokens = byte_tokens();
    tokens.push("<|endoftext|>".into());
    let n_vocab = tokens.len();
    let mut types = vec![Value::I32(1); 256];
    types.push(Value::I32(3));
    let mut w = GgufWriter::new();
    w.set("general.architecture", Value::String(arch.into()))
        .set(&format!("{arch}.block_count"), Value::U32(1))
        .set(&format!("{arch}.context_length"), Value::U32(128))
        .set(&format!("{arch}.embedding_length"), Value::U32(d as u32))
        .set(&format!("{arch}.feed_forward_length"), Value::U32(ff as u32))
        .set(&format!("{arch}.attention.head_count"), Value::U32(2))
        .set(&format!("{arch}.attention.head_count_kv"), Value::U32(1))
        .set(&format!("{arch}.attention.layer_norm_rms_epsilon"), Value::F32(1e-5))
        .set("tokenizer.ggml.model", Value::String("gpt2".into()))
        .set("tokenizer.ggml.tokens", Value::Array(tokens.into_iter().map(Value::String).collect()))
        .set("tokenizer.ggml.token_type", Value::Array(types))
        .set("tokenizer.ggml.eos_token_id", Value::U32(256))
        .set("tokenizer.ggml.bos_token_id", Value::U32(256));
    let mut q8 = vec![0u8; n_vocab * d / 32 * 34];
    let emb: Vec<f32> = (0..n_vocab * d).map(|i| ((i as f32 * 0.37).sin()) * 0.5).collect();
    for (block, out) in emb.chunks(32).zip(q8.chunks_mut(34)) {
        tunesmith_engine::quant::quantize_q8_0(block, out);
    }
    w.add_tensor("token_embd.weight", &[n_vocab, d], GgmlType::Q8_0, q8).expect("the shapes match the data");
    w.add_tensor("output_norm.weight", &[d], GgmlType::F32, f32_bytes(d, 9.0)).expect("the shapes match the data");
    for (name, shape, seed) in [
        ("blk.0.attn_norm.weight", vec![d], 1.0),
        ("blk.0.ffn_norm.weight", vec![d], 2.0),
        ("blk.0.attn_q.weight", vec![d, d], 3.0),
        ("blk.0.attn_k.weight", vec![kv, d], 4.0),
        ("blk.0.attn_v.weight", vec![kv, d], 5.0),
        ("blk.0.attn_output.weight", vec![d, d], 6.0),
        ("blk.0.ffn_gate.weight", vec![ff, d], 7.0),
        ("blk.0.ffn_up.weight", vec![ff, d], 8.0),
        ("blk.0.ffn_down.weight", vec![d, ff], 10.0),
    ] {
        let n = shape.iter().product();
        w.add_tensor(name, &shape, GgmlType::F32, f32_bytes(n, seed)).expect("the shapes match the data");
    }
    w
}
