//! EDA, easy data augmentation for text classification (Wei & Zou, 2019): synonym replacement
//! (SR), random insertion of a synonym (RI), random swap (RS) and random deletion (RD), each
//! changing about `alpha` of a sentence's words, seeded. Synonyms come from the bundled list.

use std::collections::BTreeMap;

use serde::Serialize;

use super::synonyms::synonyms;
use crate::batch::SplitMix64;
use crate::example::{Example, Record};

/// One EDA operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EdaOp {
    /// Replace words that have synonyms by one of them.
    SynonymReplacement,
    /// Insert a synonym of a word at a random place.
    RandomInsertion,
    /// Swap two words.
    RandomSwap,
    /// Delete each word with probability alpha.
    RandomDeletion,
}

impl EdaOp {
    /// Every operation.
    pub const ALL: [EdaOp; 4] =
        [EdaOp::SynonymReplacement, EdaOp::RandomInsertion, EdaOp::RandomSwap, EdaOp::RandomDeletion];

    /// The operation's short name (sr, ri, rs, rd).
    pub fn name(self) -> &'static str {
        match self {
            EdaOp::SynonymReplacement => "sr",
            EdaOp::RandomInsertion => "ri",
            EdaOp::RandomSwap => "rs",
            EdaOp::RandomDeletion => "rd",
        }
    }

    /// The operation named `name`.
    pub fn parse(name: &str) -> Option<EdaOp> {
        EdaOp::ALL.into_iter().find(|o| o.name() == name)
    }
}

fn lower_core(w: &str) -> String {
    w.trim_matches(|c: char| !c.is_alphanumeric()).to_lowercase()
}

/// `text` with `op` applied at `alpha`; None when the operation cannot change it (no word with
/// synonyms, a single word).
pub fn eda(text: &str, op: EdaOp, alpha: f64, rng: &mut SplitMix64) -> Option<String> {
    let mut words: Vec<String> = text.split_whitespace().map(String::from).collect();
    if words.is_empty() {
        return None;
    }
    let n = ((alpha * words.len() as f64).round() as usize).max(1);
    match op {
        EdaOp::SynonymReplacement => {
            let mut candidates: Vec<usize> =
                (0..words.len()).filter(|&i| !synonyms(&lower_core(&words[i])).is_empty()).collect();
            if candidates.is_empty() {
                return None;
            }
            rng.shuffle(&mut candidates);
            for &i in candidates.iter().take(n) {
                let options = synonyms(&lower_core(&words[i]));
                words[i] = options[rng.below(options.len())].clone();
            }
        }
        EdaOp::RandomInsertion => {
            // The synonym lists of the original words (insertions shift positions).
            let candidates: Vec<&[String]> =
                words.iter().map(|w| synonyms(&lower_core(w))).filter(|s| !s.is_empty()).collect();
            if candidates.is_empty() {
                return None;
            }
            for _ in 0..n {
                let options = candidates[rng.below(candidates.len())];
                let at = rng.below(words.len() + 1);
                words.insert(at, options[rng.below(options.len())].clone());
            }
        }
        EdaOp::RandomSwap => {
            if words.len() < 2 {
                return None;
            }
            for _ in 0..n {
                let a = rng.below(words.len());
                let mut b = rng.below(words.len() - 1);
                if b >= a {
                    b += 1;
                }
                words.swap(a, b);
            }
        }
        EdaOp::RandomDeletion => {
            if words.len() < 2 {
                return None;
            }
            let kept: Vec<String> =
                words.iter().filter(|_| (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64 > alpha).cloned().collect();
            words = if kept.is_empty() { vec![words[rng.below(words.len())].clone()] } else { kept };
        }
    }
    let out = words.join(" ");
    (out != text.split_whitespace().collect::<Vec<_>>().join(" ")).then_some(out)
}

/// What augmenting a dataset did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct AugmentCounts {
    /// New rows per operation.
    pub added: BTreeMap<&'static str, usize>,
    /// Attempts that could not change their row (counted, not added).
    pub unchanged: usize,
    /// Rows that are not labeled texts (left as they are).
    pub skipped: usize,
}

/// `per_row` augmented copies of each of `rows` (indices into `records`), each made by one of
/// `ops` in turn; the copies carry their row's label and location.
pub fn augment_records(
    records: &[Record],
    rows: &[usize],
    ops: &[EdaOp],
    alpha: f64,
    per_row: usize,
    seed: u64,
) -> (Vec<Record>, AugmentCounts) {
    let mut rng = SplitMix64::new(seed ^ 0xEDA0_EDA0);
    let mut out = Vec::new();
    let mut counts = AugmentCounts::default();
    if ops.is_empty() {
        return (out, counts);
    }
    let mut turn = 0usize;
    for &i in rows {
        let r = &records[i];
        let Example::Labeled { text, .. } = &r.example else {
            counts.skipped += 1;
            continue;
        };
        for _ in 0..per_row {
            let op = ops[turn % ops.len()];
            turn += 1;
            match eda(text, op, alpha, &mut rng) {
                Some(new) => {
                    let mut copy = r.clone();
                    if let Example::Labeled { text, .. } = &mut copy.example {
                        *text = new;
                    }
                    *counts.added.entry(op.name()).or_default() += 1;
                    out.push(copy);
                }
                None => counts.unchanged += 1,
            }
        }
    }
    (out, counts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_operation_changes_the_sentence_as_described() {
        let text = "the movie was a great story about a brave friend";
        let mut rng = SplitMix64::new(1);
        let sr = eda(text, EdaOp::SynonymReplacement, 0.1, &mut rng).unwrap();
        assert_eq!(sr.split(' ').count(), 10);
        let ri = eda(text, EdaOp::RandomInsertion, 0.2, &mut rng).unwrap();
        assert_eq!(ri.split(' ').count(), 12);
        let rs = eda(text, EdaOp::RandomSwap, 0.1, &mut rng).unwrap();
        let (mut a, mut b): (Vec<&str>, Vec<&str>) = (rs.split(' ').collect(), text.split(' ').collect());
        a.sort();
        b.sort();
        assert_eq!(a, b);
        let rd = eda(text, EdaOp::RandomDeletion, 0.3, &mut rng).unwrap();
        assert!(rd.split(' ').count() < 10);
        assert_eq!(eda("zzz qqq", EdaOp::SynonymReplacement, 0.5, &mut rng), None);
        assert_eq!(eda("alone", EdaOp::RandomSwap, 0.5, &mut rng), None);
    }
}
