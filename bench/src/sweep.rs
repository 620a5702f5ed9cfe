//! `bench -- sweep`: hyperparameter search for LoRA on all-MiniLM-L6-v2 and SST-2 (learning
//! rate, warmup, weight decay, LoRA rank), TPE against random search with the same trial budget
//! and seed, both with ASHA pruning on the dev accuracy of intermediate evaluations. Runs the
//! release `tunesmith sweep` binary; prints the best accuracy each found, the trials pruned and
//! the training time pruning saved.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use serde_json::Value;

use crate::{peer, table, timing};

/// Options of the sweep suite.
#[derive(clap::Args)]
pub struct Args {
    /// Training examples (a seeded sample of SST-2 train, as `bench sst2` draws it).
    #[arg(long, default_value_t = 4000)]
    rows: usize,
    /// Epochs per trial.
    #[arg(long, default_value_t = 2)]
    epochs: usize,
    /// Trials per sampler.
    #[arg(long, default_value_t = 16)]
    trials: usize,
    /// Random trials before TPE starts.
    #[arg(long, default_value_t = 5)]
    startup_trials: usize,
    /// Samplers to compare.
    #[arg(long, value_delimiter = ',', default_value = "tpe,random")]
    samplers: Vec<String>,
    /// The samplers' seed.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Threads.
    #[arg(long, default_value_t = 2)]
    threads: usize,
}

fn base(a: &Args, model: &Path, train: &Path, dev: &Path) -> String {
    format!(
        r#"[model]
path = "{model}"
[task]
kind = "classification"
[data]
train = "{train}"
validation = "{dev}"
max_length = 64
[method]
kind = "lora"
lora_r = 8
lora_alpha = 16
lora_targets = ["query", "value"]
[train]
epochs = {epochs}
batch_size = 32
lr = 5e-4
seed = 42
threads = {threads}
log_every = 20
[eval]
metric = "accuracy"
at_start = false
every_steps = {every}
batch_size = 128
[output]
dir = "bench/out/sweep/unused"
"#,
        model = model.display(),
        train = train.display(),
        dev = dev.display(),
        epochs = a.epochs,
        threads = a.threads,
        every = every(a),
    )
}

/// Steps between evaluations: six per trial.
fn every(a: &Args) -> usize {
    (a.rows.div_ceil(32) * a.epochs).div_ceil(6)
}

fn sweep_file(a: &Args, sampler: &str, base: &Path, out: &Path) -> String {
    format!(
        r#"[sweep]
base = "{base}"
output = "{out}"
sampler = "{sampler}"
trials = {trials}
seed = {seed}
tpe_startup_trials = {startup}
[sweep.pruner]
kind = "asha"
reduction_factor = 3
min_resource = {min_resource}
[space]
"train.lr" = {{ type = "log_uniform", low = 1e-5, high = 1e-2 }}
"train.warmup_ratio" = {{ type = "uniform", low = 0.0, high = 0.2 }}
"train.weight_decay" = {{ type = "uniform", low = 0.0, high = 0.1 }}
"method.lora_r" = [4, 8, 16, 32]
"#,
        base = base.display(),
        out = out.display(),
        trials = a.trials,
        seed = a.seed,
        startup = a.startup_trials,
        // Rungs at the first evaluation (a sixth of a trial) and three times later.
        min_resource = every(a),
    )
}

/// Runs the suite.
pub fn run(a: Args) -> Result<()> {
    let root = peer::repo_root();
    let shared = root.join("../shared");
    let model = crate::sst2::default_minilm();
    if !model.join("model.safetensors").exists() {
        bail!("no MiniLM at {}; run scripts/fetch-test-models.sh", model.display());
    }
    let bin = root.join("target/release/tunesmith");
    if !bin.exists() {
        bail!("no {}; run cargo build --release -p tunesmith-cli", bin.display());
    }
    let out = root.join("bench/out/sweep");
    std::fs::create_dir_all(&out)?;
    let train = root.join(format!("bench/out/sst2/train-{}.tsv", a.rows));
    crate::sst2::sample(&shared, a.rows, &train)?;
    let dev = shared.join("data/sst2/dev.tsv");
    let base_path = out.join("base.toml");
    std::fs::write(&base_path, base(&a, &model, &train, &dev))?;
    let mut rows = Vec::new();
    for sampler in &a.samplers {
        let study = out.join(format!("study-{sampler}"));
        let _ = std::fs::remove_dir_all(&study);
        let file = out.join(format!("sweep-{sampler}.toml"));
        std::fs::write(&file, sweep_file(&a, sampler, &base_path, &study))?;
        let t = Instant::now();
        let status = Command::new(&bin).arg("sweep").arg(&file).current_dir(&root).status()?;
        let secs = t.elapsed().as_secs_f64();
        if !status.success() {
            bail!("tunesmith sweep {} failed ({status})", file.display());
        }
        let trials: Vec<Value> = std::fs::read_to_string(study.join("results.jsonl"))?
            .lines()
            .map(serde_json::from_str)
            .collect::<std::result::Result<_, _>>()?;
        let state = |s: &str| trials.iter().filter(|t| t["state"] == s).count();
        let best = trials
            .iter()
            .filter(|t| t["state"] == "complete")
            .max_by(|x, y| x["value"].as_f64().unwrap_or(0.0).total_cmp(&y["value"].as_f64().unwrap_or(0.0)))
            .context("no complete trial")?;
        let saved: f64 = trials.iter().filter_map(|t| t["seconds_saved"].as_f64()).sum();
        let trained: f64 = trials.iter().filter_map(|t| t["seconds"].as_f64()).sum();
        let p = &best["params"];
        rows.push(vec![
            sampler.clone(),
            format!("{:.2}", 100.0 * best["value"].as_f64().unwrap_or(0.0)),
            format!("{}", best["trial"]),
            format!(
                "lr {:.2e}, warmup {:.3}, wd {:.3}, r {}",
                p["train.lr"].as_f64().unwrap_or(0.0),
                p["train.warmup_ratio"].as_f64().unwrap_or(0.0),
                p["train.weight_decay"].as_f64().unwrap_or(0.0),
                p["method.lora_r"]
            ),
            format!("{}/{}", state("complete"), trials.len()),
            format!("{}", state("pruned")),
            format!("{saved:.0}"),
            format!("{:.0}%", 100.0 * saved / (trained + saved).max(1e-9)),
            format!("{secs:.0}"),
        ]);
    }
    println!(
        "sweep: LoRA on all-MiniLM-L6-v2, SST-2 ({} training rows, full dev), {} epochs, batch 32, max_length 64, \
         6 evaluations per trial; {} trials per sampler, seed {}, TPE after {} random trials; ASHA (η = 3, rungs \
         at the first and third evaluations) on dev accuracy; {} threads; CPU {}",
        a.rows,
        a.epochs,
        a.trials,
        a.seed,
        a.startup_trials,
        a.threads,
        timing::cpu_model()
    );
    println!(
        "{}",
        table::markdown(
            &[
                "sampler",
                "best dev accuracy %",
                "best trial",
                "best values",
                "complete",
                "pruned",
                "training s saved",
                "share of time saved",
                "wall-clock s",
            ],
            &rows
        )
    );
    Ok(())
}
