//! `tunesmith data validate`: every bad row, with file, line, field and reason, and a summary.

use anyhow::Result;
use clap::Args;
use tunesmith_data::encode::{EncodeOptions, Encoder, Truncation};
use tunesmith_data::{RejectCounts, RowError};

use super::{ReadArgs, TokenizerArgs};
use crate::Problems;

/// Arguments of `data validate`.
#[derive(Args)]
pub struct ValidateArgs {
    /// Files, folders or Hub dataset ids.
    #[arg(required = true)]
    pub sources: Vec<String>,
    #[command(flatten)]
    pub read: ReadArgs,
    /// Also tokenize every example with this model's tokenizer and chat template, reporting
    /// template refusals, examples with nothing to train and (with --max-length) overlong ones.
    #[command(flatten)]
    pub tok: TokenizerArgs,
    /// Maximum sequence length to check against (with --tokenizer).
    #[arg(long)]
    pub max_length: Option<usize>,
    /// Print only the summary.
    #[arg(short, long)]
    pub quiet: bool,
}

/// Runs `data validate`.
pub fn run(a: ValidateArgs) -> Result<()> {
    let setup = a.tok.setup()?;
    let mut bad_total = 0;
    let mut unreadable = Vec::new();
    for source in &a.sources {
        let ds = match a.read.load(source) {
            Ok(ds) => ds,
            Err(e) => {
                println!("{source}: {e:#}");
                unreadable.push(e);
                continue;
            }
        };
        let mut rejected: Vec<RowError> = ds.rejected.clone();
        if let Some(s) = &setup {
            let opts =
                EncodeOptions { max_length: a.max_length, truncation: Truncation::Drop, ..EncodeOptions::default() };
            let enc = Encoder::new(&s.tokenizer, s.template.as_ref(), &ds.labels, opts)?;
            let pb = crate::progress::bar(ds.records.len() as u64, "tokenizing");
            for chunk in ds.records.chunks(4096) {
                let (_, errors, _) = enc.encode_all(chunk);
                rejected.extend(errors);
                pb.inc(chunk.len() as u64);
            }
            pb.finish_and_clear();
            rejected.sort_by(|x, y| x.loc.cmp(&y.loc));
        }
        if !a.quiet {
            for e in &rejected {
                println!("{e}");
            }
        }
        let counts = RejectCounts::of(&rejected);
        println!(
            "{source}: {} rows, {} valid, {} rejected ({}); schema {}",
            ds.rows_read(),
            ds.rows_read() - rejected.len(),
            rejected.len(),
            counts,
            ds.schema
        );
        bad_total += rejected.len();
    }
    if let Some(e) = unreadable.into_iter().next() {
        return Err(e.context("not every source could be read"));
    }
    if bad_total > 0 {
        return Err(Problems(format!("{bad_total} rows rejected")).into());
    }
    Ok(())
}
