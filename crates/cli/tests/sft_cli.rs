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
    let losses: Vec<f64> = tunesmith_testkit::run_log(&tmp.path().join("run"))
        .into_iter()
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

#[test]
fn a_diverging_run_stops_with_a_clear_message_and_keeps_its_checkpoint() {
    let Some(s) = shared() else { return eprintln!("SKIPPED: ../shared is absent") };
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("text.jsonl");
    let text = std::fs::read_to_string(s.join("data/tinystories-sample/tinystories.txt")).unwrap();
    let rows: Vec<String> =
        text.split("\n\n").take(64).map(|p| serde_json::json!({"text": p.trim()}).to_string()).collect();
    std::fs::write(&data, rows.join("\n") + "\n").unwrap();
    let cfg = tmp.path().join("diverge.toml");
    std::fs::write(
        &cfg,
        format!(
            "[model]\npath = \"{}\"\n[task]\nkind = \"causal_lm\"\n[data]\ntrain = \"{}\"\nvalidation_split = 0.0\nmax_length = 128\n\
             [train]\nepochs = 20\nbatch_size = 8\nlr = 1e12\nmax_grad_norm = 0.0\nthreads = 2\n\
             [output]\ndir = \"{}\"\nsave_every_steps = 1\nkeep_last = 1\n",
            s.join("weights/stories260K/stories260K.bin").display(),
            data.display(),
            tmp.path().join("run").display()
        ),
    )
    .unwrap();
    let o = tunesmith(&["train", cfg.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("the loss is") && err.contains("last good checkpoint") && err.contains("train.lr"), "{err}");
    let ckpts: Vec<_> = std::fs::read_dir(tmp.path().join("run/checkpoints")).unwrap().flatten().collect();
    assert_eq!(ckpts.len(), 1, "the last good checkpoint is kept");
    assert!(ckpts[0].path().join("state.json").exists());
    assert!(err.contains(&ckpts[0].path().display().to_string()), "{err}");
    // With on_nan = "skip", bad batches are skipped and logged; once the weights themselves
    // have diverged (8 in a row), the run stops all the same.
    std::fs::remove_dir_all(tmp.path().join("run")).unwrap();
    let o = tunesmith(&["train", cfg.to_str().unwrap(), "--set", "train.on_nan=skip"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("gives up after 8"), "{err}");
    let log = std::fs::read_to_string(tmp.path().join("run/metrics.jsonl")).unwrap();
    assert_eq!(log.matches("\"skipped_batch\":true").count(), 8, "{log}");
}

#[test]
fn chat_answers_each_line_through_a_template() {
    let Some(s) = shared() else { return eprintln!("SKIPPED: ../shared is absent") };
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_tunesmith"))
        .args(["chat", "--model", s.join("weights/stories260K/stories260K.bin").to_str().unwrap()])
        .args(["--template", "chatml", "--max-new-tokens", "8"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"Tell me a story\nAnd another\n").unwrap();
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = String::from_utf8(o.stdout).unwrap();
    assert_eq!(out.matches("> ").count(), 3, "a prompt per turn and one at EOF: {out:?}");
    assert!(out.lines().count() >= 2, "{out:?}");
}

#[test]
fn gradient_accumulation_normalizes_by_the_tokens_of_the_whole_batch() {
    let Some(s) = shared() else { return eprintln!("SKIPPED: ../shared is absent") };
    // Rows of very different lengths, so a per-micro-batch mean would weight tokens unequally.
    let text = std::fs::read_to_string(s.join("data/tinystories-sample/tinystories.txt")).unwrap();
    let rows: Vec<String> = text
        .split("\n\n")
        .take(32)
        .enumerate()
        .map(|(i, p)| {
            let words: Vec<&str> = p.split_whitespace().collect();
            let keep = if i % 2 == 0 { words.len() } else { words.len().min(6) };
            serde_json::json!({"text": words[..keep].join(" ")}).to_string()
        })
        .collect();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("text.jsonl");
    std::fs::write(&data, rows.join("\n") + "\n").unwrap();
    let run = |name: &str, batch: usize, accum: usize| -> Vec<f32> {
        let cfg = tmp.path().join(format!("{name}.toml"));
        std::fs::write(
            &cfg,
            format!(
                "[model]\npath = \"{}\"\n[task]\nkind = \"causal_lm\"\n[data]\ntrain = \"{}\"\nvalidation_split = 0.0\nmax_length = 128\n\
                 [method]\nkind = \"lora\"\nlora_r = 4\n[train]\nmax_steps = 3\nbatch_size = {batch}\ngrad_accum = {accum}\nlr = 1e-2\nthreads = 2\nmax_grad_norm = 0.0\n\
                 [output]\ndir = \"{}\"\nsave_checkpoints = false\n",
                s.join("weights/stories260K/stories260K.bin").display(),
                data.display(),
                tmp.path().join(name).display()
            ),
        )
        .unwrap();
        let o = tunesmith(&["train", cfg.to_str().unwrap()]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let bytes = std::fs::read(tmp.path().join(name).join("final/adapter/adapter_model.safetensors")).unwrap();
        let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        let mut names: Vec<String> = st.names().into_iter().map(String::from).collect();
        names.sort();
        names
            .iter()
            .flat_map(|n| {
                st.tensor(n)
                    .unwrap()
                    .data()
                    .chunks(4)
                    .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                    .collect::<Vec<_>>()
            })
            .collect()
    };
    let whole = run("whole", 8, 1);
    let accumulated = run("accumulated", 4, 2);
    let scale = whole.iter().fold(0f32, |m, x| m.max(x.abs()));
    let diff = whole.iter().zip(&accumulated).fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    assert!(diff / scale < 1e-4, "batch 8 vs 4 x 2 accumulated differ by {diff} (scale {scale})");
}
