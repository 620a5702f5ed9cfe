//! SFT on a real causal LM: stories260K (../shared/weights, a trained llama2.c model) fine-tuned
//! with LoRA on TinyStories stories in which the heroine is called Zoe instead of Lily. The
//! loss falls, and `tunesmith generate` with the adapter tells a Zoe story where the base model
//! tells its documented Lily story.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn shared() -> Option<PathBuf> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared");
    p.join("weights/stories260K/stories260K.bin").is_file().then_some(p)
}

fn tunesmith(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tunesmith")).args(args).output().unwrap()
}

#[test]
fn lora_sft_on_stories260k_changes_what_generate_says() {
    let Some(s) = shared() else { return eprintln!("SKIPPED: ../shared is absent") };
    let tmp = tempfile::tempdir().unwrap();
    // The fine-tuning set: every TinyStories-sample paragraph that mentions Lily, renamed.
    let text = std::fs::read_to_string(s.join("data/tinystories-sample/tinystories.txt")).unwrap();
    let rows: Vec<String> = text
        .split("\n\n")
        .filter(|p| p.contains("Lily"))
        .map(|p| serde_json::json!({"text": p.trim().replace("Lily", "Zoe")}).to_string())
        .collect();
    assert!(rows.len() >= 20, "{} stories", rows.len());
    let data = tmp.path().join("zoe.jsonl");
    std::fs::write(&data, rows.join("\n") + "\n").unwrap();
    let model = s.join("weights/stories260K/stories260K.bin");
    let cfg = tmp.path().join("sft.toml");
    std::fs::write(
        &cfg,
        format!(
            r#"[model]
path = "{model}"
[task]
kind = "causal_lm"
[data]
train = "{data}"
validation_split = 0.0
max_length = 256
[method]
kind = "lora"
lora_r = 16
lora_alpha = 32
lora_targets = ["all-linear"]
[train]
epochs = 30
batch_size = 8
lr = 1e-2
warmup_ratio = 0.05
seed = 3
threads = 2
[output]
dir = "{out}"
save_checkpoints = false
"#,
            model = model.display(),
            data = data.display(),
            out = tmp.path().join("run").display()
        ),
    )
    .unwrap();
    let o = tunesmith(&["train", cfg.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // The loss falls.
    let losses: Vec<f64> = std::fs::read_to_string(tmp.path().join("run/metrics.jsonl"))
        .unwrap()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["split"] == "train")
        .filter_map(|v| v["loss"].as_f64())
        .collect();
    let first: f64 = losses[..5].iter().sum::<f64>() / 5.0;
    let last: f64 = losses[losses.len() - 5..].iter().sum::<f64>() / 5.0;
    assert!(last < first * 0.8, "loss did not fall: {first:.3} -> {last:.3}");
    // Greedy generation from a story opening, without and with the adapter.
    let gen = |adapter: Option<&Path>| {
        let mut args = vec![
            "generate",
            "--model",
            model.to_str().unwrap(),
            "--prompt",
            "Once upon a time, there was a little girl named",
            "--max-new-tokens",
            "12",
        ];
        let a;
        if let Some(p) = adapter {
            a = p.to_str().unwrap().to_string();
            args.extend(["--adapter", a.as_str()]);
        }
        let o = tunesmith(&args);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8(o.stdout).unwrap()
    };
    let before = gen(None);
    let after = gen(Some(&tmp.path().join("run/final/adapter")));
    assert!(before.contains("named Lily"), "base model: {before}");
    assert!(after.contains("named Zoe"), "with the adapter: {after}");
}
