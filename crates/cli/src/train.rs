//! `tunesmith train CONFIG` and `tunesmith init`: run a fine-tuning from a TOML config, and
//! write a commented starter config.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::{Map, Value};
use tunesmith_train::config::{starter_for, MethodKind};
use tunesmith_train::{Progress, RunConfig, TrainError, Trainer};

use crate::BadInput;

/// Options of `tunesmith train`.
#[derive(Args, Debug)]
pub struct TrainArgs {
    /// The run config (TOML); `tunesmith init` writes a starter.
    config: PathBuf,
    /// Override a config key, e.g. `--set train.lr=2e-5` (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    overrides: Vec<String>,
    /// Continue the run from its latest checkpoint in output.dir.
    #[arg(long)]
    resume: bool,
    /// Matrix-product precision, `fp32` or `bf16` (mixed precision); the same as
    /// `--set train.precision=...`.
    #[arg(long, value_name = "fp32|bf16")]
    precision: Option<String>,
    /// K-fold cross-validation: K runs, each validating on one stratified fold of data.train,
    /// in output.dir/fold-<i>; prints each metric's mean ± standard deviation.
    #[arg(long, value_name = "K")]
    cv: Option<usize>,
}

/// Options of `tunesmith init`.
#[derive(Args, Debug)]
pub struct InitArgs {
    /// Where to write the config.
    #[arg(default_value = "tunesmith.toml")]
    path: PathBuf,
    /// Overwrite an existing file.
    #[arg(long)]
    force: bool,
    /// The fine-tuning method the config starts with: full, feature_extraction, partial,
    /// gradual_unfreeze or lora (its keys are then uncommented).
    #[arg(long, default_value = "full")]
    method: String,
}

/// Options of `tunesmith fetch`.
#[derive(Args, Debug)]
pub struct FetchArgs {
    /// A Hub model id (`org/name`), honouring HF_ENDPOINT and HF_HUB_OFFLINE.
    model: String,
}

/// Options of `tunesmith eval`.
#[derive(Args, Debug)]
pub struct EvalArgs {
    /// The model (folder, Hub id, GGUF file, or a run's final/model).
    #[arg(long)]
    model: String,
    /// A LoRA adapter to apply.
    #[arg(long)]
    adapter: Option<PathBuf>,
    /// The evaluation data.
    #[arg(long)]
    data: String,
    /// classification, regression or causal_lm.
    #[arg(long, default_value = "classification")]
    task: String,
    /// Class names in id order (default: from the data).
    #[arg(long, value_delimiter = ',')]
    labels: Option<Vec<String>>,
    /// Longest sequence in tokens.
    #[arg(long, default_value_t = 256)]
    max_length: usize,
    /// Chat template for conversations: "model" (the tokenizer's), chatml, llama3, alpaca or a file.
    #[arg(long, default_value = "model")]
    template: String,
    /// Write per-example predictions and metrics here.
    #[arg(long)]
    out: Option<PathBuf>,
    /// With --task preference: a reward model (a reward run's final/model, same tokenizer) that
    /// judges greedy completions of the model (with --adapter) against its base on the data's
    /// prompts; adds the win rate.
    #[arg(long)]
    reward_model: Option<String>,
    /// Tokens generated per completion for the win rate.
    #[arg(long, default_value_t = 128)]
    max_new_tokens: usize,
    /// A suite of checks beyond the task's metrics: `robustness` (perturbations, OOD
    /// detection, subgroups, calibration; classification only).
    #[arg(long, value_parser = ["robustness"])]
    suite: Option<String>,
    #[command(flatten)]
    robustness: crate::robustness::RobustnessArgs,
}

/// Runs `tunesmith eval`: the task's metrics of a model on a dataset, as JSON.
pub fn eval(a: EvalArgs) -> Result<()> {
    if a.suite.is_some() && a.task != "classification" {
        return Err(BadInput("--suite robustness checks a classifier: use it with --task classification".into()).into());
    }
    if a.suite.is_none() && a.robustness.is_set() {
        return Err(BadInput(
            "--ood, --group-column, --positive, --calibration-data and --perturb belong to --suite robustness".into(),
        )
        .into());
    }
    if a.reward_model.is_some() && a.task != "preference" {
        return Err(BadInput("--reward-model judges a policy: use it with --task preference".into()).into());
    }
    let out =
        a.out.clone().unwrap_or_else(|| std::env::temp_dir().join(format!("tunesmith-eval-{}", std::process::id())));
    let toml = format!(
        "[model]\npath = {model:?}\n[task]\nkind = {task:?}\n[data]\ntrain = {data:?}\nvalidation = {data:?}\nmax_length = {ml}\ntemplate = {template:?}\n[train]\nmax_steps = 1\n[eval]\nat_start = false\n[output]\ndir = {out:?}\nsave_checkpoints = false\n",
        model = a.model,
        task = a.task,
        data = a.data,
        ml = a.max_length,
        template = a.template,
        out = out.display().to_string(),
    );
    let mut overrides = Vec::new();
    if let Some(l) = &a.labels {
        overrides.push(format!("task.labels={}", serde_json::to_string(l)?));
    }
    let cfg = RunConfig::parse(&toml, "tunesmith eval", &overrides).map_err(train_error)?;
    let mut trainer = Trainer::new(cfg, false).map_err(train_error)?;
    if let Some(dir) = &a.adapter {
        trainer.load_adapter(dir).map_err(train_error)?;
    }
    if a.suite.is_some() {
        let result = crate::robustness::run(&mut trainer, &a.data, &a.robustness, a.out.as_deref());
        if a.out.is_none() {
            let _ = std::fs::remove_dir_all(&out);
        }
        return result;
    }
    let mut metrics = trainer.evaluate(a.out.is_some()).map_err(train_error)?;
    if let Some(rm) = &a.reward_model {
        let reward = tunesmith_train::load::load_model(
            rm,
            tunesmith_models::Task::SequenceClassification,
            None,
            0,
            tunesmith_models::quantize::BaseQuant::None,
        )
        .map_err(train_error)?;
        let w = trainer.win_rate(&reward, a.max_new_tokens).map_err(train_error)?;
        if let (Some(m), Value::Object(extra)) = (metrics.as_mut(), serde_json::to_value(&w)?) {
            m.extend(extra);
        }
    }
    println!("{}", serde_json::to_string_pretty(&metrics)?);
    if a.out.is_none() {
        let _ = std::fs::remove_dir_all(&out);
    }
    Ok(())
}

/// Runs `tunesmith fetch`.
pub fn fetch(a: FetchArgs) -> Result<()> {
    let dir = tunesmith_models::hub::resolve_model(&a.model)?;
    println!("{}", dir.display());
    Ok(())
}

/// The training progress bar on stderr: loss, lr, tokens/s and ETA.
pub struct Bar(ProgressBar);

impl Progress for Bar {
    fn start(&mut self, total: u64, resumed_at: u64) {
        self.0.set_length(total);
        self.0.set_position(resumed_at);
    }
    fn step(&mut self, step: u64, loss: f64, lr: f64, tps: f64) {
        self.0.set_position(step);
        self.0.set_message(format!("loss {loss:.4} lr {lr:.2e} {tps:.0} tok/s"));
    }
    fn message(&mut self, line: &str) {
        self.0.println(line);
    }
    fn finish(&mut self) {
        self.0.finish_and_clear();
    }
}

/// A trainer error as a CLI error (bad input exits with 2).
pub fn train_error(e: TrainError) -> anyhow::Error {
    if e.is_bad_input() {
        BadInput(e.to_string()).into()
    } else {
        anyhow::Error::new(e)
    }
}

fn show(metrics: &Option<Map<String, Value>>) -> String {
    match metrics {
        None => "no validation data".into(),
        Some(m) => m
            .iter()
            .map(|(k, v)| format!("{k} {}", v.as_f64().map_or(v.to_string(), |x| format!("{x:.4}"))))
            .collect::<Vec<_>>()
            .join(", "),
    }
}

/// The training progress bar.
pub fn bar() -> Bar {
    let pb = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
    pb.set_style(
        ProgressStyle::with_template("train [{bar:30}] {pos}/{len} {msg} eta {eta}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    Bar(pb)
}

/// A `[continual]` run: the tasks in order, then the accuracy matrix.
fn run_continual(cfg: RunConfig, resume: bool) -> Result<()> {
    if resume {
        return Err(BadInput("--resume continues one task's run; a [continual] run starts over".into()).into());
    }
    let dir = cfg.output.dir.clone();
    let s = tunesmith_train::continual::run(cfg, &mut bar()).map_err(train_error)?;
    println!("accuracy after each task (rows: evaluated task, columns: after training task):");
    println!("{:>16} {}", "", s.tasks.iter().map(|t| format!("{t:>10}")).collect::<String>());
    for (i, row) in s.matrix.iter().enumerate() {
        let cells: String = row.iter().map(|c| c.map_or(format!("{:>10}", "-"), |a| format!("{:>10.4}", a))).collect();
        println!("{:>16} {cells}", s.tasks[i]);
    }
    println!(
        "average accuracy {:.4}, backward transfer {:+.4}, forgetting {:.4}",
        s.scores.average_accuracy, s.scores.backward_transfer, s.scores.forgetting
    );
    println!("output: {}", dir.join("continual.json").display());
    Ok(())
}

/// Runs `tunesmith train`.
pub fn run(a: TrainArgs) -> Result<()> {
    let mut overrides = a.overrides.clone();
    if let Some(p) = &a.precision {
        overrides.push(format!("train.precision={p:?}"));
    }
    let cfg = RunConfig::load(&a.config, &overrides).map_err(train_error)?;
    eprintln!("tunesmith: loading {} ...", cfg.model.path);
    if let Some(k) = a.cv {
        if a.resume {
            return Err(BadInput("--cv starts every fold afresh; drop --resume".into()).into());
        }
        return crate::cv::run(cfg, k);
    }
    if cfg.continual.is_some() {
        return run_continual(cfg, a.resume);
    }
    if cfg.multitask.is_some() {
        let summary = tunesmith_train::multitask::run(cfg, a.resume, &mut bar()).map_err(train_error)?;
        println!("before: {}", show(&summary.initial_metrics));
        println!("after:  {} ({} steps)", show(&summary.final_metrics), summary.steps);
        for o in &summary.outputs {
            println!("output: {}", o.display());
        }
        println!("report: {}", summary.report.display());
        return Ok(());
    }
    let trainer = Trainer::new(cfg, a.resume).map_err(train_error)?;
    let rejected = trainer.rejected_rows();
    if !rejected.is_empty() {
        eprintln!("tunesmith: {} data rows left out (counted in manifest.json):", rejected.len());
        for why in rejected.iter().take(5) {
            eprintln!("  {why}");
        }
        if rejected.len() > 5 {
            eprintln!("  ... and {} more; `tunesmith data validate` lists them all", rejected.len() - 5);
        }
    }
    if a.resume {
        match trainer.resumed() {
            true => eprintln!("tunesmith: resuming at step {}", trainer.state().step),
            false => eprintln!("tunesmith: no complete checkpoint to resume; starting from the beginning"),
        }
    }
    let summary = trainer.train(&mut bar()).map_err(train_error)?;
    if tunesmith_engine::profile::enabled() {
        eprintln!("{}", tunesmith_engine::profile::report());
    }
    println!("before: {}", show(&summary.initial_metrics));
    println!(
        "after:  {} ({} steps{})",
        show(&summary.final_metrics),
        summary.steps,
        if summary.stopped_early { ", stopped early" } else { "" }
    );
    if summary.skipped_batches > 0 {
        eprintln!(
            "note: {} batches were skipped for a non-finite loss (train.on_nan = \"skip\")",
            summary.skipped_batches
        );
    }
    for o in &summary.outputs {
        println!("output: {}", o.display());
    }
    println!("report: {}", summary.report.display());
    Ok(())
}

/// Runs `tunesmith init`.
pub fn init(a: InitArgs) -> Result<()> {
    if a.path.exists() && !a.force {
        return Err(BadInput(format!("{} exists; pass --force to overwrite it", a.path.display())).into());
    }
    let method = MethodKind::parse(&a.method).ok_or_else(|| {
        let names: Vec<&str> = MethodKind::ALL.iter().map(|m| m.name()).collect();
        BadInput(format!("--method {}: unknown method; use one of {}", a.method, names.join(", ")))
    })?;
    tunesmith_data::write::write_atomic(&a.path, starter_for(method).as_bytes())?;
    println!("wrote {}; edit it, then run: tunesmith train {}", a.path.display(), a.path.display());
    Ok(())
}
