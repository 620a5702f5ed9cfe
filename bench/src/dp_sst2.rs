//! `bench -- dp-sst2`: DP-SGD fine-tuning of all-MiniLM-L6-v2 on SST-2 (LoRA r=8 on
//! query/value, the classifier trained) at target ε values with δ = 1/n, against the same run
//! without privacy and against Opacus + transformers + PEFT on the same rows and recipe
//! (bench/dp_sst2_peer.py). Prints dev accuracy, the ε spent, σ and wall-clock.

use std::path::Path;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use serde_json::Value;
use tunesmith_train::{Quiet, RunConfig, Trainer};

use crate::{peer, table, timing};

/// Options of the dp-sst2 suite.
#[derive(clap::Args)]
pub struct Args {
    /// Training examples (a seeded sample of SST-2 train, as `bench sst2` draws it).
    #[arg(long, default_value_t = 4000)]
    rows: usize,
    /// Target ε values.
    #[arg(long, value_delimiter = ',', default_value = "8,3")]
    epsilons: Vec<f64>,
    /// Epochs.
    #[arg(long, default_value_t = 4)]
    epochs: usize,
    /// Expected batch size (Poisson sampling rate = batch / rows); ours splits it into
    /// micro-batches of a quarter.
    #[arg(long, default_value_t = 1000)]
    batch_size: usize,
    /// Tokens per example (both sides truncate; the peer pads to it).
    #[arg(long, default_value_t = 32)]
    max_length: usize,
    /// Learning rate (AdamW, constant), both sides.
    #[arg(long, default_value_t = 5e-3)]
    lr: f64,
    /// Threads for both sides.
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// `lora` (r=8 on query/value, classifier trained) or `feature_extraction` (classifier only).
    #[arg(long, default_value = "lora", value_parser = ["lora", "feature_extraction"])]
    method: String,
    /// Seed of both sides (head initialization, Poisson sampling, noise, dropout).
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Skip the Opacus side.
    #[arg(long)]
    no_peer: bool,
}

/// Our run at `epsilon` (None: without privacy): dev accuracy, the manifest's privacy record,
/// seconds.
fn ours(
    a: &Args,
    model: &Path,
    train: &Path,
    dev: &Path,
    epsilon: Option<f64>,
    out: &Path,
) -> Result<(f64, Value, f64)> {
    let privacy = epsilon.map_or(String::new(), |e| format!("[privacy]\ntarget_epsilon = {e}\nmax_grad_norm = 1.0\n"));
    let toml = format!(
        r#"[model]
path = "{model}"
[task]
kind = "classification"
[data]
train = "{train}"
validation = "{dev}"
max_length = {max_length}
[method]
kind = "{method}"
lora_r = 8
lora_alpha = 16
lora_dropout = 0.0
lora_targets = ["query", "value"]
[train]
epochs = {epochs}
batch_size = {micro}
grad_accum = 4
lr = {lr}
weight_decay = 0.01
warmup_ratio = 0.0
schedule = "constant"
seed = {seed}
threads = {threads}
[eval]
metric = "accuracy"
every_steps = 1000000
at_start = false
batch_size = 64
[output]
dir = "{out}"
save_checkpoints = false
{privacy}"#,
        model = model.display(),
        train = train.display(),
        dev = dev.display(),
        epochs = a.epochs,
        micro = a.batch_size.div_ceil(4),
        method = a.method,
        max_length = a.max_length,
        lr = a.lr,
        threads = a.threads,
        seed = a.seed,
        out = out.display(),
    );
    let _ = std::fs::remove_dir_all(out);
    let t = Instant::now();
    let summary = Trainer::new(RunConfig::parse(&toml, "dp-sst2 bench", &[])?, false)?.train(&mut Quiet)?;
    let secs = t.elapsed().as_secs_f64();
    let acc = summary
        .final_metrics
        .as_ref()
        .and_then(|m| m.get("accuracy"))
        .and_then(Value::as_f64)
        .context("no accuracy")?;
    let manifest: Value = serde_json::from_str(&std::fs::read_to_string(out.join("manifest.json"))?)?;
    Ok((acc, manifest["privacy"].clone(), secs))
}

/// Runs the suite.
pub fn run(a: Args) -> Result<()> {
    let root = peer::repo_root();
    let shared = root.join("../shared");
    let model = crate::sst2::default_minilm();
    if !model.join("model.safetensors").exists() {
        bail!("no MiniLM at {}; run scripts/fetch-test-models.sh", model.display());
    }
    let train = root.join(format!("bench/out/sst2/train-{}.tsv", a.rows));
    crate::sst2::sample(&shared, a.rows, &train)?;
    let dev = shared.join("data/sst2/dev.tsv");
    let mut rows = Vec::new();
    let (acc, _, secs) = ours(&a, &model, &train, &dev, None, &root.join("bench/out/dp-sst2/nondp"))?;
    eprintln!("non-private: {acc:.4} in {secs:.1}s");
    rows.push(vec![
        "none".into(),
        format!("{:.2}", 100.0 * acc),
        "-".into(),
        "-".into(),
        "-".into(),
        "-".into(),
        format!("{secs:.1}"),
        "-".into(),
    ]);
    for &eps in &a.epsilons {
        let (acc, p, secs) =
            ours(&a, &model, &train, &dev, Some(eps), &root.join(format!("bench/out/dp-sst2/eps{eps}")))?;
        let peer = if a.no_peer {
            Value::Null
        } else {
            let args: Vec<String> = [
                "--model",
                &model.display().to_string(),
                "--train",
                &train.display().to_string(),
                "--dev",
                &dev.display().to_string(),
                "--epsilon",
                &eps.to_string(),
                "--epochs",
                &a.epochs.to_string(),
                "--batch-size",
                &a.batch_size.to_string(),
                "--lr",
                &a.lr.to_string(),
                "--threads",
                &a.threads.to_string(),
                "--seed",
                &a.seed.to_string(),
            ]
            .iter()
            .map(|s| s.to_string())
            .collect();
            peer::last_json(&peer::run_python(&root.join("bench/dp_sst2_peer.py"), &args)?)?
        };
        let f = |v: &Value, k: &str, d: usize| v[k].as_f64().map_or("-".to_string(), |x| format!("{x:.d$}"));
        let pacc = peer["accuracy"].as_f64();
        eprintln!("ε {eps}: ours {acc:.4} (σ {}, ε {}), Opacus {pacc:?}", p["noise_multiplier"], p["epsilon"]);
        rows.push(vec![
            format!("{eps}"),
            format!("{:.2}", 100.0 * acc),
            pacc.map_or("-".into(), |x| format!("{:.2}", 100.0 * x)),
            pacc.map_or("-".into(), |x| format!("{:+.2}", 100.0 * (acc - x))),
            format!("{} / {}", f(&p, "epsilon", 3), f(&peer, "epsilon", 3)),
            format!("{} / {}", f(&p, "noise_multiplier", 3), f(&peer, "noise_multiplier", 3)),
            format!("{secs:.1}"),
            f(&peer, "total_s", 1),
        ]);
    }
    println!(
        "dp-sst2: all-MiniLM-L6-v2 {}, {} rows, {} epochs, expected batch {}, max_length {}, lr {} constant, clip 1.0, δ = 1/n, RDP, seed {}, {} threads; CPU {}",
        if a.method == "lora" { "LoRA r=8 (query/value) + classifier" } else { "classifier only (frozen encoder)" },
        a.rows, a.epochs, a.batch_size, a.max_length, a.lr, a.seed, a.threads, timing::cpu_model()
    );
    println!(
        "{}",
        table::markdown(
            &[
                "target ε",
                "tunesmith acc %",
                "Opacus acc %",
                "Δ points",
                "ε spent (ours / Opacus)",
                "σ (ours / Opacus)",
                "tunesmith s",
                "Opacus s"
            ],
            &rows
        )
    );
    Ok(())
}
