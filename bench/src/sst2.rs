//! `bench -- sst2`: fine-tuning all-MiniLM-L6-v2 for SST-2 sentiment on 4,000 training
//! examples, evaluated on the dev set, three ways (full, LoRA r=8 on query/value, feature
//! extraction), with tunesmith and with the Hugging Face Trainer (+PEFT), same data,
//! hyperparameters and thread count (bench/sst2_peer.py). Prints accuracy and wall-clock.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use serde_json::Value;
use tunesmith_train::{Quiet, RunConfig, Trainer};

use crate::{peer, table, timing};

/// Options of the sst2 suite.
#[derive(clap::Args)]
pub struct Args {
    /// Training examples (a seeded sample of SST-2 train).
    #[arg(long, default_value_t = 4000)]
    rows: usize,
    /// Epochs.
    #[arg(long, default_value_t = 2.0)]
    epochs: f64,
    /// Threads for both sides.
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Methods to run (full, lora, feature_extraction).
    #[arg(long, value_delimiter = ',', default_value = "full,lora,feature_extraction")]
    methods: Vec<String>,
    /// The MiniLM folder (default: $TUNESMITH_MINILM or the fetch-test-models cache).
    #[arg(long)]
    model: Option<PathBuf>,
    /// Our side's matrix-product precision, fp32 or bf16 (`train.precision`); the peer stays
    /// fp32. `both` runs ours in fp32 and in bf16 and compares their accuracy.
    #[arg(long, default_value = "fp32", value_parser = ["fp32", "bf16", "both"])]
    precision: String,
    /// Skip the HF Trainer side.
    #[arg(long)]
    no_peer: bool,
}

fn minilm(a: &Args) -> PathBuf {
    a.model.clone().unwrap_or_else(default_minilm)
}

/// `$TUNESMITH_MINILM`, else the fetch-test-models cache.
pub(crate) fn default_minilm() -> PathBuf {
    std::env::var_os("TUNESMITH_MINILM").map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cache/tunesmith/models/all-MiniLM-L6-v2")
    })
}

/// The learning rate of each method (the same on both sides).
fn lr(method: &str) -> f64 {
    match method {
        "full" => 5e-5,
        "lora" => 5e-4,
        _ => 1e-3,
    }
}

/// Writes a seeded sample of `rows` SST-2 training rows (the file both sides train on).
pub(crate) fn sample(shared: &Path, rows: usize, out: &Path) -> Result<()> {
    let text = std::fs::read_to_string(shared.join("data/sst2/train.tsv"))?;
    let mut lines: Vec<&str> = text.lines().skip(1).collect();
    let mut rng = tunesmith_data::batch::SplitMix64::new(42);
    rng.shuffle(&mut lines);
    lines.truncate(rows);
    std::fs::create_dir_all(out.parent().context("a parent")?)?;
    std::fs::write(out, format!("label\tcontent\n{}\n", lines.join("\n")))?;
    Ok(())
}

fn ours(
    a: &Args,
    model: &Path,
    train: &Path,
    dev: &Path,
    method: &str,
    precision: &str,
    out: &Path,
) -> Result<(f64, f64)> {
    let epochs = a.epochs.ceil() as usize;
    let toml = format!(
        r#"[model]
path = "{model}"
[task]
kind = "classification"
[data]
train = "{train}"
validation = "{dev}"
max_length = 64
[method]
kind = "{method}"
lora_r = 8
lora_alpha = 16
lora_targets = ["query", "value"]
[train]
epochs = {epochs}
batch_size = 32
lr = {lr}
weight_decay = 0.01
warmup_ratio = 0.1
schedule = "linear"
max_grad_norm = 1.0
seed = 42
threads = {threads}
precision = "{precision}"
[eval]
metric = "accuracy"
every_steps = 1000000
at_start = false
batch_size = 64
[output]
dir = "{out}"
save_checkpoints = false
"#,
        model = model.display(),
        train = train.display(),
        dev = dev.display(),
        lr = lr(method),
        threads = a.threads,
        out = out.display(),
    );
    let _ = std::fs::remove_dir_all(out);
    let t = Instant::now();
    let cfg = RunConfig::parse(&toml, "sst2 bench", &[])?;
    let summary = Trainer::new(cfg, false)?.train(&mut Quiet)?;
    let secs = t.elapsed().as_secs_f64();
    let acc = summary
        .final_metrics
        .as_ref()
        .and_then(|m| m.get("accuracy"))
        .and_then(Value::as_f64)
        .context("no accuracy")?;
    Ok((acc, secs))
}

/// Runs the suite.
pub fn run(a: Args) -> Result<()> {
    let root = peer::repo_root();
    let shared = root.join("../shared");
    let model = minilm(&a);
    if !model.join("model.safetensors").exists() {
        bail!("no MiniLM at {}; run scripts/fetch-test-models.sh", model.display());
    }
    let train = root.join(format!("bench/out/sst2/train-{}.tsv", a.rows));
    sample(&shared, a.rows, &train)?;
    let dev = shared.join("data/sst2/dev.tsv");
    let mut rows = Vec::new();
    let precisions: Vec<&str> = if a.precision == "both" { vec!["fp32", "bf16"] } else { vec![a.precision.as_str()] };
    for method in &a.methods {
        let mut ours_runs = Vec::new();
        for p in &precisions {
            let out = root.join(format!("bench/out/sst2/run-{method}-{p}"));
            ours_runs.push((*p, ours(&a, &model, &train, &dev, method, p, &out)?));
        }
        let (pacc, psecs) =
            if a.no_peer { (f64::NAN, f64::NAN) } else { peer_run(&a, &root, &model, &train, &dev, method)? };
        for (p, (acc, secs)) in ours_runs {
            eprintln!("{method} ({p}): tunesmith {acc:.4} in {secs:.1}s, HF Trainer {pacc:.4} in {psecs:.1}s");
            rows.push(vec![
                method.clone(),
                p.to_string(),
                format!("{:.2}", 100.0 * acc),
                format!("{:.2}", 100.0 * pacc),
                format!("{:+.2}", 100.0 * (acc - pacc)),
                format!("{secs:.1}"),
                format!("{psecs:.1}"),
                format!("{:.2}", secs / psecs),
            ]);
        }
    }
    println!(
        "sst2: all-MiniLM-L6-v2, {} training rows, {} epochs, batch 32, max_length 64, {} threads; CPU {}",
        a.rows,
        a.epochs,
        a.threads,
        timing::cpu_model()
    );
    println!(
        "{}",
        table::markdown(
            &[
                "method",
                "our precision",
                "tunesmith acc %",
                "HF acc % (fp32)",
                "Δ points",
                "tunesmith s",
                "HF s",
                "time ratio (ours/HF)"
            ],
            &rows
        )
    );
    Ok(())
}

/// One HF Trainer (+PEFT) run of `method` (bench/sst2_peer.py): accuracy and seconds.
fn peer_run(a: &Args, root: &Path, model: &Path, train: &Path, dev: &Path, method: &str) -> Result<(f64, f64)> {
    let out = peer::run_python(
        &root.join("bench/sst2_peer.py"),
        &[
            "--model".into(),
            model.display().to_string(),
            "--train".into(),
            train.display().to_string(),
            "--dev".into(),
            dev.display().to_string(),
            "--rows".into(),
            "0".into(),
            "--method".into(),
            method.to_string(),
            "--epochs".into(),
            a.epochs.to_string(),
            "--lr".into(),
            lr(method).to_string(),
            "--threads".into(),
            a.threads.to_string(),
        ],
    )?;
    let p = peer::last_json(&out)?;
    Ok((p["accuracy"].as_f64().unwrap_or(f64::NAN), p["total_s"].as_f64().unwrap_or(f64::NAN)))
}
