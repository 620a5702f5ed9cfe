//! A run directory as the trainer writes it and the report reads it:
//! - `metrics.jsonl`: one JSON object per logged step, `{"step", "split": "train"|"eval", "loss",
//!   "lr", "grad_norm", "epoch", "metrics": {...}}` (all but step and split optional);
//! - `manifest.json`: the resolved config, versions, seed, data hashes, hardware;
//! - `eval/predictions.jsonl` (optional): the last evaluation's examples, `{"text", "label",
//!   "prediction", "probs", "loss"}` for classification or `{"prompt", "reference",
//!   "prediction", "score"}` for generation.
//!
//! A run still in progress may have a half-written last line; it is skipped and counted.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{EvalError, Result};

/// The metrics log of a run.
pub const METRICS_FILE: &str = "metrics.jsonl";
/// The run manifest.
pub const MANIFEST_FILE: &str = "manifest.json";
/// The last evaluation's per-example predictions.
pub const PREDICTIONS_FILE: &str = "eval/predictions.jsonl";

/// One line of `metrics.jsonl`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LogRecord {
    /// Optimizer step.
    pub step: u64,
    /// "train" or "eval".
    pub split: String,
    /// Fractional epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epoch: Option<f64>,
    /// Loss (mean per token or per example).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss: Option<f64>,
    /// Learning rate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lr: Option<f64>,
    /// Global gradient norm before clipping.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grad_norm: Option<f64>,
    /// Throughput.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens_per_s: Option<f64>,
    /// Task metrics of an evaluation.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metrics: BTreeMap<String, f64>,
}

/// Everything a report is drawn from.
#[derive(Clone, Debug, Default)]
pub struct RunData {
    /// The run directory.
    pub dir: PathBuf,
    /// Records of metrics.jsonl, in file order.
    pub records: Vec<LogRecord>,
    /// Lines of metrics.jsonl that could not be read (a run being written ends mid-line).
    pub skipped_lines: usize,
    /// manifest.json, when present.
    pub manifest: Option<Value>,
    /// eval/predictions.jsonl, when present.
    pub predictions: Vec<Value>,
}

fn read_jsonl<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<(Vec<T>, usize)> {
    let text = std::fs::read_to_string(path).map_err(|source| EvalError::Io { path: path.to_path_buf(), source })?;
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::with_capacity(lines.len());
    let mut skipped = 0;
    for (i, line) in lines.iter().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str(line) {
            Ok(v) => out.push(v),
            // Only the last line may be partial (a run still writing it).
            Err(_) if i + 1 == lines.len() && !text.ends_with('\n') => skipped += 1,
            Err(e) => return Err(EvalError::Input { path: path.to_path_buf(), line: i + 1, why: e.to_string() }),
        }
    }
    Ok((out, skipped))
}

impl RunData {
    /// Reads a run directory (finished or still running).
    pub fn read(dir: &Path) -> Result<RunData> {
        let metrics = dir.join(METRICS_FILE);
        if !metrics.exists() {
            return Err(EvalError::Input {
                path: metrics,
                line: 0,
                why: "no metrics log here; pass the output directory of a `tunesmith train` run".into(),
            });
        }
        let (records, skipped_lines) = read_jsonl::<LogRecord>(&metrics)?;
        let manifest_path = dir.join(MANIFEST_FILE);
        let manifest = if manifest_path.exists() {
            let text = std::fs::read_to_string(&manifest_path)
                .map_err(|source| EvalError::Io { path: manifest_path.clone(), source })?;
            Some(serde_json::from_str(&text).map_err(|e| EvalError::Input {
                path: manifest_path.clone(),
                line: e.line(),
                why: e.to_string(),
            })?)
        } else {
            None
        };
        let pred_path = dir.join(PREDICTIONS_FILE);
        let predictions = if pred_path.exists() { read_jsonl::<Value>(&pred_path)?.0 } else { Vec::new() };
        Ok(RunData { dir: dir.to_path_buf(), records, skipped_lines, manifest, predictions })
    }

    /// (step, value) points of a train- or eval-split field.
    pub fn series(&self, split: &str, field: impl Fn(&LogRecord) -> Option<f64>) -> Vec<(f64, f64)> {
        self.records
            .iter()
            .filter(|r| r.split == split)
            .filter_map(|r| field(r).filter(|v| v.is_finite()).map(|v| (r.step as f64, v)))
            .collect()
    }

    /// The names of the evaluation metrics logged.
    pub fn metric_names(&self) -> Vec<String> {
        let mut names: Vec<String> =
            self.records.iter().filter(|r| r.split == "eval").flat_map(|r| r.metrics.keys().cloned()).collect();
        names.sort();
        names.dedup();
        names
    }
}
