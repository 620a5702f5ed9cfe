//! The task scorers behind `tunesmith metrics`: each reads aligned predictions and references
//! and returns every metric of its task as JSON, optionally with bootstrap intervals and a
//! paired test against a second system.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

use crate::bootstrap::{bootstrap, paired_bootstrap};
use crate::calibration::{brier, calibration, ECE_BINS};
use crate::chrf::ChrfVariant;
use crate::classification::{accuracy, argmax, matthews_corrcoef, precision_recall_f1, Confusion};
use crate::error::{EvalError, Result};
use crate::inputs::{kind, Column};
use crate::{bleu, chrf, gsm8k, lm, preference, regression, roc, rouge, squad};

/// Options shared by the task scorers.
#[derive(Clone, Debug)]
pub struct ScoreOptions {
    /// Field of JSON predictions (else a per-task default list).
    pub pred_field: Option<String>,
    /// Field of JSON references.
    pub ref_field: Option<String>,
    /// Bootstrap resamples for intervals; 0 for none.
    pub bootstrap: usize,
    /// Bootstrap seed.
    pub seed: u64,
    /// Interval coverage.
    pub confidence: f64,
    /// ROUGE with the Porter stemmer.
    pub rouge_stemmer: bool,
    /// Class names in id order (for probability columns); else sorted.
    pub labels: Option<Vec<String>>,
}

impl Default for ScoreOptions {
    fn default() -> Self {
        ScoreOptions {
            pred_field: None,
            ref_field: None,
            bootstrap: 0,
            seed: 12345,
            confidence: 0.95,
            rouge_stemmer: true,
            labels: None,
        }
    }
}

const PRED_FIELDS: [&str; 6] = ["prediction", "pred", "output", "hypothesis", "text", "label"];
const REF_FIELDS: [&str; 6] = ["reference", "references", "ref", "answer", "target", "label"];

fn to_json<T: serde::Serialize>(v: &T) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

/// The class names of a classification set, in id order: the given list, else the sorted set of
/// names seen (numerically when all are integers).
pub(crate) fn class_names(seen: &[String], given: Option<&Vec<String>>) -> Vec<String> {
    if let Some(g) = given {
        return g.clone();
    }
    let mut names: Vec<String> = seen.to_vec();
    names.sort();
    names.dedup();
    if names.iter().all(|n| n.parse::<i64>().is_ok()) {
        names.sort_by_key(|n| n.parse::<i64>().unwrap_or(0));
    }
    names
}

fn label_string(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Predicted labels (and class probabilities, when present) of a classification set.
struct ClassInputs {
    names: Vec<String>,
    truth: Vec<usize>,
    pred: Vec<usize>,
    probs: Option<Vec<Vec<f64>>>,
}

fn read_class_inputs(pred: &Column, refs: &Column, o: &ScoreOptions) -> Result<ClassInputs> {
    pred.aligned_with(refs)?;
    let n = pred.items.len();
    let mut ref_labels = Vec::with_capacity(n);
    for i in 0..n {
        let v = refs.field(i, o.ref_field.as_deref(), &["label", "reference", "ref", "target"])?;
        ref_labels.push(label_string(v).ok_or_else(|| refs.error(i, format!("a label cannot be {}", kind(v))))?);
    }
    let mut pred_labels: Vec<Option<String>> = Vec::with_capacity(n);
    let mut probs: Vec<Vec<f64>> = Vec::new();
    for i in 0..n {
        let item = &pred.items[i].value;
        let p = match item {
            Value::Object(m) => ["probs", "probabilities", "scores"].iter().find_map(|k| m.get(*k)),
            _ => None,
        };
        if let Some(p) = p {
            let row: Option<Vec<f64>> = p
                .as_array()
                .map(|a| a.iter().filter_map(Value::as_f64).collect())
                .filter(|r: &Vec<f64>| r.len() == p.as_array().map_or(0, Vec::len) && r.iter().all(|x| x.is_finite()));
            probs.push(row.ok_or_else(|| pred.error(i, "probabilities must be a list of finite numbers"))?);
        } else if !probs.is_empty() {
            return Err(pred.error(i, "has no probabilities but earlier lines do"));
        }
        let explicit = match item {
            Value::Object(m) => match &o.pred_field {
                Some(f) => m.get(f),
                None => ["prediction", "pred", "label"].iter().find_map(|k| m.get(*k)),
            },
            other => Some(other),
        };
        match explicit {
            Some(v) => pred_labels
                .push(Some(label_string(v).ok_or_else(|| pred.error(i, format!("a label cannot be {}", kind(v))))?)),
            None if p.is_some() => pred_labels.push(None),
            None => return Err(pred.error(i, "no prediction: give a label field or class probabilities")),
        }
    }
    let mut seen = ref_labels.clone();
    seen.extend(pred_labels.iter().flatten().cloned());
    let names = class_names(&seen, o.labels.as_ref());
    let id = |s: &str, col: &Column, i: usize| -> Result<usize> {
        names
            .iter()
            .position(|n| n == s)
            .ok_or_else(|| col.error(i, format!("label '{s}' is not in the label list {names:?}; add it to --labels")))
    };
    let truth: Vec<usize> = ref_labels.iter().enumerate().map(|(i, s)| id(s, refs, i)).collect::<Result<_>>()?;
    let mut pred_ids = Vec::with_capacity(n);
    for (i, l) in pred_labels.iter().enumerate() {
        pred_ids.push(match l {
            Some(s) => id(s, pred, i)?,
            None => argmax(&probs[i]),
        });
    }
    let probs = if probs.is_empty() {
        None
    } else {
        if let Some(i) = probs.iter().position(|r| r.len() != names.len()) {
            return Err(pred.error(
                i,
                format!(
                    "{} probabilities for {} classes {:?}; pass --labels in column order",
                    probs[i].len(),
                    names.len(),
                    names
                ),
            ));
        }
        Some(probs)
    };
    Ok(ClassInputs { names, truth, pred: pred_ids, probs })
}

/// Classification: accuracy, P/R/F1 (per class, micro, macro, weighted), MCC, the confusion
/// matrix, and with probabilities ROC-AUC, ECE with its reliability table, and Brier.
pub fn classification(pred: &Column, refs: &Column, compare: Option<&Column>, o: &ScoreOptions) -> Result<Value> {
    let c = read_class_inputs(pred, refs, o)?;
    let report = precision_recall_f1(&c.truth, &c.pred)?;
    let cm = Confusion::new(&c.truth, &c.pred)?;
    let name = |id: usize| c.names[id].clone();
    let mut per_class = Map::new();
    for (id, s) in report.classes.iter().zip(&report.per_class) {
        per_class.insert(name(*id), to_json(s));
    }
    let mut out = json!({
        "examples": c.truth.len(),
        "accuracy": accuracy(&c.truth, &c.pred)?,
        "precision_micro": report.micro.precision, "recall_micro": report.micro.recall, "f1_micro": report.micro.f1,
        "precision_macro": report.macro_avg.precision, "recall_macro": report.macro_avg.recall, "f1_macro": report.macro_avg.f1,
        "precision_weighted": report.weighted.precision, "recall_weighted": report.weighted.recall,
        "f1_weighted": report.weighted.f1,
        "mcc": matthews_corrcoef(&c.truth, &c.pred)?,
        "per_class": per_class,
        "confusion": {"labels": cm.classes.iter().map(|&i| name(i)).collect::<Vec<_>>(), "matrix": cm.counts},
    });
    if let Some(p) = &c.probs {
        out["roc_auc"] = match roc::roc_auc_ovr(&c.truth, p) {
            Ok(v) => json!(v),
            Err(e) => json!({"error": e.to_string()}),
        };
        let cal = calibration(&c.truth, p, ECE_BINS)?;
        out["ece"] = json!(cal.ece);
        out["reliability"] = to_json(&cal.bins);
        out["brier"] = json!(brier(&c.truth, p)?);
    }
    if o.bootstrap > 0 {
        let (t, pr) = (&c.truth, &c.pred);
        let acc = |idx: &[usize]| idx.iter().filter(|&&i| t[i] == pr[i]).count() as f64 / idx.len() as f64;
        let sub = |idx: &[usize]| -> (Vec<usize>, Vec<usize>) { idx.iter().map(|&i| (t[i], pr[i])).unzip() };
        let f1 = |idx: &[usize]| {
            let (a, b) = sub(idx);
            precision_recall_f1(&a, &b).map_or(0.0, |r| r.macro_avg.f1)
        };
        let mcc = |idx: &[usize]| {
            let (a, b) = sub(idx);
            matthews_corrcoef(&a, &b).unwrap_or(0.0)
        };
        let n = t.len();
        out["ci"] = json!({
            "accuracy": bootstrap(n, o.bootstrap, o.seed, o.confidence, acc),
            "f1_macro": bootstrap(n, o.bootstrap, o.seed, o.confidence, f1),
            "mcc": bootstrap(n, o.bootstrap, o.seed, o.confidence, mcc),
        });
    }
    if let Some(base) = compare {
        let b = read_class_inputs(base, refs, o)?;
        if b.names != c.names {
            return Err(EvalError::invalid("paired test", "the two systems use different label sets; pass --labels"));
        }
        let (t, pa, pb) = (&c.truth, &b.pred, &c.pred);
        let acc = |p: &[usize], idx: &[usize]| idx.iter().filter(|&&i| t[i] == p[i]).count() as f64 / idx.len() as f64;
        let test = paired_bootstrap(t.len(), o.bootstrap.max(1000), o.seed, |i| acc(pa, i), |i| acc(pb, i));
        out["paired_test"] = json!({ "accuracy": test });
    }
    Ok(out)
}

/// Regression: MSE, MAE, R², Pearson, Spearman.
pub fn regression(pred: &Column, refs: &Column, o: &ScoreOptions) -> Result<Value> {
    pred.aligned_with(refs)?;
    let n = pred.items.len();
    let p: Vec<f64> = (0..n).map(|i| pred.number(i, o.pred_field.as_deref(), &PRED_FIELDS)).collect::<Result<_>>()?;
    let t: Vec<f64> = (0..n).map(|i| refs.number(i, o.ref_field.as_deref(), &REF_FIELDS)).collect::<Result<_>>()?;
    let s = regression::regression(&t, &p)?;
    let mut out = to_json(&s);
    out["examples"] = json!(n);
    if o.bootstrap > 0 {
        let pick = |idx: &[usize]| -> (Vec<f64>, Vec<f64>) { idx.iter().map(|&i| (t[i], p[i])).unzip() };
        let mse = |idx: &[usize]| idx.iter().map(|&i| (t[i] - p[i]).powi(2)).sum::<f64>() / idx.len() as f64;
        let pearson = |idx: &[usize]| {
            let (a, b) = pick(idx);
            regression::pearson(&a, &b).unwrap_or(f64::NAN)
        };
        let spearman = |idx: &[usize]| {
            let (a, b) = pick(idx);
            regression::spearman(&a, &b).unwrap_or(f64::NAN)
        };
        out["ci"] = json!({
            "mse": bootstrap(n, o.bootstrap, o.seed, o.confidence, mse),
            "pearson": bootstrap(n, o.bootstrap, o.seed, o.confidence, pearson),
            "spearman": bootstrap(n, o.bootstrap, o.seed, o.confidence, spearman),
        });
    }
    Ok(out)
}

/// Hypotheses and references of a generation set; `refs` may be several aligned files, or one
/// file with lists.
fn read_generation(pred: &Column, refs: &[Column], o: &ScoreOptions) -> Result<(Vec<String>, Vec<Vec<String>>)> {
    let n = pred.items.len();
    let hyps: Vec<String> =
        (0..n).map(|i| pred.string(i, o.pred_field.as_deref(), &PRED_FIELDS)).collect::<Result<_>>()?;
    let mut all: Vec<Vec<String>> = vec![Vec::new(); n];
    for r in refs {
        pred.aligned_with(r)?;
        for (i, slot) in all.iter_mut().enumerate() {
            slot.extend(r.strings(i, o.ref_field.as_deref(), &REF_FIELDS)?);
        }
    }
    if let Some(i) = all.iter().position(Vec::is_empty) {
        return Err(refs[0].error(i, "no reference for this line"));
    }
    Ok((hyps, all))
}

/// Per-example generation scores kept for bootstrap and paired tests.
struct GenerationParts {
    bleu: Vec<bleu::BleuStats>,
    chrf: Vec<chrf::ChrfStats>,
    chrf_pp: Vec<chrf::ChrfStats>,
    rouge: Vec<rouge::RougeScores>,
    em: Vec<f64>,
    f1: Vec<f64>,
    gsm8k: Option<Vec<f64>>,
}

fn generation_parts(hyps: &[String], refs: &[Vec<String>], stem: bool) -> Result<GenerationParts> {
    use rayon::prelude::*;
    let has_gsm8k = refs.iter().any(|r| r.iter().any(|s| s.contains("####")));
    let pairs: Vec<(f64, f64, f64)> = hyps
        .par_iter()
        .zip(refs)
        .map(|(h, r)| {
            let em = squad::best_over(squad::exact_match, h, r);
            let f1 = squad::best_over(squad::token_f1, h, r);
            let g = squad::best_over(gsm8k::gsm8k_correct, h, r);
            (em, f1, g)
        })
        .collect();
    Ok(GenerationParts {
        bleu: bleu::corpus_stats(hyps, refs)?,
        chrf: chrf::corpus_stats(hyps, refs, ChrfVariant::Chrf)?,
        chrf_pp: chrf::corpus_stats(hyps, refs, ChrfVariant::ChrfPlusPlus)?,
        rouge: rouge::corpus_scores(hyps, refs, stem)?,
        em: pairs.iter().map(|p| p.0).collect(),
        f1: pairs.iter().map(|p| p.1).collect(),
        gsm8k: has_gsm8k.then(|| pairs.iter().map(|p| p.2).collect()),
    })
}

type Metric<'a> = Box<dyn Fn(&[usize]) -> f64 + Sync + 'a>;

/// The corpus metrics of generation as functions of a resample.
fn generation_metrics(p: &GenerationParts) -> BTreeMap<&'static str, Metric<'_>> {
    let mean = |v: &[f64], idx: &[usize]| 100.0 * idx.iter().map(|&i| v[i]).sum::<f64>() / idx.len() as f64;
    let mut m: BTreeMap<&'static str, Metric<'_>> = BTreeMap::new();
    m.insert(
        "bleu",
        Box::new(|idx| {
            let mut s = bleu::BleuStats::default();
            for &i in idx {
                s += p.bleu[i];
            }
            bleu::score_from_stats(&s).score
        }),
    );
    m.insert("chrf", Box::new(|idx| chrf::score_from_stats(&chrf::sum_stats(&p.chrf, idx.iter().copied()))));
    m.insert("chrf++", Box::new(|idx| chrf::score_from_stats(&chrf::sum_stats(&p.chrf_pp, idx.iter().copied()))));
    for (k, name) in ["rouge1", "rouge2", "rougeL", "rougeLsum"].into_iter().enumerate() {
        m.insert(name, Box::new(move |idx| rouge::mean_f(&p.rouge, idx.iter().copied())[k]));
    }
    m.insert("exact_match", Box::new(move |idx| mean(&p.em, idx)));
    m.insert("f1", Box::new(move |idx| mean(&p.f1, idx)));
    if let Some(g) = &p.gsm8k {
        m.insert("gsm8k_accuracy", Box::new(move |idx| mean(g, idx)));
    }
    m
}

/// Generation: BLEU (with its parts), chrF, chrF++, ROUGE-1/2/L/Lsum F-measures (0-1, as
/// rouge-score), SQuAD exact match and F1 (0-100, as the SQuAD script), and GSM8K accuracy
/// when the references carry "####" answers.
pub fn generation(pred: &Column, refs: &[Column], compare: Option<&Column>, o: &ScoreOptions) -> Result<Value> {
    let (hyps, all_refs) = read_generation(pred, refs, o)?;
    let parts = generation_parts(&hyps, &all_refs, o.rouge_stemmer)?;
    let metrics = generation_metrics(&parts);
    let all: Vec<usize> = (0..hyps.len()).collect();
    let mut total = bleu::BleuStats::default();
    for s in &parts.bleu {
        total += *s;
    }
    let mut out = json!({
        "examples": hyps.len(),
        "references_per_example": all_refs.iter().map(Vec::len).max().unwrap_or(0),
        "bleu_detail": to_json(&bleu::score_from_stats(&total)),
        "rouge_stemmer": o.rouge_stemmer,
    });
    for (name, f) in &metrics {
        out[*name] = json!(f(&all));
    }
    if o.bootstrap > 0 {
        let mut ci = Map::new();
        for (name, f) in &metrics {
            ci.insert(name.to_string(), to_json(&bootstrap(hyps.len(), o.bootstrap, o.seed, o.confidence, f)));
        }
        out["ci"] = Value::Object(ci);
    }
    if let Some(base) = compare {
        let (base_hyps, _) = read_generation(base, refs, o)?;
        let base_parts = generation_parts(&base_hyps, &all_refs, o.rouge_stemmer)?;
        let base_metrics = generation_metrics(&base_parts);
        let mut tests = Map::new();
        for (name, f) in &metrics {
            let fa = &base_metrics[name];
            let t = paired_bootstrap(hyps.len(), o.bootstrap.max(1000), o.seed, fa, f);
            tests.insert(name.to_string(), to_json(&t));
        }
        out["paired_test"] = Value::Object(tests);
    }
    Ok(out)
}

/// Language modelling from per-batch or per-example lines `{"loss": mean, "tokens": n,
/// "correct": k}` (or `"loss_sum"` instead of `"loss"`): token-weighted loss, perplexity and
/// token accuracy.
pub fn language_modelling(pred: &Column) -> Result<Value> {
    let mut acc = lm::LmAccumulator::default();
    let mut has_correct = true;
    for i in 0..pred.items.len() {
        let tokens = pred.number(i, Some("tokens"), &[])?;
        if tokens < 0.0 || tokens.fract() != 0.0 {
            return Err(pred.error(i, "tokens must be a non-negative integer"));
        }
        let correct = match &pred.items[i].value {
            Value::Object(m) if m.contains_key("correct") => pred.number(i, Some("correct"), &[])?,
            _ => {
                has_correct = false;
                0.0
            }
        };
        let is_sum = matches!(&pred.items[i].value, Value::Object(m) if m.contains_key("loss_sum"));
        if is_sum {
            acc.add(pred.number(i, Some("loss_sum"), &[])?, tokens as u64, correct as u64);
        } else {
            acc.add_mean(pred.number(i, Some("loss"), &[])?, tokens as u64, correct as u64);
        }
    }
    let s = acc.scores().ok_or_else(|| EvalError::invalid("lm", "no tokens scored"))?;
    let mut out = to_json(&s);
    if !has_correct {
        out["token_accuracy"] = Value::Null;
    }
    Ok(out)
}

/// Preference: reward accuracy and mean margin from lines `{"chosen": r1, "rejected": r2}`.
pub fn preference(pred: &Column, o: &ScoreOptions) -> Result<Value> {
    let n = pred.items.len();
    let c: Vec<f64> = (0..n).map(|i| pred.number(i, Some("chosen"), &[])).collect::<Result<_>>()?;
    let r: Vec<f64> = (0..n).map(|i| pred.number(i, Some("rejected"), &[])).collect::<Result<_>>()?;
    let s = preference::preference(&c, &r)?;
    let mut out = to_json(&s);
    if o.bootstrap > 0 {
        let acc = |idx: &[usize]| idx.iter().filter(|&&i| c[i] > r[i]).count() as f64 / idx.len() as f64;
        out["ci"] = json!({"reward_accuracy": bootstrap(n, o.bootstrap, o.seed, o.confidence, acc)});
    }
    Ok(out)
}
