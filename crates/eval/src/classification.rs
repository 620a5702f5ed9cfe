//! Classification metrics computed as scikit-learn computes them: accuracy, precision / recall /
//! F1 (per class, micro, macro, weighted), the confusion matrix and Matthews correlation.
//!
//! Classes are ids. As in scikit-learn, the classes scored are those present in the references
//! or the predictions, in ascending order; a class never predicted has precision 0 (scikit-learn's
//! `zero_division` default) and one never present has recall 0.

use serde::Serialize;

use crate::error::{same_len, Result};

/// The class ids present in `truth` or `pred`, ascending.
pub fn present_classes(truth: &[usize], pred: &[usize]) -> Vec<usize> {
    let mut c: Vec<usize> = truth.iter().chain(pred).copied().collect();
    c.sort_unstable();
    c.dedup();
    c
}

/// Fraction of predictions equal to the reference.
pub fn accuracy(truth: &[usize], pred: &[usize]) -> Result<f64> {
    same_len("accuracy", pred.len(), truth.len())?;
    let hits = truth.iter().zip(pred).filter(|(t, p)| t == p).count();
    Ok(hits as f64 / truth.len() as f64)
}

/// A confusion matrix: `counts[i][j]` examples of class `classes[i]` predicted as `classes[j]`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Confusion {
    /// The class ids, ascending.
    pub classes: Vec<usize>,
    /// Rows: reference class; columns: predicted class.
    pub counts: Vec<Vec<u64>>,
}

impl Confusion {
    /// Counts `truth` against `pred` over the classes present in either.
    pub fn new(truth: &[usize], pred: &[usize]) -> Result<Confusion> {
        same_len("confusion matrix", pred.len(), truth.len())?;
        let classes = present_classes(truth, pred);
        let index = |c: usize| classes.binary_search(&c).expect("class is present");
        let mut counts = vec![vec![0u64; classes.len()]; classes.len()];
        for (&t, &p) in truth.iter().zip(pred) {
            counts[index(t)][index(p)] += 1;
        }
        Ok(Confusion { classes, counts })
    }

    /// Examples whose reference is class row `i`.
    pub fn support(&self, i: usize) -> u64 {
        self.counts[i].iter().sum()
    }

    /// Examples predicted as class column `j`.
    pub fn predicted(&self, j: usize) -> u64 {
        self.counts.iter().map(|r| r[j]).sum()
    }

    /// All examples.
    pub fn total(&self) -> u64 {
        self.counts.iter().flatten().sum()
    }
}

/// Precision, recall and F1 of one class or one average.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Prf {
    /// Precision.
    pub precision: f64,
    /// Recall.
    pub recall: f64,
    /// F1: the harmonic mean of the two.
    pub f1: f64,
    /// How many references there are of this class (all of them for an average).
    pub support: u64,
}

fn ratio(num: u64, den: u64) -> f64 {
    if den == 0 {
        0.0
    } else {
        num as f64 / den as f64
    }
}

fn f1(p: f64, r: f64) -> f64 {
    if p + r == 0.0 {
        0.0
    } else {
        2.0 * p * r / (p + r)
    }
}

/// Per-class scores and their micro, macro and support-weighted averages.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ClassReport {
    /// The class ids, ascending.
    pub classes: Vec<usize>,
    /// Scores of each class, in `classes` order.
    pub per_class: Vec<Prf>,
    /// Pooled over all decisions (equals accuracy when every class is scored).
    pub micro: Prf,
    /// Unweighted mean of the per-class scores.
    pub macro_avg: Prf,
    /// Mean of the per-class scores weighted by support.
    pub weighted: Prf,
}

/// Precision, recall and F1 per class and averaged, as `sklearn.metrics.precision_recall_fscore_support`.
pub fn precision_recall_f1(truth: &[usize], pred: &[usize]) -> Result<ClassReport> {
    let cm = Confusion::new(truth, pred)?;
    let k = cm.classes.len();
    let mut per_class = Vec::with_capacity(k);
    let (mut tp_all, mut pred_all, mut true_all) = (0u64, 0u64, 0u64);
    for i in 0..k {
        let tp = cm.counts[i][i];
        let (support, predicted) = (cm.support(i), cm.predicted(i));
        let p = ratio(tp, predicted);
        let r = ratio(tp, support);
        per_class.push(Prf { precision: p, recall: r, f1: f1(p, r), support });
        tp_all += tp;
        pred_all += predicted;
        true_all += support;
    }
    let (mp, mr) = (ratio(tp_all, pred_all), ratio(tp_all, true_all));
    let micro = Prf { precision: mp, recall: mr, f1: f1(mp, mr), support: true_all };
    let mean = |f: fn(&Prf) -> f64| per_class.iter().map(f).sum::<f64>() / k as f64;
    let macro_avg =
        Prf { precision: mean(|s| s.precision), recall: mean(|s| s.recall), f1: mean(|s| s.f1), support: true_all };
    let wmean = |f: fn(&Prf) -> f64| {
        if true_all == 0 {
            0.0
        } else {
            per_class.iter().map(|s| f(s) * s.support as f64).sum::<f64>() / true_all as f64
        }
    };
    let weighted =
        Prf { precision: wmean(|s| s.precision), recall: wmean(|s| s.recall), f1: wmean(|s| s.f1), support: true_all };
    Ok(ClassReport { classes: cm.classes, per_class, micro, macro_avg, weighted })
}

/// Matthews correlation coefficient (multiclass form, as `sklearn.metrics.matthews_corrcoef`);
/// 0 when either side has a single class.
pub fn matthews_corrcoef(truth: &[usize], pred: &[usize]) -> Result<f64> {
    let cm = Confusion::new(truth, pred)?;
    let k = cm.classes.len();
    let s = cm.total() as f64;
    let c: f64 = (0..k).map(|i| cm.counts[i][i] as f64).sum();
    let t: Vec<f64> = (0..k).map(|i| cm.support(i) as f64).collect();
    let p: Vec<f64> = (0..k).map(|j| cm.predicted(j) as f64).collect();
    let cov_tp = c * s - t.iter().zip(&p).map(|(a, b)| a * b).sum::<f64>();
    let cov_pp = s * s - p.iter().map(|x| x * x).sum::<f64>();
    let cov_tt = s * s - t.iter().map(|x| x * x).sum::<f64>();
    if cov_pp * cov_tt == 0.0 {
        return Ok(0.0);
    }
    Ok(cov_tp / (cov_tt * cov_pp).sqrt())
}

/// The index of the largest score (the first on ties, as numpy's argmax).
pub fn argmax(scores: &[f64]) -> usize {
    let mut best = 0;
    for (i, &s) in scores.iter().enumerate() {
        if s > scores[best] {
            best = i;
        }
    }
    best
}
