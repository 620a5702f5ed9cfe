//! DPO on a real causal LM: stories260K (../shared/weights) taught to prefer TinyStories
//! continuations in which Lily is called Zoe over the original ones. The held-out reward
//! accuracy rises from 0 (every reward is 0 at the start) and the margin grows; the reference
//! modes (adapters off, precomputed, a frozen copy) agree; a reward model learns the same
//! preference; bad configs and rows are reported.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

fn shared() -> Option<PathBuf> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared");
    p.join("weights/stories260K/stories260K.bin").is_file().then_some(p)
}

fn tunesmith(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tunesmith")).args(args).output().unwrap()
}

/// prompt = a story's first sentence; chosen = the rest with Lily renamed Zoe; rejected = the
/// rest as written. Two bad rows follow the good ones (an identical pair, a missing side).
fn write_pairs(shared: &Path, dir: &Path) -> PathBuf {
    let text = std::fs::read_to_string(shared.join("data/tinystories-sample/tinystories.txt")).unwrap();
    let mut rows: Vec<String> = text
        .split("\n\n")
        .filter_map(|p| {
            let p = p.trim();
            let cut = p.find(". ")?;
            let (prompt, rest) = (&p[..=cut], &p[cut + 2..]);
            rest.contains("Lily").then(|| {
                serde_json::json!({"prompt": prompt, "chosen": rest.replace("Lily", "Zoe"), "rejected": rest})
                    .to_string()
            })
        })
        .collect();
    assert!(rows.len() >= 12, "{} pairs", rows.len());
    rows.push(r#"{"prompt": "Once upon a time.", "chosen": "The end.", "rejected": "The end."}"#.into());
    rows.push(r#"{"prompt": "Once upon a time.", "chosen": "The end."}"#.into());
    let path = dir.join("pairs.jsonl");
    std::fs::write(&path, rows.join("\n") + "\n").unwrap();
    path
}

fn config(shared: &Path, data: &Path, out: &Path, method: &str, extra_task: &str, steps: usize) -> String {
    format!(
        r#"[model]
path = "{model}"
[task]
kind = "preference"
loss = "dpo"
beta = 0.1
{extra_task}
[data]
train = "{data}"
validation_split = 0.25
template = "chatml"
max_length = 256
padding_free = true
[method]
{method}
[train]
max_steps = {steps}
batch_size = 4
lr = 1e-2
warmup_steps = 1
seed = 3
threads = 2
[eval]
every_steps = 4
at_start = true
[output]
dir = "{out}"
save_checkpoints = false
"#,
        model = shared.join("weights/stories260K/stories260K.bin").display(),
        data = data.display(),
        out = out.display(),
    )
}

const LORA: &str = "kind = \"lora\"\nlora_r = 8\nlora_alpha = 16\nlora_targets = [\"all-linear\"]";

fn run(dir: &Path, name: &str, cfg: &str) -> (Output, Vec<Value>) {
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, cfg).unwrap();
    let o = tunesmith(&["train", path.to_str().unwrap()]);
    let log = if o.status.success() { tunesmith_testkit::run_log(&dir.join(name)) } else { Vec::new() };
    (o, log)
}

fn evals(log: &[Value]) -> Vec<&Value> {
    log.iter().filter(|v| v["split"] == "eval").map(|v| &v["metrics"]).collect()
}

#[test]
fn dpo_with_lora_raises_held_out_reward_accuracy_and_margin() {
    let Some(s) = shared() else { return eprintln!("SKIPPED: ../shared is absent") };
    let tmp = tempfile::tempdir().unwrap();
    let data = write_pairs(&s, tmp.path());
    let (o, log) = run(tmp.path(), "lora", &config(&s, &data, &tmp.path().join("lora"), LORA, "", 12));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{stderr}");
    // The two bad rows are counted and named with their lines.
    assert!(stderr.contains("2 data rows left out"), "{stderr}");
    let n = std::fs::read_to_string(&data).unwrap().lines().count();
    let line = |k: usize| format!("pairs.jsonl:{k}: field 'rejected': ");
    assert!(stderr.contains(&format!("{}is identical to chosen", line(n - 1))), "{stderr}");
    assert!(stderr.contains(&format!("{}is missing", line(n))), "{stderr}");
    let e = evals(&log);
    assert_eq!(e.len(), 4, "evaluations at steps 0, 4, 8, 12");
    let acc: Vec<f64> = e.iter().map(|m| m["rewards/accuracies"].as_f64().unwrap()).collect();
    let margin: Vec<f64> = e.iter().map(|m| m["rewards/margins"].as_f64().unwrap()).collect();
    // At the start policy = reference: every reward is 0 and ties count as wrong.
    assert_eq!(acc[0], 0.0);
    assert!(margin[0].abs() < 1e-9, "{margin:?}");
    assert!(acc[3] >= 0.75, "held-out reward accuracy {acc:?}");
    assert!(margin.windows(2).all(|w| w[1] > w[0]), "the margin grows: {margin:?}");
    for name in ["rewards/chosen", "rewards/rejected", "logps/chosen", "logps/rejected", "loss"] {
        assert!(e[3][name].as_f64().is_some_and(f64::is_finite), "{name} missing");
    }
    // Training records carry TRL's metric names too.
    let train = log.iter().find(|v| v["split"] == "train").unwrap();
    assert!(train["metrics"]["rewards/margins"].is_number(), "{train}");
    // The end-of-run line shows the held-out reward accuracy.
    let stdout = String::from_utf8_lossy(&o.stdout);
    let after = stdout.lines().find(|l| l.starts_with("after:")).unwrap();
    assert!(after.contains("rewards/accuracies"), "{after}");
    assert!(tmp.path().join("lora/final/adapter/adapter_model.safetensors").is_file());
}

/// The reference is the starting model however it is computed: switching the LoRA adapters off
/// or precomputing gives the same run; a full fine-tune's frozen copy or precomputing too.
#[test]
fn reference_modes_agree() {
    let Some(s) = shared() else { return eprintln!("SKIPPED: ../shared is absent") };
    let tmp = tempfile::tempdir().unwrap();
    let data = write_pairs(&s, tmp.path());
    let full = "kind = \"full\"";
    let mut results = Vec::new();
    for (name, method, task) in [
        ("lora_off", LORA, ""),
        ("lora_pre", LORA, "precompute_ref = true"),
        ("full_copy", full, ""),
        ("full_pre", full, "precompute_ref = true"),
    ] {
        let (o, log) = run(tmp.path(), name, &config(&s, &data, &tmp.path().join(name), method, task, 4));
        assert!(o.status.success(), "{name}: {}", String::from_utf8_lossy(&o.stderr));
        let losses: Vec<f64> =
            log.iter().filter(|v| v["split"] == "train").map(|v| v["loss"].as_f64().unwrap()).collect();
        let last = evals(&log).last().unwrap()["rewards/margins"].as_f64().unwrap();
        results.push((name, losses, last));
    }
    for pair in [(0, 1), (2, 3)] {
        let (a, b) = (&results[pair.0], &results[pair.1]);
        assert_eq!((a.1.len(), b.1.len()), (4, 4), "{} and {}: a loss per step", a.0, b.0);
        for (x, y) in a.1.iter().zip(&b.1) {
            assert!((x - y).abs() < 1e-5, "{} vs {}: losses {:?} vs {:?}", a.0, b.0, a.1, b.1);
        }
        assert!((a.2 - b.2).abs() < 1e-4, "{} vs {}: margins {} vs {}", a.0, b.0, a.2, b.2);
    }
    // Full fine-tuning moves the margin too.
    assert!(results[2].2 > 0.0, "{:?}", results[2]);
}

/// A reward model from the same pairs: a fresh one-output head on stories260K, fully fine-tuned
/// with the Bradley–Terry loss; the held-out accuracy rises and the model is saved in
/// transformers' sequence-classification layout (what TRL's RewardTrainer writes).
#[test]
fn reward_model_learns_the_preference_and_saves_a_sequence_classifier() {
    let Some(s) = shared() else { return eprintln!("SKIPPED: ../shared is absent") };
    let tmp = tempfile::tempdir().unwrap();
    let data = write_pairs(&s, tmp.path());
    let cfg = config(&s, &data, &tmp.path().join("rm"), "kind = \"full\"", "", 12)
        .replace("kind = \"preference\"", "kind = \"reward\"")
        .replace("lr = 1e-2", "lr = 2e-3");
    let (o, log) = run(tmp.path(), "rm", &cfg);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let e = evals(&log);
    let acc: Vec<f64> = e.iter().map(|m| m["accuracy"].as_f64().unwrap()).collect();
    let margin: Vec<f64> = e.iter().map(|m| m["margin"].as_f64().unwrap()).collect();
    assert!(acc[3] >= 0.75 && acc[3] > acc[0], "held-out accuracy {acc:?}");
    assert!(margin[3] > margin[0] && margin[3] > 0.0, "margins {margin:?}");
    for name in ["mean_reward", "min_reward", "max_reward", "loss"] {
        assert!(e[3][name].as_f64().is_some_and(f64::is_finite), "{name} missing");
    }
    let config: Value =
        serde_json::from_str(&std::fs::read_to_string(tmp.path().join("rm/final/model/config.json")).unwrap()).unwrap();
    assert_eq!(config["architectures"][0], "LlamaForSequenceClassification", "{config}");
    assert_eq!(config["id2label"].as_object().map(|m| m.len()), Some(1), "{config}");
}

/// KTO from the same stories as unpaired rows (the Zoe version desirable, the Lily version not),
/// the last quarter of the stories held out whole (a story's two versions share most tokens, so
/// splitting rows would leak one version into training): the held-out margin between desirable
/// and undesirable rewards grows from 0.
#[test]
fn kto_learns_from_unpaired_labels() {
    let Some(s) = shared() else { return eprintln!("SKIPPED: ../shared is absent") };
    let tmp = tempfile::tempdir().unwrap();
    let pairs = write_pairs(&s, tmp.path());
    let stories: Vec<Value> = std::fs::read_to_string(&pairs)
        .unwrap()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["rejected"].is_string() && v["chosen"] != v["rejected"])
        .collect();
    let unpaired = |vs: &[Value]| -> String {
        vs.iter()
            .flat_map(|v| {
                [(v["chosen"].clone(), true), (v["rejected"].clone(), false)]
                    .map(|(c, d)| serde_json::json!({"prompt": v["prompt"], "completion": c, "label": d}).to_string())
            })
            .collect::<Vec<_>>()
            .join("\n")
            + "\n"
    };
    let cut = stories.len() * 3 / 4;
    let (train, validation) = (tmp.path().join("kto.jsonl"), tmp.path().join("kto-val.jsonl"));
    std::fs::write(&train, unpaired(&stories[..cut])).unwrap();
    std::fs::write(&validation, unpaired(&stories[cut..])).unwrap();
    let cfg = config(&s, &train, &tmp.path().join("kto"), LORA, "", 16)
        .replace("loss = \"dpo\"", "loss = \"kto\"")
        .replace("validation_split = 0.25", &format!("validation = {:?}", validation.display().to_string()))
        .replace("lr = 1e-2", "lr = 3e-3");
    let (o, log) = run(tmp.path(), "kto", &cfg);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let e = evals(&log);
    let margin: Vec<f64> = e.iter().map(|m| m["rewards/margins"].as_f64().unwrap()).collect();
    assert!(margin[0].abs() < 1e-9 && margin.last().unwrap() > &0.5, "held-out margins {margin:?}");
    for name in ["kl", "rewards/chosen", "rewards/rejected", "logps/chosen", "logps/rejected", "loss"] {
        assert!(e[0][name].as_f64().is_some_and(f64::is_finite), "{name} missing");
    }
}

/// `tunesmith eval --task preference --reward-model`: a reward model trained on the pairs judges
/// the DPO policy's greedy completions against the base model's on the same prompts.
#[test]
fn a_reward_model_judges_the_dpo_policy_against_its_base() {
    let Some(s) = shared() else { return eprintln!("SKIPPED: ../shared is absent") };
    let tmp = tempfile::tempdir().unwrap();
    let data = write_pairs(&s, tmp.path());
    let rm_cfg = config(&s, &data, &tmp.path().join("rm"), "kind = \"full\"", "", 12)
        .replace("kind = \"preference\"", "kind = \"reward\"")
        .replace("lr = 1e-2", "lr = 2e-3");
    let (o, _) = run(tmp.path(), "rm", &rm_cfg);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let (o, _) = run(tmp.path(), "dpo", &config(&s, &data, &tmp.path().join("dpo"), LORA, "", 12));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let model = s.join("weights/stories260K/stories260K.bin");
    let eval = |adapter: Option<&Path>| -> Value {
        let mut args = vec!["eval", "--task", "preference", "--model", model.to_str().unwrap()];
        args.extend(["--data", data.to_str().unwrap(), "--template", "chatml", "--max-new-tokens", "48"]);
        let rm = tmp.path().join("rm/final/model");
        args.extend(["--reward-model", rm.to_str().unwrap()]);
        if let Some(a) = adapter {
            args.extend(["--adapter", a.to_str().unwrap()]);
        }
        let o = tunesmith(&args);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        serde_json::from_slice(&o.stdout).unwrap()
    };
    // Without an adapter the policy is its base: every prompt is a tie.
    let same = eval(None);
    assert_eq!(same["win_rate"], 0.5, "{same}");
    let trained = eval(Some(&tmp.path().join("dpo/final/adapter")));
    let (w, p, r) = (
        trained["win_rate"].as_f64().unwrap(),
        trained["policy_reward"].as_f64().unwrap(),
        trained["reference_reward"].as_f64().unwrap(),
    );
    assert!(trained["prompts"].as_u64().unwrap() >= 12, "{trained}");
    assert!(w > 0.5 && p > r, "win rate {w}, policy reward {p} vs reference {r}: {trained}");
    // A reward model is needed only for a policy.
    let o = tunesmith(&[
        "eval",
        "--task",
        "reward",
        "--model",
        model.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
        "--reward-model",
        model.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", String::from_utf8_lossy(&o.stderr));
}

#[test]
fn bad_preference_configs_exit_2_naming_the_key() {
    let Some(s) = shared() else { return eprintln!("SKIPPED: ../shared is absent") };
    let tmp = tempfile::tempdir().unwrap();
    let data = write_pairs(&s, tmp.path());
    let base = config(&s, &data, &tmp.path().join("bad"), LORA, "", 2);
    for (edit, key, words) in [
        (base.replace("loss = \"dpo\"", "loss = \"dop\""), "task.loss", "use one of dpo"),
        (base.replace("beta = 0.1", "beta = 0.0"), "task.beta", "positive"),
        (base.replace("padding_free = true", "packing = true"), "data.packing", "cannot pack preference pairs"),
        (base.replace("beta = 0.1", "beta = 0.1\nlabel_smoothing = 0.7"), "task.label_smoothing", "[0, 0.5)"),
        (base.replace("beta = 0.1", "beta = 0.1\nundesirable_weight = 0.0"), "task.undesirable_weight", "positive"),
        (
            base.replace("kind = \"preference\"", "kind = \"reward\"\ncenter_rewards = -1.0"),
            "task.center_rewards",
            "0 or more",
        ),
    ] {
        let path = tmp.path().join("bad.toml");
        std::fs::write(&path, edit).unwrap();
        let o = tunesmith(&["train", path.to_str().unwrap()]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{key}: {err}");
        assert!(err.contains(key) && err.contains(words), "{key}: {err}");
    }
}
