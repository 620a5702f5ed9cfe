//! `tunesmith report RUN_DIR`: renders a run's HTML and JSON report from its metrics log.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

/// Options of `tunesmith report`.
#[derive(Args, Debug)]
pub struct ReportArgs {
    /// The run's output directory (holding metrics.jsonl).
    run_dir: PathBuf,
}

/// Runs `tunesmith report`.
pub fn run(a: ReportArgs) -> Result<()> {
    let written = tunesmith_eval::report::render_run(&a.run_dir)?;
    println!("report: {}", written.html.display());
    println!("numbers: {}", written.json.display());
    Ok(())
}
