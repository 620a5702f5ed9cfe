//! GGUF files through the binary: a tiny Llama GGUF made here generates; a truncated file, a
//! tensor offset past the end, an unknown quantization type and an architecture tunesmith
//! lacks each give one clear error line and exit code 2, never a panic. With the real
//! SmolLM2-135M-Instruct (Q4_1) fetched, greedy generation answers a factual prompt.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use tunesmith_models::gguf::testing::tiny_llama;
use tunesmith_testkit::fetched_gguf;

/// Runs the binary with `cache` as its TUNESMITH_CACHE (where GGUF companion folders go).
fn tunesmith(args: &[&str], cache: Option<&Path>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tunesmith"));
    if let Some(c) = cache {
        cmd.env("TUNESMITH_CACHE", c);
    }
    cmd.args(args).output().unwrap()
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

/// A LoRA run on a GGUF base exports to a merged GGUF (q8_0) and a llama.cpp LoRA GGUF, both of
/// which generate again, and to Q4_K_M; a quantization we do not write is refused with exit code 2.
#[test]
fn a_lora_run_on_a_gguf_base_exports_gguf_model_and_adapter() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let model = tmp.path().join("tiny.gguf");
    tiny_llama("llama").write(&model).unwrap();
    let data = tmp.path().join("text.jsonl");
    let rows: String = (0..24).map(|i| format!("{{\"text\": \"the cat {i} sat on the mat {i}\"}}\n")).collect();
    std::fs::write(&data, rows).unwrap();
    let run = tmp.path().join("run");
    let cfg = tmp.path().join("run.toml");
    std::fs::write(
        &cfg,
        format!(
            "[model]\npath = {model:?}\n[task]\nkind = \"causal_lm\"\n[data]\ntrain = {data:?}\nvalidation_split = 0.0\nmax_length = 32\n\
             [method]\nkind = \"lora\"\nlora_r = 4\nlora_targets = [\"q_proj\", \"v_proj\", \"down_proj\"]\n\
             [train]\nmax_steps = 4\nbatch_size = 4\nlr = 1e-2\nthreads = 2\n[output]\ndir = {run:?}\nsave_checkpoints = false\n"
        ),
    )
    .unwrap();
    // The same run with the frozen base in NF4 (QLoRA) and in the file's own blocks.
    for mode in ["nf4", "keep"] {
        let out = tmp.path().join(format!("run-{mode}"));
        let o = tunesmith(
            &[
                "train",
                cfg.to_str().unwrap(),
                "--set",
                &format!("model.quantize={mode}"),
                "--set",
                &format!("output.dir={}", out.display()),
            ],
            Some(&cache),
        );
        assert!(o.status.success(), "{mode}: {}", String::from_utf8_lossy(&o.stderr));
        let manifest: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(out.join("manifest.json")).unwrap()).unwrap();
        assert_eq!(manifest["quantized_base"]["mode"], mode);
        assert_eq!(manifest["quantized_base"]["layers"], 7, "{mode}: {}", manifest["quantized_base"]);
    }
    let o = tunesmith(&["train", cfg.to_str().unwrap()], Some(&cache));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let (merged, adapter) = (tmp.path().join("merged.gguf"), tmp.path().join("adapter.gguf"));
    let r = run.to_str().unwrap();
    for (format, out) in [("gguf", &merged), ("gguf-lora", &adapter)] {
        let o = tunesmith(
            &["export", r, "--format", format, "--quant", "q8_0", "--out", out.to_str().unwrap()],
            Some(&cache),
        );
        assert!(o.status.success(), "{format}: {}", String::from_utf8_lossy(&o.stderr));
    }
    let o = generate(&merged, "the cat", Some(&cache));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let m = model.to_str().unwrap();
    let o = tunesmith(
        &[
            "generate",
            "--model",
            m,
            "--adapter",
            adapter.to_str().unwrap(),
            "--prompt",
            "the cat",
            "--max-new-tokens",
            "4",
        ],
        Some(&cache),
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // Q4_K_M: written, and it generates.
    let q4 = tmp.path().join("q4_k_m.gguf");
    let o =
        tunesmith(&["export", r, "--format", "gguf", "--quant", "q4_k_m", "--out", q4.to_str().unwrap()], Some(&cache));
    assert!(o.status.success(), "q4_k_m: {}", String::from_utf8_lossy(&o.stderr));
    let o = generate(&q4, "the cat", Some(&cache));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = tmp.path().join("x.gguf");
    let o = tunesmith(
        &["export", r, "--format", "gguf", "--quant", "q3_k_s", "--out", out.to_str().unwrap()],
        Some(&cache),
    );
    refused(&o, &["q3_k_s"]);
}
