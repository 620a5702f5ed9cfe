//! `bench -- grpo`: GRPO with LoRA on SmolLM2-135M-Instruct (the Q4_1 GGUF; base in f32 or kept
//! quantized) against TRL's GRPOTrainer with PEFT on the model transformers dequantizes from the
//! same file: 4 GSM8K prompts × 4 sampled completions per step (temperature 1, at most 64 new
//! tokens), a length reward, β 0.04. Sampling differs between the two sides, so the comparison is
//! per token: generated tokens plus trained tokens (prompts and completions) per second.

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use tunesmith_data::batch::HostBatch;
use tunesmith_engine::optim::{AdamW, Optimizer, ParamGroup};
use tunesmith_engine::{Grads, Graph};
use tunesmith_models::generate::GenerationConfig;
use tunesmith_models::gguf::{self, GgufFile};
use tunesmith_models::quantize::BaseQuant;
use tunesmith_models::{lora, LoadOptions, Task};
use tunesmith_train::grpo::loss::{AdvantageKind, Aggregation, GrpoParams};
use tunesmith_train::grpo::rewards::RewardFn;
use tunesmith_train::grpo::{policy_step, Grpo, Prompt, RefPolicy};

use crate::{peer, table, timing};

/// Options of the grpo suite.
#[derive(clap::Args)]
pub struct Args {
    /// The GGUF model (default: the copy `scripts/fetch-test-models.sh smollm2` caches).
    #[arg(long)]
    gguf: Option<PathBuf>,
    /// GSM8K questions.
    #[arg(long, default_value = "../shared/data/gsm8k/train.jsonl")]
    data: PathBuf,
    /// Our bases (`model.quantize` values).
    #[arg(long, value_delimiter = ',', default_value = "none,keep")]
    modes: Vec<String>,
    /// Threads for both sides.
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Steps per run (the first is warm-up).
    #[arg(long, default_value_t = 4)]
    steps: usize,
    /// Skip the TRL side.
    #[arg(long)]
    no_peer: bool,
    /// Our policy step recomputes each block in the backward instead of keeping its
    /// activations (`train.activation_checkpointing`).
    #[arg(long)]
    checkpointing: bool,
    /// Where the prompts and initial adapter are written (default: a temporary folder).
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
    /// Folder written by `grpo_peer.py prepare`.
    pub dir: PathBuf,
    /// Threads.
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
    /// Steps.
    #[arg(long, default_value_t = 4)]
    pub steps: usize,
    /// Activation checkpointing in the policy step.
    #[arg(long)]
    pub checkpointing: bool,
}

const PROMPTS: usize = 4;
const GROUP: usize = 4;
const MAX_NEW: usize = 64;

/// Trains one configuration with tunesmith and prints one JSON line (the child process).
pub fn run_one(a: OneArgs) -> Result<()> {
    tunesmith_engine::threads::init(Some(a.threads));
    let quant = BaseQuant::parse(&a.mode).with_context(|| format!("unknown mode {}", a.mode))?;
    let reference = a.gguf.display().to_string();
    let (tokenizer, _) = tunesmith_train::load::load_tokenizer(&reference)?;
    let file = GgufFile::open(&a.gguf)?;
    let (mut model, _) = gguf::load::load_file_quantized(&file, &LoadOptions::new(Task::CausalLm), quant)?;
    drop(file);
    lora::load_adapter(&mut model, &a.dir.join("adapter"))?;
    let path = a.dir.join("prompts.json");
    let v: Value = serde_json::from_str(&std::fs::read_to_string(&path).with_context(|| path.display().to_string())?)?;
    let prompts: Vec<Prompt> = v
        .as_array()
        .context("prompts.json is not a list")?
        .iter()
        .map(|p| Prompt {
            ids: p["ids"].as_array().into_iter().flatten().filter_map(Value::as_u64).map(|t| t as u32).collect(),
            text: p["text"].as_str().unwrap_or_default().to_string(),
            reference: String::new(),
        })
        .collect();
    let mut eos = model.config.eos_token_ids.clone();
    eos.extend(tokenizer.special().eos.map(|e| e.1));
    let generation = GenerationConfig {
        max_new_tokens: MAX_NEW,
        do_sample: true,
        eos_token_ids: eos,
        pad_token_id: model.config.pad_token_id.unwrap_or(0),
        ..GenerationConfig::default()
    };
    let objective = Grpo {
        params: GrpoParams { aggregation: Aggregation::Grpo, beta: 0.04, epsilon: 0.2, max_new_tokens: MAX_NEW },
        advantage: AdvantageKind::Group,
        group: GROUP,
        rewards: vec![(RewardFn::Length { min: 20, max: 150 }, 1.0)],
        generation,
        reference: RefPolicy::AdaptersOff,
        train: prompts,
        validation: Vec::new(),
        tokenizer,
    };
    let group = ParamGroup { params: model.params.trainable_ids(), lr: 1e-4, weight_decay: 0.0 };
    let mut opt = AdamW::new(&model.params, vec![group], (0.9, 0.999), 1e-8)?;
    let mut grads = Grads::new();
    let (mut times, mut tokens, mut rewards) = (Vec::new(), Vec::new(), Vec::new());
    // Time in sampling and scoring (the rollout: generation, reference pass) per step.
    let mut rollout_times = Vec::new();
    for step in 0..a.steps {
        let hb = HostBatch {
            rows: 0,
            len: 0,
            input_ids: Vec::new(),
            attention_mask: Vec::new(),
            position_ids: Vec::new(),
            labels: Vec::new(),
            segment_ids: None,
            token_type_ids: None,
            targets: Vec::new(),
            examples: (step * PROMPTS..(step + 1) * PROMPTS).collect(),
        };
        let t0 = Instant::now();
        let rollout = objective.rollout(&mut model, &hb, 1234 + step as u64)?;
        rollout_times.push(t0.elapsed().as_secs_f64());
        {
            let g = Graph::train(step as u64);
            let out = policy_step(&objective.params, &model, &g, &rollout, PROMPTS as f64, a.checkpointing)?;
            g.backward(&out.loss, &mut grads)?;
        }
        opt.step(&mut model.params, &grads)?;
        grads.clear();
        times.push(t0.elapsed().as_secs_f64());
        let prompt_tokens: usize = hb.examples.iter().map(|&i| objective.train[i].ids.len()).sum::<usize>() * GROUP;
        tokens.push(prompt_tokens + 2 * rollout.stats.length);
        rewards.push(rollout.stats.reward / rollout.stats.completions as f64);
    }
    let timed: Vec<usize> = if a.steps > 1 { (1..a.steps).collect() } else { vec![0] };
    let secs: f64 = timed.iter().map(|&i| times[i]).sum();
    let toks: usize = timed.iter().map(|&i| tokens[i]).sum();
    let rollout_secs: f64 = timed.iter().map(|&i| rollout_times[i]).sum();
    println!(
        "{}",
        json!({
            "mode": a.mode, "threads": a.threads, "step_ms": secs / timed.len() as f64 * 1e3,
            "tokens_per_s": toks as f64 / secs, "peak_rss_mb": timing::peak_rss_mb(), "rewards": rewards,
            "rollout_share": rollout_secs / secs,
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
    let script = peer::repo_root().join("bench/grpo_peer.py");
    let data = if a.data.is_relative() { peer::repo_root().join(&a.data) } else { a.data.clone() };
    let work = a.work_dir.clone().unwrap_or_else(|| std::env::temp_dir().join("tunesmith-grpo-bench"));
    if !work.join("prompts.json").exists() || !work.join("hf/config.json").exists() {
        eprintln!("preparing the prompts and the initial adapter in {} ...", work.display());
        peer::run_python(
            &script,
            &["prepare".into(), gguf.display().to_string(), data.display().to_string(), work.display().to_string()],
        )?;
    }
    let me = std::env::current_exe()?;
    let mut results: Vec<(String, Value)> = Vec::new();
    for mode in &a.modes {
        let label = if a.checkpointing { format!("{mode}, checkpointed") } else { mode.clone() };
        eprintln!("tunesmith base {label} ...");
        let mut cmd = Command::new(&me);
        cmd.arg("grpo-one").arg(mode).arg(&gguf).arg(&work);
        cmd.args(["--threads", &a.threads.to_string(), "--steps", &a.steps.to_string()]);
        if a.checkpointing {
            cmd.arg("--checkpointing");
        }
        let out = cmd.output()?;
        if !out.status.success() {
            bail!("tunesmith with base {mode} failed:\n{}", String::from_utf8_lossy(&out.stderr));
        }
        results.push((format!("tunesmith, base {label}"), peer::last_json(&String::from_utf8_lossy(&out.stdout))?));
    }
    let mut versions = String::new();
    if !a.no_peer {
        eprintln!("TRL GRPOTrainer + PEFT ...");
        let args = vec![
            "run".into(),
            gguf.display().to_string(),
            work.display().to_string(),
            "--threads".into(),
            a.threads.to_string(),
            "--steps".into(),
            a.steps.to_string(),
        ];
        let v = peer::last_json(&peer::run_python(&script, &args)?)?;
        versions = format!(
            "TRL {} / PyTorch {} / transformers {} / PEFT {}",
            v["trl"].as_str().unwrap_or("?"),
            v["torch"].as_str().unwrap_or("?"),
            v["transformers"].as_str().unwrap_or("?"),
            v["peft"].as_str().unwrap_or("?")
        );
        results.push(("TRL GRPOTrainer + PEFT, fp32 (dequantized)".into(), v));
    }
    let peer_result = results.iter().find(|(l, _)| l.starts_with("TRL")).map(|(_, v)| v.clone());
    let f = |v: &Value, k: &str| v[k].as_f64();
    let rows: Vec<Vec<String>> = results
        .iter()
        .map(|(label, v)| {
            let ratio = |k: &str| match (f(v, k), peer_result.as_ref().and_then(|p| f(p, k))) {
                (Some(a), Some(b)) if b > 0.0 => format!("{:.2}", a / b),
                _ => "-".into(),
            };
            let rewards: Vec<String> = v["rewards"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_f64)
                .map(|r| format!("{r:.2}"))
                .collect();
            vec![
                label.clone(),
                f(v, "tokens_per_s").map_or("-".into(), |t| format!("{t:.0}")),
                f(v, "step_ms").map_or("-".into(), |t| format!("{t:.0}")),
                f(v, "peak_rss_mb").map_or("-".into(), |m| format!("{m:.0}")),
                ratio("tokens_per_s"),
                ratio("peak_rss_mb"),
                rewards.join(" "),
            ]
        })
        .collect();
    println!(
        "\ngrpo: LoRA r=16 on 7 projections, {PROMPTS} prompts x {GROUP} completions per step, at most {MAX_NEW} new tokens, {} steps, {} threads, {} ({versions})\n",
        a.steps,
        a.threads,
        timing::cpu_model()
    );
    println!(
        "{}",
        table::markdown(
            &[
                "run",
                "tok/s (generated + trained)",
                "step ms",
                "peak RSS MB",
                "speed vs TRL",
                "RSS vs TRL",
                "mean reward per step"
            ],
            &rows
        )
    );
    Ok(())
}
