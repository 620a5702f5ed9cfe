//! `tunesmith data clean`: exact and near-duplicate removal, length and language filters, and
//! likely label errors by confident learning from out-of-sample predictions (a `train --cv`
//! run's folds, or any predictions file). Writes the kept rows, `removed.jsonl` (every removed
//! row with its reason) and `clean.json` (counts).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Args;
use serde_json::{json, Value};
use tunesmith_data::clean::{clean, counts, language_code, CleanOptions, OutOfSample};
use tunesmith_data::prep::{Dedup, FilterOptions};
use tunesmith_data::write::{self, OutputFormat};

use super::split::natural_format;
use super::ReadArgs;
use crate::BadInput;

/// Arguments of `data clean`.
#[derive(Args)]
pub struct CleanArgs {
    /// A file, a folder of data files, or a Hub dataset id.
    pub source: String,
    /// Output folder for clean.jsonl, removed.jsonl and clean.json.
    #[arg(short, long)]
    pub output: PathBuf,
    /// Exact duplicates: none, exact, normalized (case, punctuation and spacing ignored).
    #[arg(long, default_value = "normalized")]
    pub dedup: String,
    /// Near duplicates: estimated Jaccard similarity of character 5-grams at which a row repeats
    /// an earlier one (0 turns it off). 0.6 keeps copies with a few typos (three typos in a
    /// 150-character sentence cost about 0.1) while distinct sentences stay far below it.
    #[arg(long, default_value_t = 0.6)]
    pub near_duplicates: f64,
    /// Remove rows with fewer characters of content.
    #[arg(long)]
    pub min_chars: Option<usize>,
    /// Remove rows with more characters of content.
    #[arg(long)]
    pub max_chars: Option<usize>,
    /// Keep only these languages (2- or 3-letter codes, comma-separated, e.g. `en`).
    #[arg(long, value_delimiter = ',')]
    pub language: Vec<String>,
    /// Out-of-sample predictions for the label check: a `train --cv` run folder (its folds'
    /// eval/predictions.jsonl) or a predictions file (rows with text and probs).
    #[arg(long)]
    pub pred_probs: Option<PathBuf>,
    /// Class names in the order of the probabilities (default: the run's manifest.json).
    #[arg(long, value_delimiter = ',')]
    pub labels: Option<Vec<String>>,
    /// Output format (default: the input's own family).
    #[arg(long)]
    pub to: Option<String>,
    #[command(flatten)]
    pub read: ReadArgs,
}

/// The prediction files of a `--cv` run folder, or the one file given.
fn prediction_files(path: &Path) -> Result<Vec<PathBuf>> {
    if path.is_file() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(path)
        .with_context(|| format!("--pred-probs {}", path.display()))?
        .flatten()
        .map(|e| e.path().join("eval/predictions.jsonl"))
        .filter(|p| p.exists())
        .collect();
    files.sort();
    if files.is_empty() {
        let single = path.join("eval/predictions.jsonl");
        if single.exists() {
            return Ok(vec![single]);
        }
        return Err(BadInput(format!(
            "--pred-probs {}: no fold-*/eval/predictions.jsonl or eval/predictions.jsonl inside; give a `train --cv` run folder or a predictions file",
            path.display()
        ))
        .into());
    }
    Ok(files)
}

/// The class names of a predictions file, from the run's manifest.json.
fn labels_of(file: &Path) -> Option<Vec<String>> {
    let run = file.parent()?.parent()?;
    let m: Value = serde_json::from_str(&std::fs::read_to_string(run.join("manifest.json")).ok()?).ok()?;
    m["labels"].as_array()?.iter().map(|l| l.as_str().map(String::from)).collect()
}

fn load_probs(path: &Path, labels: Option<Vec<String>>) -> Result<OutOfSample> {
    let files = prediction_files(path)?;
    let labels = labels.or_else(|| labels_of(&files[0])).ok_or_else(|| {
        BadInput(format!("{}: no manifest.json with the labels beside it; pass --labels", files[0].display()))
    })?;
    let mut by_text = HashMap::new();
    for f in &files {
        for (i, line) in std::fs::read_to_string(f)?.lines().enumerate() {
            let v: Value = serde_json::from_str(line)
                .map_err(|e| BadInput(format!("{}:{}: not JSON: {e}", f.display(), i + 1)))?;
            let (Some(text), Some(probs)) = (v["text"].as_str(), v["probs"].as_array()) else {
                return Err(
                    BadInput(format!("{}:{}: a prediction needs \"text\" and \"probs\"", f.display(), i + 1)).into()
                );
            };
            let p: Vec<f64> = probs.iter().filter_map(Value::as_f64).collect();
            if p.len() != labels.len() {
                return Err(BadInput(format!(
                    "{}:{}: {} probabilities for {} labels {labels:?}",
                    f.display(),
                    i + 1,
                    p.len(),
                    labels.len()
                ))
                .into());
            }
            by_text.insert(text.to_string(), p);
        }
    }
    Ok(OutOfSample { labels, by_text })
}

/// Runs `data clean`.
pub fn run(a: CleanArgs) -> Result<()> {
    let ds = a.read.load(&a.source)?;
    let format = match &a.to {
        Some(t) => OutputFormat::parse(t)?,
        None => natural_format(ds.schema),
    };
    if !(0.0..=1.0).contains(&a.near_duplicates) {
        return Err(
            BadInput(format!("--near-duplicates {}: a similarity in [0, 1] (0 = off)", a.near_duplicates)).into()
        );
    }
    let languages = a
        .language
        .iter()
        .map(|l| {
            language_code(l)
                .map(String::from)
                .ok_or_else(|| BadInput(format!("--language {l}: not a known language code (such as en, fr, de, eng)")))
        })
        .collect::<std::result::Result<Vec<_>, _>>()?;
    let opts = CleanOptions {
        filters: FilterOptions {
            dedup: a.dedup.parse::<Dedup>()?,
            min_chars: a.min_chars,
            max_chars: a.max_chars,
            ..FilterOptions::default()
        },
        near_duplicates: (a.near_duplicates > 0.0).then_some(a.near_duplicates),
        languages,
        probs: a.pred_probs.as_deref().map(|p| load_probs(p, a.labels.clone())).transpose()?,
    };
    let c = clean(ds.records.clone(), &opts);
    std::fs::create_dir_all(&a.output)?;
    let out = a.output.join("clean.jsonl");
    let unfit = write::write_jsonl(&out, &c.kept, format)?;
    let removed: String = c.removed.iter().map(|r| serde_json::to_string(r).unwrap_or_default() + "\n").collect();
    write::write_atomic(&a.output.join("removed.jsonl"), removed.as_bytes())?;
    let by_reason = counts(&c.removed);
    let manifest = json!({
        "source": a.source,
        "files": ds.files,
        "rows_read": ds.rows_read(),
        "rejected_on_read": ds.rejected.len(),
        "kept": c.kept.len(),
        "removed": by_reason,
        "labels_not_checked": if opts.probs.is_some() { json!(c.unchecked_labels) } else { Value::Null },
        "not_representable": unfit.len(),
        "near_duplicate_threshold": opts.near_duplicates,
        "languages": opts.languages,
    });
    write::write_atomic(&a.output.join("clean.json"), serde_json::to_string_pretty(&manifest)?.as_bytes())?;
    for e in ds.rejected.iter().chain(&unfit) {
        eprintln!("{e}");
    }
    let summary: Vec<String> = by_reason.iter().map(|(k, v)| format!("{v} {k}")).collect();
    println!(
        "{} rows read; {} rejected on read; {} removed ({}); {} kept → {}",
        ds.rows_read(),
        ds.rejected.len(),
        c.removed.len(),
        if summary.is_empty() { "none".into() } else { summary.join(", ") },
        c.kept.len(),
        out.display()
    );
    if opts.probs.is_some() && c.unchecked_labels > 0 {
        println!("{} rows had no prediction, so their labels were not checked", c.unchecked_labels);
    }
    println!("reasons: {}", a.output.join("removed.jsonl").display());
    Ok(())
}
