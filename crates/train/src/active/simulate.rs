//! Simulated active learning: the labels of `data.train` are hidden; starting from a random
//! `initial` rows (the same for every strategy at a seed), each round trains the run config on
//! the rows labeled so far, evaluates it on `data.validation`, scores the rest of the pool and
//! "labels" the `step` rows the strategy picks, until `budget` rows are labeled. Every round's
//! run is kept in `<out>/<strategy>/seed-<s>/labels-<n>`; the curves (accuracy against labels
//! used) go to `curves.json` and a chart to `active.html`.

use std::path::{Path, PathBuf};

use serde::Serialize;
use tunesmith_data::example::Record;
use tunesmith_data::write::{write_jsonl, OutputFormat};

use super::strategy::{select, Strategy};
use crate::config::RunConfig;
use crate::error::{Result, TrainError};
use crate::trainer::{Quiet, Trainer};

/// What to simulate.
#[derive(Debug, Clone)]
pub struct Simulation {
    /// The run config (its `data.train` is the pool, `data.validation` the test of each round).
    pub base: RunConfig,
    /// Strategies to compare.
    pub strategies: Vec<Strategy>,
    /// Seeds (each gives its own initial set and training seed).
    pub seeds: Vec<u64>,
    /// Rows labeled at random before the first round.
    pub initial: usize,
    /// Rows labeled per round.
    pub step: usize,
    /// Rows labeled at the end.
    pub budget: usize,
    /// Where the rounds and results go.
    pub out: PathBuf,
}

/// One point of a curve.
#[derive(Debug, Clone, Serialize)]
pub struct Point {
    /// Rows labeled.
    pub labels: usize,
    /// The validation metric after training on them.
    pub value: f64,
}

/// One strategy at one seed.
#[derive(Debug, Clone, Serialize)]
pub struct Curve {
    /// The strategy.
    pub strategy: Strategy,
    /// The seed.
    pub seed: u64,
    /// Its points.
    pub points: Vec<Point>,
}

/// The metric the curves use (the run's `eval.metric`).
fn metric(base: &RunConfig, m: &serde_json::Map<String, serde_json::Value>) -> Result<f64> {
    m.get(&base.eval.metric).and_then(|v| v.as_f64()).ok_or_else(|| {
        TrainError::Config(format!("the rounds' evaluation has no `{}`; set eval.metric", base.eval.metric))
    })
}

fn round_dir(out: &Path, s: Strategy, seed: u64, labels: usize) -> PathBuf {
    out.join(s.name()).join(format!("seed-{seed}")).join(format!("labels-{labels}"))
}

/// Runs the simulation; `progress` hears a line per round.
pub fn simulate(sim: &Simulation, pool: &[Record], progress: &mut dyn FnMut(&str)) -> Result<Vec<Curve>> {
    if sim.base.data.validation.is_none() {
        return Err(TrainError::Config("a simulation evaluates each round on data.validation; set it".into()));
    }
    if sim.initial == 0 || sim.step == 0 || sim.budget < sim.initial || sim.budget > pool.len() {
        return Err(TrainError::Config(format!(
            "need 0 < initial ({}) ≤ budget ({}) ≤ pool rows ({}) and step > 0 ({})",
            sim.initial,
            sim.budget,
            pool.len(),
            sim.step
        )));
    }
    let mut curves = Vec::new();
    for &seed in &sim.seeds {
        let mut first: Vec<usize> = (0..pool.len()).collect();
        tunesmith_data::batch::SplitMix64::new(seed ^ 0x00AC_717E).shuffle(&mut first);
        first.truncate(sim.initial);
        for &strategy in &sim.strategies {
            let mut labeled = first.clone();
            let mut points = Vec::new();
            loop {
                let dir = round_dir(&sim.out, strategy, seed, labeled.len());
                std::fs::create_dir_all(&dir).map_err(|e| TrainError::io(&dir, e))?;
                let train_file = dir.join("labeled.jsonl");
                let rows: Vec<Record> = labeled.iter().map(|&i| pool[i].clone()).collect();
                write_jsonl(&train_file, &rows, OutputFormat::Jsonl)?;
                let mut cfg = sim.base.clone();
                cfg.data.train = train_file.display().to_string();
                cfg.data.max_train_rows = 0;
                cfg.train.seed = seed;
                cfg.output.dir = dir.join("run");
                cfg.output.save_checkpoints = false;
                let mut trainer = Trainer::new(cfg, false)?;
                let summary = trainer.run(&mut Quiet)?;
                let m = summary
                    .final_metrics
                    .ok_or_else(|| TrainError::Config("a round ended without evaluation".into()))?;
                let value = metric(&sim.base, &m)?;
                progress(&format!(
                    "{} seed {seed}: {} labels → {} {value:.4}",
                    strategy.name(),
                    labeled.len(),
                    sim.base.eval.metric
                ));
                points.push(Point { labels: labeled.len(), value });
                if labeled.len() >= sim.budget {
                    break;
                }
                let is_labeled = {
                    let mut v = vec![false; pool.len()];
                    for &i in &labeled {
                        v[i] = true;
                    }
                    v
                };
                let rest: Vec<usize> = (0..pool.len()).filter(|&i| !is_labeled[i]).collect();
                let k = sim.step.min(sim.budget - labeled.len());
                let picked: Vec<usize> = if strategy == Strategy::Random {
                    select(strategy, &vec![Vec::new(); rest.len()], &[], &[], k, seed ^ labeled.len() as u64)
                        .into_iter()
                        .map(|(i, _)| rest[i])
                        .collect()
                } else {
                    let records: Vec<Record> = rest.iter().map(|&i| pool[i].clone()).collect();
                    let scores = trainer.score(&records, strategy.needs_features())?;
                    let labeled_features =
                        if strategy.needs_features() { trainer.score(&rows, true)?.features } else { Vec::new() };
                    select(strategy, &scores.logits, &scores.features, &labeled_features, k, seed)
                        .into_iter()
                        .map(|(i, _)| rest[i])
                        .collect()
                };
                labeled.extend(picked);
            }
            curves.push(Curve { strategy, seed, points });
        }
    }
    Ok(curves)
}

/// The mean curve of each strategy over seeds: `(strategy, [(labels, mean)])`.
pub fn mean_curves(curves: &[Curve]) -> Vec<(Strategy, Vec<(usize, f64)>)> {
    let mut out: Vec<(Strategy, Vec<(usize, f64)>)> = Vec::new();
    for c in curves {
        if !out.iter().any(|(s, _)| *s == c.strategy) {
            let same: Vec<&Curve> = curves.iter().filter(|d| d.strategy == c.strategy).collect();
            let points = c
                .points
                .iter()
                .enumerate()
                .map(|(i, p)| {
                    let vals: Vec<f64> = same.iter().filter_map(|d| d.points.get(i).map(|q| q.value)).collect();
                    (p.labels, vals.iter().sum::<f64>() / vals.len() as f64)
                })
                .collect();
            out.push((c.strategy, points));
        }
    }
    out
}

/// The HTML page of a simulation: the mean curves and a table.
pub fn html(curves: &[Curve], metric: &str) -> String {
    use std::fmt::Write as _;
    let means = mean_curves(curves);
    let pts: Vec<Vec<(f64, f64)>> =
        means.iter().map(|(_, p)| p.iter().map(|&(l, v)| (l as f64, v)).collect()).collect();
    let series: Vec<tunesmith_eval::report::charts::Series> = means
        .iter()
        .zip(&pts)
        .map(|((s, _), p)| tunesmith_eval::report::charts::Series { name: s.name(), points: p, markers: true })
        .collect();
    let seeds = curves.iter().map(|c| c.seed).collect::<std::collections::BTreeSet<_>>().len();
    let mut s = String::from("<!DOCTYPE html><html><head><meta charset=\"utf-8\"><meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\"><title>tunesmith active learning</title><style>body{font-family:system-ui,sans-serif;margin:24px auto;max-width:1000px}table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ddd;padding:3px 8px}td{text-align:right}</style></head><body><h1>Active learning (simulated)</h1>");
    let _ = write!(s, "<p>Validation {metric} against labels used, mean over {seeds} seed(s).</p>");
    match tunesmith_eval::report::charts::line_chart("", "labels used", metric, &series, (760, 420)) {
        Ok(svg) => s.push_str(&svg),
        Err(e) => {
            let _ = write!(s, "<p>chart: {e}</p>");
        }
    }
    s.push_str("<table><tr><th>labels</th>");
    for (st, _) in &means {
        let _ = write!(s, "<th>{}</th>", st.name());
    }
    s.push_str("</tr>");
    if let Some((_, first)) = means.first() {
        for (i, (labels, _)) in first.iter().enumerate() {
            let _ = write!(s, "<tr><td>{labels}</td>");
            for (_, p) in &means {
                let _ = write!(s, "<td>{}</td>", p.get(i).map(|x| format!("{:.4}", x.1)).unwrap_or_default());
            }
            s.push_str("</tr>");
        }
    }
    s.push_str("</table></body></html>\n");
    s
}
