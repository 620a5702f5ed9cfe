//! Several-task runs and distillation end to end on the real all-MiniLM-L6-v2: `[continual]`
//! (the accuracy matrix and its scores, with replay, EWC, L2-SP and LwF all exercised),
//! `[multitask]` (one head per task, per-task metrics), `[distill]` (a teacher run distilled into
//! a 3-layer student; a causal-LM student that is its own teacher has zero KL), and the configs
//! each refuses with exit code 2.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;
use tunesmith_testkit::{fetched_minilm, refused, run_log, succeeded as ok};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn shared() -> Option<PathBuf> {
    let s = repo().join("../shared");
    if s.join("data/sst2/dev.tsv").exists() {
        Some(s)
    } else {
        eprintln!("SKIPPED: ../shared/data is absent");
        None
    }
}

fn tunesmith(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tunesmith")).args(args).current_dir(repo()).output().unwrap()
}

fn json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))).unwrap()
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// The common part of the configs: MiniLM, full fine-tuning, a few small steps.
fn head(model: &Path, out: &Path) -> String {
    format!(
        r#"[model]
path = "{model}"
[task]
kind = "classification"
[data]
max_length = 32
[method]
kind = "full"
[train]
epochs = 1
batch_size = 16
lr = 1e-4
threads = 2
seed = 3
log_every = 1
[eval]
batch_size = 64
[output]
dir = "{out}"
save_checkpoints = false
"#,
        model = model.display(),
        out = out.display()
    )
}

/// Three real tasks: the intents of examples/ (8 classes), SST-2 and SMS spam (2 classes).
fn three_tasks(s: &Path) -> String {
    format!(
        r#"[[continual.tasks]]
name = "intents"
train = "examples/intents/train.jsonl"
validation = "examples/intents/validation.jsonl"
max_train_rows = 64
[[continual.tasks]]
name = "sst2"
train = "{sst2}"
max_train_rows = 48
[[continual.tasks]]
name = "spam"
train = "{spam}"
max_train_rows = 48
"#,
        sst2 = s.join("data/sst2/dev.tsv").display(),
        spam = s.join("data/sms-spam/SMSSpamCollection").display()
    )
}

#[test]
fn continual_run_writes_the_accuracy_matrix_with_every_strategy() {
    let (Some(model), Some(s)) = (fetched_minilm(), shared()) else { return };
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    let text = format!(
        "{}[continual]\nreplay_buffer = 40\nreplay_ratio = 0.25\newc_lambda = 100.0\newc_samples = 8\nl2sp_alpha = 0.01\n\
         lwf_alpha = 0.5\n{}",
        head(&model, &out),
        three_tasks(&s)
    );
    let stdout = ok(&tunesmith(&["train", write(tmp.path(), "cl.toml", &text).to_str().unwrap()]));
    assert!(stdout.contains("forgetting"), "{stdout}");
    let summary = json(&out.join("continual.json"));
    let m = summary["accuracy_matrix"].as_array().unwrap();
    assert_eq!(m.len(), 3);
    let mut last = Vec::new();
    for (i, row) in m.iter().enumerate() {
        for (j, cell) in row.as_array().unwrap().iter().enumerate() {
            if j < i {
                assert!(cell.is_null(), "task {i} cannot be scored before it is trained (after {j})");
            } else {
                let a = cell.as_f64().unwrap();
                assert!((0.0..=1.0).contains(&a), "{a}");
            }
        }
        last.push(row[2].as_f64().unwrap());
    }
    // The scores are those of the matrix.
    let mean = last.iter().sum::<f64>() / 3.0;
    assert!((summary["average_accuracy"].as_f64().unwrap() - mean).abs() < 1e-12);
    let bwt = ((m[0][2].as_f64().unwrap() - m[0][0].as_f64().unwrap())
        + (m[1][2].as_f64().unwrap() - m[1][1].as_f64().unwrap()))
        / 2.0;
    assert!((summary["backward_transfer"].as_f64().unwrap() - bwt).abs() < 1e-12);
    // Each task's model is kept, and the later tasks trained with every remedy.
    for (k, name) in ["1-intents", "2-sst2", "3-spam"].iter().enumerate() {
        let task = out.join("tasks").join(name);
        assert!(task.join("final/model/model.safetensors").exists(), "{name}");
        let steps: Vec<Value> = run_log(&task).into_iter().filter(|r| r["split"] == "train").collect();
        let metrics = &steps[0]["metrics"];
        assert!(metrics["penalty_l2sp"].as_f64().is_some(), "{name}: {metrics}");
        if k > 0 {
            assert!(metrics["penalty_ewc"].as_f64().is_some(), "{name}: {metrics}");
            assert!(metrics["lwf_kl"].as_f64().unwrap() >= 0.0, "{name}: {metrics}");
        }
    }
    let log: Vec<Value> = std::fs::read_to_string(out.join("continual.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    // 25% of each later task's examples come from the buffer: 48 new → 16 replayed.
    assert_eq!(log.iter().map(|r| r["replayed"].as_u64().unwrap()).collect::<Vec<_>>(), vec![0, 16, 16]);
    let heads = json(&out.join("final/heads.json"));
    assert_eq!(heads["heads"].as_array().unwrap().len(), 3);
}

#[test]
fn bad_continual_configs_exit_with_code_2() {
    let (Some(model), Some(s)) = (fetched_minilm(), shared()) else { return };
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    let cases: [(&str, &[&str]); 4] = [
        ("[continual]\nreplay_ratio = 0.3\n", &["continual.replay_buffer", "empty replay buffer"]),
        ("[continual]\nreplay_buffer = 100\n", &["continual.replay_ratio", "never replayed"]),
        ("[continual]\nheads = \"shared\"\n", &["shared", "intents", "same number of classes"]),
        ("[continual]\nheads = \"one\"\n", &["continual.heads", "per_task"]),
    ];
    for (section, needles) in cases {
        let text = format!("{}{section}{}", head(&model, &out), three_tasks(&s));
        refused(&tunesmith(&["train", write(tmp.path(), "bad.toml", &text).to_str().unwrap()]), needles);
    }
    // data.train is not read beside a task list.
    let text = format!("{}[continual]\n{}", head(&model, &out), three_tasks(&s))
        .replace("[data]\n", "[data]\ntrain = \"examples/intents/train.jsonl\"\n");
    refused(
        &tunesmith(&["train", write(tmp.path(), "bad.toml", &text).to_str().unwrap()]),
        &["data.train", "task entry"],
    );
}

#[test]
fn multitask_trains_a_head_per_task_and_reports_each() {
    let (Some(model), Some(s)) = (fetched_minilm(), shared()) else { return };
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    let tasks = three_tasks(&s).replace("continual.tasks", "multitask.tasks");
    let text = format!("{}[multitask]\nsampling = \"uniform\"\n{tasks}", head(&model, &out));
    let stdout = ok(&tunesmith(&["train", write(tmp.path(), "mt.toml", &text).to_str().unwrap()]));
    assert!(stdout.contains("sst2/accuracy"), "{stdout}");
    let evals: Vec<Value> = run_log(&out).into_iter().filter(|r| r["split"] == "eval").collect();
    let last = &evals.last().unwrap()["metrics"];
    let per_task: Vec<f64> =
        ["intents", "sst2", "spam"].iter().map(|t| last[format!("{t}/accuracy")].as_f64().unwrap()).collect();
    let mean = per_task.iter().sum::<f64>() / 3.0;
    assert!((last["accuracy"].as_f64().unwrap() - mean).abs() < 1e-12, "{last}");
    // Uniform sampling: 64 + 48 + 48 examples become three equal shares of 160 (54, 53, 53).
    let manifest = json(&out.join("manifest.json"));
    assert_eq!(manifest["examples"]["train"], 160);
    let heads = json(&out.join("final/heads.json"));
    let names: Vec<&str> = heads["heads"].as_array().unwrap().iter().map(|h| h["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["intents", "sst2", "spam"]);
    let text = format!("{}[multitask]\nsampling = \"square\"\n{tasks}", head(&model, &out));
    refused(
        &tunesmith(&["train", write(tmp.path(), "bad.toml", &text).to_str().unwrap()]),
        &["multitask.sampling", "uniform"],
    );
}

#[test]
fn a_teacher_run_distils_into_a_three_layer_student() {
    let Some(model) = fetched_minilm() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let data = "[data]\nmax_length = 32\ntrain = \"examples/intents/train.jsonl\"\nvalidation = \"examples/intents/validation.jsonl\"\nmax_train_rows = 64\n";
    let teacher = tmp.path().join("teacher");
    let text = head(&model, &teacher).replace("[data]\nmax_length = 32\n", data);
    ok(&tunesmith(&["train", write(tmp.path(), "teacher.toml", &text).to_str().unwrap()]));
    let student = tmp.path().join("student");
    let text = head(&model, &student)
        .replace("[data]\nmax_length = 32\n", data)
        .replace("[model]\n", "[model]\nnum_layers = 3\n")
        + &format!(
            "[distill]\nteacher = \"{}\"\ntemperature = 2.0\nalpha = 0.7\nhidden_weight = 0.1\n",
            teacher.display()
        );
    ok(&tunesmith(&["train", write(tmp.path(), "student.toml", &text).to_str().unwrap()]));
    let steps: Vec<Value> = run_log(&student).into_iter().filter(|r| r["split"] == "train").collect();
    for r in &steps {
        let m = &r["metrics"];
        assert!(m["distill_kl"].as_f64().unwrap() >= 0.0, "{m}");
        assert!(m["task_loss"].as_f64().unwrap() > 0.0, "{m}");
        assert!(m["hidden_mse"].as_f64().unwrap() > 0.0, "{m}");
    }
    // The student is a 3-layer MiniLM without the training-only projection.
    let config = json(&student.join("final/model/config.json"));
    assert_eq!(config["num_hidden_layers"], 3);
    let names: Vec<String> = tunesmith_models::weights::Checkpoint::open_dir(&student.join("final/model"))
        .unwrap()
        .names()
        .map(String::from)
        .collect();
    assert!(names.iter().all(|n| !n.starts_with("aux.") && !n.contains("layer.3.")), "{names:?}");

    // Refused: a teacher of another tokenizer, a teacher without a trained head, an unknown key.
    let Some(s) = shared() else { return };
    let other = s.join("chat-templates/smollm2-135m-instruct");
    for (teacher, needles) in [
        (other.display().to_string(), &["does not share the student's tokenizer", "vocabulary sizes differ"][..]),
        (model.display().to_string(), &["no trained classification head"][..]),
    ] {
        let bad = text.replace(
            &format!("teacher = \"{}\"", student.parent().unwrap().join("teacher").display()),
            &format!("teacher = \"{teacher}\""),
        );
        let bad = bad.replace(
            &format!("dir = \"{}\"", student.display()),
            &format!("dir = \"{}\"", tmp.path().join("bad").display()),
        );
        refused(&tunesmith(&["train", write(tmp.path(), "bad.toml", &bad).to_str().unwrap()]), needles);
    }
    let bad = text.replace("alpha = 0.7", "alpah = 0.7");
    refused(
        &tunesmith(&["train", write(tmp.path(), "bad.toml", &bad).to_str().unwrap()]),
        &["distill.alpah", "distill.alpha"],
    );
}

#[test]
fn a_causal_lm_that_is_its_own_teacher_has_zero_kl() {
    let Some(s) = shared() else { return };
    let weights = s.join("weights/stories260K/stories260K.bin");
    if !weights.exists() {
        return eprintln!("SKIPPED: no stories260K in ../shared/weights");
    }
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    let text = format!(
        r#"[model]
path = "{w}"
[task]
kind = "causal_lm"
[data]
train = "{data}"
max_length = 64
max_train_rows = 16
validation_split = 0.0
[method]
kind = "full"
[train]
max_steps = 2
batch_size = 4
lr = 1e-3
threads = 2
log_every = 1
[output]
dir = "{out}"
save_checkpoints = false
[distill]
teacher = "{w}"
alpha = 0.5
"#,
        w = weights.display(),
        data = s.join("data/tinystories-sample/tinystories.txt").display(),
        out = out.display()
    );
    ok(&tunesmith(&["train", write(tmp.path(), "lm.toml", &text).to_str().unwrap()]));
    let steps: Vec<Value> = run_log(&out).into_iter().filter(|r| r["split"] == "train").collect();
    // Before the first update the student is the teacher: the KL is zero (up to rounding); after
    // it they differ.
    let kl: Vec<f64> = steps.iter().map(|r| r["metrics"]["distill_kl"].as_f64().unwrap()).collect();
    assert!(kl[0].abs() < 1e-5, "{kl:?}");
    assert!(kl[1] > kl[0], "{kl:?}");
    // The task loss is the causal LM's cross-entropy of the same batch.
    assert!(steps[0]["metrics"]["task_loss"].as_f64().unwrap() > 1.0);
}
