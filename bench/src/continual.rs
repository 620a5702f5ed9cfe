//! `bench -- continual`: forgetting, measured. all-MiniLM-L6-v2 fine-tuned on three real
//! classification tasks in sequence (SST-2, then SentEval SUBJ, then SMS spam), naively and
//! with each remedy (replay, EWC, L2-SP, LwF); prints each run's accuracy matrix, average
//! accuracy, backward transfer and forgetting, and how much of the naive run's forgetting each
//! remedy removes at what cost on the last task.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use tunesmith_train::{Quiet, RunConfig};

use crate::{peer, table, timing};

/// Options of the continual suite.
#[derive(clap::Args)]
pub struct Args {
    /// Training examples per task (a seeded sample).
    #[arg(long, default_value_t = 1000)]
    rows: usize,
    /// Epochs per task.
    #[arg(long, default_value_t = 2)]
    epochs: usize,
    /// Learning rate (AdamW, linear decay per task).
    #[arg(long, default_value_t = 1e-4)]
    lr: f64,
    /// Batch size.
    #[arg(long, default_value_t = 32)]
    batch_size: usize,
    /// Tokens per example.
    #[arg(long, default_value_t = 64)]
    max_length: usize,
    /// `shared` (one head: the domain-incremental setting) or `per_task`.
    #[arg(long, default_value = "shared", value_parser = ["shared", "per_task"])]
    heads: String,
    /// Strategies to run, in order (`naive` is the reference); `name=strength` overrides the
    /// strength of one run (e.g. `ewc=1e6`).
    #[arg(long, value_delimiter = ',', default_value = "naive,replay,ewc,l2sp,lwf")]
    strategies: Vec<String>,
    /// Replay: examples kept.
    #[arg(long, default_value_t = 1000)]
    replay_buffer: usize,
    /// Replay: share of each later task's examples from the buffer.
    #[arg(long, default_value_t = 0.25)]
    replay_ratio: f64,
    /// EWC's λ.
    #[arg(long, default_value_t = 1e4)]
    ewc_lambda: f64,
    /// L2-SP's α.
    #[arg(long, default_value_t = 1.0)]
    l2sp_alpha: f64,
    /// LwF's weight.
    #[arg(long, default_value_t = 1.0)]
    lwf_alpha: f64,
    /// Threads.
    #[arg(long, default_value_t = 2)]
    threads: usize,
}

/// SUBJ as JSONL (text, label), split once with a fixed seed: 1,000 validation rows, the rest
/// for training.
fn subj(shared: &Path, out: &Path) -> Result<(PathBuf, PathBuf)> {
    let mut rows = Vec::new();
    for (file, label) in [("subj.objective", "objective"), ("subj.subjective", "subjective")] {
        let bytes = std::fs::read(shared.join("data/senteval-subj").join(file))?;
        // The SentEval files are Latin-1.
        let text: String = bytes.iter().map(|&b| b as char).collect();
        for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
            rows.push(serde_json::json!({"text": line, "label": label}).to_string());
        }
    }
    let mut rng = tunesmith_data::batch::SplitMix64::new(7);
    rng.shuffle(&mut rows);
    std::fs::create_dir_all(out)?;
    let (dev, train) = (out.join("subj-dev.jsonl"), out.join("subj-train.jsonl"));
    std::fs::write(&dev, rows[..1000].join("\n") + "\n")?;
    std::fs::write(&train, rows[1000..].join("\n") + "\n")?;
    Ok((train, dev))
}

/// The `[continual]` keys of a strategy: `name` with the suite's strength, or `name=strength`
/// (the replay ratio, EWC's λ, L2-SP's α or LwF's weight).
fn strategy_section(a: &Args, s: &str) -> Result<String> {
    let (name, strength) = match s.split_once('=') {
        Some((n, v)) => (n, Some(v.parse::<f64>().with_context(|| format!("strategy {s}: a number after '='"))?)),
        None => (s, None),
    };
    Ok(match name {
        "naive" => String::new(),
        "replay" => {
            format!("replay_buffer = {}\nreplay_ratio = {}\n", a.replay_buffer, strength.unwrap_or(a.replay_ratio))
        }
        "ewc" => format!("ewc_lambda = {}\n", strength.unwrap_or(a.ewc_lambda)),
        "l2sp" => format!("l2sp_alpha = {}\n", strength.unwrap_or(a.l2sp_alpha)),
        "lwf" => format!("lwf_alpha = {}\n", strength.unwrap_or(a.lwf_alpha)),
        other => bail!("unknown strategy {other}: use naive, replay, ewc, l2sp or lwf (optionally name=strength)"),
    })
}

/// Runs the suite.
pub fn run(a: Args) -> Result<()> {
    let root = peer::repo_root();
    let shared = root.join("../shared");
    let model = crate::sst2::default_minilm();
    if !model.join("model.safetensors").exists() {
        bail!("no MiniLM at {}; run scripts/fetch-test-models.sh", model.display());
    }
    let out = root.join("bench/out/continual");
    let (subj_train, subj_dev) = subj(&shared, &out.join("data"))?;
    let tasks = format!(
        r#"[[continual.tasks]]
name = "sst2"
train = "{sst2}"
validation = "{sst2_dev}"
max_train_rows = {rows}
[[continual.tasks]]
name = "subj"
train = "{subj_train}"
validation = "{subj_dev}"
max_train_rows = {rows}
[[continual.tasks]]
name = "spam"
train = "{spam}"
max_train_rows = {rows}
"#,
        sst2 = shared.join("data/sst2/train.tsv").display(),
        sst2_dev = shared.join("data/sst2/dev.tsv").display(),
        subj_train = subj_train.display(),
        subj_dev = subj_dev.display(),
        spam = shared.join("data/sms-spam/SMSSpamCollection").display(),
        rows = a.rows,
    );
    let mut results = Vec::new();
    for s in &a.strategies {
        let dir = out.join(format!("{}-{}", a.heads, s.replace('=', "-")));
        let _ = std::fs::remove_dir_all(&dir);
        let toml = format!(
            r#"[model]
path = "{model}"
[task]
kind = "classification"
[data]
max_length = {max_length}
[method]
kind = "full"
[train]
epochs = {epochs}
batch_size = {batch}
lr = {lr}
warmup_ratio = 0.0
seed = 42
threads = {threads}
log_every = 10
[eval]
batch_size = 128
[output]
dir = "{dir}"
save_checkpoints = false
[continual]
heads = "{heads}"
{section}{tasks}"#,
            model = model.display(),
            max_length = a.max_length,
            epochs = a.epochs,
            batch = a.batch_size,
            lr = a.lr,
            threads = a.threads,
            dir = dir.display(),
            heads = a.heads,
            section = strategy_section(&a, s)?,
        );
        let t = Instant::now();
        let summary = tunesmith_train::continual::run(RunConfig::parse(&toml, "continual bench", &[])?, &mut Quiet)?;
        let secs = t.elapsed().as_secs_f64();
        eprintln!(
            "{s}: forgetting {:.4}, average {:.4}, {:.0}s",
            summary.scores.forgetting, summary.scores.average_accuracy, secs
        );
        results.push((s.clone(), summary, secs));
    }
    let naive = results.iter().find(|(s, _, _)| s == "naive").map(|(_, r, _)| r.clone());
    let pct = |x: Option<f64>| x.map_or("-".to_string(), |v| format!("{:.1}", 100.0 * v));
    let rows: Vec<Vec<String>> = results
        .iter()
        .map(|(s, r, secs)| {
            let n = r.tasks.len();
            let last = r.matrix[n - 1][n - 1];
            let matrix: Vec<String> =
                r.matrix.iter().map(|row| row.iter().map(|c| pct(*c)).collect::<Vec<_>>().join(" / ")).collect();
            let (kept, cost) = match &naive {
                Some(nv) if s != "naive" => (
                    format!("{:.0}%", 100.0 * (1.0 - r.scores.forgetting / nv.scores.forgetting)),
                    format!("{:+.1}", 100.0 * (last.unwrap_or(0.0) - nv.matrix[n - 1][n - 1].unwrap_or(0.0))),
                ),
                _ => ("-".into(), "-".into()),
            };
            vec![
                s.clone(),
                matrix.join(" ‖ "),
                format!("{:.1}", 100.0 * r.scores.average_accuracy),
                format!("{:+.1}", 100.0 * r.scores.backward_transfer),
                format!("{:.1}", 100.0 * r.scores.forgetting),
                kept,
                cost,
                format!("{secs:.0}"),
            ]
        })
        .collect();
    println!(
        "continual: all-MiniLM-L6-v2 full fine-tuning, {} head(s), SST-2 → SUBJ → SMS spam, {} rows per task, {} epochs, \
         batch {}, lr {} (linear decay per task), max_length {}, {} threads; replay {} × {}, EWC λ {}, L2-SP α {}, LwF α {} \
         (T 2); CPU {}",
        a.heads,
        a.rows,
        a.epochs,
        a.batch_size,
        a.lr,
        a.max_length,
        a.threads,
        a.replay_buffer,
        a.replay_ratio,
        a.ewc_lambda,
        a.l2sp_alpha,
        a.lwf_alpha,
        timing::cpu_model()
    );
    println!(
        "{}",
        table::markdown(
            &[
                "strategy",
                "accuracy % (row: SST-2 ‖ SUBJ ‖ spam; after task 1 / 2 / 3)",
                "avg acc %",
                "BWT pts",
                "forgetting pts",
                "forgetting removed",
                "last task vs naive (pts)",
                "s",
            ],
            &rows
        )
    );
    Ok(())
}
