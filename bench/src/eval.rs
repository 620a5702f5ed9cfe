//! `bench -- eval`: corpus BLEU and ROUGE-1/2/L/Lsum over many hypothesis/reference pairs,
//! tunesmith against sacrebleu and rouge-score (bench/eval_peer.py) on the same file.
//!
//! The pairs are real text from ../shared/data: references are instruction-dataset outputs and
//! GSM8K solutions; hypotheses are model responses (rasbt's eval set) or seeded perturbations of
//! the references (words dropped, shuffled, truncated, swapped with another example), repeated
//! to the requested size. Scores must agree (BLEU to 0.01, ROUGE to 1e-4).

use std::path::Path;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use tunesmith_eval::{bleu, rouge};

use crate::{peer, table, timing};

/// Options of the eval suite.
#[derive(clap::Args)]
pub struct Args {
    /// Hypothesis/reference pairs.
    #[arg(long, default_value_t = 100_000)]
    pairs: usize,
    /// Threads for tunesmith's second row (the first uses one, like the peers).
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Skip the Python side.
    #[arg(long)]
    no_peer: bool,
}

/// A small seeded generator for the perturbations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn perturb(reference: &str, other: &str, rng: &mut Rng) -> String {
    let mut words: Vec<&str> = reference.split(' ').collect();
    match rng.below(4) {
        0 => words.retain(|_| rng.below(5) != 0),
        1 => {
            for i in (1..words.len()).rev() {
                if rng.below(3) == 0 {
                    let j = rng.below(i + 1);
                    words.swap(i, j);
                }
            }
        }
        2 => words.truncate((words.len() * 2 / 3).max(1)),
        _ => return other.to_string(),
    }
    words.join(" ")
}

/// Writes `n` pairs to `out`.
fn build_pairs(shared: &Path, n: usize, out: &Path) -> Result<()> {
    let mut refs: Vec<String> = Vec::new();
    let mut model: Vec<(String, String)> = Vec::new();
    let inst: Value =
        serde_json::from_str(&std::fs::read_to_string(shared.join("data/rasbt-instruction/instruction-data.json"))?)?;
    refs.extend(inst.as_array().context("a list")?.iter().filter_map(|r| r["output"].as_str().map(String::from)));
    let ev: Value =
        serde_json::from_str(&std::fs::read_to_string(shared.join("data/rasbt-instruction/eval-example-data.json"))?)?;
    for r in ev.as_array().context("a list")? {
        let reference = r["output"].as_str().unwrap_or_default().to_string();
        for k in ["model 1 response", "model 2 response"] {
            model.push((r[k].as_str().unwrap_or_default().to_string(), reference.clone()));
        }
    }
    for line in std::fs::read_to_string(shared.join("data/gsm8k/train.jsonl"))?.lines().take(2000) {
        let v: Value = serde_json::from_str(line)?;
        refs.extend(v["answer"].as_str().map(String::from));
    }
    if refs.is_empty() {
        bail!("no reference texts under {}", shared.display());
    }
    let mut rng = Rng(20261123);
    let mut text = String::new();
    for i in 0..n {
        let (h, r) = if i % 10 == 0 {
            model[(i / 10) % model.len()].clone()
        } else {
            let r = &refs[i % refs.len()];
            (perturb(r, &refs[(i * 7 + 3) % refs.len()], &mut rng), r.clone())
        };
        text.push_str(&serde_json::to_string(&json!({"hypothesis": h, "reference": r}))?);
        text.push('\n');
    }
    std::fs::create_dir_all(out.parent().context("a parent")?)?;
    std::fs::write(out, text)?;
    Ok(())
}

fn ours(file: &Path, threads: usize) -> Result<Value> {
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build()?;
    let mut hyps = Vec::new();
    let mut refs = Vec::new();
    for line in std::fs::read_to_string(file)?.lines() {
        let v: Value = serde_json::from_str(line)?;
        hyps.push(v["hypothesis"].as_str().context("hypothesis")?.to_string());
        refs.push(vec![v["reference"].as_str().context("reference")?.to_string()]);
    }
    pool.install(|| {
        let t = Instant::now();
        let b = bleu::corpus_bleu(&hyps, &refs)?;
        let bleu_s = t.elapsed().as_secs_f64();
        let t = Instant::now();
        let scores = rouge::corpus_scores(&hyps, &refs, true)?;
        let m = rouge::mean_f(&scores, 0..scores.len());
        let rouge_s = t.elapsed().as_secs_f64();
        Ok(json!({"bleu": b.score, "bleu_s": bleu_s,
                  "rouge": {"rouge1": m[0], "rouge2": m[1], "rougeL": m[2], "rougeLsum": m[3]}, "rouge_s": rouge_s}))
    })
}

/// Runs the suite.
pub fn run(a: Args) -> Result<()> {
    let root = peer::repo_root();
    let shared = root.join("../shared");
    let file = root.join(format!("bench/out/eval/pairs-{}.jsonl", a.pairs));
    build_pairs(&shared, a.pairs, &file)?;
    let one = ours(&file, 1)?;
    let many = ours(&file, a.threads)?;
    let theirs = if a.no_peer {
        None
    } else {
        let out = peer::run_python(&root.join("bench/eval_peer.py"), &["--input".into(), file.display().to_string()])
            .context("running sacrebleu / rouge-score (see bench/README.md to set up the venv)")?;
        Some(peer::last_json(&out)?)
    };
    let f = |v: &Value, k: &str| v[k].as_f64().unwrap_or(f64::NAN);
    let mut rows = Vec::new();
    for (name, v) in [("tunesmith, 1 thread".to_string(), &one), (format!("tunesmith, {} threads", a.threads), &many)] {
        let ratio = |k: &str| theirs.as_ref().map_or("-".into(), |t| format!("{:.1}", f(t, k) / f(v, k)));
        rows.push(vec![
            name,
            format!("{:.2}", f(v, "bleu_s")),
            ratio("bleu_s"),
            format!("{:.2}", f(v, "rouge_s")),
            ratio("rouge_s"),
        ]);
    }
    if let Some(t) = &theirs {
        rows.push(vec![
            "sacrebleu / rouge-score (1 process)".into(),
            format!("{:.2}", f(t, "bleu_s")),
            "1.0".into(),
            format!("{:.2}", f(t, "rouge_s")),
            "1.0".into(),
        ]);
    }
    println!("eval: {} pairs, CPU {}", a.pairs, timing::cpu_model());
    println!("{}", table::markdown(&["scorer", "BLEU s", "x sacrebleu", "ROUGE s", "x rouge-score"], &rows));
    if let Some(t) = &theirs {
        let db = (f(&one, "bleu") - f(t, "bleu")).abs();
        let dr = ["rouge1", "rouge2", "rougeL", "rougeLsum"]
            .iter()
            .map(|k| (one["rouge"][k].as_f64().unwrap_or(f64::NAN) - t["rouge"][k].as_f64().unwrap_or(0.0)).abs())
            .fold(0.0, f64::max);
        println!("BLEU {:.4} vs {:.4}; largest ROUGE difference {dr:.2e}", f(&one, "bleu"), f(t, "bleu"));
        if db > 0.01 || dr > 1e-4 || dr.is_nan() {
            bail!("scores disagree with the reference implementations: {one} vs {t}");
        }
    }
    Ok(())
}
