//! `bench -- qlora`: LoRA on a GGUF model (SmolLM2-135M-Instruct, Q4_1) with the base in f32
//! or kept quantized (`model.quantize` = none / keep / nf4 / q8_0), with and without activation
//! checkpointing, against PyTorch + transformers + PEFT on the model transformers dequantizes
//! from the same file (and PEFT over bitsandbytes 4-bit where it installs). `qlora_peer.py
//! prepare` writes the batch (8 × 512 tokens) and the initial adapter both sides start from;
//! every run is its own process, so peak RSS is per run.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use tunesmith_engine::optim::{AdamW, ParamGroup};
use tunesmith_models::gguf::{self, GgufFile};
use tunesmith_models::quantize::BaseQuant;
use tunesmith_models::{lora, LoadOptions, Targets, Task};

use crate::{peer, table, timing, train};

/// Options of the qlora suite.
#[derive(clap::Args)]
pub struct Args {
    /// The GGUF model (default: $TUNESMITH_SMOLLM2_GGUF, else the copy
    /// `scripts/fetch-test-models.sh smollm2` caches).
    #[arg(long)]
    gguf: Option<PathBuf>,
    /// Text the batch is cut from (one document per line).
    #[arg(long, default_value = "../shared/data/tinystories-sample/tinystories.txt")]
    text: PathBuf,
    /// Our bases (`model.quantize` values).
    #[arg(long, value_delimiter = ',', default_value = "none,keep,nf4,q8_0")]
    modes: Vec<String>,
    /// Activation checkpointing on both sides: off, on or both.
    #[arg(long, default_value = "both", value_parser = ["off", "on", "both"])]
    checkpointing: String,
    /// Threads for both sides.
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Optimizer steps per run (the first 2 are warm-up).
    #[arg(long, default_value_t = 6)]
    steps: usize,
    /// Skip the PyTorch side.
    #[arg(long)]
    no_peer: bool,
    /// Skip PEFT over bitsandbytes 4-bit.
    #[arg(long)]
    no_bnb: bool,
    /// Where the batch and initial adapter are written (default: a temporary folder).
    #[arg(long)]
    work_dir: Option<PathBuf>,
}

/// Arguments of the hidden per-run child process.
#[derive(clap::Args)]
pub struct OneArgs {
    /// `model.quantize` of the base.
    pub mode: String,
    /// The GGUF file.
    pub gguf: PathBuf,
    /// Folder written by `qlora_peer.py prepare`.
    pub dir: PathBuf,
    /// Threads.
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
    /// Steps.
    #[arg(long, default_value_t = 6)]
    pub steps: usize,
    /// Recompute each block in the backward.
    #[arg(long)]
    pub checkpointing: bool,
}

/// The SmolLM2 GGUF: $TUNESMITH_SMOLLM2_GGUF, else the copy in the model cache.
pub fn default_gguf() -> Result<PathBuf> {
    if let Ok(p) = std::env::var("TUNESMITH_SMOLLM2_GGUF") {
        return Ok(PathBuf::from(p));
    }
    let home = std::env::var("HOME").unwrap_or_default();
    let p = Path::new(&home).join(".cache/tunesmith/models/SmolLM2-135M-Instruct.Q4_1.gguf");
    if !p.exists() {
        bail!("{} not found: run scripts/fetch-test-models.sh smollm2, or pass --gguf", p.display());
    }
    Ok(p)
}

/// Trains one configuration with tunesmith and prints one JSON line (the child process).
pub fn run_one(a: OneArgs) -> Result<()> {
    tunesmith_engine::threads::init(Some(a.threads));
    let quant = BaseQuant::parse(&a.mode).with_context(|| format!("unknown mode {}", a.mode))?;
    let file = GgufFile::open(&a.gguf)?;
    let (mut model, _) = gguf::load::load_file_quantized(&file, &LoadOptions::new(Task::CausalLm), quant)?;
    drop(file);
    let report = lora::load_adapter(&mut model, &a.dir.join("adapter"))?;
    if !report.ignored.is_empty() {
        bail!("adapter keys not understood: {:?}", report.ignored);
    }
    let (batch, labels) = train::load_batch(&a.dir)?;
    let group = ParamGroup { params: model.params.trainable_ids(), lr: 1e-4, weight_decay: 0.0 };
    let opt = AdamW::new(&model.params, vec![group], (0.9, 0.999), 1e-8)?;
    let targets = Targets::Tokens(labels);
    let (losses, med) = train::timed_steps(&mut model, opt, &batch, &targets, a.steps, a.checkpointing)?;
    let tokens = batch.input_ids.numel();
    println!(
        "{}",
        json!({
            "mode": a.mode, "checkpointing": a.checkpointing, "threads": a.threads, "tokens_per_step": tokens,
            "step_ms": med * 1e3, "tokens_per_s": tokens as f64 / med,
            "peak_rss_mb": timing::peak_rss_mb(), "losses": losses,
        })
    );
    Ok(())
}

/// One measured configuration.
struct Run {
    side: String,
    base: String,
    checkpointing: bool,
    result: Value,
}

/// Runs the suite and prints the table.
pub fn run(a: Args) -> Result<()> {
    let gguf = match &a.gguf {
        Some(p) => p.clone(),
        None => default_gguf()?,
    };
    let script = peer::repo_root().join("bench/qlora_peer.py");
    let text = if a.text.is_relative() { peer::repo_root().join(&a.text) } else { a.text.clone() };
    let work = a.work_dir.clone().unwrap_or_else(|| std::env::temp_dir().join("tunesmith-qlora-bench"));
    if !work.join("batch.safetensors").exists() || !work.join("adapter/adapter_config.json").exists() {
        eprintln!("preparing the batch and the initial adapter in {} ...", work.display());
        peer::run_python(
            &script,
            &["prepare".into(), gguf.display().to_string(), text.display().to_string(), work.display().to_string()],
        )?;
    }
    let ckpts: &[bool] = match a.checkpointing.as_str() {
        "off" => &[false],
        "on" => &[true],
        _ => &[false, true],
    };
    let me = std::env::current_exe()?;
    let mut runs = Vec::new();
    for &ckpt in ckpts {
        for mode in &a.modes {
            eprintln!("tunesmith base {mode}, checkpointing {ckpt} ...");
            let mut cmd = Command::new(&me);
            cmd.arg("qlora-one").arg(mode).arg(&gguf).arg(&work);
            cmd.args(["--threads", &a.threads.to_string(), "--steps", &a.steps.to_string()]);
            if ckpt {
                cmd.arg("--checkpointing");
            }
            let out = cmd.output()?;
            if !out.status.success() {
                bail!("tunesmith with base {mode} failed:\n{}", String::from_utf8_lossy(&out.stderr));
            }
            let result = peer::last_json(&String::from_utf8_lossy(&out.stdout))?;
            runs.push(Run { side: "tunesmith".into(), base: mode.clone(), checkpointing: ckpt, result });
        }
        if a.no_peer {
            continue;
        }
        for bnb in [false, true] {
            if bnb && a.no_bnb {
                continue;
            }
            let base = if bnb { "bnb nf4" } else { "fp32 (dequantized)" };
            eprintln!("peer base {base}, checkpointing {ckpt} ...");
            let mut args = vec![
                "run".into(),
                gguf.display().to_string(),
                work.display().to_string(),
                "--threads".into(),
                a.threads.to_string(),
                "--steps".into(),
                a.steps.to_string(),
            ];
            args.extend(bnb.then(|| "--bnb4".to_string()));
            args.extend(ckpt.then(|| "--checkpointing".to_string()));
            match peer::run_python(&script, &args).and_then(|out| peer::last_json(&out)) {
                Ok(result) => runs.push(Run { side: "peer".into(), base: base.into(), checkpointing: ckpt, result }),
                // bitsandbytes may not install or run on this CPU: say so in the table, keep going.
                Err(e) if bnb => {
                    let first = e.to_string().lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("").to_string();
                    eprintln!("PEFT + bitsandbytes 4-bit did not run: {first}");
                    runs.push(Run {
                        side: "peer".into(),
                        base: base.into(),
                        checkpointing: ckpt,
                        result: json!({"error": first}),
                    });
                }
                Err(e) => return Err(e),
            }
        }
    }
    print_table(&runs, a.threads, a.steps);
    check_losses(&runs)
}

fn losses(v: &Value) -> Vec<f64> {
    v["losses"].as_array().map(|l| l.iter().filter_map(Value::as_f64).collect()).unwrap_or_default()
}

/// Our f32 and `keep` bases train the same function as the peer's dequantized model from the
/// same adapter and batch: their first losses must agree within 1e-4 (relative).
fn check_losses(runs: &[Run]) -> Result<()> {
    for r in runs.iter().filter(|r| r.side == "tunesmith" && (r.base == "none" || r.base == "keep")) {
        let peer =
            runs.iter().find(|p| p.side == "peer" && p.base.starts_with("fp32") && p.checkpointing == r.checkpointing);
        if let Some(p) = peer {
            let (ours, theirs) = (losses(&r.result), losses(&p.result));
            if let (Some(o), Some(t)) = (ours.first(), theirs.first()) {
                if (o - t).abs() > 1e-4 * t.abs() {
                    bail!("base {}: first loss {o} differs from the peer's {t}", r.base);
                }
            }
        }
    }
    Ok(())
}

fn print_table(runs: &[Run], threads: usize, steps: usize) {
    let tps = |v: &Value| v["tokens_per_s"].as_f64();
    let rss = |v: &Value| v["peak_rss_mb"].as_f64();
    let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.2}", a / b),
        _ => "-".into(),
    };
    let mut rows = Vec::new();
    let mut versions = String::new();
    for r in runs {
        let ours_f32 =
            runs.iter().find(|o| o.side == "tunesmith" && o.base == "none" && o.checkpointing == r.checkpointing);
        let ours_f32_plain = runs.iter().find(|o| o.side == "tunesmith" && o.base == "none" && !o.checkpointing);
        let peer_fp32 =
            runs.iter().find(|o| o.side == "peer" && o.base.starts_with("fp32") && o.checkpointing == r.checkpointing);
        if r.side == "peer" && r.result.get("torch").is_some() {
            versions = format!(
                "PyTorch {} / transformers {} / PEFT {}",
                r.result["torch"].as_str().unwrap_or("?"),
                r.result["transformers"].as_str().unwrap_or("?"),
                r.result["peft"].as_str().unwrap_or("?")
            );
        }
        let l = losses(&r.result);
        rows.push(vec![
            r.side.clone(),
            r.base.clone(),
            if r.checkpointing { "on" } else { "off" }.into(),
            tps(&r.result).map_or_else(|| r.result["error"].as_str().unwrap_or("-").to_string(), |t| format!("{t:.0}")),
            rss(&r.result).map_or("-".into(), |m| format!("{m:.0}")),
            ratio(rss(&r.result), ours_f32.and_then(|o| rss(&o.result))),
            ratio(tps(&r.result), ours_f32.and_then(|o| tps(&o.result))),
            ratio(rss(&r.result), ours_f32_plain.and_then(|o| rss(&o.result))),
            ratio(tps(&r.result), ours_f32_plain.and_then(|o| tps(&o.result))),
            if r.side == "tunesmith" {
                ratio(tps(&r.result), peer_fp32.and_then(|p| tps(&p.result)))
            } else {
                "-".into()
            },
            match (l.first(), l.last()) {
                (Some(a), Some(b)) => format!("{a:.4} / {b:.4}"),
                _ => "-".into(),
            },
        ]);
    }
    println!(
        "\nqlora: LoRA r=16 on 7 projections, batch 8 x 512, {steps} AdamW steps, {threads} threads, {} ({versions})\n",
        timing::cpu_model()
    );
    println!(
        "{}",
        table::markdown(
            &[
                "side",
                "base",
                "ckpt",
                "tok/s",
                "peak RSS MB",
                "RSS vs our f32 (same ckpt)",
                "speed vs our f32 (same ckpt)",
                "RSS vs our f32 (no ckpt)",
                "speed vs our f32 (no ckpt)",
                "speed vs peer fp32 (same ckpt)",
                "loss step 1 / last",
            ],
            &rows
        )
    );
}
