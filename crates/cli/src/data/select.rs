//! `tunesmith data select`: active learning. Scores an unlabeled pool with a classifier and
//! writes the rows to label next (least confidence, margin, entropy, k-center or random); or,
//! with `--simulate RUN.toml`, runs the labeling loop on the run's labeled training data with its
//! labels hidden and plots validation accuracy against labels used for each strategy.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use serde_json::json;
use tunesmith_data::clean::row_text;
use tunesmith_train::active::simulate::{html, mean_curves, simulate, Simulation};
use tunesmith_train::active::{select, Strategy};
use tunesmith_train::trainer::classify::{score_records, ScoreOptions};
use tunesmith_train::RunConfig;

use super::load_records as load;
use crate::train::train_error;
use crate::BadInput;

/// Arguments of `data select`.
#[derive(Args)]
pub struct SelectArgs {
    /// Output folder (selected.jsonl and select.json; with --simulate, curves.json, active.html
    /// and every round's run).
    #[arg(short, long)]
    pub output: PathBuf,
    /// The classifier (a model folder, or a run's final/model).
    #[arg(long, required_unless_present = "simulate")]
    pub model: Option<String>,
    /// The unlabeled pool.
    #[arg(long, required_unless_present = "simulate")]
    pub pool: Option<String>,
    /// Rows already labeled (k-center covers them first).
    #[arg(long)]
    pub labeled: Option<String>,
    /// least_confidence, margin, entropy, kcenter or random.
    #[arg(long, default_value = "entropy")]
    pub strategy: String,
    /// Rows to pick.
    #[arg(long, default_value_t = 100)]
    pub k: usize,
    /// Class names in the model's order (default: its config's id2label).
    #[arg(long, value_delimiter = ',')]
    pub labels: Option<Vec<String>>,
    /// Tokens per text.
    #[arg(long, default_value_t = 128)]
    pub max_length: usize,
    /// Seed (random and k-center's first pick).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Simulate the loop with this run config (its data.train is the pool, labels hidden).
    #[arg(long)]
    pub simulate: Option<PathBuf>,
    /// Strategies to compare in a simulation.
    #[arg(long, value_delimiter = ',', default_value = "random,entropy")]
    pub strategies: Vec<String>,
    /// Seeds of a simulation.
    #[arg(long, default_value_t = 3)]
    pub seeds: u64,
    /// Rows labeled at random before the first round.
    #[arg(long, default_value_t = 100)]
    pub initial: usize,
    /// Rows labeled per round.
    #[arg(long, default_value_t = 100)]
    pub step: usize,
    /// Rows labeled at the end.
    #[arg(long, default_value_t = 500)]
    pub budget: usize,
}

fn strategy(name: &str) -> Result<Strategy> {
    Strategy::parse(name).ok_or_else(|| {
        BadInput(format!("strategy \"{name}\": use least_confidence, margin, entropy, kcenter or random")).into()
    })
}

fn run_simulation(a: &SelectArgs, config: &std::path::Path) -> Result<()> {
    let base = RunConfig::load(config, &[]).map_err(train_error)?;
    let strategies = a.strategies.iter().map(|s| strategy(s)).collect::<Result<Vec<_>>>()?;
    let pool = load(&base.data.train)?;
    let sim = Simulation {
        base: base.clone(),
        strategies,
        seeds: (0..a.seeds).collect(),
        initial: a.initial,
        step: a.step,
        budget: a.budget,
        out: a.output.clone(),
    };
    let curves = simulate(&sim, &pool, &mut |line| eprintln!("{line}")).map_err(train_error)?;
    std::fs::create_dir_all(&a.output)?;
    tunesmith_eval::report::write_atomic(
        &a.output.join("curves.json"),
        serde_json::to_string_pretty(&curves)?.as_bytes(),
    )?;
    tunesmith_eval::report::write_atomic(&a.output.join("active.html"), html(&curves, &base.eval.metric).as_bytes())?;
    for (s, points) in mean_curves(&curves) {
        let line: Vec<String> = points.iter().map(|(l, v)| format!("{l}: {v:.4}")).collect();
        println!("{:<16} {}", s.name(), line.join("  "));
    }
    println!("curves: {}", a.output.join("active.html").display());
    Ok(())
}

/// Runs `data select`.
pub fn run(a: SelectArgs) -> Result<()> {
    if let Some(cfg) = &a.simulate {
        return run_simulation(&a, cfg);
    }
    let s = strategy(&a.strategy)?;
    let (Some(model_ref), Some(pool_ref)) = (&a.model, &a.pool) else {
        return Err(BadInput("--model and --pool are needed (or --simulate RUN.toml)".into()).into());
    };
    let (tokenizer, _) = tunesmith_train::load::load_tokenizer(model_ref).map_err(train_error)?;
    let model = tunesmith_train::load::load_model(
        model_ref,
        tunesmith_models::Task::SequenceClassification,
        a.labels.clone(),
        0,
        tunesmith_models::quantize::BaseQuant::None,
    )
    .map_err(train_error)?;
    let labels = a.labels.clone().unwrap_or_else(|| model.config.id2label.clone());
    if labels.len() < 2 {
        return Err(BadInput(format!("{model_ref}: the model's config names no classes; pass --labels")).into());
    }
    let pool = load(pool_ref)?;
    if pool.is_empty() {
        return Err(BadInput(format!("{pool_ref}: the pool has no rows")).into());
    }
    let opts = ScoreOptions {
        max_length: a.max_length,
        batch_size: 64,
        pad_id: tunesmith_train::trainer::pad_id(&tokenizer),
        features: s.needs_features(),
    };
    let scores = score_records(&model, &tokenizer, &labels, &pool, &opts).map_err(train_error)?;
    let labeled = match (&a.labeled, s.needs_features()) {
        (Some(l), true) => score_records(&model, &tokenizer, &labels, &load(l)?, &opts).map_err(train_error)?.features,
        _ => Vec::new(),
    };
    let picked = select(s, &scores.logits, &scores.features, &labeled, a.k, a.seed);
    std::fs::create_dir_all(&a.output)?;
    let out: String = picked
        .iter()
        .map(|&(i, score)| {
            // k-center's distance to the nearest labeled or earlier pick (null for a first pick
            // with nothing labeled); uncertainty otherwise.
            let score = if score.is_finite() { json!(score) } else { serde_json::Value::Null };
            json!({"text": row_text(&pool[i].example), "score": score, "source": pool[i].loc.to_string()}).to_string()
                + "\n"
        })
        .collect();
    let path = a.output.join("selected.jsonl");
    tunesmith_eval::report::write_atomic(&path, out.as_bytes())?;
    let summary = json!({"model": model_ref, "pool": pool_ref, "pool_rows": pool.len(), "strategy": s.name(), "k": picked.len(), "labels": labels});
    tunesmith_eval::report::write_atomic(
        &a.output.join("select.json"),
        serde_json::to_string_pretty(&summary)?.as_bytes(),
    )?;
    println!("{} of {} pool rows selected by {} → {}", picked.len(), pool.len(), s.name(), path.display());
    Ok(())
}
