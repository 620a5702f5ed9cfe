//! `bench -- dp`: a DP-SGD step (per-example gradients, clipping, noise, AdamW) against a plain
//! step of the same model, and against Opacus' DP step, on peer.py's BERT workloads (the
//! all-MiniLM-L6-v2 shape, batch 16 × 128 tokens; LoRA with the classifier trained, and full
//! fine-tuning), same directory, batch and thread count (bench/dp_peer.py). Each side runs in its
//! own process.

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use tunesmith_engine::optim::{AdamW, Optimizer, ParamGroup};
use tunesmith_engine::{ExampleRows, Grads, Graph, PerExampleGrads};
use tunesmith_models::{lora, LoadOptions, LossOptions, Model, Targets, Task};
use tunesmith_train::privacy::dp_sgd::DpSgd;
use tunesmith_train::privacy::{AccountantKind, DpPlan};

use crate::{peer, table, timing};

/// Options of the dp suite.
#[derive(clap::Args)]
pub struct Args {
    /// Workloads (peer.py's BERT ones).
    #[arg(long, value_delimiter = ',', default_value = "bert-cls-lora,bert-cls-full")]
    workloads: Vec<String>,
    /// Threads for both sides.
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Steps of each kind per side (the first 2 are warm-up).
    #[arg(long, default_value_t = 6)]
    steps: usize,
    /// Where peer.py prepares the workloads (default: a temporary folder).
    #[arg(long)]
    work_dir: Option<PathBuf>,
    /// Skip the Opacus side.
    #[arg(long)]
    no_peer: bool,
}

/// Arguments of the hidden per-workload child process.
#[derive(clap::Args)]
pub struct OneArgs {
    /// Folder written by `peer.py prepare`.
    pub dir: PathBuf,
    /// Threads.
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
    /// Steps of each kind.
    #[arg(long, default_value_t = 6)]
    pub steps: usize,
}

fn median_after_warmup(mut t: Vec<f64>) -> f64 {
    if t.len() > 2 {
        t.drain(..2);
    }
    t.sort_by(f64::total_cmp);
    t[t.len() / 2]
}

/// Our side: plain steps, then DP steps (σ = 1, C = 1, the batch as the expected batch size).
pub fn run_one(a: OneArgs) -> Result<()> {
    tunesmith_engine::threads::init(Some(a.threads));
    let spec: Value = serde_json::from_str(&std::fs::read_to_string(a.dir.join("workload.json"))?)?;
    let load = || -> Result<Model> {
        let (mut model, _) = Model::load(&a.dir, &LoadOptions::new(Task::SequenceClassification))
            .with_context(|| format!("loading {}", a.dir.display()))?;
        if spec["method"] == "lora" {
            lora::load_adapter(&mut model, &a.dir.join("adapter"))?;
        }
        Ok(model)
    };
    let (batch, labels) = crate::train::load_batch(&a.dir)?;
    let examples = labels.numel();
    let tokens_per_row = batch.input_ids.numel() / examples;
    let targets = Targets::Classes(labels);
    let lr = spec["lr"].as_f64().unwrap_or(1e-4);
    let adamw = |m: &Model| {
        AdamW::new(
            &m.params,
            vec![ParamGroup { params: m.params.trainable_ids(), lr, weight_decay: 0.0 }],
            (0.9, 0.999),
            1e-8,
        )
    };

    let mut model = load()?;
    let mut opt = adamw(&model)?;
    let (mut plain, mut plain_losses) = (Vec::new(), Vec::new());
    for step in 0..a.steps {
        let t0 = Instant::now();
        let mut grads = Grads::new();
        let loss = {
            let g = Graph::train(step as u64);
            let out = model.loss(&g, &batch, &targets, &LossOptions::default(), false)?;
            g.backward(&out.loss, &mut grads)?;
            out.loss.value().scalar_value()?
        };
        opt.step(&mut model.params, &grads)?;
        plain.push(t0.elapsed().as_secs_f64());
        plain_losses.push(loss);
    }

    let mut model = load()?;
    let mut opt = adamw(&model)?;
    let dp = DpSgd::new(
        DpPlan {
            noise_multiplier: 1.0,
            max_grad_norm: 1.0,
            delta: 1e-5,
            sample_rate: 0.01,
            expected_batch: examples as f64,
            steps: a.steps as u64,
            accountant: AccountantKind::Rdp,
        },
        1,
    );
    let owner: Vec<Option<usize>> = (0..examples * tokens_per_row).map(|i| Some(i / tokens_per_row)).collect();
    let rows = ExampleRows::from_token_examples(&owner, examples)?;
    let (mut private, mut dp_losses, mut clipped) = (Vec::new(), Vec::new(), 0.0);
    for step in 0..a.steps {
        let t0 = Instant::now();
        let mut grads = Grads::new();
        let (loss, s) = {
            let g = Graph::train(step as u64);
            let out = model.loss(&g, &batch, &targets, &LossOptions::default(), false)?;
            let mut per = PerExampleGrads::new();
            g.backward_per_example(&out.loss, &rows, &mut Grads::new(), &mut per)?;
            (out.loss.value().scalar_value()?, per.clip_into(examples, 1.0, examples as f64, &mut grads)?)
        };
        dp.add_noise(step as u64, &model.params, &mut grads)?;
        opt.step(&mut model.params, &grads)?;
        private.push(t0.elapsed().as_secs_f64());
        dp_losses.push(loss);
        clipped = s.clipped as f64 / examples as f64;
    }
    let (plain_s, dp_s) = (median_after_warmup(plain), median_after_warmup(private));
    println!(
        "{}",
        json!({"workload": spec["name"], "threads": a.threads, "tokens_per_step": batch.input_ids.numel(),
               "plain_step_ms": plain_s * 1e3, "dp_step_ms": dp_s * 1e3, "dp_over_plain": dp_s / plain_s,
               "clipped_fraction": clipped, "peak_rss_mb": timing::peak_rss_mb(),
               "plain_losses": plain_losses, "dp_losses": dp_losses})
    );
    Ok(())
}

/// Runs both sides on every workload and prints the table.
pub fn run(a: Args) -> Result<()> {
    let peer_py = peer::repo_root().join("../shared/bench/peer.py");
    let dp_py = peer::repo_root().join("bench/dp_peer.py");
    let work = a
        .work_dir
        .clone()
        .unwrap_or_else(|| std::env::temp_dir().join(format!("tunesmith-dp-bench-{}", std::process::id())));
    let me = std::env::current_exe()?;
    let mut rows = Vec::new();
    for w in &a.workloads {
        let dir = work.join(w);
        if !dir.join("workload.json").exists() {
            eprintln!("preparing {w} ...");
            peer::run_python(&peer_py, &["prepare".into(), w.clone(), dir.display().to_string()])?;
        }
        eprintln!("tunesmith {w} ...");
        let out = Command::new(&me)
            .args([
                "dp-one",
                &dir.display().to_string(),
                "--threads",
                &a.threads.to_string(),
                "--steps",
                &a.steps.to_string(),
            ])
            .output()?;
        if !out.status.success() {
            bail!("tunesmith on {w} failed:\n{}", String::from_utf8_lossy(&out.stderr));
        }
        let ours = peer::last_json(&String::from_utf8_lossy(&out.stdout))?;
        let theirs = if a.no_peer {
            None
        } else {
            eprintln!("opacus {w} ...");
            let args = [
                dir.display().to_string(),
                "--threads".into(),
                a.threads.to_string(),
                "--steps".into(),
                a.steps.to_string(),
            ];
            Some(peer::last_json(&peer::run_python(&dp_py, &args)?)?)
        };
        rows.push((w.clone(), ours, theirs));
    }
    if a.work_dir.is_none() {
        let _ = std::fs::remove_dir_all(&work);
    }
    let f = |v: &Value, k: &str| v[k].as_f64().map_or("-".to_string(), |x| format!("{x:.1}"));
    let r = |v: &Value, k: &str| v[k].as_f64().map_or("-".to_string(), |x| format!("{x:.2}"));
    let mut out = Vec::new();
    for (w, ours, theirs) in &rows {
        let none = Value::Null;
        let t = theirs.as_ref().unwrap_or(&none);
        let vs = match (ours["dp_step_ms"].as_f64(), t["dp_step_ms"].as_f64()) {
            (Some(o), Some(p)) => format!("{:.2}", p / o),
            _ => "-".into(),
        };
        out.push(vec![
            w.clone(),
            f(ours, "plain_step_ms"),
            f(ours, "dp_step_ms"),
            r(ours, "dp_over_plain"),
            f(t, "plain_step_ms"),
            f(t, "dp_step_ms"),
            r(t, "dp_over_plain"),
            vs,
            f(ours, "peak_rss_mb"),
            f(t, "peak_rss_mb"),
        ]);
    }
    println!("{} thread(s), CPU: {}", a.threads, timing::cpu_model());
    print!(
        "{}",
        table::markdown(
            &[
                "workload",
                "ours plain ms",
                "ours DP ms",
                "ours DP/plain",
                "Opacus plain ms",
                "Opacus DP ms",
                "Opacus DP/plain",
                "DP speed-up vs Opacus",
                "ours RSS MB",
                "Opacus RSS MB",
            ],
            &out,
        )
    );
    Ok(())
}
