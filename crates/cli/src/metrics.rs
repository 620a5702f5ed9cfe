//! `tunesmith metrics`: score predictions against references from the shell and print JSON,
//! the way `sacrebleu` is used.

use std::path::PathBuf;

use anyhow::Result;
use clap::{Args, ValueEnum};
use tunesmith_eval::inputs::Column;
use tunesmith_eval::tasks::{self, ScoreOptions};

use crate::BadInput;

/// The task whose metrics to compute.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Task {
    /// Labels (and optional class probabilities): accuracy, P/R/F1, MCC, ROC-AUC, ECE, Brier.
    Classification,
    /// Numbers: MSE, MAE, R², Pearson, Spearman.
    Regression,
    /// Text: BLEU, chrF, chrF++, ROUGE, exact match, F1, GSM8K accuracy.
    Generation,
    /// Lines {"loss", "tokens", "correct"}: token-weighted loss, perplexity, token accuracy.
    Lm,
    /// Lines {"chosen", "rejected"} of rewards: reward accuracy and margin.
    Preference,
}

/// Options of `tunesmith metrics`.
#[derive(Args, Debug)]
pub struct MetricsArgs {
    /// The task.
    #[arg(long, value_enum)]
    task: Task,
    /// Predictions: JSONL (a field of each object) or one per line.
    #[arg(long)]
    pred: PathBuf,
    /// References, aligned with the predictions; repeat for several references per example.
    #[arg(long = "ref")]
    refs: Vec<PathBuf>,
    /// Field of JSONL predictions (default: prediction, pred, output, hypothesis, text or label).
    #[arg(long)]
    pred_field: Option<String>,
    /// Field of JSONL references (default: reference, references, ref, answer, target or label).
    #[arg(long)]
    ref_field: Option<String>,
    /// Add bootstrap confidence intervals.
    #[arg(long)]
    ci: bool,
    /// Bootstrap resamples.
    #[arg(long, default_value_t = 1000)]
    samples: usize,
    /// Bootstrap seed.
    #[arg(long, default_value_t = 12345)]
    seed: u64,
    /// Interval coverage.
    #[arg(long, default_value_t = 0.95)]
    confidence: f64,
    /// A second system's predictions: adds a paired bootstrap test of --pred against it.
    #[arg(long)]
    compare: Option<PathBuf>,
    /// ROUGE without the Porter stemmer.
    #[arg(long)]
    no_stem: bool,
    /// Class names in id order (the order of probability columns), comma-separated.
    #[arg(long, value_delimiter = ',')]
    labels: Option<Vec<String>>,
}

/// Runs `tunesmith metrics`.
pub fn run(a: MetricsArgs) -> Result<()> {
    if !(0.0 < a.confidence && a.confidence < 1.0) {
        return Err(BadInput(format!("--confidence must be between 0 and 1, got {}", a.confidence)).into());
    }
    let opts = ScoreOptions {
        pred_field: a.pred_field.clone(),
        ref_field: a.ref_field.clone(),
        bootstrap: if a.ci { a.samples.max(1) } else { 0 },
        seed: a.seed,
        confidence: a.confidence,
        rouge_stemmer: !a.no_stem,
        labels: a.labels.clone(),
    };
    let pred = Column::read(&a.pred)?;
    let refs: Vec<Column> = a.refs.iter().map(|p| Column::read(p)).collect::<Result<_, _>>()?;
    let compare = a.compare.as_deref().map(Column::read).transpose()?;
    let need_ref = |n: usize| -> Result<()> {
        if refs.len() < n {
            return Err(BadInput(format!("--task {:?} needs --ref FILE", a.task)).into());
        }
        Ok(())
    };
    let out = match a.task {
        Task::Classification => {
            need_ref(1)?;
            tasks::classification(&pred, &refs[0], compare.as_ref(), &opts)?
        }
        Task::Regression => {
            need_ref(1)?;
            tasks::regression(&pred, &refs[0], &opts)?
        }
        Task::Generation => {
            need_ref(1)?;
            tasks::generation(&pred, &refs, compare.as_ref(), &opts)?
        }
        Task::Lm => tasks::language_modelling(&pred)?,
        Task::Preference => tasks::preference(&pred, &opts)?,
    };
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}
