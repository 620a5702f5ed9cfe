//! `bench -- active`: simulated active learning on SST-2 with all-MiniLM-L6-v2. The pool is a
//! seeded sample of SST-2 train with its labels hidden; from 100 random labels, each round
//! fine-tunes MiniLM on the labels so far, scores dev accuracy, and labels the next 100 rows a
//! strategy picks, up to 500; uncertainty sampling against random selection, 3 seeds. Runs the
//! release `tunesmith data select --simulate`; prints the mean curves.

use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Result};
use serde_json::Value;

use crate::{peer, table, timing};

/// Options of the active suite.
#[derive(clap::Args)]
pub struct Args {
    /// Pool rows (a seeded sample of SST-2 train, as `bench sst2` draws it).
    #[arg(long, default_value_t = 2000)]
    pool: usize,
    /// Strategies.
    #[arg(long, default_value = "random,entropy")]
    strategies: String,
    /// Seeds.
    #[arg(long, default_value_t = 3)]
    seeds: u64,
    /// Epochs per round.
    #[arg(long, default_value_t = 4)]
    epochs: usize,
    /// Threads.
    #[arg(long, default_value_t = 2)]
    threads: usize,
}

/// Runs the suite.
pub fn run(a: Args) -> Result<()> {
    let root = peer::repo_root();
    let shared = root.join("../shared");
    let model = crate::sst2::default_minilm();
    let bin = root.join("target/release/tunesmith");
    if !bin.exists() {
        bail!("no {}; run cargo build --release -p tunesmith-cli", bin.display());
    }
    let out = root.join("bench/out/active");
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(&out)?;
    let pool = root.join(format!("bench/out/sst2/train-{}.tsv", a.pool));
    crate::sst2::sample(&shared, a.pool, &pool)?;
    let cfg = out.join("run.toml");
    std::fs::write(
        &cfg,
        format!(
            "[model]\npath = \"{}\"\n[task]\nkind = \"classification\"\n[data]\ntrain = \"{}\"\nvalidation = \"{}\"\nmax_length = 64\n[method]\nkind = \"full\"\n[train]\nepochs = {}\nbatch_size = 16\nlr = 5e-5\nwarmup_ratio = 0.1\nthreads = {}\n[eval]\nat_start = false\nbatch_size = 128\nmetric = \"accuracy\"\n[output]\ndir = \"{}\"\n",
            model.display(),
            pool.display(),
            shared.join("data/sst2/dev.tsv").display(),
            a.epochs,
            a.threads,
            out.join("unused").display()
        ),
    )?;
    let t = Instant::now();
    let o = Command::new(&bin)
        .args(["data", "select", "--simulate"])
        .arg(&cfg)
        .args([
            "--strategies",
            &a.strategies,
            "--seeds",
            &a.seeds.to_string(),
            "--initial",
            "100",
            "--step",
            "100",
            "--budget",
            "500",
            "-o",
        ])
        .arg(out.join("sim"))
        .current_dir(&root)
        .output()?;
    if !o.status.success() {
        bail!("tunesmith data select --simulate failed: {}", String::from_utf8_lossy(&o.stderr));
    }
    let secs = t.elapsed().as_secs_f64();
    let curves: Vec<Value> = serde_json::from_str(&std::fs::read_to_string(out.join("sim/curves.json"))?)?;
    let strategies: Vec<&str> = a.strategies.split(',').collect();
    let labels: Vec<u64> = curves[0]["points"]
        .as_array()
        .map(|p| p.iter().filter_map(|x| x["labels"].as_u64()).collect())
        .unwrap_or_default();
    let mut rows = Vec::new();
    for (i, l) in labels.iter().enumerate() {
        let mut row = vec![l.to_string()];
        for s in &strategies {
            let vals: Vec<f64> = curves
                .iter()
                .filter(|c| c["strategy"] == *s)
                .filter_map(|c| c["points"][i]["value"].as_f64())
                .collect();
            let mean = vals.iter().sum::<f64>() / vals.len().max(1) as f64;
            let each: Vec<String> = vals.iter().map(|v| format!("{:.1}", 100.0 * v)).collect();
            row.push(format!("{:.2} ({})", 100.0 * mean, each.join(" / ")));
        }
        rows.push(row);
    }
    println!(
        "active: SST-2, pool {} rows (labels hidden), dev 872 rows; all-MiniLM-L6-v2 full fine-tuning per round ({} epochs, \
         batch 16, lr 5e-5); 100 random labels, then +100 per round to 500; {} seeds; {} threads; {secs:.0} s; CPU {}",
        a.pool,
        a.epochs,
        a.seeds,
        a.threads,
        timing::cpu_model()
    );
    let mut header = vec!["labels"];
    let names: Vec<String> = strategies.iter().map(|s| format!("{s} dev accuracy % (mean; per seed)")).collect();
    header.extend(names.iter().map(String::as_str));
    println!("{}", table::markdown(&header, &rows));
    println!("chart: {}", out.join("sim/active.html").display());
    Ok(())
}
