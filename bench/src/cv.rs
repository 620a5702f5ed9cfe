//! `bench -- cv`: 5-fold cross-validation of all-MiniLM-L6-v2 on a small real set, a seeded
//! 500-row sample of SentEval MPQA (opinion polarity). Runs the release `tunesmith train --cv`;
//! prints each metric's mean ± std and checks that every fold's class counts are within one row
//! of the whole set's proportions.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Result};
use serde_json::{json, Value};
use tunesmith_data::batch::SplitMix64;

use crate::{peer, timing};

/// Options of the cv suite.
#[derive(clap::Args)]
pub struct Args {
    /// Rows sampled from MPQA.
    #[arg(long, default_value_t = 500)]
    rows: usize,
    /// Folds.
    #[arg(long, default_value_t = 5)]
    folds: usize,
    /// Epochs per fold.
    #[arg(long, default_value_t = 3)]
    epochs: usize,
    /// Threads.
    #[arg(long, default_value_t = 2)]
    threads: usize,
}

/// Runs the suite.
pub fn run(a: Args) -> Result<()> {
    let root = peer::repo_root();
    let shared = root.join("../shared/data/senteval-mpqa");
    let bin = root.join("target/release/tunesmith");
    if !bin.exists() {
        bail!("no {}; run cargo build --release -p tunesmith-cli", bin.display());
    }
    let out = root.join("bench/out/cv");
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(&out)?;
    let mut rows: Vec<(String, &str)> = Vec::new();
    for (file, label) in [("mpqa.neg", "negative"), ("mpqa.pos", "positive")] {
        for l in std::fs::read_to_string(shared.join(file))?.lines().map(str::trim).filter(|l| !l.is_empty()) {
            rows.push((l.to_string(), label));
        }
    }
    SplitMix64::new(5).shuffle(&mut rows);
    rows.truncate(a.rows);
    let data = out.join("mpqa-500.jsonl");
    std::fs::write(
        &data,
        rows.iter().map(|(t, l)| json!({"text": t, "label": l}).to_string() + "\n").collect::<String>(),
    )?;
    let cfg = out.join("cv.toml");
    std::fs::write(
        &cfg,
        format!(
            "[model]\npath = \"{}\"\n[task]\nkind = \"classification\"\n[data]\ntrain = \"{}\"\nmax_length = 64\n[method]\nkind = \"full\"\n[train]\nepochs = {}\nbatch_size = 16\nlr = 5e-5\nwarmup_ratio = 0.1\nthreads = {}\nseed = 42\n[eval]\nat_start = false\nbatch_size = 128\n[output]\ndir = \"{}\"\nsave_checkpoints = false\n",
            crate::sst2::default_minilm().display(),
            data.display(),
            a.epochs,
            a.threads,
            out.join("run").display()
        ),
    )?;
    let t = Instant::now();
    let o =
        Command::new(&bin).arg("train").arg(&cfg).args(["--cv", &a.folds.to_string()]).current_dir(&root).output()?;
    if !o.status.success() {
        bail!("tunesmith train --cv failed: {}", String::from_utf8_lossy(&o.stderr));
    }
    let secs = t.elapsed().as_secs_f64();
    let mut whole: BTreeMap<String, f64> = BTreeMap::new();
    for (_, l) in &rows {
        *whole.entry(l.to_string()).or_default() += 1.0;
    }
    let mut worst = 0.0f64;
    let mut folds = Vec::new();
    for f in 0..a.folds {
        let mut counts: BTreeMap<String, f64> = BTreeMap::new();
        for line in std::fs::read_to_string(out.join(format!("run/fold-{f}/eval/predictions.jsonl")))?.lines() {
            let v: Value = serde_json::from_str(line)?;
            *counts.entry(v["label"].as_str().unwrap_or("").to_string()).or_default() += 1.0;
        }
        for (c, n) in &whole {
            worst = worst.max((counts.get(c).copied().unwrap_or(0.0) - n / a.folds as f64).abs());
        }
        folds.push(format!("{counts:?}"));
    }
    println!(
        "cv: SentEval MPQA, {} seeded rows ({:?}), {}-fold stratified; all-MiniLM-L6-v2 full fine-tuning, {} epochs, \
         batch 16, lr 5e-5; {} threads; {secs:.0} s; CPU {}",
        rows.len(),
        whole,
        a.folds,
        a.epochs,
        a.threads,
        timing::cpu_model()
    );
    print!("{}", String::from_utf8_lossy(&o.stdout));
    println!("fold class counts: {}", folds.join("; "));
    println!("largest deviation of a fold's class count from the whole set's share: {worst:.2} rows");
    Ok(())
}
