//! `tunesmith data augment`: EDA copies of labeled texts (synonym replacement, random insertion,
//! swap and deletion), seeded and counted, written with the original rows.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use serde_json::json;
use tunesmith_data::augment::eda::{augment_records, EdaOp};
use tunesmith_data::write::{self, OutputFormat};

use super::split::natural_format;
use super::ReadArgs;
use crate::BadInput;

/// Arguments of `data augment`.
#[derive(Args)]
pub struct AugmentArgs {
    /// A file, a folder of data files, or a Hub dataset id.
    pub source: String,
    /// Output folder for augmented.jsonl (originals, then copies) and augment.json.
    #[arg(short, long)]
    pub output: PathBuf,
    /// Operations used in turn: sr (synonym replacement), ri (random insertion), rs (random
    /// swap), rd (random deletion).
    #[arg(long, value_delimiter = ',', default_value = "sr,ri,rs,rd")]
    pub ops: Vec<String>,
    /// Share of each sentence's words an operation changes.
    #[arg(long, default_value_t = 0.1)]
    pub alpha: f64,
    /// Augmented copies per row.
    #[arg(long, default_value_t = 4)]
    pub per_row: usize,
    /// Seed.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Output format (default: the input's own family).
    #[arg(long)]
    pub to: Option<String>,
    #[command(flatten)]
    pub read: ReadArgs,
}

/// Runs `data augment`.
pub fn run(a: AugmentArgs) -> Result<()> {
    let ops = a
        .ops
        .iter()
        .map(|o| EdaOp::parse(o).ok_or_else(|| BadInput(format!("--ops {o}: use sr, ri, rs or rd"))))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    if !(a.alpha > 0.0 && a.alpha <= 1.0) {
        return Err(BadInput(format!("--alpha {}: a share of words in (0, 1]", a.alpha)).into());
    }
    let ds = a.read.load(&a.source)?;
    let format = match &a.to {
        Some(t) => OutputFormat::parse(t)?,
        None => natural_format(ds.schema),
    };
    let rows: Vec<usize> = (0..ds.records.len()).collect();
    let (copies, counts) = augment_records(&ds.records, &rows, &ops, a.alpha, a.per_row, a.seed);
    let mut all = ds.records.clone();
    all.extend(copies);
    std::fs::create_dir_all(&a.output)?;
    let out = a.output.join("augmented.jsonl");
    let unfit = write::write_jsonl(&out, &all, format)?;
    let manifest = json!({
        "source": a.source, "files": ds.files, "rows": ds.records.len(), "rejected_on_read": ds.rejected.len(),
        "ops": a.ops, "alpha": a.alpha, "per_row": a.per_row, "seed": a.seed,
        "added": counts.added, "unchanged_attempts": counts.unchanged, "skipped_not_labeled_text": counts.skipped,
        "not_representable": unfit.len(),
    });
    write::write_atomic(&a.output.join("augment.json"), serde_json::to_string_pretty(&manifest)?.as_bytes())?;
    for e in ds.rejected.iter().chain(&unfit) {
        eprintln!("{e}");
    }
    let added: usize = counts.added.values().sum();
    let per_op: Vec<String> = counts.added.iter().map(|(k, v)| format!("{v} {k}")).collect();
    println!(
        "{} rows read; {added} copies added ({}); {} attempts could not change their row; {} rows not labeled text; {} rows → {}",
        ds.records.len(),
        per_op.join(", "),
        counts.unchanged,
        counts.skipped,
        all.len(),
        out.display()
    );
    Ok(())
}
