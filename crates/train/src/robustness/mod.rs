//! The robustness suite of a classifier (`tunesmith eval --suite robustness`): accuracy under
//! seeded input perturbations (drop and flip rate per kind and rate), out-of-distribution
//! detection (ROC-AUC of maximum-softmax and energy scores), subgroup metrics and Fairlearn's
//! fairness differences over a column, and calibration (ECE with its reliability table, before
//! and after temperature scaling fitted on validation data).

pub mod html;

use serde::Serialize;
use tunesmith_data::augment::perturb::{perturb, PerturbKind};
use tunesmith_data::example::{Example, Label, Record};
use tunesmith_eval::calibration::{calibration, Calibration, ECE_BINS};
use tunesmith_eval::classification::{accuracy, argmax};
use tunesmith_eval::fairness::{fairness, Fairness};
use tunesmith_eval::ood::{ood_scores, OodScores};
use tunesmith_eval::temperature::{fit_temperature, scaled_probs, Temperature};

use crate::error::{Result, TrainError};
use crate::trainer::Trainer;

/// What the suite checks beyond clean accuracy.
#[derive(Debug, Clone)]
pub struct RobustnessOptions {
    /// Perturbations and their rates.
    pub perturbations: Vec<(PerturbKind, f64)>,
    /// The perturbations' seed.
    pub seed: u64,
    /// Out-of-distribution records (any texts), for OOD detection.
    pub ood: Option<Vec<Record>>,
    /// The column of the evaluation rows that names each row's group.
    pub group_column: Option<String>,
    /// The favourable class for the fairness differences (default: the second label).
    pub positive: Option<String>,
    /// Labeled validation records to fit the temperature on (default: the evaluation rows).
    pub calibration: Option<Vec<Record>>,
}

/// One perturbation's effect.
#[derive(Debug, Clone, Serialize)]
pub struct PerturbationResult {
    /// The kind.
    pub kind: String,
    /// Its rate.
    pub rate: f64,
    /// Accuracy on the perturbed rows.
    pub accuracy: f64,
    /// Clean accuracy minus that.
    pub accuracy_drop: f64,
    /// Share of rows whose predicted class changed.
    pub flip_rate: f64,
    /// Rows whose text the perturbation actually changed.
    pub changed_rows: usize,
}

/// Calibration before and after temperature scaling.
#[derive(Debug, Clone, Serialize)]
pub struct CalibrationResult {
    /// The fitted temperature and validation NLL before and after.
    pub temperature: Temperature,
    /// Where it was fitted: "validation" (separate rows) or "evaluation" (the evaluated rows).
    pub fitted_on: String,
    /// Validation ECE and reliability table at T = 1.
    pub validation_before: Calibration,
    /// Validation ECE and reliability table at the fitted T.
    pub validation_after: Calibration,
    /// ECE of the evaluated rows at T = 1.
    pub evaluation_ece_before: f64,
    /// ECE of the evaluated rows at the fitted T.
    pub evaluation_ece_after: f64,
}

/// The suite's results.
#[derive(Debug, Clone, Serialize)]
pub struct RobustnessReport {
    /// Class names by id.
    pub labels: Vec<String>,
    /// Evaluated rows.
    pub rows: usize,
    /// Clean accuracy.
    pub accuracy: f64,
    /// One entry per perturbation.
    pub perturbations: Vec<PerturbationResult>,
    /// OOD detection (with OOD data).
    pub ood: Option<OodScores>,
    /// Subgroup metrics (with a group column), and the positive class they use.
    pub fairness: Option<Fairness>,
    /// The favourable class of the fairness differences.
    pub positive: Option<String>,
    /// Rows without a value in the group column (left out of the subgroup metrics).
    pub rows_without_group: usize,
    /// Calibration.
    pub calibration: CalibrationResult,
}

fn softmax(logits: &[Vec<f64>]) -> Vec<Vec<f64>> {
    scaled_probs(logits, 1.0)
}

/// The class ids of labeled records (an error names a row whose label is not in the map).
fn truth_of(records: &[Record], labels: &[String]) -> Result<Vec<usize>> {
    records
        .iter()
        .map(|r| match &r.example {
            Example::Labeled { label: Label::Class(c), .. } => labels.iter().position(|l| l == c).ok_or_else(|| {
                TrainError::Data(format!("{}: label \"{c}\" is not one of the model's labels {labels:?}", r.loc))
            }),
            other => Err(TrainError::Data(format!("{}: a {} row has no class label", r.loc, other.kind()))),
        })
        .collect()
}

fn with_text(r: &Record, text: String) -> Record {
    let mut r = r.clone();
    if let Example::Labeled { text: t, .. } = &mut r.example {
        *t = text;
    }
    r
}

/// Runs the suite on labeled `records` with the model of `trainer`.
pub fn run(trainer: &mut Trainer, records: &[Record], opts: &RobustnessOptions) -> Result<RobustnessReport> {
    let labels = trainer.labels().to_vec();
    let truth = truth_of(records, &labels)?;
    let logits = trainer.class_logits(records)?;
    let pred: Vec<usize> = logits.iter().map(|l| argmax(l)).collect();
    let clean = accuracy(&truth, &pred)?;

    let mut perturbations = Vec::new();
    for (i, &(kind, rate)) in opts.perturbations.iter().enumerate() {
        let mut changed_rows = 0;
        let perturbed: Vec<Record> = records
            .iter()
            .enumerate()
            .map(|(j, r)| {
                let Example::Labeled { text, .. } = &r.example else { return r.clone() };
                let p = perturb(text, kind, rate, opts.seed ^ ((i as u64) << 40) ^ j as u64);
                if p != *text {
                    changed_rows += 1;
                }
                with_text(r, p)
            })
            .collect();
        let p_pred: Vec<usize> = trainer.class_logits(&perturbed)?.iter().map(|l| argmax(l)).collect();
        let acc = accuracy(&truth, &p_pred)?;
        let flips = pred.iter().zip(&p_pred).filter(|(a, b)| a != b).count();
        perturbations.push(PerturbationResult {
            kind: kind.name().into(),
            rate,
            accuracy: acc,
            accuracy_drop: clean - acc,
            flip_rate: flips as f64 / records.len() as f64,
            changed_rows,
        });
    }

    let ood = match &opts.ood {
        Some(out) if !out.is_empty() => Some(ood_scores(&logits, &trainer.class_logits(out)?)?),
        Some(_) => return Err(TrainError::Data("the out-of-distribution data has no rows".into())),
        None => None,
    };

    let (fair, positive, rows_without_group) = match &opts.group_column {
        Some(col) => {
            let positive_name = opts.positive.clone().unwrap_or_else(|| labels[1.min(labels.len() - 1)].clone());
            let positive = labels.iter().position(|l| *l == positive_name).ok_or_else(|| {
                TrainError::Config(format!("--positive {positive_name}: not one of the labels {labels:?}"))
            })?;
            let mut idx = Vec::new();
            let mut groups = Vec::new();
            for (i, r) in records.iter().enumerate() {
                match r.extra.get(col) {
                    Some(serde_json::Value::String(s)) => groups.push(s.clone()),
                    Some(v) if !v.is_null() => groups.push(v.to_string()),
                    _ => continue,
                }
                idx.push(i);
            }
            if idx.is_empty() {
                return Err(TrainError::Data(format!(
                    "no evaluation row has the column \"{col}\"; name a column of the data (--group-column)"
                )));
            }
            let t: Vec<usize> = idx.iter().map(|&i| truth[i]).collect();
            let p: Vec<usize> = idx.iter().map(|&i| pred[i]).collect();
            (Some(fairness(&t, &p, &groups, positive)?), Some(positive_name), records.len() - idx.len())
        }
        None => (None, None, 0),
    };

    let (val_truth, val_logits, fitted_on) = match &opts.calibration {
        Some(v) => (truth_of(v, &labels)?, trainer.class_logits(v)?, "validation"),
        None => (truth.clone(), logits.clone(), "evaluation"),
    };
    let temperature = fit_temperature(&val_truth, &val_logits)?;
    let t = temperature.temperature;
    let calibration = CalibrationResult {
        validation_before: calibration(&val_truth, &softmax(&val_logits), ECE_BINS)?,
        validation_after: calibration(&val_truth, &scaled_probs(&val_logits, t), ECE_BINS)?,
        evaluation_ece_before: calibration(&truth, &softmax(&logits), ECE_BINS)?.ece,
        evaluation_ece_after: calibration(&truth, &scaled_probs(&logits, t), ECE_BINS)?.ece,
        temperature,
        fitted_on: fitted_on.into(),
    };
    Ok(RobustnessReport {
        labels,
        rows: records.len(),
        accuracy: clean,
        perturbations,
        ood,
        fairness: fair,
        positive,
        rows_without_group,
        calibration,
    })
}
