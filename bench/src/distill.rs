//! `bench -- distill`: knowledge distillation on SST-2. A full fine-tuning of all-MiniLM-L6-v2
//! (6 layers) is the teacher; the student is MiniLM's first 3 layers (`model.num_layers = 3`),
//! fine-tuned on the same rows and recipe once without and once with the teacher (`[distill]`).
//! Prints dev accuracy, parameters and inference speed of all three.

use std::path::Path;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use serde_json::Value;
use tunesmith_train::{Quiet, RunConfig, Trainer};

use crate::{peer, table, timing};

/// Options of the distill suite.
#[derive(clap::Args)]
pub struct Args {
    /// Training examples (a seeded sample of SST-2 train, as `bench sst2` draws it).
    #[arg(long, default_value_t = 4000)]
    rows: usize,
    /// Epochs (every run).
    #[arg(long, default_value_t = 3)]
    epochs: usize,
    /// Learning rate (AdamW, linear decay), every run.
    #[arg(long, default_value_t = 1e-4)]
    lr: f64,
    /// Batch size.
    #[arg(long, default_value_t = 32)]
    batch_size: usize,
    /// Tokens per example.
    #[arg(long, default_value_t = 64)]
    max_length: usize,
    /// Student blocks kept.
    #[arg(long, default_value_t = 3)]
    student_layers: usize,
    /// Distillation temperature.
    #[arg(long, default_value_t = 2.0)]
    temperature: f64,
    /// Weight of the KL term.
    #[arg(long, default_value_t = 0.5)]
    alpha: f64,
    /// Weight of hidden-state matching (0 = off).
    #[arg(long, default_value_t = 1.0)]
    hidden_weight: f64,
    /// Threads.
    #[arg(long, default_value_t = 2)]
    threads: usize,
}

fn config(a: &Args, model: &Path, train: &Path, dev: &Path, out: &Path, extra_model: &str, extra: &str) -> String {
    format!(
        r#"[model]
path = "{model}"
{extra_model}[task]
kind = "classification"
[data]
train = "{train}"
validation = "{dev}"
max_length = {max_length}
[method]
kind = "full"
[train]
epochs = {epochs}
batch_size = {batch}
lr = {lr}
warmup_ratio = 0.1
seed = 42
threads = {threads}
log_every = 20
[eval]
metric = "accuracy"
at_start = false
batch_size = 128
[output]
dir = "{out}"
save_checkpoints = false
{extra}"#,
        model = model.display(),
        train = train.display(),
        dev = dev.display(),
        max_length = a.max_length,
        epochs = a.epochs,
        batch = a.batch_size,
        lr = a.lr,
        threads = a.threads,
        out = out.display(),
    )
}

/// Trains one run: (dev accuracy, parameters, seconds).
fn train(toml: &str, out: &Path) -> Result<(f64, u64, f64)> {
    let _ = std::fs::remove_dir_all(out);
    let t = Instant::now();
    let summary = Trainer::new(RunConfig::parse(toml, "distill bench", &[])?, false)?.train(&mut Quiet)?;
    let secs = t.elapsed().as_secs_f64();
    let acc = summary
        .final_metrics
        .as_ref()
        .and_then(|m| m.get("accuracy"))
        .and_then(Value::as_f64)
        .context("no accuracy")?;
    let manifest: Value = serde_json::from_str(&std::fs::read_to_string(out.join("manifest.json"))?)?;
    let params = manifest["model"]["parameters"].as_u64().context("no parameter count")?;
    Ok((acc, params, secs))
}

/// Seconds to score the dev set with a trained model (best of 3 passes).
fn inference_seconds(a: &Args, model_dir: &Path, dev: &Path, out: &Path) -> Result<f64> {
    let toml = config(a, model_dir, dev, dev, out, "", "");
    let mut trainer = Trainer::new(RunConfig::parse(&toml, "distill bench (inference)", &[])?, false)?;
    let mut best = f64::INFINITY;
    for _ in 0..3 {
        let t = Instant::now();
        trainer.evaluate(false)?;
        best = best.min(t.elapsed().as_secs_f64());
    }
    Ok(best)
}

/// Runs the suite.
pub fn run(a: Args) -> Result<()> {
    let root = peer::repo_root();
    let shared = root.join("../shared");
    let model = crate::sst2::default_minilm();
    if !model.join("model.safetensors").exists() {
        bail!("no MiniLM at {}; run scripts/fetch-test-models.sh", model.display());
    }
    let out = root.join("bench/out/distill");
    let train_file = root.join(format!("bench/out/sst2/train-{}.tsv", a.rows));
    crate::sst2::sample(&shared, a.rows, &train_file)?;
    let dev = shared.join("data/sst2/dev.tsv");
    let teacher_dir = out.join("teacher");
    let (t_acc, t_params, t_secs) = train(&config(&a, &model, &train_file, &dev, &teacher_dir, "", ""), &teacher_dir)?;
    eprintln!("teacher: {t_acc:.4} in {t_secs:.0}s");
    let layers = format!("num_layers = {}\n", a.student_layers);
    let plain_dir = out.join("student");
    let (p_acc, s_params, p_secs) = train(&config(&a, &model, &train_file, &dev, &plain_dir, &layers, ""), &plain_dir)?;
    eprintln!("student without distillation: {p_acc:.4} in {p_secs:.0}s");
    let kd_dir = out.join("student-distilled");
    let kd = format!(
        "[distill]\nteacher = \"{}\"\ntemperature = {}\nalpha = {}\nhidden_weight = {}\n",
        teacher_dir.display(),
        a.temperature,
        a.alpha,
        a.hidden_weight
    );
    let (d_acc, _, d_secs) = train(&config(&a, &model, &train_file, &dev, &kd_dir, &layers, &kd), &kd_dir)?;
    eprintln!("student with distillation: {d_acc:.4} in {d_secs:.0}s");
    let t_inf = inference_seconds(&a, &teacher_dir.join("final/model"), &dev, &out.join("inference-teacher"))?;
    let s_inf = inference_seconds(&a, &kd_dir.join("final/model"), &dev, &out.join("inference-student"))?;
    println!(
        "distill: SST-2, {} training rows, {} epochs, batch {}, lr {} (linear, 10% warmup), max_length {}; teacher \
         all-MiniLM-L6-v2 (6 layers, full fine-tuning); student its first {} layers; KD T = {}, alpha = {}, \
         hidden_weight = {}; {} threads; CPU {}",
        a.rows,
        a.epochs,
        a.batch_size,
        a.lr,
        a.max_length,
        a.student_layers,
        a.temperature,
        a.alpha,
        a.hidden_weight,
        a.threads,
        timing::cpu_model()
    );
    let mp = |p: u64| format!("{:.1}", p as f64 / 1e6);
    let rows = vec![
        vec![
            "teacher (6 layers)".into(),
            format!("{:.2}", 100.0 * t_acc),
            mp(t_params),
            format!("{t_inf:.2}"),
            "1.00x".into(),
            format!("{t_secs:.0}"),
        ],
        vec![
            format!("student ({} layers), no distillation", a.student_layers),
            format!("{:.2}", 100.0 * p_acc),
            mp(s_params),
            "-".into(),
            "-".into(),
            format!("{p_secs:.0}"),
        ],
        vec![
            format!("student ({} layers), distilled", a.student_layers),
            format!("{:.2}", 100.0 * d_acc),
            mp(s_params),
            format!("{s_inf:.2}"),
            format!("{:.2}x", t_inf / s_inf),
            format!("{d_secs:.0}"),
        ],
    ];
    println!(
        "{}",
        table::markdown(
            &[
                "model",
                "dev accuracy %",
                "parameters (M)",
                "dev inference s (872 rows)",
                "inference speed-up",
                "train s"
            ],
            &rows
        )
    );
    println!("distillation gain: {:+.2} points", 100.0 * (d_acc - p_acc));
    Ok(())
}
