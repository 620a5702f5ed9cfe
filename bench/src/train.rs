//! `bench -- train`: every workload of ../shared/bench/peer.py, trained by tunesmith and by
//! PyTorch + transformers + PEFT on the same model, batch and thread count, in one invocation.
//! `peer.py prepare` writes the exact model and batch; each side trains 8 AdamW steps in its
//! own process (so peak RSS is per side); the loss curves must agree.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use serde_json::json;
use tunesmith_engine::optim::{AdamW, Optimizer, ParamGroup};
use tunesmith_engine::precision::Precision;
use tunesmith_engine::{Grads, Graph, Tensor};
use tunesmith_models::weights::Checkpoint;
use tunesmith_models::{lora, Batch, LoadOptions, LossOptions, Model, Targets, Task};

use crate::{peer, table, timing};

/// The CPU workloads of peer.py, in its order.
pub const CPU_WORKLOADS: [&str; 6] =
    ["gpt2-full", "gpt2-lora", "llama-full", "llama-lora", "bert-cls-full", "bert-cls-lora"];

/// Options of the train suite.
#[derive(clap::Args)]
pub struct Args {
    /// Workloads to run (default: every CPU workload of peer.py).
    #[arg(long, value_delimiter = ',')]
    workloads: Vec<String>,
    /// Threads for both sides.
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Optimizer steps per side (the first 2 are warm-up).
    #[arg(long, default_value_t = 8)]
    steps: usize,
    /// Where peer.py prepares the workloads (default: a temporary folder).
    #[arg(long)]
    work_dir: Option<PathBuf>,
    /// Skip the PyTorch side.
    #[arg(long)]
    no_peer: bool,
    /// Runs per side, alternating tunesmith and peer; each side's fastest run is reported
    /// (this machine's speed drifts by ±15% over minutes; alternation exposes both sides
    /// to the same drift).
    #[arg(long, default_value_t = 2)]
    rounds: usize,
    /// Matrix-product precision of both sides: fp32, or bf16 (ours: `train.precision = "bf16"`;
    /// the peer: `peer.py --precision bf16`, torch.autocast on the CPU).
    #[arg(long, default_value = "fp32", value_parser = ["fp32", "bf16"])]
    precision: String,
}

/// Arguments of the hidden per-workload child process.
#[derive(clap::Args)]
pub struct OneArgs {
    /// Workload name.
    pub workload: String,
    /// Folder written by `peer.py prepare`.
    pub dir: PathBuf,
    /// Threads.
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
    /// Steps.
    #[arg(long, default_value_t = 8)]
    pub steps: usize,
    /// fp32 or bf16.
    #[arg(long, default_value = "fp32")]
    pub precision: String,
}

fn peer_script() -> Result<PathBuf> {
    let p = peer::repo_root().join("../shared/bench/peer.py");
    if !p.exists() {
        bail!("{} not found: the train suite needs ../shared beside the repository", p.display());
    }
    Ok(p)
}

/// Trains one prepared workload with tunesmith and prints one JSON line (the child process).
pub fn run_one(a: OneArgs) -> Result<()> {
    tunesmith_engine::threads::init(Some(a.threads));
    let precision = Precision::parse(&a.precision).with_context(|| format!("--precision {}", a.precision))?;
    tunesmith_engine::precision::set(precision);
    let spec: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(a.dir.join("workload.json"))?)?;
    let is_bert = spec["arch"] == "bert";
    let task = if is_bert { Task::SequenceClassification } else { Task::CausalLm };
    let (mut model, _) =
        Model::load(&a.dir, &LoadOptions::new(task)).with_context(|| format!("loading {}", a.dir.display()))?;
    if spec["method"] == "lora" {
        let report = lora::load_adapter(&mut model, &a.dir.join("adapter"))?;
        if !report.ignored.is_empty() {
            bail!("adapter keys not understood: {:?}", report.ignored);
        }
    }
    let (batch, labels) = load_batch(&a.dir)?;
    let targets = if is_bert { Targets::Classes(labels) } else { Targets::Tokens(labels) };
    let lr = spec["lr"].as_f64().unwrap_or(1e-4);
    let betas = (spec["betas"][0].as_f64().unwrap_or(0.9), spec["betas"][1].as_f64().unwrap_or(0.999));
    let eps = spec["eps"].as_f64().unwrap_or(1e-8);
    let wd = spec["weight_decay"].as_f64().unwrap_or(0.0);
    let opt = AdamW::new(
        &model.params,
        vec![ParamGroup { params: model.params.trainable_ids(), lr, weight_decay: wd }],
        betas,
        eps,
    )?;
    let (losses, med) = timed_steps(&mut model, opt, &batch, &targets, a.steps, false)?;
    let tokens = batch.input_ids.numel();
    println!(
        "{}",
        json!({
            "workload": a.workload, "threads": a.threads, "tokens_per_step": tokens,
            "precision": precision.name(),
            "kernel": (precision == Precision::Bf16).then(|| tunesmith_engine::precision::bf16_kernel().name()),
            "step_ms": med * 1e3, "tokens_per_s": tokens as f64 / med,
            "peak_rss_mb": timing::peak_rss_mb(), "losses": losses,
        })
    );
    Ok(())
}

/// The fixed batch a peer script wrote to `DIR/batch.safetensors` (`input_ids`, `labels`).
pub fn load_batch(dir: &Path) -> Result<(Batch, Tensor)> {
    let file = Checkpoint::open_files(dir, &[dir.join("batch.safetensors")])?;
    let batch = Batch {
        input_ids: file.take("input_ids")?,
        attention_mask: None,
        position_ids: None,
        token_type_ids: None,
        segment_ids: None,
    };
    Ok((batch, file.take("labels")?))
}

/// Trains `steps` AdamW steps on one fixed batch; returns every step's loss and the median
/// seconds of the steps after the first two (warm-up). With `TUNESMITH_PROFILE` set, prints the
/// per-op profile of the steady-state steps to stderr.
pub fn timed_steps(
    model: &mut Model,
    mut opt: AdamW,
    batch: &Batch,
    targets: &Targets,
    steps: usize,
    checkpoint: bool,
) -> Result<(Vec<f64>, f64)> {
    let mut grads = Grads::new();
    let mut losses = Vec::new();
    let mut times = Vec::new();
    for step in 0..steps {
        let t0 = Instant::now();
        let loss = {
            let g = Graph::train(step as u64);
            let out = model.loss(&g, batch, targets, &LossOptions::default(), checkpoint)?;
            g.backward(&out.loss, &mut grads)?;
            out.loss.value().scalar_value()?
        };
        opt.step(&mut model.params, &grads)?;
        grads.clear();
        times.push(t0.elapsed().as_secs_f64());
        losses.push(loss);
        if step == 1 {
            // Profile (when enabled) the steady state, not the warm-up steps.
            tunesmith_engine::profile::reset();
        }
    }
    if tunesmith_engine::profile::enabled() {
        eprintln!("{}", tunesmith_engine::profile::report());
    }
    let mut timed: Vec<f64> = if times.len() > 2 { times[2..].to_vec() } else { times.clone() };
    timed.sort_by(|x, y| x.total_cmp(y));
    Ok((losses, timed[timed.len() / 2]))
}

struct Row {
    workload: String,
    ours: serde_json::Value,
    theirs: Option<serde_json::Value>,
}

/// Whether two loss curves agree: fp32 within 1e-4 at step 1 and 1e-2 over 8 steps; bf16
/// (two different roundings of the same products) within 2e-2 throughout.
fn loss_check(ours: &[f64], theirs: &[f64], bf16: bool) -> (bool, f64, f64) {
    let rel = |a: f64, b: f64| (a - b).abs() / b.abs().max(1e-12);
    let first = rel(ours[0], theirs[0]);
    let worst = ours.iter().zip(theirs).take(8).map(|(a, b)| rel(*a, *b)).fold(0.0f64, f64::max);
    let (first_tol, worst_tol) = if bf16 { (2e-2, 2e-2) } else { (1e-4, 1e-2) };
    (first <= first_tol && worst <= worst_tol, first, worst)
}

/// Runs the suite and prints the table.
pub fn run(a: Args) -> Result<()> {
    let script = peer_script()?;
    let workloads: Vec<String> = if a.workloads.is_empty() {
        CPU_WORKLOADS.iter().map(|s| s.to_string()).collect()
    } else {
        a.workloads.clone()
    };
    let tmp;
    let work = match &a.work_dir {
        Some(p) => p.clone(),
        None => {
            tmp = std::env::temp_dir().join(format!("tunesmith-train-bench-{}", std::process::id()));
            tmp
        }
    };
    let me = std::env::current_exe()?;
    let mut rows = Vec::new();
    for w in &workloads {
        let dir = work.join(w);
        if !dir.join("workload.json").exists() {
            eprintln!("preparing {w} ...");
            peer::run_python(&script, &["prepare".into(), w.clone(), dir.display().to_string()])?;
        }
        let mut ours: Option<serde_json::Value> = None;
        let mut theirs: Option<serde_json::Value> = None;
        let faster = |best: Option<serde_json::Value>, new: serde_json::Value| -> Option<serde_json::Value> {
            match best {
                Some(b) if b["tokens_per_s"].as_f64() >= new["tokens_per_s"].as_f64() => Some(b),
                _ => Some(new),
            }
        };
        for round in 0..a.rounds.max(1) {
            eprintln!("tunesmith {w} (round {}) ...", round + 1);
            let out = Command::new(&me)
                .args([
                    "train-one",
                    w,
                    &dir.display().to_string(),
                    "--threads",
                    &a.threads.to_string(),
                    "--steps",
                    &a.steps.to_string(),
                    "--precision",
                    &a.precision,
                ])
                .output()?;
            if !out.status.success() {
                bail!("tunesmith on {w} failed:\n{}", String::from_utf8_lossy(&out.stderr));
            }
            ours = faster(ours, peer::last_json(&String::from_utf8_lossy(&out.stdout))?);
            if !a.no_peer {
                eprintln!("peer {w} (round {}) ...", round + 1);
                let out = peer::run_python(
                    &script,
                    &[
                        "run".into(),
                        w.clone(),
                        dir.display().to_string(),
                        "--threads".into(),
                        a.threads.to_string(),
                        "--steps".into(),
                        a.steps.to_string(),
                        "--precision".into(),
                        a.precision.clone(),
                    ],
                )?;
                theirs = faster(theirs, peer::last_json(&out)?);
            }
        }
        let ours = ours.expect("at least one round");
        rows.push(Row { workload: w.clone(), ours, theirs });
    }
    if a.work_dir.is_none() {
        let _ = std::fs::remove_dir_all(&work);
    }
    let bf16 = a.precision == "bf16";
    print_table(&rows, a.threads, bf16);
    let bad: Vec<&str> = rows
        .iter()
        .filter(|r| {
            r.theirs.as_ref().is_some_and(|t| {
                let o: Vec<f64> = r.ours["losses"]
                    .as_array()
                    .map(|v| v.iter().filter_map(|x| x.as_f64()).collect())
                    .unwrap_or_default();
                let p: Vec<f64> =
                    t["losses"].as_array().map(|v| v.iter().filter_map(|x| x.as_f64()).collect()).unwrap_or_default();
                !loss_check(&o, &p, bf16).0
            })
        })
        .map(|r| r.workload.as_str())
        .collect();
    if !bad.is_empty() {
        bail!("loss curves disagree with the peer on: {}", bad.join(", "));
    }
    Ok(())
}

fn print_table(rows: &[Row], threads: usize, bf16: bool) {
    let mut out = Vec::new();
    let mut torch = String::new();
    for r in rows {
        let ours_tps = r.ours["tokens_per_s"].as_f64().unwrap_or(0.0);
        let ours_rss = r.ours["peak_rss_mb"].as_f64().unwrap_or(0.0);
        let losses: Vec<f64> =
            r.ours["losses"].as_array().map(|v| v.iter().filter_map(|x| x.as_f64()).collect()).unwrap_or_default();
        let (peer_tps, peer_rss, agree) = match &r.theirs {
            Some(t) => {
                torch = format!(
                    "PyTorch {} / transformers {}",
                    t["torch"].as_str().unwrap_or("?"),
                    t["transformers"].as_str().unwrap_or("?")
                );
                let p: Vec<f64> =
                    t["losses"].as_array().map(|v| v.iter().filter_map(|x| x.as_f64()).collect()).unwrap_or_default();
                let (ok, first, worst) = loss_check(&losses, &p, bf16);
                (
                    t["tokens_per_s"].as_f64(),
                    t["peak_rss_mb"].as_f64(),
                    format!("{} (step 1 {:.1e}, max {:.1e})", if ok { "yes" } else { "NO" }, first, worst),
                )
            }
            None => (None, None, "-".into()),
        };
        out.push(vec![
            r.workload.clone(),
            format!("{ours_tps:.0}"),
            peer_tps.map_or("-".into(), |p| format!("{p:.0}")),
            peer_tps.map_or("-".into(), |p| format!("{:.2}", ours_tps / p)),
            format!("{ours_rss:.0}"),
            peer_rss.map_or("-".into(), |p| format!("{p:.0}")),
            peer_rss.map_or("-".into(), |p| format!("{:.2}", ours_rss / p)),
            agree,
        ]);
    }
    let precision = match rows.first().and_then(|r| r.ours["kernel"].as_str()) {
        Some(kernel) => format!("bf16 mixed precision (our kernel: {kernel})"),
        None => "fp32".into(),
    };
    println!("\ntrain, 8 AdamW steps, {threads} threads, {precision}, {} ({torch})\n", timing::cpu_model());
    println!(
        "{}",
        table::markdown(
            &[
                "workload",
                "tunesmith tok/s",
                "peer tok/s",
                "ratio",
                "tunesmith RSS MB",
                "peer RSS MB",
                "RSS ratio",
                "losses agree"
            ],
            &out
        )
    );
}
