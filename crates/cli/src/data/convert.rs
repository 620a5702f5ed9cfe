//! `tunesmith data convert`: rewrite a dataset in another format, losing nothing.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use tunesmith_data::write::{self, OutputFormat};

use super::ReadArgs;
use crate::Problems;

/// Arguments of `data convert`.
#[derive(Args)]
pub struct ConvertArgs {
    /// A file, a folder of data files, or a Hub dataset id.
    pub source: String,
    /// Target format: openai, alpaca, sharegpt, jsonl (tunesmith's canonical layout).
    #[arg(long)]
    pub to: String,
    /// Output file (JSON Lines); standard output when absent.
    #[arg(short, long)]
    pub output: Option<PathBuf>,
    #[command(flatten)]
    pub read: ReadArgs,
}

/// Runs `data convert`.
pub fn run(a: ConvertArgs) -> Result<()> {
    let format = OutputFormat::parse(&a.to)?;
    let ds = a.read.load(&a.source)?;
    let mut out: Vec<u8> = Vec::new();
    let mut unfit = Vec::new();
    for r in &ds.records {
        match write::to_format(r, format) {
            Ok(v) => {
                serde_json::to_writer(&mut out, &v)?;
                out.push(b'\n');
            }
            Err(e) => unfit.push(e),
        }
    }
    let written = ds.records.len() - unfit.len();
    match &a.output {
        Some(path) => write::write_atomic(path, &out).with_context(|| format!("writing {}", path.display()))?,
        None => std::io::stdout().lock().write_all(&out)?,
    }
    for e in ds.rejected.iter().chain(&unfit) {
        eprintln!("{e}");
    }
    eprintln!(
        "{}: wrote {written} of {} rows as {}{}; {} unreadable or invalid, {} do not fit the format",
        a.source,
        ds.rows_read(),
        a.to,
        a.output.as_ref().map(|p| format!(" to {}", p.display())).unwrap_or_default(),
        ds.rejected.len(),
        unfit.len()
    );
    if !ds.rejected.is_empty() || !unfit.is_empty() {
        return Err(Problems(format!("{} rows not converted", ds.rejected.len() + unfit.len())).into());
    }
    Ok(())
}
