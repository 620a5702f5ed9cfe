//! GGUF files through the binary: a tiny Llama GGUF made here generates; a truncated file, a
//! tensor offset past the end, an unknown quantization type and an architecture tunesmith
//! lacks each give one clear error line and exit code 2, never a panic. With the real
//! SmolLM2-135M-Instruct (Q4_1) fetched, greedy generation answers a factual prompt.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use tunesmith_engine::quant::GgmlType;
use tunesmith_models::gguf::{GgufWriter, Value};
use tunesmith_testkit::fetched_gguf;

/// Runs the binary with `cache` as its TUNESMITH_CACHE (where GGUF companion folders go).
fn tunesmith(args: &[&str], cache: Option<&Path>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tunesmith"));
    if let Some(c) = cache {
        cmd.env("TUNESMITH_CACHE", c);
    }
    cmd.args(args).output().unwrap()
}

/// GPT-2's byte alphabet: the printable stand-in of every byte, as byte-level vocabularies
/// spell tokens.
fn byte_tokens() -> Vec<String> {
    let mut extra = 0u32;
    (0..256u32)
        .map(|b| {
            let printable = (33..=126).contains(&b) || (161..=172).contains(&b) || (174..=255).contains(&b);
            let c = if printable {
                char::from_u32(b).unwrap()
            } else {
                extra += 1;
                char::from_u32(255 + extra).unwrap()
            };
            c.to_string()
        })
        .collect()
}

fn f32_bytes(n: usize, seed: f32) -> Vec<u8> {
    (0..n).flat_map(|i| (((i as f32 * 0.618 + seed).sin()) * 0.2).to_le_bytes()).collect()
}

/// A one-block Llama (width 8, 2 heads, 1 KV head) with a byte-level vocabulary of 256 bytes
/// plus `<|endoftext|>`, weights in F32 and Q8_0.
fn tiny_llama(arch: &str) -> GgufWriter {
    let (d, ff, kv) = (32usize, 64usize, 16usize);
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
    w.add_tensor("token_embd.weight", &[n_vocab, d], GgmlType::Q8_0, q8).unwrap();
    w.add_tensor("output_norm.weight", &[d], GgmlType::F32, f32_bytes(d, 9.0)).unwrap();
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
        w.add_tensor(name, &shape, GgmlType::F32, f32_bytes(n, seed)).unwrap();
    }
    w
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

#[track_caller]
fn refused(o: &Output, needles: &[&str]) {
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "expected exit code 2: {err}");
    assert!(!err.contains("panicked"), "{err}");
    let line = err.lines().find(|l| l.starts_with("error:")).unwrap_or_else(|| panic!("no error line: {err}"));
    for n in needles {
        assert!(line.contains(n), "error line lacks {n:?}: {line}");
    }
}

fn generate(model: &Path, prompt: &str, cache: Option<&Path>) -> Output {
    tunesmith(&["generate", "--model", model.to_str().unwrap(), "--prompt", prompt, "--max-new-tokens", "8"], cache)
}

#[test]
fn a_tiny_gguf_generates_and_bad_files_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let generate = |model: &Path, prompt: &str| generate(model, prompt, Some(&cache));
    let good = tiny_llama("llama").to_bytes();
    let model = write(tmp.path(), "tiny.gguf", &good);
    let o = generate(&model, "abc");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stdout).starts_with("abc"));

    let cut = write(tmp.path(), "cut.gguf", &good[..good.len() / 2]);
    refused(&generate(&cut, "abc"), &["cut.gguf", "truncated"]);

    // The offset of the last tensor (ffn_down, the last field of its info) past the end.
    let at = good.windows(b"blk.0.ffn_down.weight".len()).position(|w| w == b"blk.0.ffn_down.weight").unwrap()
        + "blk.0.ffn_down.weight".len()
        + 4
        + 16
        + 4;
    let mut far = good.clone();
    far[at..at + 8].copy_from_slice(&(1u64 << 32).to_le_bytes());
    let far = write(tmp.path(), "far.gguf", &far);
    refused(&generate(&far, "abc"), &["far.gguf", "blk.0.ffn_down.weight", "data section"]);

    let mut odd = good.clone();
    odd[at - 4..at].copy_from_slice(&31u32.to_le_bytes());
    let odd = write(tmp.path(), "odd.gguf", &odd);
    refused(&generate(&odd, "abc"), &["odd.gguf", "quantization type id 31"]);

    let falcon = write(tmp.path(), "falcon.gguf", &tiny_llama("falcon").to_bytes());
    refused(&generate(&falcon, "abc"), &["falcon.gguf", "architecture \"falcon\" is not supported"]);
}

#[test]
fn smollm2_answers_from_its_q4_1_file() {
    let Some(model) = fetched_gguf("smollm2") else { return };
    let o = generate(&model, "The capital of France is", None);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("Paris"), "{text}");
}
