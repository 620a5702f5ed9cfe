//! `bench -- dpo`: DPO with LoRA on SmolLM2-135M-Instruct (the Q4_1 GGUF; base in f32 or kept
//! quantized) against TRL's DPOTrainer loss with PEFT on the model transformers dequantizes from
//! the same file. `dpo_peer.py prepare` writes the pairs (token ids through the model's chat
//! template) and the initial adapter both sides start from; each run is its own process, so
//! peak RSS is per run. Tokens per second count the prompt and completion tokens of both
//! completions of every pair.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use tunesmith_data::batch::{Loader, LoaderOptions};
use tunesmith_data::encode::{Encoded, Sequence, Target, IGNORE};
use tunesmith_data::error::Loc;
use tunesmith_engine::optim::{AdamW, Optimizer, ParamGroup};
use tunesmith_engine::{Grads, Graph};
use tunesmith_models::gguf::{self, GgufFile};
use tunesmith_models::quantize::BaseQuant;
use tunesmith_models::{lora, LoadOptions, Task};
use tunesmith_train::preference::loss::{LossParams, PreferenceLoss};
use tunesmith_train::preference::{PairObjective, Preference, Reference};

use crate::{peer, table, timing};

/// Options of the dpo suite.
#[derive(clap::Args)]
pub struct Args {
    /// The GGUF model (default: the copy `scripts/fetch-test-models.sh smollm2` caches).
    #[arg(long)]
    gguf: Option<PathBuf>,
    /// Preference data (rasbt's LLMs-from-scratch set).
    #[arg(long, default_value = "../shared/data/rasbt-dpo-preference/instruction-data-with-preference.json")]
    data: PathBuf,
    /// Our bases (`model.quantize` values).
    #[arg(long, value_delimiter = ',', default_value = "none,keep")]
    modes: Vec<String>,
    /// Pairs per step.
    #[arg(long, default_value_t = 8)]
    batch: usize,
    /// Threads for both sides.
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Optimizer steps per run (the first 2 are warm-up).
    #[arg(long, default_value_t = 6)]
    steps: usize,
    /// Skip the TRL side.
    #[arg(long)]
    no_peer: bool,
    /// Where the pairs and initial adapter are written (default: a temporary folder).
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
    /// Folder written by `dpo_peer.py prepare`.
    pub dir: PathBuf,
    /// Pairs per step.
    #[arg(long, default_value_t = 8)]
    pub batch: usize,
    /// Threads.
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
    /// Steps.
    #[arg(long, default_value_t = 6)]
    pub steps: usize,
    /// Pad each completion to the batch's longest instead of packing them.
    #[arg(long)]
    pub padded: bool,
}

/// prompt + completion, trained on the completion.
fn sequence(prompt: &[u32], completion: &[u32]) -> Sequence {
    Sequence {
        input_ids: prompt.iter().chain(completion).copied().collect(),
        labels: prompt.iter().map(|_| IGNORE).chain(completion.iter().map(|&t| t as i32)).collect(),
        token_type_ids: Vec::new(),
    }
}

fn pairs(dir: &Path) -> Result<Vec<Encoded>> {
    let path = dir.join("pairs.json");
    let v: Value = serde_json::from_str(&std::fs::read_to_string(&path).with_context(|| path.display().to_string())?)?;
    let ids = |x: &Value| -> Vec<u32> {
        x.as_array().into_iter().flatten().filter_map(Value::as_u64).map(|t| t as u32).collect()
    };
    let encoded = v
        .as_array()
        .context("pairs.json is not a list")?
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let prompt = ids(&p["prompt_ids"]);
            Encoded {
                sequence: sequence(&prompt, &ids(&p["chosen_ids"])),
                rejected: Some(sequence(&prompt, &ids(&p["rejected_ids"]))),
                others: Vec::new(),
                target: Target::None,
                truncated: false,
                loc: Loc { file: Arc::from(path.as_path()), line: i + 1 },
            }
        })
        .collect();
    Ok(tunesmith_train::preference::as_loader_examples(encoded)?)
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
    let examples = pairs(&a.dir)?;
    let n = examples.len();
    let opts = LoaderOptions {
        batch_size: a.batch,
        shuffle: false,
        padding_free: !a.padded,
        max_length: 4096,
        ..LoaderOptions::default()
    };
    let loader = Loader::new(examples, opts)?;
    let objective = Preference {
        objective: PairObjective::Policy(LossParams {
            loss: PreferenceLoss::Dpo,
            beta: 0.1,
            gamma: 0.0,
            label_smoothing: 0.0,
        }),
        reference: Reference::AdaptersOff,
        packed: !a.padded,
    };
    let group = ParamGroup { params: model.params.trainable_ids(), lr: 1e-4, weight_decay: 0.0 };
    let mut opt = AdamW::new(&model.params, vec![group], (0.9, 0.999), 1e-8)?;
    let mut grads = Grads::new();
    let (mut losses, mut times, mut tokens) = (Vec::new(), Vec::new(), Vec::new());
    for step in 0..a.steps {
        let rows: Vec<usize> = (0..a.batch).map(|k| (step * a.batch + k) % n).collect();
        let t0 = Instant::now();
        let hb = loader.collate(&rows);
        let both = Preference::pair_batch(&loader, &hb);
        let reference = objective.reference_logps(&mut model, &both, true)?;
        let loss = {
            let g = Graph::train(step as u64);
            let out = objective.step(&model, &g, &both, &reference, a.batch as f64, false)?;
            g.backward(&out.loss, &mut grads)?;
            out.loss.value().scalar_value()?
        };
        opt.step(&mut model.params, &grads)?;
        grads.clear();
        times.push(t0.elapsed().as_secs_f64());
        losses.push(loss);
        tokens.push(both.tokens());
    }
    let timed: Vec<usize> = if a.steps > 2 { (2..a.steps).collect() } else { (0..a.steps).collect() };
    let secs: f64 = timed.iter().map(|&i| times[i]).sum();
    let toks: usize = timed.iter().map(|&i| tokens[i]).sum();
    let mut sorted: Vec<f64> = timed.iter().map(|&i| times[i]).collect();
    sorted.sort_by(f64::total_cmp);
    println!(
        "{}",
        json!({
            "mode": a.mode, "packed": !a.padded, "threads": a.threads, "batch": a.batch,
            "step_ms": sorted[sorted.len() / 2] * 1e3, "tokens_per_s": toks as f64 / secs,
            "peak_rss_mb": timing::peak_rss_mb(), "losses": losses,
        })
    );
    Ok(())
}

/// Runs the suite and prints the table.
pub fn run(a: Args) -> Result<()> {
    let gguf = match &a.gguf {
        Some(p) => p.clone(),
        None => crate::qlora::default_gguf()?,
    };
    let script = peer::repo_root().join("bench/dpo_peer.py");
    let data = if a.data.is_relative() { peer::repo_root().join(&a.data) } else { a.data.clone() };
    let work = a.work_dir.clone().unwrap_or_else(|| std::env::temp_dir().join("tunesmith-dpo-bench"));
    if !work.join("pairs.json").exists()
        || !work.join("adapter/adapter_config.json").exists()
        || !work.join("hf/config.json").exists()
    {
        eprintln!("preparing the pairs and the initial adapter in {} ...", work.display());
        peer::run_python(
            &script,
            &["prepare".into(), gguf.display().to_string(), data.display().to_string(), work.display().to_string()],
        )?;
    }
    let me = std::env::current_exe()?;
    let mut rows = Vec::new();
    let mut results: Vec<(String, Value)> = Vec::new();
    for mode in &a.modes {
        for padded in [false, true] {
            eprintln!("tunesmith base {mode}, {} ...", if padded { "padded" } else { "packed" });
            let mut cmd = Command::new(&me);
            cmd.arg("dpo-one").arg(mode).arg(&gguf).arg(&work);
            cmd.args([
                "--threads",
                &a.threads.to_string(),
                "--steps",
                &a.steps.to_string(),
                "--batch",
                &a.batch.to_string(),
            ]);
            if padded {
                cmd.arg("--padded");
            }
            let out = cmd.output()?;
            if !out.status.success() {
                bail!("tunesmith with base {mode} failed:\n{}", String::from_utf8_lossy(&out.stderr));
            }
            let label = format!("tunesmith, base {mode}, {}", if padded { "padded" } else { "padding-free" });
            results.push((label, peer::last_json(&String::from_utf8_lossy(&out.stdout))?));
        }
    }
    let mut versions = String::new();
    if !a.no_peer {
        eprintln!("TRL DPOTrainer + PEFT ...");
        let args = vec![
            "run".into(),
            gguf.display().to_string(),
            work.display().to_string(),
            "--threads".into(),
            a.threads.to_string(),
            "--steps".into(),
            a.steps.to_string(),
            "--batch".into(),
            a.batch.to_string(),
        ];
        let v = peer::last_json(&peer::run_python(&script, &args)?)?;
        versions = format!(
            "TRL {} / PyTorch {} / transformers {} / PEFT {}",
            v["trl"].as_str().unwrap_or("?"),
            v["torch"].as_str().unwrap_or("?"),
            v["transformers"].as_str().unwrap_or("?"),
            v["peft"].as_str().unwrap_or("?")
        );
        results.push(("TRL DPOTrainer + PEFT, fp32 (dequantized)".into(), v));
    }
    let peer_result = results.iter().find(|(l, _)| l.starts_with("TRL")).map(|(_, v)| v.clone());
    let f = |v: &Value, k: &str| v[k].as_f64();
    for (label, v) in &results {
        let ratio = |k: &str| match (f(v, k), peer_result.as_ref().and_then(|p| f(p, k))) {
            (Some(a), Some(b)) if b > 0.0 => format!("{:.2}", a / b),
            _ => "-".into(),
        };
        let losses: Vec<f64> = v["losses"].as_array().into_iter().flatten().filter_map(Value::as_f64).collect();
        rows.push(vec![
            label.clone(),
            f(v, "tokens_per_s").map_or("-".into(), |t| format!("{t:.0}")),
            f(v, "step_ms").map_or("-".into(), |t| format!("{t:.0}")),
            f(v, "peak_rss_mb").map_or("-".into(), |m| format!("{m:.0}")),
            ratio("tokens_per_s"),
            ratio("peak_rss_mb"),
            losses.iter().map(|l| format!("{l:.4}")).collect::<Vec<_>>().join(" "),
        ]);
    }
    println!(
        "\ndpo: LoRA r=16 on 7 projections, {} pairs per step, beta 0.1, {} AdamW steps, {} threads, {} ({versions})\n",
        a.batch,
        a.steps,
        a.threads,
        timing::cpu_model()
    );
    println!(
        "{}",
        table::markdown(&["run", "tok/s", "step ms", "peak RSS MB", "speed vs TRL", "RSS vs TRL", "losses"], &rows)
    );
    // Both sides start from the same adapter (B = 0: the policy is the reference), so the first
    // loss is log 2 on both, and the trajectories must agree closely.
    if let Some(p) = &peer_result {
        let theirs: Vec<f64> = p["losses"].as_array().into_iter().flatten().filter_map(Value::as_f64).collect();
        for (label, v) in results.iter().filter(|(l, _)| l.contains("base none")) {
            let ours: Vec<f64> = v["losses"].as_array().into_iter().flatten().filter_map(Value::as_f64).collect();
            for (k, (o, t)) in ours.iter().zip(&theirs).enumerate() {
                if (o - t).abs() > 1e-3 * t.abs().max(1e-3) {
                    bail!("{label}: loss at step {} is {o}, TRL's {t}", k + 1);
                }
            }
        }
    }
    Ok(())
}
