//! DP-SGD end to end (`[privacy]`): LoRA and full fine-tuning of the real all-MiniLM-L6-v2 on
//! the intents in examples/, and LoRA causal LM on stories260K. The manifest records ε, δ, the
//! sampling rate, the steps and the noise multiplier, and ε equals the accountant's for them; a
//! target ε caps the steps or solves the noise; bad privacy configs exit with code 2.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;
use tunesmith_testkit::{fetched_minilm, minilm_dir, refused, run_log, succeeded};
use tunesmith_train::privacy::{epsilon, AccountantKind};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn tunesmith(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tunesmith")).args(args).current_dir(repo()).output().unwrap()
}

/// 64 training intents (of 8 classes), 8 steps of expected batch 16.
fn config(dir: &Path, model: &Path, method: &str, privacy: &str) -> PathBuf {
    let text = format!(
        r#"[model]
path = "{model}"
[task]
kind = "classification"
[data]
train = "examples/intents/train.jsonl"
validation_split = 0.25
max_length = 32
max_train_rows = 86
[method]
{method}
[train]
max_steps = 8
batch_size = 8
grad_accum = 2
lr = 2e-3
warmup_steps = 0
threads = 2
seed = 5
log_every = 1
[eval]
every_steps = 8
[output]
dir = "{out}"
save_checkpoints = false
[privacy]
{privacy}
"#,
        model = model.display(),
        out = dir.join("run").display(),
    );
    let path = dir.join("run.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn manifest(run: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(run.join("manifest.json")).unwrap()).unwrap()
}

/// The manifest's privacy record, checked against the accountant.
fn check_privacy(run: &Path, steps: u64) -> Value {
    let p = manifest(run)["privacy"].clone();
    assert_eq!(p["steps"].as_u64(), Some(steps), "{p}");
    let (sigma, q, delta) =
        (p["noise_multiplier"].as_f64().unwrap(), p["sample_rate"].as_f64().unwrap(), p["delta"].as_f64().unwrap());
    let want = epsilon(AccountantKind::Rdp, &[(sigma, q, steps)], delta).unwrap();
    assert!((p["epsilon"].as_f64().unwrap() - want).abs() < 1e-12, "{p} vs {want}");
    // Training records carry the running ε and the clipping statistics.
    let log = run_log(run);
    let train: Vec<&Value> = log.iter().filter(|r| r["split"] == "train").collect();
    assert_eq!(train.len() as u64, steps);
    let eps: Vec<f64> = train.iter().map(|r| r["privacy"]["epsilon"].as_f64().unwrap()).collect();
    assert!(eps.windows(2).all(|w| w[1] > w[0]), "ε must grow: {eps:?}");
    assert!(train.iter().all(|r| r["privacy"]["clipped_fraction"].as_f64().is_some()));
    assert!(train.iter().all(|r| r["loss"].as_f64().is_some_and(f64::is_finite)));
    p
}

#[test]
fn dp_lora_and_full_fine_tuning_record_their_privacy() {
    let Some(model) = fetched_minilm() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let lora = "kind = \"lora\"\nlora_r = 4\nlora_targets = [\"query\", \"value\"]";
    let cfg = config(tmp.path(), &model, lora, "noise_multiplier = 0.8\nmax_grad_norm = 1.0");
    succeeded(&tunesmith(&["train", cfg.to_str().unwrap()]));
    let p = check_privacy(&tmp.path().join("run"), 8);
    // δ defaults to 1/n and q to the expected batch over n (n = 86 rows less the 25% held out).
    let n = 1.0 / p["delta"].as_f64().unwrap();
    assert!((p["sample_rate"].as_f64().unwrap() - 16.0 / n).abs() < 1e-12, "{p}");

    let tmp = tempfile::tempdir().unwrap();
    let cfg = config(tmp.path(), &model, "kind = \"full\"", "noise_multiplier = 1.0\naccountant = \"prv\"");
    succeeded(&tunesmith(&["train", cfg.to_str().unwrap(), "--set", "train.max_steps=2", "--set", "train.lr=5e-5"]));
    let p = manifest(&tmp.path().join("run"))["privacy"].clone();
    let (sigma, q, delta) =
        (p["noise_multiplier"].as_f64().unwrap(), p["sample_rate"].as_f64().unwrap(), p["delta"].as_f64().unwrap());
    let want = epsilon(AccountantKind::Prv, &[(sigma, q, 2)], delta).unwrap();
    assert_eq!(p["accountant"], "prv");
    assert!((p["epsilon"].as_f64().unwrap() - want).abs() < 1e-9, "{p} vs {want}");
}

#[test]
fn a_target_epsilon_caps_the_steps_or_sets_the_noise() {
    let Some(model) = fetched_minilm() else { return };
    let lora = "kind = \"lora\"\nlora_r = 4\nlora_targets = [\"query\", \"value\"]";
    // With the noise fixed, the run stops before spending more than the target.
    let tmp = tempfile::tempdir().unwrap();
    let cfg = config(tmp.path(), &model, lora, "noise_multiplier = 0.7\ntarget_epsilon = 6.0");
    let o = tunesmith(&["train", cfg.to_str().unwrap(), "--set", "train.max_steps=200"]);
    succeeded(&o);
    let p = manifest(&tmp.path().join("run"))["privacy"].clone();
    let steps = p["steps"].as_u64().unwrap();
    assert!(steps > 0 && steps < 200, "{p}");
    assert!(p["epsilon"].as_f64().unwrap() <= 6.0, "{p}");
    // Without it, the noise that spends the target over the planned steps is solved for.
    let tmp = tempfile::tempdir().unwrap();
    let cfg = config(tmp.path(), &model, lora, "target_epsilon = 3.0");
    succeeded(&tunesmith(&["train", cfg.to_str().unwrap()]));
    let p = check_privacy(&tmp.path().join("run"), 8);
    let eps = p["epsilon"].as_f64().unwrap();
    assert!(eps <= 3.0 && eps > 2.98, "{p}");
}

#[test]
fn bad_privacy_configs_exit_with_code_2() {
    let tmp = tempfile::tempdir().unwrap();
    let model = minilm_dir();
    let lora = "kind = \"lora\"\nlora_r = 4\nlora_targets = [\"query\", \"value\"]";
    if fetched_minilm().is_some() {
        // A target that one step already exceeds.
        let cfg = config(tmp.path(), &model, lora, "noise_multiplier = 0.3\ntarget_epsilon = 0.05");
        refused(&tunesmith(&["train", cfg.to_str().unwrap()]), &["privacy.target_epsilon", "cannot be reached"]);
        // Neither the noise nor a target.
        let cfg = config(tmp.path(), &model, lora, "max_grad_norm = 1.0");
        refused(&tunesmith(&["train", cfg.to_str().unwrap()]), &["privacy.noise_multiplier", "target_epsilon"]);
    }
    // Static checks need no model: packed rows, an unknown key.
    let cfg = config(tmp.path(), &model, lora, "noise_multiplier = 1.0");
    refused(
        &tunesmith(&["train", cfg.to_str().unwrap(), "--set", "data.packing=true"]),
        &["privacy", "data.packing = false"],
    );
    let cfg = config(tmp.path(), &model, lora, "noise_multipler = 1.0");
    refused(&tunesmith(&["train", cfg.to_str().unwrap()]), &["privacy.noise_multipler", "privacy.noise_multiplier"]);
}

#[test]
fn dp_lora_and_full_causal_lm_on_stories260k() {
    let shared = repo().join("../shared");
    let model = shared.join("weights/stories260K/stories260K.bin");
    if !model.is_file() {
        return eprintln!("SKIPPED: ../shared is absent");
    }
    let tmp = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(shared.join("data/tinystories-sample/tinystories.txt")).unwrap();
    let rows: Vec<String> =
        text.split("\n\n").take(64).map(|p| serde_json::json!({"text": p.trim()}).to_string()).collect();
    let data = tmp.path().join("stories.jsonl");
    std::fs::write(&data, rows.join("\n") + "\n").unwrap();
    let cfg = tmp.path().join("dp.toml");
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
max_length = 128
padding_free = true
[method]
kind = "lora"
lora_r = 4
lora_targets = ["all-linear"]
[train]
max_steps = 4
batch_size = 8
lr = 1e-3
seed = 3
threads = 2
log_every = 1
[output]
dir = "{out}"
save_checkpoints = false
[privacy]
noise_multiplier = 1.1
"#,
            model = model.display(),
            data = data.display(),
            out = tmp.path().join("run").display()
        ),
    )
    .unwrap();
    succeeded(&tunesmith(&["train", cfg.to_str().unwrap()]));
    check_privacy(&tmp.path().join("run"), 4);
    // Full fine-tuning: the tied embedding / LM head gets per-example gradients from both the
    // embedding and the fused cross-entropy.
    let run = tmp.path().join("full");
    let out = format!("output.dir={}", run.display());
    succeeded(&tunesmith(&["train", cfg.to_str().unwrap(), "--set", "method.kind=full", "--set", &out]));
    check_privacy(&run, 4);
}
