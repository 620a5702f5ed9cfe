//! RLHF with PPO on a real causal LM: stories260K (../shared/weights). A reward model learns
//! from TinyStories pairs that a continuation calling the girl Zoe beats the original calling
//! her Lily; PPO then trains the policy (LoRA, a value head beside it) on story openings against
//! that reward model, with a KL penalty to the base adapted toward a target. The held-out reward
//! of greedy continuations rises, the sampled KL stays near the target, and bad PPO configs exit
//! 2 naming the key.

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

fn stories(shared: &Path) -> Vec<(String, String)> {
    let text = std::fs::read_to_string(shared.join("data/tinystories-sample/tinystories.txt")).unwrap();
    text.split("\n\n")
        .filter_map(|p| {
            let p = p.trim();
            let cut = p.find(". ")?;
            Some((p[..=cut].to_string(), p[cut + 2..].to_string()))
        })
        .collect()
}

/// Pairs for the reward model (Zoe chosen over Lily), prompts for PPO (openings with their
/// continuation as the assistant turn), and a template joining them as plain text.
fn write_data(shared: &Path, dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let all = stories(shared);
    let pairs: Vec<String> = all
        .iter()
        .filter(|(_, rest)| rest.contains("Lily"))
        .map(|(prompt, rest)| {
            serde_json::json!({"prompt": prompt, "chosen": rest.replace("Lily", "Zoe"), "rejected": rest}).to_string()
        })
        .collect();
    let prompts: Vec<String> = all
        .iter()
        .take(96)
        .map(|(prompt, rest)| serde_json::json!({"prompt": prompt, "completion": rest}).to_string())
        .collect();
    let (p, q) = (dir.join("pairs.jsonl"), dir.join("prompts.jsonl"));
    std::fs::write(&p, pairs.join("\n") + "\n").unwrap();
    std::fs::write(&q, prompts.join("\n") + "\n").unwrap();
    let template = dir.join("plain.jinja");
    std::fs::write(
        &template,
        "{% for m in messages %}{% if m['role'] == 'user' %}{{ m['content'] }} {% else %}{{ m['content'] }}{% endif %}{% endfor %}",
    )
    .unwrap();
    (p, q, template)
}

fn reward_config(shared: &Path, pairs: &Path, template: &Path, out: &Path) -> String {
    format!(
        r#"[model]
path = "{model}"
[task]
kind = "reward"
[data]
train = "{pairs}"
validation_split = 0.25
template = "{template}"
max_length = 256
[method]
kind = "full"
[train]
max_steps = 16
batch_size = 4
lr = 2e-3
warmup_steps = 1
seed = 3
threads = 2
[eval]
every_steps = 16
[output]
dir = "{out}"
save_checkpoints = false
"#,
        model = shared.join("weights/stories260K/stories260K.bin").display(),
        pairs = pairs.display(),
        template = template.display(),
        out = out.display(),
    )
}

fn ppo_config(shared: &Path, prompts: &Path, template: &Path, rm: &Path, out: &Path) -> String {
    format!(
        r#"[model]
path = "{model}"
[task]
kind = "ppo"
reward_model = "{rm}"
max_new_tokens = 32
beta = 0.2
kl_target = 6.0
kl_horizon = 16
ppo_epochs = 4
[data]
train = "{prompts}"
validation_split = 0.25
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
lr = 2e-3
warmup_steps = 1
seed = 3
threads = 2
[eval]
every_steps = 12
at_start = true
batch_size = 24
metric = "reward"
[output]
dir = "{out}"
save_checkpoints = false
"#,
        model = shared.join("weights/stories260K/stories260K.bin").display(),
        rm = rm.display(),
        prompts = prompts.display(),
        template = template.display(),
        out = out.display(),
    )
}

fn run(dir: &Path, name: &str, cfg: &str) -> (Output, Vec<Value>) {
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, cfg).unwrap();
    let o = tunesmith(&["train", path.to_str().unwrap()]);
    let log = if o.status.success() { tunesmith_testkit::run_log(&dir.join(name)) } else { Vec::new() };
    (o, log)
}

#[test]
fn ppo_against_a_reward_model_raises_the_held_out_reward_near_the_kl_target() {
    let Some(s) = shared() else { return eprintln!("SKIPPED: ../shared is absent") };
    let tmp = tempfile::tempdir().unwrap();
    let (pairs, prompts, template) = write_data(&s, tmp.path());
    let (o, _) = run(tmp.path(), "rm", &reward_config(&s, &pairs, &template, &tmp.path().join("rm")));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let rm = tmp.path().join("rm/final/model");
    let (o, log) = run(tmp.path(), "ppo", &ppo_config(&s, &prompts, &template, &rm, &tmp.path().join("ppo")));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let evals: Vec<&Value> = log.iter().filter(|v| v["split"] == "eval").map(|v| &v["metrics"]).collect();
    let reward: Vec<f64> = evals.iter().map(|m| m["reward"].as_f64().unwrap()).collect();
    eprintln!("held-out reward {reward:?}");
    assert!(reward.len() == 2 && reward[1] > reward[0] + 0.1, "held-out reward {reward:?}");
    // Greedy completions of the base are the reference's own: no KL at the start.
    assert!(evals[0]["kl"].as_f64().unwrap().abs() < 1e-4, "{}", evals[0]);
    let train: Vec<&Value> = log.iter().filter(|v| v["split"] == "train").map(|v| &v["metrics"]).collect();
    assert_eq!(train.len(), 12);
    for name in [
        "objective/scores",
        "objective/kl",
        "objective/entropy",
        "objective/kl_coef",
        "policy/clipfrac_avg",
        "policy/approxkl_avg",
        "loss/policy_avg",
        "loss/value_avg",
        "val/clipfrac_avg",
    ] {
        assert!(train.iter().all(|m| m[name].as_f64().is_some_and(f64::is_finite)), "{name}: {}", train[0]);
    }
    let kl: Vec<f64> = train.iter().map(|m| m["objective/kl"].as_f64().unwrap()).collect();
    eprintln!("sampled KL per step {kl:?}");
    assert!(kl.iter().all(|&k| k <= 6.0 * 1.5), "KL {kl:?} strays past its target 6");
    // Later epochs over a rollout move the policy off its sampling policy: some ratios clip.
    assert!(train.iter().any(|m| m["policy/clipfrac_avg"].as_f64().unwrap() > 0.0));
    // The policy is saved as a PEFT adapter; the value head is not part of it.
    let adapter = std::fs::read(tmp.path().join("ppo/final/adapter/adapter_model.safetensors")).unwrap();
    let names = String::from_utf8_lossy(&adapter[..adapter.len().min(64 * 1024)]).to_string();
    assert!(names.contains("lora_A") && !names.contains("v_head"), "{names}");
}

#[test]
fn bad_ppo_configs_exit_2_naming_the_key() {
    let Some(s) = shared() else { return eprintln!("SKIPPED: ../shared is absent") };
    let tmp = tempfile::tempdir().unwrap();
    let (_, prompts, template) = write_data(&s, tmp.path());
    let model = s.join("weights/stories260K/stories260K.bin");
    let base = ppo_config(&s, &prompts, &template, &model, &tmp.path().join("bad"));
    let rm_line = format!("reward_model = \"{}\"\n", model.display());
    for (edit, key, words) in [
        (base.replace(&rm_line, ""), "task.reward_model", "needs a reward model"),
        (base.replace("ppo_epochs = 4", "ppo_epochs = 0"), "task.ppo_epochs", "at least 1"),
        (base.replace("kl_target = 6.0", "kl_target = -1.0"), "task.kl_target", "positive"),
        (base.replace("ppo_epochs = 4", "ppo_epochs = 4\ngae_lambda = 1.5"), "task.gae_lambda", "[0, 1]"),
        (base.replace("ppo_epochs = 4", "ppo_epochs = 4\nvalue_clip = 0.0"), "task.value_clip", "positive"),
        // A causal LM is not a reward model: it gets a fresh two-label head.
        (base.clone(), "task.reward_model", "a reward model has one"),
    ] {
        let path = tmp.path().join("bad.toml");
        std::fs::write(&path, &edit).unwrap();
        let o = tunesmith(&["train", path.to_str().unwrap()]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{key}: {err}");
        assert!(err.contains(key) && err.contains(words), "{key}: {err}");
    }
}
