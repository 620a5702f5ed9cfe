//! `tunesmith data split`: seeded train/validation/test files, stratified for classification,
//! after optional deduplication and filters.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use serde_json::json;
use tunesmith_data::prep::{self, Dedup, FilterOptions, SplitFractions};
use tunesmith_data::schema::Schema;
use tunesmith_data::write::{self, OutputFormat};
use tunesmith_data::RejectCounts;

use super::ReadArgs;

/// Arguments of `data split`.
#[derive(Args)]
pub struct SplitArgs {
    /// A file, a folder of data files, or a Hub dataset id.
    pub source: String,
    /// Output folder for train.jsonl, validation.jsonl, test.jsonl and split.json.
    #[arg(short, long)]
    pub output: PathBuf,
    /// Share of rows for validation.
    #[arg(long, default_value_t = 0.1)]
    pub validation: f64,
    /// Share of rows for test.
    #[arg(long, default_value_t = 0.0)]
    pub test: f64,
    /// Seed of the split.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Do not stratify classification data by label.
    #[arg(long)]
    pub no_stratify: bool,
    /// Remove duplicates first: none, exact, normalized.
    #[arg(long, default_value = "none")]
    pub dedup: String,
    /// Remove rows with fewer characters of content.
    #[arg(long)]
    pub min_chars: Option<usize>,
    /// Remove rows with more characters of content.
    #[arg(long)]
    pub max_chars: Option<usize>,
    /// Output format (default: the input's own family: openai, alpaca, sharegpt, else jsonl).
    #[arg(long)]
    pub to: Option<String>,
    #[command(flatten)]
    pub read: ReadArgs,
}

/// The output format that keeps a schema's own layout.
pub fn natural_format(schema: Schema) -> OutputFormat {
    match schema {
        Schema::Alpaca => OutputFormat::Alpaca,
        Schema::ShareGpt => OutputFormat::ShareGpt,
        Schema::OpenAi | Schema::OpenAiDpo => OutputFormat::OpenAi,
        _ => OutputFormat::Jsonl,
    }
}

/// Runs `data split`.
pub fn run(a: SplitArgs) -> Result<()> {
    let ds = a.read.load(&a.source)?;
    let format = match &a.to {
        Some(t) => OutputFormat::parse(t)?,
        None => natural_format(ds.schema),
    };
    let filters = FilterOptions {
        dedup: a.dedup.parse::<Dedup>()?,
        min_chars: a.min_chars,
        max_chars: a.max_chars,
        ..FilterOptions::default()
    };
    let (records, removed) = prep::filter(ds.records.clone(), &filters);
    let strata = if a.no_stratify { None } else { prep::class_strata(&records) };
    let fractions = SplitFractions { validation: a.validation, test: a.test };
    let splits = prep::split(records, fractions, a.seed, strata.as_deref())?;
    let mut counts = serde_json::Map::new();
    let mut unfit = Vec::new();
    for (name, part) in [("train", &splits.train), ("validation", &splits.validation), ("test", &splits.test)] {
        if part.is_empty() && name != "train" {
            continue;
        }
        let path = a.output.join(format!("{name}.jsonl"));
        unfit.extend(write::write_jsonl(&path, part, format)?);
        counts.insert(name.into(), json!(part.len()));
        println!("{name:<10} {:>8} rows → {}", part.len(), path.display());
    }
    let removed_counts = RejectCounts::of(&removed);
    let manifest = json!({
        "source": a.source,
        "files": ds.files,
        "schema": ds.schema.name(),
        "seed": a.seed,
        "fractions": {"validation": a.validation, "test": a.test},
        "stratified": strata.is_some(),
        "labels": ds.labels,
        "rows": counts,
        "rejected_on_read": ds.rejected.len(),
        "removed_by_filters": removed_counts.counts.iter().map(|(k, v)| (k.describe().to_string(), json!(v))).collect::<serde_json::Map<_, _>>(),
        "not_representable": unfit.len(),
    });
    write::write_atomic(&a.output.join("split.json"), serde_json::to_string_pretty(&manifest)?.as_bytes())?;
    for e in ds.rejected.iter().chain(&removed).chain(&unfit) {
        eprintln!("{e}");
    }
    println!(
        "{} rows read; {} rejected on read, {} removed by filters ({}), {} not representable in the format",
        ds.rows_read(),
        ds.rejected.len(),
        removed.len(),
        removed_counts,
        unfit.len()
    );
    Ok(())
}
