//! `tunesmith sweep` and `tunesmith train --cv` end to end on the real all-MiniLM-L6-v2 and the
//! intents in examples/: a sweep killed with SIGKILL mid-trial resumes with no trial lost or
//! run twice (the cut trial reruns with its parameters); results, best config and pruning are
//! written; bad sweep files exit with 2; K-fold cross-validation prints mean ± std per metric
//! over stratified folds.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use tunesmith_testkit::{fetched_minilm, refused, succeeded};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn tunesmith(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tunesmith")).args(args).current_dir(repo()).output().unwrap()
}

fn p(x: &Path) -> &str {
    x.to_str().unwrap()
}

/// A small LoRA run on 96 intents, evaluated every 3 of its 12 steps.
fn base(dir: &Path, model: &Path) -> PathBuf {
    let path = dir.join("run.toml");
    std::fs::write(
        &path,
        format!(
            r#"[model]
path = "{model}"
[task]
kind = "classification"
[data]
train = "examples/intents/train.jsonl"
validation = "examples/intents/validation.jsonl"
max_length = 32
max_train_rows = 96
[method]
kind = "lora"
lora_r = 4
lora_targets = ["query", "value"]
[train]
max_steps = 12
batch_size = 16
lr = 1e-3
threads = 2
seed = 7
[eval]
every_steps = 3
batch_size = 64
at_start = false
metric = "accuracy"
[output]
dir = "{out}"
"#,
            model = model.display(),
            out = dir.join("unused").display()
        ),
    )
    .unwrap();
    path
}

fn sweep_file(dir: &Path, base: &Path, extra: &str, space: &str) -> PathBuf {
    let path = dir.join("sweep.toml");
    std::fs::write(
        &path,
        format!(
            "[sweep]\nbase = \"{}\"\noutput = \"{}\"\n{extra}\n[space]\n{space}",
            base.display(),
            dir.join("study").display()
        ),
    )
    .unwrap();
    path
}

const SPACE: &str = "\"train.lr\" = { type = \"log_uniform\", low = 1e-4, high = 3e-2 }\n\"method.lora_r\" = [2, 8]\n";

fn journal(dir: &Path) -> Vec<Value> {
    std::fs::read_to_string(dir.join("study/study.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

#[test]
fn a_sweep_killed_mid_trial_resumes_with_no_trial_lost_or_run_twice() {
    let Some(model) = fetched_minilm() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let base = base(tmp.path(), &model);
    let sweep = sweep_file(tmp.path(), &base, "sampler = \"random\"\ntrials = 4\nseed = 5", SPACE);
    let mut child = Command::new(env!("CARGO_BIN_EXE_tunesmith"))
        .args(["sweep", p(&sweep)])
        .current_dir(repo())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Kill it once trial 1 has reported an evaluation (trial 0 is over, trial 1 is mid-run).
    let t0 = Instant::now();
    let mut killed = false;
    while t0.elapsed() < Duration::from_secs(600) {
        let mid_trial_1 = journal(tmp.path()).iter().any(|e| e["event"] == "report" && e["trial"] == 1);
        if mid_trial_1 {
            child.kill().unwrap();
            killed = true;
            break;
        }
        if child.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait().unwrap();
    assert!(killed, "the sweep ended before it could be killed");
    let before = journal(tmp.path());
    let first_params = before.iter().find(|e| e["event"] == "start" && e["trial"] == 1).unwrap()["params"].clone();
    assert!(!before.iter().any(|e| e["event"] == "end" && e["trial"] == 1), "trial 1 had already ended");

    // Resuming without --resume is refused; with it, the study finishes.
    refused(&tunesmith(&["sweep", p(&sweep)]), &["--resume"]);
    let out = succeeded(&tunesmith(&["sweep", p(&sweep), "--resume"]));
    assert!(out.contains("4 trials"), "{out}");

    let events = journal(tmp.path());
    let mut ends: BTreeMap<u64, usize> = BTreeMap::new();
    for e in events.iter().filter(|e| e["event"] == "end") {
        *ends.entry(e["trial"].as_u64().unwrap()).or_default() += 1;
    }
    assert_eq!(ends, (0..4).map(|t| (t, 1)).collect::<BTreeMap<_, _>>(), "each trial ends exactly once");
    let starts_of_1: Vec<&Value> = events.iter().filter(|e| e["event"] == "start" && e["trial"] == 1).collect();
    assert_eq!(starts_of_1.len(), 2, "trial 1 reran once");
    assert_eq!(starts_of_1[1]["params"], first_params, "with its parameters");
    assert!(events.iter().any(|e| e["event"] == "requeue" && e["trial"] == 1));
    // Trial 0 finished before the kill and did not run again.
    assert_eq!(events.iter().filter(|e| e["event"] == "start" && e["trial"] == 0).count(), 1);

    let rows: Vec<Value> = std::fs::read_to_string(tmp.path().join("study/results.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 4);
    assert!(rows.iter().all(|r| r["state"] == "complete" && r["value"].as_f64().is_some()), "{rows:?}");
    assert_eq!(rows[1]["starts"], 2);
    // The best trial's values are in best.toml, and only its outputs are kept.
    let best = rows.iter().max_by(|a, b| a["value"].as_f64().partial_cmp(&b["value"].as_f64()).unwrap()).unwrap();
    let best_toml = std::fs::read_to_string(tmp.path().join("study/best.toml")).unwrap();
    let lora_r = best["params"]["method.lora_r"].as_i64().unwrap();
    assert!(best_toml.contains(&format!("lora_r = {lora_r}")), "{best_toml}");
    for r in &rows {
        let n = r["trial"].as_u64().unwrap();
        let kept = tmp.path().join(format!("study/trials/{n:04}/final")).exists();
        assert_eq!(kept, r["trial"] == best["trial"], "trial {n}'s outputs");
    }
    let html = std::fs::read_to_string(tmp.path().join("study/results.html")).unwrap();
    assert!(html.contains("Parallel coordinates") && html.contains("<polyline"), "no parallel-coordinates plot");
}

#[test]
fn asha_prunes_trials_and_records_the_time_saved() {
    let Some(model) = fetched_minilm() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let base = base(tmp.path(), &model);
    // Learning rates from useless (1e-6) to good: the slow ones fall behind at the first rung.
    let sweep = sweep_file(
        tmp.path(),
        &base,
        "sampler = \"grid\"\ntrials = 6\nparallel = 2\n[sweep.pruner]\nkind = \"asha\"\nmin_resource = 3\nreduction_factor = 3",
        "\"train.lr\" = { type = \"log_uniform\", low = 1e-6, high = 1e-2, grid = 6 }\n",
    );
    let out = succeeded(&tunesmith(&["sweep", p(&sweep)]));
    let rows: Vec<Value> = std::fs::read_to_string(tmp.path().join("study/results.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 6, "{out}");
    let pruned: Vec<&Value> = rows.iter().filter(|r| r["state"] == "pruned").collect();
    assert!(!pruned.is_empty(), "ASHA pruned nothing: {out}");
    for r in &pruned {
        assert!(r["steps"].as_u64().unwrap() < 12 && r["seconds_saved"].as_f64().unwrap() > 0.0, "{r}");
    }
    // Every grid point ran once.
    let mut lrs: Vec<f64> = rows.iter().map(|r| r["params"]["train.lr"].as_f64().unwrap()).collect();
    lrs.sort_by(f64::total_cmp);
    lrs.dedup();
    assert_eq!(lrs.len(), 6);
    let imp: Value =
        serde_json::from_str(&std::fs::read_to_string(tmp.path().join("study/importance.json")).unwrap()).unwrap();
    assert!(imp.as_array().is_some(), "{imp}");
}

#[test]
fn bad_sweep_files_exit_with_2_and_name_the_key() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tunesmith_testkit::minilm_dir();
    let base = base(tmp.path(), &model);
    let run = |extra: &str, space: &str| tunesmith(&["sweep", p(&sweep_file(tmp.path(), &base, extra, space))]);
    refused(&run("", "\"train.lrr\" = { type = \"uniform\", low = 0, high = 1 }\n"), &["train.lrr", "train.lr"]);
    refused(&run("sampler = \"bayes\"", SPACE), &["sweep.sampler"]);
    refused(&run("", "\"train.lr\" = { type = \"log_uniform\", low = 0, high = 1 }\n"), &["low > 0"]);
    refused(&run("sampler = \"grid\"", SPACE), &["grid"]);
    refused(&run("", "\"train.batch_size\" = { type = \"int\", low = 0, high = 4 }\n"), &["train.batch_size"]);
    let missing = tunesmith(&["sweep", p(&tmp.path().join("nope.toml"))]);
    refused(&missing, &["nope.toml"]);
}

#[test]
fn cross_validation_reports_mean_and_std_over_stratified_folds() {
    let Some(model) = fetched_minilm() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("cv.toml");
    std::fs::write(
        &cfg,
        format!(
            r#"[model]
path = "{model}"
[task]
kind = "classification"
[data]
train = "examples/intents/validation.jsonl"
max_length = 32
[method]
kind = "lora"
lora_r = 4
[train]
max_steps = 4
batch_size = 16
lr = 1e-3
threads = 2
[eval]
at_start = false
batch_size = 64
[output]
dir = "{out}"
save_checkpoints = false
"#,
            model = model.display(),
            out = tmp.path().join("cv").display()
        ),
    )
    .unwrap();
    // EDA copies at load augment only the training folds (every row is still validated once).
    let out = succeeded(&tunesmith(&["train", p(&cfg), "--cv", "3", "--set", "data.augment_ratio=0.5"]));
    let line = out.lines().find(|l| l.starts_with("accuracy ")).unwrap_or_else(|| panic!("{out}"));
    assert!(line.contains(" ± "), "{line}");
    let cv: Value = serde_json::from_str(&std::fs::read_to_string(tmp.path().join("cv/cv.json")).unwrap()).unwrap();
    assert_eq!(cv["per_fold"].as_array().unwrap().len(), 3);
    // Each fold validated on a third of the rows, each class within one row of its share.
    let rows: Vec<Value> = std::fs::read_to_string(repo().join("examples/intents/validation.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let mut whole: BTreeMap<String, f64> = BTreeMap::new();
    for r in &rows {
        *whole.entry(r["label"].as_str().unwrap().to_string()).or_default() += 1.0;
    }
    let mut seen = 0;
    for i in 0..3 {
        let preds = std::fs::read_to_string(tmp.path().join(format!("cv/fold-{i}/eval/predictions.jsonl"))).unwrap();
        let mut counts: BTreeMap<String, f64> = BTreeMap::new();
        for l in preds.lines() {
            let v: Value = serde_json::from_str(l).unwrap();
            *counts.entry(v["label"].as_str().unwrap().to_string()).or_default() += 1.0;
            seen += 1;
        }
        for (class, n) in &whole {
            let got = counts.get(class).copied().unwrap_or(0.0);
            assert!((got - n / 3.0).abs() < 1.0, "fold {i}, class {class}: {got} of {n}");
        }
    }
    assert_eq!(seen, rows.len(), "every row is validated exactly once");
    let manifest: Value =
        serde_json::from_str(&std::fs::read_to_string(tmp.path().join("cv/fold-0/manifest.json")).unwrap()).unwrap();
    let (train, augmented) =
        (manifest["examples"]["train"].as_u64().unwrap(), manifest["examples"]["augmented"].as_u64().unwrap());
    let originals = rows.len() as u64 - (rows.len() as u64).div_ceil(3);
    assert!(
        augmented > 0 && train == originals + augmented,
        "train {train}, augmented {augmented}, originals {originals}"
    );
    refused(&tunesmith(&["train", p(&cfg), "--cv", "3", "--set", "data.validation=\"x.jsonl\""]), &["data.validation"]);
    refused(&tunesmith(&["train", p(&cfg), "--cv", "1"]), &["2 folds"]);
}
