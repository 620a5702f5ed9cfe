//! chrF and chrF++ as sacrebleu computes them: character n-grams up to 6 (whitespace removed),
//! plus word uni- and bigrams for chrF++, β = 2, averaged precision and recall over the orders
//! that have n-grams on both sides. With several references a segment keeps the statistics of
//! the reference it scores best against.

use rustc_hash::FxHashMap;
use std::hash::Hash;

use crate::bleu::check_refs;
use crate::error::Result;
use crate::text::{is_py_space, py_split};

/// Character n-gram order.
pub const CHAR_ORDER: usize = 6;
/// β of the F-score (recall weighted β² times precision).
pub const BETA: f64 = 2.0;

/// Which chrF variant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChrfVariant {
    /// Character n-grams only.
    Chrf,
    /// Character n-grams plus word uni- and bigrams.
    ChrfPlusPlus,
}

impl ChrfVariant {
    fn word_order(self) -> usize {
        match self {
            ChrfVariant::Chrf => 0,
            ChrfVariant::ChrfPlusPlus => 2,
        }
    }

    fn orders(self) -> usize {
        CHAR_ORDER + self.word_order()
    }
}

/// Per-segment statistics: `[hyp n-grams, ref n-grams, matches]` for each order.
pub type ChrfStats = Vec<u64>;

fn counts<K: Hash + Eq + Copy>(items: &[K], n: usize) -> FxHashMap<&[K], u64> {
    let mut m = FxHashMap::default();
    for w in items.windows(n) {
        *m.entry(w).or_default() += 1;
    }
    m
}

fn match_stats<K: Hash + Eq>(hyp: &FxHashMap<&[K], u64>, reference: &FxHashMap<&[K], u64>, out: &mut ChrfStats) {
    let mut matched = 0;
    let mut hyp_count = 0;
    for (g, &c) in hyp {
        hyp_count += c;
        if let Some(&r) = reference.get(g) {
            matched += c.min(r);
        }
    }
    let ref_count: u64 = reference.values().sum();
    out.extend([if reference.is_empty() { 0 } else { hyp_count }, ref_count, matched]);
}

/// sacrebleu's punctuation split for chrF++ words: a word longer than one character loses one
/// trailing (or else one leading) ASCII punctuation mark into its own token.
fn words(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    for w in py_split(s) {
        let mut chars = w.chars();
        let (first, last) = (chars.next(), w.chars().next_back());
        if w.chars().nth(1).is_none() {
            out.push(w);
        } else if last.is_some_and(|c| c.is_ascii_punctuation()) {
            let cut = w.len() - last.map_or(0, char::len_utf8);
            out.extend([&w[..cut], &w[cut..]]);
        } else if first.is_some_and(|c| c.is_ascii_punctuation()) {
            let cut = first.map_or(0, char::len_utf8);
            out.extend([&w[..cut], &w[cut..]]);
        } else {
            out.push(w);
        }
    }
    out
}

/// The F-score of summed statistics (sacrebleu's `_compute_f_score`, no epsilon smoothing), 0-100.
pub fn score_from_stats(stats: &[u64]) -> f64 {
    let factor = BETA * BETA;
    let (mut avg_p, mut avg_r, mut eff) = (0.0, 0.0, 0);
    for s in stats.chunks(3) {
        let (n_hyp, n_ref, n_match) = (s[0], s[1], s[2]);
        if n_hyp > 0 && n_ref > 0 {
            avg_p += n_match as f64 / n_hyp as f64;
            avg_r += n_match as f64 / n_ref as f64;
            eff += 1;
        }
    }
    if eff == 0 {
        return 0.0;
    }
    avg_p /= eff as f64;
    avg_r /= eff as f64;
    if avg_p + avg_r == 0.0 {
        return 0.0;
    }
    100.0 * (1.0 + factor) * avg_p * avg_r / (factor * avg_p + avg_r)
}

/// Statistics of one hypothesis against its references.
pub fn segment_stats(hyp: &str, refs: &[&str], variant: ChrfVariant) -> ChrfStats {
    let hyp_chars: Vec<char> = hyp.chars().filter(|&c| !is_py_space(c)).collect();
    let hyp_words = words(hyp);
    let hyp_char_ngrams: Vec<_> = (1..=CHAR_ORDER).map(|n| counts(&hyp_chars, n)).collect();
    let hyp_word_ngrams: Vec<_> = (1..=variant.word_order()).map(|n| counts(&hyp_words, n)).collect();
    let mut best: Option<(f64, ChrfStats)> = None;
    for r in refs {
        let ref_chars: Vec<char> = r.chars().filter(|&c| !is_py_space(c)).collect();
        let ref_words = words(r);
        let mut stats = Vec::with_capacity(3 * variant.orders());
        for (n, h) in hyp_char_ngrams.iter().enumerate() {
            match_stats(h, &counts(&ref_chars, n + 1), &mut stats);
        }
        for (n, h) in hyp_word_ngrams.iter().enumerate() {
            match_stats(h, &counts(&ref_words, n + 1), &mut stats);
        }
        // sacrebleu picks the reference by the same F-score; the first wins ties.
        let f = score_from_stats(&stats);
        if best.as_ref().is_none_or(|(bf, _)| f > *bf) {
            best = Some((f, stats));
        }
    }
    best.map(|b| b.1).unwrap_or_else(|| vec![0; 3 * variant.orders()])
}

/// Per-segment statistics of a corpus.
pub fn corpus_stats(hyps: &[String], refs: &[Vec<String>], variant: ChrfVariant) -> Result<Vec<ChrfStats>> {
    use rayon::prelude::*;
    check_refs("chrf", hyps, refs)?;
    Ok(hyps
        .par_iter()
        .zip(refs)
        .map(|(h, r)| segment_stats(h, &r.iter().map(String::as_str).collect::<Vec<_>>(), variant))
        .collect())
}

/// Sums per-segment statistics.
pub fn sum_stats(stats: &[ChrfStats], idx: impl Iterator<Item = usize>) -> ChrfStats {
    let mut total = vec![0u64; stats.first().map_or(0, Vec::len)];
    for i in idx {
        for (t, s) in total.iter_mut().zip(&stats[i]) {
            *t += s;
        }
    }
    total
}

/// Corpus chrF (or chrF++) of `hyps` against `refs`, 0-100.
pub fn corpus_chrf(hyps: &[String], refs: &[Vec<String>], variant: ChrfVariant) -> Result<f64> {
    let stats = corpus_stats(hyps, refs, variant)?;
    Ok(score_from_stats(&sum_stats(&stats, 0..stats.len())))
}
