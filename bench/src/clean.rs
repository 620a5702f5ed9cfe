//! `bench -- clean`: data cleaning on a corrupted copy of a real dataset. A seeded sample of
//! SentEval SUBJ (subjective vs objective sentences) gets 5% planted duplicates (half exact
//! copies, half near copies: case, punctuation and a typo changed) and 5% flipped labels; a
//! 5-fold `tunesmith train --cv` of MiniLM gives out-of-fold probabilities; `tunesmith data
//! clean` then removes duplicates and label issues. Prints duplicate recall, label-issue
//! precision and recall, and precision at 50% recall of the self-confidence ranking.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use tunesmith_data::augment::perturb::{perturb, PerturbKind};
use tunesmith_data::batch::SplitMix64;

use crate::{peer, table, timing};

/// Options of the clean suite.
#[derive(clap::Args)]
pub struct Args {
    /// Rows sampled from SUBJ before corruption.
    #[arg(long, default_value_t = 2000)]
    rows: usize,
    /// Share of rows added as duplicates.
    #[arg(long, default_value_t = 0.05)]
    duplicates: f64,
    /// Share of rows whose label is flipped.
    #[arg(long, default_value_t = 0.05)]
    flips: f64,
    /// Folds of the cross-validation that scores every row out of sample.
    #[arg(long, default_value_t = 5)]
    folds: usize,
    /// Epochs per fold.
    #[arg(long, default_value_t = 2)]
    epochs: usize,
    /// Seed of the sample and the corruption.
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// Threads.
    #[arg(long, default_value_t = 2)]
    threads: usize,
}

fn read_lines(path: &Path) -> Result<Vec<String>> {
    Ok(std::fs::read_to_string(path)
        .with_context(|| path.display().to_string())?
        .lines()
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
        .collect())
}

/// Runs the suite.
pub fn run(a: Args) -> Result<()> {
    let root = peer::repo_root();
    let shared = root.join("../shared/data/senteval-subj");
    let model = crate::sst2::default_minilm();
    let bin = root.join("target/release/tunesmith");
    if !bin.exists() {
        bail!("no {}; run cargo build --release -p tunesmith-cli", bin.display());
    }
    let out = root.join("bench/out/clean");
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(&out)?;
    // The sample: equal parts of each class, shuffled.
    let mut rng = SplitMix64::new(a.seed);
    let mut rows: Vec<(String, &str)> = Vec::new();
    for (file, label) in [("subj.objective", "objective"), ("subj.subjective", "subjective")] {
        let mut lines = read_lines(&shared.join(file))?;
        rng.shuffle(&mut lines);
        rows.extend(lines.into_iter().take(a.rows / 2).map(|l| (l, label)));
    }
    rng.shuffle(&mut rows);
    let n = rows.len();
    // Flipped labels (never on a row that is then duplicated, so each planted fault is one kind).
    let n_flip = (a.flips * n as f64).round() as usize;
    let n_dup = (a.duplicates * n as f64).round() as usize;
    let mut order: Vec<usize> = (0..n).collect();
    rng.shuffle(&mut order);
    let flipped: HashSet<usize> = order[..n_flip].iter().copied().collect();
    let sources: Vec<usize> = order[n_flip..n_flip + n_dup].to_vec();
    let mut data: Vec<(String, String, &str)> = rows
        .iter()
        .enumerate()
        .map(|(i, (t, l))| {
            let label = if flipped.contains(&i) {
                if *l == "objective" {
                    "subjective"
                } else {
                    "objective"
                }
            } else {
                l
            };
            (t.clone(), label.to_string(), if flipped.contains(&i) { "flipped" } else { "clean" })
        })
        .collect();
    for (k, &i) in sources.iter().enumerate() {
        let (t, l, _) = data[i].clone();
        let copy = if k % 2 == 0 {
            t
        } else {
            // A near copy: capitalized, end punctuation dropped, a typo.
            let mut c = perturb(&t, PerturbKind::Typo, 0.02, a.seed ^ k as u64);
            if let Some(f) = c.get(..1) {
                c = f.to_uppercase() + &c[1..];
            }
            c.trim_end_matches([' ', '.']).to_string()
        };
        let at = rng.below(data.len() + 1).max(i + 1).min(data.len());
        data.insert(at, (copy, l, if k % 2 == 0 { "duplicate" } else { "near_duplicate" }));
    }
    let corrupted = out.join("subj-corrupted.jsonl");
    let text: String = data.iter().map(|(t, l, _)| json!({"text": t, "label": l}).to_string() + "\n").collect();
    std::fs::write(&corrupted, text)?;
    let planted: HashMap<usize, &str> =
        data.iter().enumerate().filter(|(_, d)| d.2 != "clean").map(|(i, d)| (i + 1, d.2)).collect();

    // Out-of-fold probabilities from 5-fold cross-validation.
    let cfg = out.join("cv.toml");
    std::fs::write(
        &cfg,
        format!(
            "[model]\npath = \"{}\"\n[task]\nkind = \"classification\"\n[data]\ntrain = \"{}\"\nmax_length = 64\n[method]\nkind = \"full\"\n[train]\nepochs = {}\nbatch_size = 32\nlr = 5e-5\nwarmup_ratio = 0.1\nthreads = {}\nseed = 42\n[eval]\nat_start = false\nbatch_size = 128\n[output]\ndir = \"{}\"\nsave_checkpoints = false\n",
            model.display(),
            corrupted.display(),
            a.epochs,
            a.threads,
            out.join("cv").display()
        ),
    )?;
    let t = Instant::now();
    let cv = Command::new(&bin)
        .args(["train"])
        .arg(&cfg)
        .args(["--cv", &a.folds.to_string()])
        .current_dir(&root)
        .output()?;
    if !cv.status.success() {
        bail!("tunesmith train --cv failed: {}", String::from_utf8_lossy(&cv.stderr));
    }
    let cv_secs = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let cleaned = Command::new(&bin)
        .args(["data", "clean"])
        .arg(&corrupted)
        .arg("--pred-probs")
        .arg(out.join("cv"))
        .arg("-o")
        .arg(out.join("cleaned"))
        .current_dir(&root)
        .output()?;
    if !cleaned.status.success() {
        bail!("tunesmith data clean failed: {}", String::from_utf8_lossy(&cleaned.stderr));
    }
    let clean_secs = t.elapsed().as_secs_f64();
    eprintln!("{}", String::from_utf8_lossy(&cleaned.stdout));

    // Score the removals against what was planted.
    let removed: Vec<Value> = std::fs::read_to_string(out.join("cleaned/removed.jsonl"))?
        .lines()
        .map(serde_json::from_str)
        .collect::<std::result::Result<_, _>>()?;
    let line_of =
        |v: &Value| v["loc"].as_str().and_then(|l| l.rsplit(':').next()).and_then(|n| n.parse::<usize>().ok());
    let removed_as = |reasons: &[&str]| -> HashSet<usize> {
        removed.iter().filter(|r| reasons.contains(&r["reason"].as_str().unwrap_or(""))).filter_map(line_of).collect()
    };
    let dup_removed = removed_as(&["duplicate", "near_duplicate"]);
    let planted_dups: HashSet<usize> = planted.iter().filter(|(_, k)| **k != "flipped").map(|(l, _)| *l).collect();
    let dup_recall = planted_dups.intersection(&dup_removed).count() as f64 / planted_dups.len().max(1) as f64;
    let dup_false = dup_removed.difference(&planted_dups).count();
    let near_recall = {
        let near: HashSet<usize> = planted.iter().filter(|(_, k)| **k == "near_duplicate").map(|(l, _)| *l).collect();
        near.intersection(&dup_removed).count() as f64 / near.len().max(1) as f64
    };
    let planted_flips: HashSet<usize> = planted.iter().filter(|(_, k)| **k == "flipped").map(|(l, _)| *l).collect();
    let flagged = removed_as(&["label_issue"]);
    let hits = planted_flips.intersection(&flagged).count() as f64;
    let precision = hits / flagged.len().max(1) as f64;
    let recall = hits / planted_flips.len().max(1) as f64;

    // The self-confidence ranking of every row: precision when half the flips are found.
    let manifest: Value = serde_json::from_str(&std::fs::read_to_string(out.join("cv/fold-0/manifest.json"))?)?;
    let labels: Vec<String> =
        manifest["labels"].as_array().context("labels")?.iter().filter_map(|l| l.as_str().map(String::from)).collect();
    let mut probs: HashMap<String, Vec<f64>> = HashMap::new();
    for f in 0..a.folds {
        for line in std::fs::read_to_string(out.join(format!("cv/fold-{f}/eval/predictions.jsonl")))?.lines() {
            let v: Value = serde_json::from_str(line)?;
            let p: Vec<f64> = v["probs"].as_array().context("probs")?.iter().filter_map(Value::as_f64).collect();
            probs.insert(v["text"].as_str().unwrap_or("").to_string(), p);
        }
    }
    let mut ranked: Vec<(f64, usize)> = data
        .iter()
        .enumerate()
        .filter_map(|(i, (t, l, _))| {
            let c = labels.iter().position(|x| x == l)?;
            Some((probs.get(t)?[c], i + 1))
        })
        .collect();
    ranked.sort_by(|x, y| x.0.total_cmp(&y.0));
    let mut found = 0usize;
    let mut p_at_half = 0.0;
    for (k, (_, line)) in ranked.iter().enumerate() {
        if planted_flips.contains(line) {
            found += 1;
            if found * 2 >= planted_flips.len() {
                p_at_half = found as f64 / (k + 1) as f64;
                break;
            }
        }
    }
    let cv_lines: Vec<String> =
        String::from_utf8_lossy(&cv.stdout).lines().filter(|l| l.contains(" ± ")).map(String::from).collect();
    println!(
        "clean: SentEval SUBJ, {n} sampled rows + {n_dup} planted duplicates ({} exact, {} near) and {n_flip} flipped \
         labels = {} rows; out-of-fold probabilities from a {}-fold `train --cv` of all-MiniLM-L6-v2 (full, {} epochs, \
         lr 5e-5, batch 32, max_length 64; {}); near-duplicate threshold 0.8; {} threads; CPU {}",
        n_dup.div_ceil(2),
        n_dup / 2,
        data.len(),
        a.folds,
        a.epochs,
        cv_lines.join(", "),
        a.threads,
        timing::cpu_model()
    );
    println!(
        "{}",
        table::markdown(
            &["check", "planted", "removed", "recall", "precision", "note"],
            &[
                vec![
                    "duplicates (exact + near)".into(),
                    planted_dups.len().to_string(),
                    dup_removed.len().to_string(),
                    format!("{dup_recall:.3}"),
                    format!("{:.3}", 1.0 - dup_false as f64 / dup_removed.len().max(1) as f64),
                    format!("near copies alone: recall {near_recall:.3}"),
                ],
                vec![
                    "flipped labels (confident learning)".into(),
                    planted_flips.len().to_string(),
                    flagged.len().to_string(),
                    format!("{recall:.3}"),
                    format!("{precision:.3}"),
                    format!("self-confidence ranking: precision {p_at_half:.3} at recall 0.5"),
                ],
            ]
        )
    );
    println!("cross-validation {cv_secs:.0} s, cleaning {clean_secs:.1} s");
    Ok(())
}
