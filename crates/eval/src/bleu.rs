//! Corpus BLEU with sacrebleu's defaults: 13a tokenization, 4-gram precision, exponential
//! smoothing, brevity penalty against the closest reference length (the shorter on ties), and
//! any number of references per segment.

use rustc_hash::FxHashMap;
use serde::Serialize;

use crate::error::{EvalError, Result};
use crate::text::{py_rstrip, py_split, tokenize_13a};

/// The n-gram order BLEU uses.
pub const MAX_ORDER: usize = 4;

/// Sufficient statistics of one segment; corpus BLEU is computed from their sum, which is
/// what makes bootstrap resampling cheap.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct BleuStats {
    /// Hypothesis length in tokens.
    pub hyp_len: u64,
    /// The closest reference length.
    pub ref_len: u64,
    /// Clipped n-gram matches per order.
    pub correct: [u64; MAX_ORDER],
    /// Hypothesis n-grams per order.
    pub total: [u64; MAX_ORDER],
}

impl std::ops::AddAssign for BleuStats {
    fn add_assign(&mut self, o: BleuStats) {
        self.hyp_len += o.hyp_len;
        self.ref_len += o.ref_len;
        for n in 0..MAX_ORDER {
            self.correct[n] += o.correct[n];
            self.total[n] += o.total[n];
        }
    }
}

/// A BLEU score with its parts, as sacrebleu reports them.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct BleuScore {
    /// BLEU, 0-100.
    pub score: f64,
    /// Smoothed n-gram precisions, 0-100.
    pub precisions: [f64; MAX_ORDER],
    /// Brevity penalty.
    pub bp: f64,
    /// Hypothesis length.
    pub sys_len: u64,
    /// Reference length.
    pub ref_len: u64,
}

/// N-gram counts keyed by the n-gram's token ids (each ≥ 1, 32 bits) packed into one integer:
/// exact, and much cheaper to hash and compare than slices of strings.
type Ngrams = FxHashMap<u128, u32>;

fn ngrams(ids: &[u32]) -> Ngrams {
    let mut m = Ngrams::with_capacity_and_hasher(ids.len() * MAX_ORDER, Default::default());
    for n in 1..=MAX_ORDER {
        for w in ids.windows(n) {
            let key = w.iter().fold(0u128, |k, &id| (k << 32) | u128::from(id));
            *m.entry(key).or_default() += 1;
        }
    }
    m
}

/// Gives each distinct token of a segment an id from 1.
#[derive(Default)]
struct Interner<'a>(FxHashMap<&'a str, u32>);

impl<'a> Interner<'a> {
    fn ids(&mut self, words: impl Iterator<Item = &'a str>) -> Vec<u32> {
        words
            .map(|w| {
                let next = self.0.len() as u32 + 1;
                *self.0.entry(w).or_insert(next)
            })
            .collect()
    }
}

/// The 13a-tokenized form BLEU scores (after sacrebleu's right-strip).
pub fn preprocess(s: &str) -> String {
    tokenize_13a(py_rstrip(s))
}

/// Statistics of one hypothesis against its references.
pub fn segment_stats(hyp: &str, refs: &[&str]) -> BleuStats {
    let hyp_tok = preprocess(hyp);
    let ref_tok: Vec<String> = refs.iter().map(|r| preprocess(r)).collect();
    let mut interner = Interner::default();
    let hyp_words = interner.ids(py_split(&hyp_tok));
    let ref_words: Vec<Vec<u32>> = ref_tok.iter().map(|r| interner.ids(py_split(r))).collect();
    let mut ref_max = Ngrams::default();
    for words in &ref_words {
        for (g, c) in ngrams(words) {
            let e = ref_max.entry(g).or_default();
            *e = (*e).max(c);
        }
    }
    let hyp_len = hyp_words.len();
    let mut closest: Option<(usize, usize)> = None; // (diff, len)
    for w in &ref_words {
        let diff = hyp_len.abs_diff(w.len());
        closest = match closest {
            None => Some((diff, w.len())),
            Some((d, l)) if diff < d || (diff == d && w.len() < l) => Some((diff, w.len())),
            keep => keep,
        };
    }
    let mut s = BleuStats { hyp_len: hyp_len as u64, ref_len: closest.map_or(0, |c| c.1) as u64, ..Default::default() };
    for (g, c) in ngrams(&hyp_words) {
        let n = (127 - g.leading_zeros() as usize) / 32;
        s.total[n] += u64::from(c);
        if let Some(&r) = ref_max.get(&g) {
            s.correct[n] += u64::from(c.min(r));
        }
    }
    s
}

fn my_log(x: f64) -> f64 {
    if x == 0.0 {
        -9_999_999_999.0
    } else {
        x.ln()
    }
}

/// BLEU from summed statistics (sacrebleu's `compute_bleu` with `smooth_method="exp"`).
pub fn score_from_stats(s: &BleuStats) -> BleuScore {
    let mut bp = 1.0;
    if s.hyp_len < s.ref_len {
        bp = if s.hyp_len > 0 { (1.0 - s.ref_len as f64 / s.hyp_len as f64).exp() } else { 0.0 };
    }
    let mut precisions = [0.0; MAX_ORDER];
    let base = BleuScore { score: 0.0, precisions, bp, sys_len: s.hyp_len, ref_len: s.ref_len };
    if s.correct.iter().all(|&c| c == 0) {
        return base;
    }
    let mut smooth = 1.0;
    for (p, (&correct, &total)) in precisions.iter_mut().zip(s.correct.iter().zip(&s.total)) {
        if total == 0 {
            break;
        }
        if correct == 0 {
            smooth *= 2.0;
            *p = 100.0 / (smooth * total as f64);
        } else {
            *p = 100.0 * correct as f64 / total as f64;
        }
    }
    let score = bp * (precisions.iter().map(|&p| my_log(p)).sum::<f64>() / MAX_ORDER as f64).exp();
    BleuScore { score, precisions, ..base }
}

/// Per-segment statistics of a corpus: `refs[i]` holds segment i's references.
pub fn corpus_stats(hyps: &[String], refs: &[Vec<String>]) -> Result<Vec<BleuStats>> {
    use rayon::prelude::*;
    check_refs("bleu", hyps, refs)?;
    Ok(hyps
        .par_iter()
        .zip(refs)
        .map(|(h, r)| segment_stats(h, &r.iter().map(String::as_str).collect::<Vec<_>>()))
        .collect())
}

/// Corpus BLEU of `hyps` against `refs` (segment i against `refs[i]`).
pub fn corpus_bleu(hyps: &[String], refs: &[Vec<String>]) -> Result<BleuScore> {
    let mut total = BleuStats::default();
    for s in corpus_stats(hyps, refs)? {
        total += s;
    }
    Ok(score_from_stats(&total))
}

/// Checks that every hypothesis has at least one reference.
pub(crate) fn check_refs(metric: &'static str, hyps: &[String], refs: &[Vec<String>]) -> Result<()> {
    crate::error::same_len(metric, hyps.len(), refs.len())?;
    if let Some(i) = refs.iter().position(Vec::is_empty) {
        return Err(EvalError::invalid(metric, format!("segment {i} has no reference")));
    }
    Ok(())
}
