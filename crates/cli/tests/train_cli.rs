//! `tunesmith train` end to end on the real all-MiniLM-L6-v2 and the intents in examples/:
//! bad input refused with one line and exit code 2; a run killed with SIGKILL (mid-run, and
//! possibly mid-checkpoint) resumes to exactly the weights of an uninterrupted run, for LoRA and
//! for full fine-tuning.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use tunesmith_testkit::{fetched_minilm, minilm_dir, refused, run_log};
use tunesmith_train::config::MethodKind;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn tunesmith(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tunesmith")).args(args).current_dir(repo()).output().unwrap()
}

/// A small config: 64 training intents, LoRA r=4, 8 steps, a checkpoint every 2.
fn config(dir: &Path, model: &Path, extra: &str) -> PathBuf {
    let text = format!(
        r#"[model]
path = "{model}"
[task]
kind = "classification"
[data]
train = "examples/intents/train.jsonl"
validation_split = 0.0
max_length = 48
max_train_rows = 64
[method]
kind = "lora"
lora_r = 4
lora_targets = ["query", "value"]
[train]
max_steps = 8
batch_size = 8
lr = 1e-3
warmup_steps = 2
threads = 2
seed = 7
[output]
dir = "{out}"
save_every_steps = 2
keep_last = 2
{extra}"#,
        model = model.display(),
        out = dir.join("run").display(),
    );
    let path = dir.join("run.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn p(x: &Path) -> &str {
    x.to_str().unwrap()
}

#[test]
fn bad_input_is_refused_with_one_line_and_exit_code_2() {
    let tmp = tempfile::tempdir().unwrap();
    let model = minilm_dir();
    // A config typo, in the file and on the command line.
    let cfg = config(tmp.path(), &model, "[eval]\nmetrc = \"accuracy\"\n");
    refused(&tunesmith(&["train", p(&cfg)]), &["eval.metrc", "did you mean `eval.metric`"]);
    let cfg = config(tmp.path(), &model, "");
    refused(&tunesmith(&["train", p(&cfg), "--set", "train.batchsize=4"]), &["train.batchsize", "train.batch_size"]);
    // A missing model file.
    let broken = tmp.path().join("broken-model");
    std::fs::create_dir_all(&broken).unwrap();
    if model.join("config.json").exists() {
        for f in ["config.json", "tokenizer.json", "tokenizer_config.json"] {
            std::fs::copy(model.join(f), broken.join(f)).unwrap();
        }
        let cfg = config(tmp.path(), &broken, "");
        refused(&tunesmith(&["train", p(&cfg)]), &["safetensors"]);
    } else {
        eprintln!("SKIPPED part: no MiniLM at {} (run scripts/fetch-test-models.sh)", model.display());
        return;
    }
    // Bad methods: an unknown kind, targets that match nothing (the error lists the layer
    // names there are), a rank larger than a targeted layer (MiniLM's width is 384).
    let cfg = config(tmp.path(), &model, "");
    refused(&tunesmith(&["train", p(&cfg), "--set", "method.kind=lorra"]), &["lorra", "lora"]);
    refused(
        &tunesmith(&["train", p(&cfg), "--set", "method.lora_targets=[\"q_proj\"]"]),
        &["q_proj", "query", "value"],
    );
    refused(&tunesmith(&["train", p(&cfg), "--set", "method.lora_r=500"]), &["r = 500", "r <= 384"]);
    // A wrong schema: chat data for a classification task.
    let chat = tmp.path().join("chat.jsonl");
    std::fs::write(&chat, "{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}, {\"role\": \"assistant\", \"content\": \"hello\"}]}\n").unwrap();
    let cfg = config(tmp.path(), &model, "");
    refused(
        &tunesmith(&["train", p(&cfg), "--set", &format!("data.train={}", p(&chat))]),
        &["chat.jsonl:1", "task.kind"],
    );
    // A label outside the label map.
    refused(
        &tunesmith(&["train", p(&cfg), "--set", "task.labels=[\"billing\", \"shipping\"]"]),
        &["train.jsonl:", "is not in the label map", "task.labels"],
    );
    // Zero usable rows.
    let empty = tmp.path().join("empty.jsonl");
    std::fs::write(&empty, "{\"text\": \"no label here\"}\n{\"label\": \"billing\"}\n").unwrap();
    refused(
        &tunesmith(&["train", p(&cfg), "--set", &format!("data.train={}", p(&empty))]),
        &["empty.jsonl", "data.schema"],
    );
    refused(
        &tunesmith(&[
            "train",
            p(&cfg),
            "--set",
            &format!("data.train={}", p(&empty)),
            "--set",
            "data.schema=classification",
        ]),
        &["empty.jsonl", "no usable rows", "2 rejected"],
    );
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Starts a run (with `--set` overrides `sets`), SIGKILLs it once `ready(checkpoints dir)`
/// holds, resumes it, and checks the final `outputs` and logged losses against the
/// uninterrupted run in `a`.
fn kill_and_resume(model: &Path, a: &Path, sets: &[&str], outputs: &[&str], ready: impl Fn(&Path) -> bool) {
    let b = tempfile::tempdir().unwrap();
    let cfg_b = config(b.path(), model, "");
    let ckpts = b.path().join("run/checkpoints");
    let set_args: Vec<&str> = sets.iter().flat_map(|s| ["--set", s]).collect();
    let mut child = Command::new(env!("CARGO_BIN_EXE_tunesmith"))
        .args(["train", p(&cfg_b)])
        .args(&set_args)
        .current_dir(repo())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    let mut killed = false;
    while t0.elapsed() < Duration::from_secs(300) {
        if ready(&ckpts) {
            child.kill().unwrap(); // SIGKILL
            killed = true;
            break;
        }
        if child.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    child.wait().unwrap();
    assert!(killed, "the run finished before it could be killed");
    // No half-written checkpoint is visible as one: every step-* directory is complete.
    for e in std::fs::read_dir(&ckpts).unwrap().flatten() {
        let name = e.file_name().into_string().unwrap();
        if name.starts_with("step-") && name.len() == "step-00000000".len() {
            for f in ["state.json", "trainable.safetensors", "optimizer.safetensors"] {
                assert!(e.path().join(f).exists(), "{name} lacks {f}");
            }
        }
    }
    assert!(!b.path().join("run/final").exists(), "the killed run must not have finished");
    let o = tunesmith(&[&["train", p(&cfg_b), "--resume"][..], &set_args].concat());
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    for e in std::fs::read_dir(&ckpts).unwrap().flatten() {
        assert!(e.path().join("state.json").exists(), "left behind: {}", e.path().display());
    }
    for f in outputs {
        assert!(read(&a.join("run").join(f)) == read(&b.path().join("run").join(f)), "{f} differs after resume");
    }
    // The logged training losses agree step for step.
    let losses = |dir: &Path| -> Vec<String> {
        run_log(&dir.join("run"))
            .into_iter()
            .filter(|v| v["split"] == "train")
            .map(|v| format!("{} {}", v["step"], v["loss"]))
            .collect()
    };
    assert_eq!(losses(a), losses(b.path()));
    assert_eq!(losses(a).len(), 8);
}

#[test]
fn a_run_killed_with_sigkill_resumes_to_the_uninterrupted_weights() {
    let Some(model) = fetched_minilm() else { return };
    let a = tempfile::tempdir().unwrap();
    let cfg_a = config(a.path(), &model, "");
    let o = tunesmith(&["train", p(&cfg_a)]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let lora = ["final/adapter/adapter_model.safetensors", "final/head.safetensors"];
    // Mid-run: after the first complete checkpoint (often while the next is being written).
    kill_and_resume(&model, a.path(), &[], &lora, |ck| {
        std::fs::read_dir(ck).map(|d| d.flatten().any(|e| e.path().join("state.json").exists())).unwrap_or(false)
    });
    // Mid-checkpoint: as soon as anything appears in the checkpoints directory, which is the
    // first checkpoint's temporary directory.
    kill_and_resume(&model, a.path(), &[], &lora, |ck| std::fs::read_dir(ck).map(|d| d.count() > 0).unwrap_or(false));
}

#[test]
fn a_full_fine_tune_killed_mid_run_resumes_to_the_same_weights() {
    let Some(model) = fetched_minilm() else { return };
    let full = ["method.kind=full", "train.lr=5e-5"];
    let a = tempfile::tempdir().unwrap();
    let cfg_a = config(a.path(), &model, "");
    let o =
        tunesmith(&[&["train", p(&cfg_a)][..], &full.iter().flat_map(|s| ["--set", s]).collect::<Vec<_>>()].concat());
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // Every weight of the model (HF format) and the head: identical only if the AdamW state of
    // all of them, the RNG and the data position were restored exactly too.
    kill_and_resume(&model, a.path(), &full, &["final/model/model.safetensors", "final/head.safetensors"], |ck| {
        std::fs::read_dir(ck).map(|d| d.flatten().any(|e| e.path().join("state.json").exists())).unwrap_or(false)
    });
}

#[test]
fn init_writes_a_config_that_train_accepts() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("t.toml");
    let o = tunesmith(&["init", p(&path)]);
    assert!(o.status.success());
    let cfg = tunesmith_train::RunConfig::load(&path, &[]).unwrap();
    assert_eq!(cfg.data.train, "examples/intents/train.jsonl");
    let again = tunesmith(&["init", p(&path)]);
    assert_eq!(again.status.code(), Some(2), "no silent overwrite");
    // A starter for a named method; an unknown one lists the methods there are.
    let o = tunesmith(&["init", p(&path), "--force", "--method", "lora"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let cfg = tunesmith_train::RunConfig::load(&path, &[]).unwrap();
    assert_eq!((cfg.method.kind, cfg.method.lora_r, cfg.train.lr), (MethodKind::Lora, 8, 1e-3));
    refused(&tunesmith(&["init", p(&path), "--force", "--method", "ia4"]), &["ia4", "lora", "gradual_unfreeze"]);
}

#[test]
fn a_lora_run_exports_merges_evaluates_and_embeds() {
    let Some(model) = fetched_minilm() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let cfg = config(tmp.path(), &model, "");
    let o = tunesmith(&["train", p(&cfg), "--set", "output.save_checkpoints=false"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let run = tmp.path().join("run");
    // The run directory: log, manifest, TensorBoard events, report, PEFT adapter, head.
    let manifest: serde_json::Value = serde_json::from_slice(&read(&run.join("manifest.json"))).unwrap();
    for key in ["config", "versions", "git_commit", "seed", "threads", "hardware", "data"] {
        assert!(manifest.get(key).is_some(), "manifest lacks {key}");
    }
    assert_eq!(manifest["data"][0]["sha256"].as_str().map(str::len), Some(64));
    assert!(std::fs::read_dir(run.join("tensorboard")).unwrap().count() == 1);
    assert!(run.join("report.html").exists());
    let adapter_cfg: serde_json::Value =
        serde_json::from_slice(&read(&run.join("final/adapter/adapter_config.json"))).unwrap();
    assert_eq!(adapter_cfg["peft_type"], "LORA");
    assert_eq!(adapter_cfg["task_type"], "SEQ_CLS");
    // Export both ways; the merged model scores as the base with the adapter.
    let peft = tmp.path().join("peft");
    assert!(tunesmith(&["export", p(&run), "--format", "peft", "--out", p(&peft)]).status.success());
    assert!(peft.join("adapter_model.safetensors").exists());
    let hf = tmp.path().join("hf");
    let o = tunesmith(&["export", p(&run), "--format", "hf", "--out", p(&hf)]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let data = "examples/intents/validation.jsonl";
    let eval = |args: &[&str]| -> serde_json::Value {
        let o = tunesmith(args);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        serde_json::from_slice(&o.stdout).unwrap()
    };
    let labels = "account,billing,cancellation,returns,shipping,technical_support";
    let merged = eval(&["eval", "--model", p(&hf), "--data", data, "--labels", labels]);
    let adapted = eval(&["eval", "--model", p(&model), "--adapter", p(&peft), "--data", data, "--labels", labels]);
    assert_eq!(merged["accuracy"], adapted["accuracy"]);
    assert!((merged["loss"].as_f64().unwrap() - adapted["loss"].as_f64().unwrap()).abs() < 1e-4);
    // Embeddings: one unit vector per input line.
    let out = tmp.path().join("emb.jsonl");
    let o = tunesmith(&["embed", "--model", p(&model), "--input", data, "--out", p(&out)]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let lines: Vec<serde_json::Value> =
        String::from_utf8(read(&out)).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 120);
    let v: Vec<f64> = serde_json::from_value(lines[0]["embedding"].clone()).unwrap();
    assert_eq!(v.len(), 384);
    assert!((v.iter().map(|x| x * x).sum::<f64>() - 1.0).abs() < 1e-4);
}

#[test]
fn early_stopping_ends_the_run_after_patience_evaluations_without_improvement() {
    let Some(model) = fetched_minilm() else { return };
    let tmp = tempfile::tempdir().unwrap();
    // An improvement must be at least 10 accuracy points, so after the first evaluation sets the
    // best, two more without such a jump stop the run (max_steps would allow 40).
    let cfg = config(
        tmp.path(),
        &model,
        "[eval]\nmetric = \"accuracy\"\nevery_steps = 2\npatience = 2\nmin_delta = 0.1\nat_start = false\n",
    );
    let o = tunesmith(&[
        "train",
        p(&cfg),
        "--set",
        "train.max_steps=40",
        "--set",
        "data.validation=examples/intents/validation.jsonl",
        "--set",
        "train.lr=1e-5",
        "--set",
        "output.save_checkpoints=false",
    ]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(out.contains("stopped early") && out.contains("(6 steps"), "{out}");
    let evals = std::fs::read_to_string(tmp.path().join("run/metrics.jsonl")).unwrap().matches("\"eval\"").count();
    assert_eq!(evals, 3);
}

/// `(step, loss)` of every logged training step of a run.
fn train_losses(run: &Path) -> Vec<(u64, f64)> {
    run_log(run)
        .into_iter()
        .filter(|v| v["split"] == "train" && v["loss"].is_number())
        .map(|v| (v["step"].as_u64().unwrap(), v["loss"].as_f64().unwrap()))
        .collect()
}

#[test]
fn padding_free_batches_train_like_padded_ones() {
    let Some(model) = fetched_minilm() else { return };
    let run = |padding_free: bool, dropout: &str| -> Vec<(u64, f64)> {
        let tmp = tempfile::tempdir().unwrap();
        let cfg = config(tmp.path(), &model, "");
        let o = tunesmith(&[
            "train",
            p(&cfg),
            "--set",
            "method.kind=full",
            "--set",
            "train.lr=5e-5",
            "--set",
            "train.max_steps=5",
            "--set",
            &format!("data.padding_free={padding_free}"),
            "--set",
            &format!("train.dropout={dropout}"),
            "--set",
            "output.save_checkpoints=false",
        ]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        train_losses(&tmp.path().join("run"))
    };
    // Without dropout the two layouts compute the same function: the losses agree to float
    // rounding at every step of full fine-tuning.
    let (padded, free) = (run(false, "0.0"), run(true, "0.0"));
    assert_eq!(padded.len(), 5);
    for ((s, a), (_, b)) in padded.iter().zip(&free) {
        assert!((a - b).abs() <= 1e-4 * a.abs(), "step {s}: padded loss {a}, padding-free {b}");
    }
    assert!(padded[4].1 < padded[0].1, "the loss falls: {padded:?}");
    // train.dropout reaches the model: with dropout on, the losses move away from those.
    let dropped = run(true, "0.3");
    assert!((dropped[0].1 - free[0].1).abs() > 1e-3, "dropout 0.3 changed nothing: {dropped:?} vs {free:?}");
}

/// `--precision bf16` trains with bf16 products: the manifest records the precision and the
/// kernel, the losses follow the fp32 run's within bf16's rounding (2e-2 relative) without
/// being identical, and a value other than fp32/bf16 is refused with the key.
#[test]
fn bf16_mixed_precision_trains_like_fp32() {
    let Some(model) = fetched_minilm() else { return };
    let run = |precision: &str| -> (Vec<(u64, f64)>, serde_json::Value) {
        let tmp = tempfile::tempdir().unwrap();
        let cfg = config(tmp.path(), &model, "");
        let o = tunesmith(&["train", p(&cfg), "--precision", precision, "--set", "output.save_checkpoints=false"]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let manifest = serde_json::from_slice(&read(&tmp.path().join("run/manifest.json"))).unwrap();
        (train_losses(&tmp.path().join("run")), manifest)
    };
    let (fp32, m32) = run("fp32");
    let (bf16, m16) = run("bf16");
    assert_eq!(m32["precision"]["products"], "fp32");
    assert_eq!(m16["precision"]["products"], "bf16");
    assert_eq!(m16["config"]["train"]["precision"], "bf16");
    let kernel = m16["precision"]["kernel"].as_str().unwrap_or_default().to_string();
    assert!(["amx", "avx512", "fallback"].contains(&kernel.as_str()), "kernel {kernel}");
    assert_eq!(fp32.len(), bf16.len());
    let worst = fp32.iter().zip(&bf16).map(|((_, a), (_, b))| (a - b).abs() / a.abs()).fold(0.0f64, f64::max);
    assert!(worst < 2e-2, "bf16 losses differ from fp32 by {worst:e}: {fp32:?} vs {bf16:?}");
    assert!(worst > 0.0, "bf16 losses equal fp32's: products were not rounded");
    let tmp = tempfile::tempdir().unwrap();
    let cfg = config(tmp.path(), &model, "");
    refused(&tunesmith(&["train", p(&cfg), "--precision", "fp16"]), &["train.precision", "bf16"]);
}
