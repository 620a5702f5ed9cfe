//! ROUGE-1/2/L/Lsum as Google's rouge-score computes them (its default tokenizer: lowercase,
//! non-alphanumerics to spaces, the Porter stemmer on words longer than 3 characters when
//! enabled). ROUGE-Lsum splits summaries into sentences on newlines and uses the union LCS.
//! With several references a prediction takes, per ROUGE type, the reference with the best
//! F-measure (rouge-score's `score_multi`). Corpus scores are means over pairs.

use std::collections::HashMap;

use rustc_hash::FxHashMap;
use serde::Serialize;

use crate::bleu::check_refs;
use crate::error::Result;
use crate::porter;

/// Precision, recall and F-measure of one ROUGE type.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct RougeScore {
    /// Precision.
    pub precision: f64,
    /// Recall.
    pub recall: f64,
    /// F-measure (β = 1).
    pub fmeasure: f64,
}

impl RougeScore {
    fn new(precision: f64, recall: f64) -> RougeScore {
        let fmeasure = if precision + recall > 0.0 { 2.0 * precision * recall / (precision + recall) } else { 0.0 };
        RougeScore { precision, recall, fmeasure }
    }
}

/// The four ROUGE scores of one pair.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct RougeScores {
    /// Unigram overlap.
    pub rouge1: RougeScore,
    /// Bigram overlap.
    pub rouge2: RougeScore,
    /// Longest common subsequence over the whole text.
    pub rouge_l: RougeScore,
    /// Summary-level LCS over newline-separated sentences.
    pub rouge_lsum: RougeScore,
}

/// rouge-score's default tokenizer.
pub fn tokenize(text: &str, stem: bool) -> Vec<String> {
    let lower = text.to_lowercase();
    let mut tokens = Vec::new();
    for word in lower.split(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit())) {
        if word.is_empty() {
            continue;
        }
        tokens.push(if stem && word.len() > 3 { porter::stem(word) } else { word.to_string() });
    }
    tokens.retain(|t| !t.is_empty() && t.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()));
    tokens
}

fn ngram_score(target: &[u32], pred: &[u32], n: usize) -> RougeScore {
    fn count(t: &[u32], n: usize) -> FxHashMap<&[u32], u32> {
        let mut m: FxHashMap<&[u32], u32> = FxHashMap::default();
        for w in t.windows(n) {
            *m.entry(w).or_default() += 1;
        }
        m
    }
    let (tc, pc) = (count(target, n), count(pred, n));
    let overlap: u32 = tc.iter().map(|(g, &c)| c.min(pc.get(g).copied().unwrap_or(0))).sum();
    let t_total = target.len().saturating_sub(n - 1).max(1);
    let p_total = pred.len().saturating_sub(n - 1).max(1);
    RougeScore::new(overlap as f64 / p_total as f64, overlap as f64 / t_total as f64)
}

/// LCS length table, (len(a)+1) × (len(b)+1), row-major.
fn lcs_table(a: &[u32], b: &[u32]) -> Vec<u32> {
    let cols = b.len() + 1;
    let mut t = vec![0u32; (a.len() + 1) * cols];
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            t[i * cols + j] = if a[i - 1] == b[j - 1] {
                t[(i - 1) * cols + j - 1] + 1
            } else {
                t[(i - 1) * cols + j].max(t[i * cols + j - 1])
            };
        }
    }
    t
}

fn lcs_len(a: &[u32], b: &[u32]) -> u32 {
    // Two rows suffice for the length.
    let mut prev = vec![0u32; b.len() + 1];
    let mut cur = vec![0u32; b.len() + 1];
    for &x in a {
        for j in 1..=b.len() {
            cur[j] = if x == b[j - 1] { prev[j - 1] + 1 } else { prev[j].max(cur[j - 1]) };
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

fn lcs_score(target: &[u32], pred: &[u32]) -> RougeScore {
    if target.is_empty() || pred.is_empty() {
        return RougeScore::default();
    }
    let l = lcs_len(target, pred) as f64;
    RougeScore::new(l / pred.len() as f64, l / target.len() as f64)
}

/// Indices into `a` of the LCS found by rouge-score's backtrack.
fn lcs_indices(a: &[u32], b: &[u32]) -> Vec<usize> {
    let t = lcs_table(a, b);
    let cols = b.len() + 1;
    let (mut i, mut j) = (a.len(), b.len());
    let mut out = Vec::new();
    while i > 0 && j > 0 {
        if a[i - 1] == b[j - 1] {
            out.push(i - 1);
            i -= 1;
            j -= 1;
        } else if t[i * cols + j - 1] > t[(i - 1) * cols + j] {
            j -= 1;
        } else {
            i -= 1;
        }
    }
    out.reverse();
    out
}

fn summary_lcs_score(target: &[Vec<u32>], pred: &[Vec<u32>]) -> RougeScore {
    if target.is_empty() || pred.is_empty() {
        return RougeScore::default();
    }
    let m: usize = target.iter().map(Vec::len).sum();
    let n: usize = pred.iter().map(Vec::len).sum();
    if m == 0 || n == 0 {
        return RougeScore::default();
    }
    let mut cnt_r: HashMap<u32, i64> = HashMap::new();
    let mut cnt_c: HashMap<u32, i64> = HashMap::new();
    for s in target {
        for &t in s {
            *cnt_r.entry(t).or_default() += 1;
        }
    }
    for s in pred {
        for &t in s {
            *cnt_c.entry(t).or_default() += 1;
        }
    }
    let mut hits = 0usize;
    for r in target {
        let mut union: Vec<usize> = pred.iter().flat_map(|c| lcs_indices(r, c)).collect();
        union.sort_unstable();
        union.dedup();
        for i in union {
            let t = r[i];
            let (c, rr) = (cnt_c.entry(t).or_default(), *cnt_r.get(&t).unwrap_or(&0));
            if *c > 0 && rr > 0 {
                *c -= 1;
                *cnt_r.get_mut(&t).expect("counted") -= 1;
                hits += 1;
            }
        }
    }
    RougeScore::new(hits as f64 / n as f64, hits as f64 / m as f64)
}

/// Maps tokens to ids so that comparisons are integer compares.
#[derive(Default)]
struct Vocab(FxHashMap<String, u32>);

impl Vocab {
    fn ids(&mut self, tokens: Vec<String>) -> Vec<u32> {
        tokens
            .into_iter()
            .map(|t| {
                let next = self.0.len() as u32;
                *self.0.entry(t).or_insert(next)
            })
            .collect()
    }
}

struct Prepared {
    tokens: Vec<u32>,
    sentences: Vec<Vec<u32>>,
}

fn prepare(text: &str, stem: bool, vocab: &mut Vocab) -> Prepared {
    let tokens = vocab.ids(tokenize(text, stem));
    let sentences = text.split('\n').filter(|s| !s.is_empty()).map(|s| vocab.ids(tokenize(s, stem))).collect();
    Prepared { tokens, sentences }
}

/// ROUGE scores of one prediction against one reference.
fn score_pair(target: &Prepared, pred: &Prepared) -> RougeScores {
    RougeScores {
        rouge1: ngram_score(&target.tokens, &pred.tokens, 1),
        rouge2: ngram_score(&target.tokens, &pred.tokens, 2),
        rouge_l: lcs_score(&target.tokens, &pred.tokens),
        rouge_lsum: summary_lcs_score(&target.sentences, &pred.sentences),
    }
}

/// ROUGE scores of `pred` against its references (best F-measure per type; the first on ties).
pub fn score(pred: &str, refs: &[&str], stem: bool) -> RougeScores {
    let mut vocab = Vocab::default();
    let p = prepare(pred, stem, &mut vocab);
    let mut best: Option<RougeScores> = None;
    for r in refs {
        let s = score_pair(&prepare(r, stem, &mut vocab), &p);
        best = Some(match best {
            None => s,
            Some(b) => {
                let pick = |old: RougeScore, new: RougeScore| if new.fmeasure > old.fmeasure { new } else { old };
                RougeScores {
                    rouge1: pick(b.rouge1, s.rouge1),
                    rouge2: pick(b.rouge2, s.rouge2),
                    rouge_l: pick(b.rouge_l, s.rouge_l),
                    rouge_lsum: pick(b.rouge_lsum, s.rouge_lsum),
                }
            }
        });
    }
    best.unwrap_or_default()
}

/// Per-pair ROUGE scores of a corpus.
pub fn corpus_scores(hyps: &[String], refs: &[Vec<String>], stem: bool) -> Result<Vec<RougeScores>> {
    use rayon::prelude::*;
    check_refs("rouge", hyps, refs)?;
    Ok(hyps
        .par_iter()
        .zip(refs)
        .map(|(h, r)| score(h, &r.iter().map(String::as_str).collect::<Vec<_>>(), stem))
        .collect())
}

/// Mean F-measures (rouge1, rouge2, rougeL, rougeLsum) of per-pair scores over `idx`.
pub fn mean_f(scores: &[RougeScores], idx: impl Iterator<Item = usize>) -> [f64; 4] {
    let mut sum = [0.0; 4];
    let mut n = 0usize;
    for i in idx {
        let s = &scores[i];
        for (acc, v) in sum.iter_mut().zip([s.rouge1, s.rouge2, s.rouge_l, s.rouge_lsum]) {
            *acc += v.fmeasure;
        }
        n += 1;
    }
    sum.map(|v| if n == 0 { 0.0 } else { v / n as f64 })
}
