//! `tunesmith data stats`: token-length statistics for a tokenizer and chat template.

use anyhow::Result;
use clap::Args;
use serde_json::json;
use tunesmith_data::encode::{EncodeOptions, Encoder, TrainOn};
use tunesmith_data::prep::{self, LengthStats};
use tunesmith_data::RejectCounts;

use super::{ReadArgs, TokenizerArgs};

/// Arguments of `data stats`.
#[derive(Args)]
pub struct StatsArgs {
    /// A file, a folder of data files, or a Hub dataset id.
    pub source: String,
    #[command(flatten)]
    pub read: ReadArgs,
    #[command(flatten)]
    pub tok: TokenizerArgs,
    /// The maximum length to count overlong sequences against.
    #[arg(long, default_value_t = 2048)]
    pub max_length: usize,
    /// Which tokens are trained: assistant, last_assistant, all.
    #[arg(long, default_value = "assistant")]
    pub train_on: String,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Runs `data stats`.
pub fn run(a: StatsArgs) -> Result<()> {
    let setup = a.tok.setup()?.ok_or_else(|| {
        tunesmith_data::DataError::Invalid("data stats needs --tokenizer MODEL (a model folder or Hub id)".into())
    })?;
    let ds = a.read.load(&a.source)?;
    let train_on: TrainOn = a.train_on.parse()?;
    let opts = EncodeOptions { max_length: None, train_on, ..EncodeOptions::default() };
    let enc = Encoder::new(&setup.tokenizer, setup.template.as_ref(), &ds.labels, opts)?;
    let pb = crate::progress::bar(ds.records.len() as u64, "tokenizing");
    let mut encoded = Vec::with_capacity(ds.records.len());
    let mut rejected = ds.rejected.clone();
    for chunk in ds.records.chunks(4096) {
        let (ok, errors, _) = enc.encode_all(chunk);
        encoded.extend(ok);
        rejected.extend(errors);
        pb.inc(chunk.len() as u64);
    }
    pb.finish_and_clear();
    let stats = prep::token_stats(&encoded, Some(a.max_length));
    let counts = RejectCounts::of(&rejected);
    if a.json {
        let v = json!({
            "source": a.source,
            "schema": ds.schema.name(),
            "rows": ds.rows_read(),
            "encoded": encoded.len(),
            "rejected": counts.counts.iter().map(|(k, v)| (k.describe().to_string(), json!(v))).collect::<serde_json::Map<_, _>>(),
            "stats": stats,
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    println!(
        "{}: {} rows, {} encoded, {} rejected ({})",
        a.source,
        ds.rows_read(),
        encoded.len(),
        rejected.len(),
        counts
    );
    println!("{:<16} {:>8} {:>10} {:>8} {:>8} {:>8} {:>12}", "", "min", "mean", "p50", "p95", "max", "total");
    let row = |name: &str, s: &LengthStats| {
        println!("{name:<16} {:>8} {:>10.1} {:>8} {:>8} {:>8} {:>12}", s.min, s.mean, s.p50, s.p95, s.max, s.total)
    };
    row("tokens", &stats.tokens);
    row("trained tokens", &stats.trained);
    let pct = 100.0 * stats.over_max_length as f64 / stats.tokens.count.max(1) as f64;
    println!(
        "{} of {} sequences ({pct:.1}%) are longer than max_length {} and would be truncated",
        stats.over_max_length, stats.tokens.count, a.max_length
    );
    Ok(())
}
