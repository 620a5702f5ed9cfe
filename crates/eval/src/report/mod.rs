//! The run report: one self-contained HTML file (inline CSS and SVG, no script, no network) and
//! a JSON file with the same numbers, rendered from a run directory's metrics log, so that it
//! works for finished and running runs alike.

pub mod charts;
mod html;
pub mod run;

use std::path::{Path, PathBuf};

use serde_json::{json, Map, Value};

use crate::calibration::{calibration, ECE_BINS};
use crate::classification::Confusion;
use crate::error::{EvalError, Result};
pub use run::{LogRecord, RunData};

/// How many worst examples the report lists.
pub const WORST_EXAMPLES: usize = 20;

/// A report's numbers (what `report.json` holds and the HTML shows).
#[derive(Clone, Debug)]
pub struct Report {
    /// The whole report as JSON.
    pub json: Value,
}

/// Paths of a written report.
#[derive(Clone, Debug)]
pub struct Written {
    /// The HTML file.
    pub html: PathBuf,
    /// The JSON file.
    pub json: PathBuf,
}

fn points(v: &[(f64, f64)]) -> Value {
    Value::Array(v.iter().map(|(x, y)| json!([x, y])).collect())
}

fn label_of(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Confusion matrix, calibration and worst examples of classification predictions.
fn classification_section(run: &RunData) -> Option<(Value, Vec<Value>)> {
    let rows: Vec<&Map<String, Value>> = run.predictions.iter().filter_map(Value::as_object).collect();
    if rows.is_empty() || !rows.iter().all(|r| r.contains_key("label") && r.contains_key("prediction")) {
        return None;
    }
    let truth_names: Vec<String> = rows.iter().map(|r| label_of(r.get("label")).unwrap_or_default()).collect();
    let pred_names: Vec<String> = rows.iter().map(|r| label_of(r.get("prediction")).unwrap_or_default()).collect();
    let given: Option<Vec<String>> = run
        .manifest
        .as_ref()
        .and_then(|m| m.get("labels"))
        .and_then(|l| serde_json::from_value::<Vec<String>>(l.clone()).ok());
    let mut seen = truth_names.clone();
    seen.extend(pred_names.iter().cloned());
    let names = crate::tasks::class_names(&seen, given.as_ref());
    let id = |s: &str| names.iter().position(|n| n == s);
    let truth: Vec<usize> = truth_names.iter().filter_map(|s| id(s)).collect();
    let pred: Vec<usize> = pred_names.iter().filter_map(|s| id(s)).collect();
    if truth.len() != rows.len() || pred.len() != rows.len() {
        return None;
    }
    let cm = Confusion::new(&truth, &pred).ok()?;
    let mut section = json!({
        "labels": cm.classes.iter().map(|&c| names[c].clone()).collect::<Vec<_>>(),
        "confusion": cm.counts,
        "accuracy": crate::classification::accuracy(&truth, &pred).ok(),
    });
    let probs: Option<Vec<Vec<f64>>> =
        rows.iter().map(|r| r.get("probs").and_then(|p| serde_json::from_value::<Vec<f64>>(p.clone()).ok())).collect();
    let probs = probs.filter(|p| p.iter().all(|r| r.len() == names.len()));
    if let Some(p) = &probs {
        if let Ok(cal) = calibration(&truth, p, ECE_BINS) {
            section["ece"] = json!(cal.ece);
            section["reliability"] = serde_json::to_value(&cal.bins).unwrap_or(Value::Null);
        }
    }
    // Worst: highest loss (given, or −log p(reference)); else the misclassified.
    let mut scored: Vec<(f64, usize)> = rows
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let loss = r
                .get("loss")
                .and_then(Value::as_f64)
                .or_else(|| probs.as_ref().map(|p| -(p[i][truth[i]].max(1e-12)).ln()));
            (loss.unwrap_or(if truth[i] == pred[i] { 0.0 } else { 1.0 }), i)
        })
        .collect();
    scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    let worst = scored
        .iter()
        .take(WORST_EXAMPLES)
        .map(|&(loss, i)| {
            json!({
                "text": rows[i].get("text").cloned().unwrap_or(Value::Null),
                "reference": truth_names[i],
                "prediction": pred_names[i],
                "loss": loss,
                "confidence": probs.as_ref().map(|p| p[i][pred[i]]),
            })
        })
        .collect();
    Some((section, worst))
}

/// Worst generation examples: lowest score first.
fn generation_worst(run: &RunData) -> Vec<Value> {
    let mut rows: Vec<&Map<String, Value>> = run
        .predictions
        .iter()
        .filter_map(Value::as_object)
        .filter(|r| r.contains_key("reference") && r.contains_key("prediction"))
        .collect();
    rows.sort_by(|a, b| {
        let s = |r: &Map<String, Value>| r.get("score").and_then(Value::as_f64).unwrap_or(0.0);
        s(a).total_cmp(&s(b))
    });
    rows.into_iter().take(WORST_EXAMPLES).map(|r| Value::Object(r.clone())).collect()
}

impl Report {
    /// Computes the report of a run.
    pub fn build(run: &RunData) -> Report {
        let mut curves = json!({
            "train_loss": points(&run.series("train", |r| r.loss)),
            "eval_loss": points(&run.series("eval", |r| r.loss)),
            "lr": points(&run.series("train", |r| r.lr)),
            "grad_norm": points(&run.series("train", |r| r.grad_norm)),
        });
        let mut best = Map::new();
        let mut metric_curves = Map::new();
        for name in run.metric_names() {
            let s = run.series("eval", |r| r.metrics.get(&name).copied());
            let lower_better = name.contains("loss")
                || name.contains("perplexity")
                || name.contains("mse")
                || name.contains("mae")
                || name.contains("ece")
                || name.contains("brier");
            let pick = s.iter().copied().reduce(|a, b| if (b.1 < a.1) == lower_better && b.1 != a.1 { b } else { a });
            if let Some((step, value)) = pick {
                best.insert(
                    name.clone(),
                    json!({"value": value, "step": step as u64, "higher_is_better": !lower_better}),
                );
            }
            metric_curves.insert(name, points(&s));
        }
        curves["metrics"] = Value::Object(metric_curves);
        let last_train = run.records.iter().rev().find(|r| r.split == "train");
        let last_eval = run.records.iter().rev().find(|r| r.split == "eval");
        let mut json = json!({
            "run_dir": run.dir.display().to_string(),
            "summary": {
                "steps": run.records.iter().map(|r| r.step).max().unwrap_or(0),
                "final_train_loss": last_train.and_then(|r| r.loss),
                "last_eval": last_eval.map(|r| json!({"step": r.step, "loss": r.loss, "metrics": r.metrics})),
                "best": best,
                "log_records": run.records.len(),
                "skipped_partial_lines": run.skipped_lines,
            },
            "curves": curves,
            "manifest": run.manifest.clone().unwrap_or(Value::Null),
        });
        if let Some((section, worst)) = classification_section(run) {
            json["classification"] = section;
            json["worst_examples"] = Value::Array(worst);
        } else {
            json["worst_examples"] = Value::Array(generation_worst(run));
        }
        Report { json }
    }

    /// The self-contained HTML page.
    pub fn html(&self) -> Result<String> {
        html::render(&self.json)
    }

    /// Writes `report.html` and `report.json` into `dir`, each atomically (temp file + rename).
    pub fn write(&self, dir: &Path) -> Result<Written> {
        let html_path = dir.join("report.html");
        let json_path = dir.join("report.json");
        let pretty =
            serde_json::to_string_pretty(&self.json).map_err(|e| EvalError::invalid("report", e.to_string()))?;
        write_atomic(&json_path, pretty.as_bytes())?;
        write_atomic(&html_path, self.html()?.as_bytes())?;
        Ok(Written { html: html_path, json: json_path })
    }
}

/// Writes a file through a temporary sibling and a rename, so readers never see half of it.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension(format!(
        "{}.tmp{}",
        path.extension().and_then(|e| e.to_str()).unwrap_or(""),
        std::process::id()
    ));
    let io = |source| EvalError::Io { path: path.to_path_buf(), source };
    std::fs::write(&tmp, bytes).map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}

/// Reads a run directory and writes its report next to the log.
pub fn render_run(dir: &Path) -> Result<Written> {
    let dir = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
    let run = RunData::read(&dir)?;
    Report::build(&run).write(&dir)
}
