//! GRPO on a real causal LM: stories260K (../shared/weights) continuing TinyStories openings,
//! rewarded when its continuation names Lily (a verifiable regex reward). The held-out reward
//! of greedy continuations rises over the base model's; the KL to the reference is logged and
//! stays small; bad GRPO configs exit 2 naming the key.

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

/// Story openings (a first sentence) as prompts, the rest as the reference answer, and a chat
/// template that joins them as plain text (stories260K knows no chat format).
fn write_data(shared: &Path, dir: &Path) -> (PathBuf, PathBuf) {
    let text = std::fs::read_to_string(shared.join("data/tinystories-sample/tinystories.txt")).unwrap();
    let rows: Vec<String> = text
        .split("\n\n")
        .filter_map(|p| {
            let p = p.trim();
            let cut = p.find(". ")?;
            Some(serde_json::json!({"prompt": &p[..=cut], "completion": &p[cut + 2..]}).to_string())
        })
        .take(120)
        .collect();
    let data = dir.join("stories.jsonl");
    std::fs::write(&data, rows.join("\n") + "\n").unwrap();
    let template = dir.join("plain.jinja");
    std::fs::write(
        &template,
        "{% for m in messages %}{% if m['role'] == 'user' %}{{ m['content'] }} {% else %}{{ m['content'] }}{% endif %}{% endfor %}",
    )
    .unwrap();
    (data, template)
}

fn config(shared: &Path, data: &Path, template: &Path, out: &Path) -> String {
    format!(
        r#"[model]
path = "{model}"
[task]
kind = "grpo"
rewards = ["regex:\\bLily\\b"]
num_generations = 4
max_new_tokens = 32
beta = 0.04
[data]
train = "{data}"
validation_split = 0.2
template = "{template}"
max_length = 256
[method]
kind = "lora"
lora_r = 8
lora_alpha = 16
lora_targets = ["all-linear"]
[train]
max_steps = 12
batch_size = 8
lr = 5e-3
warmup_steps = 2
seed = 3
threads = 2
[eval]
every_steps = 6
at_start = true
batch_size = 32
[output]
dir = "{out}"
save_checkpoints = false
"#,
        model = shared.join("weights/stories260K/stories260K.bin").display(),
        data = data.display(),
        template = template.display(),
        out = out.display(),
    )
}

#[test]
fn grpo_raises_the_held_out_reward_with_a_small_kl() {
    let Some(s) = shared() else { return eprintln!("SKIPPED: ../shared is absent") };
    let tmp = tempfile::tempdir().unwrap();
    let (data, template) = write_data(&s, tmp.path());
    let cfg = tmp.path().join("grpo.toml");
    std::fs::write(&cfg, config(&s, &data, &template, &tmp.path().join("run"))).unwrap();
    let o = tunesmith(&["train", cfg.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let log = tunesmith_testkit::run_log(&tmp.path().join("run"));
    let evals: Vec<&Value> = log.iter().filter(|v| v["split"] == "eval").map(|v| &v["metrics"]).collect();
    let reward: Vec<f64> = evals.iter().map(|m| m["reward"].as_f64().unwrap()).collect();
    assert_eq!(reward.len(), 3, "evaluations at steps 0, 6, 12");
    assert!(reward[2] >= reward[0] + 0.25, "held-out reward {reward:?}");
    assert!(evals[2]["rewards/regex/mean"].is_number());
    let train: Vec<&Value> = log.iter().filter(|v| v["split"] == "train").map(|v| &v["metrics"]).collect();
    assert_eq!(train.len(), 12);
    for m in &train {
        for name in ["reward", "reward_std", "kl", "clip_ratio", "completions/mean_length"] {
            assert!(m[name].as_f64().is_some_and(f64::is_finite), "{name} in {m}");
        }
        // Fresh samples each step: nothing is clipped, and the policy stays near the reference.
        assert_eq!(m["clip_ratio"], 0.0);
        assert!(m["kl"].as_f64().unwrap() < 2.0, "{m}");
    }
    assert!(tmp.path().join("run/final/adapter/adapter_model.safetensors").is_file());
}

/// A reward command that cannot score (it answers `nan` from its third call on) stops the run
/// as a diverging SFT run stops: exit 1, the last good checkpoint kept and named.
#[test]
fn a_nan_reward_stops_the_run_with_the_last_good_checkpoint_kept() {
    let Some(s) = shared() else { return eprintln!("SKIPPED: ../shared is absent") };
    let tmp = tempfile::tempdir().unwrap();
    let (data, template) = write_data(&s, tmp.path());
    let counter = tmp.path().join("calls");
    let script = tmp.path().join("reward.sh");
    std::fs::write(
        &script,
        format!(
            "n=$(cat {c} 2>/dev/null || echo 0); n=$((n+1)); echo $n > {c}\n\
             while read -r line; do if [ $n -ge 3 ]; then echo nan; else case \"$line\" in *Lily*) echo 1;; *) echo 0;; esac; fi; done\n",
            c = counter.display()
        ),
    )
    .unwrap();
    let cfg = config(&s, &data, &template, &tmp.path().join("run"))
        .replace(r#"rewards = ["regex:\\bLily\\b"]"#, &format!("rewards = [\"command:sh {}\"]", script.display()))
        .replace("save_checkpoints = false", "save_every_steps = 1\nkeep_last = 1")
        .replace("at_start = true", "at_start = false");
    assert!(cfg.contains("command:sh"), "{cfg}");
    let path = tmp.path().join("nan.toml");
    std::fs::write(&path, cfg).unwrap();
    let o = tunesmith(&["train", path.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("the loss is NaN at step 3") && err.contains("last good checkpoint (step 2)"), "{err}");
    let ckpts: Vec<_> = std::fs::read_dir(tmp.path().join("run/checkpoints")).unwrap().flatten().collect();
    assert_eq!(ckpts.len(), 1, "the last good checkpoint is kept");
}

#[test]
fn bad_grpo_configs_exit_2_naming_the_key() {
    let Some(s) = shared() else { return eprintln!("SKIPPED: ../shared is absent") };
    let tmp = tempfile::tempdir().unwrap();
    let (data, template) = write_data(&s, tmp.path());
    let base = config(&s, &data, &template, &tmp.path().join("bad"));
    for (edit, key, words) in [
        (base.replace(r#"rewards = ["regex:\\bLily\\b"]"#, "rewards = []"), "task.rewards", "is empty"),
        (base.replace(r#"rewards = ["regex:\\bLily\\b"]"#, r#"rewards = ["exact"]"#), "task.rewards", "unknown reward"),
        (base.replace("num_generations = 4", "num_generations = 1"), "task.num_generations", "at least 2"),
        (base.replace("beta = 0.04", "beta = 0.04\nloss = \"dpo\""), "task.loss", "grpo, bnpo, dr_grpo"),
        (
            base.replace("beta = 0.04", "beta = 0.04\nreward_weights = [1.0, 2.0]"),
            "task.reward_weights",
            "2 weights for 1",
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
