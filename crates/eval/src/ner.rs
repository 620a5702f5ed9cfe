//! Entity-level scores of tagged sequences (named entities in IOB1/IOB2/IOBES tags), chunked
//! the way conlleval and seqeval's default mode do: a chunk also starts at an `I-` after `O`
//! or at a change of type, so ill-formed predictions are scored as those tools score them.

use std::collections::HashSet;

use crate::error::{EvalError, Result};

/// One entity: its type and the inclusive word range it spans.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Entity {
    /// The type (`PER` of `B-PER`; `_` for bare tags).
    pub kind: String,
    /// First word.
    pub start: usize,
    /// Last word (inclusive).
    pub end: usize,
}

/// Micro-averaged entity scores.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EntityScores {
    /// Predicted entities that are exactly right, over all predicted.
    pub precision: f64,
    /// True entities found exactly, over all true.
    pub recall: f64,
    /// Harmonic mean of the two (0 when both are 0).
    pub f1: f64,
}

/// The prefix letter and the type of a tag: `B-PER` → (`B`, `PER`), `O` → (`O`, `_`).
fn split(tag: &str) -> (char, &str) {
    let mut chars = tag.chars();
    let prefix = chars.next().unwrap_or('O');
    let rest = chars.as_str();
    let kind = match rest.split_once('-') {
        Some((_, k)) => k,
        None => rest,
    };
    (prefix, if kind.is_empty() { "_" } else { kind })
}

fn end_of_chunk(prev: char, tag: char, prev_kind: &str, kind: &str) -> bool {
    matches!(prev, 'E' | 'S')
        || (matches!(prev, 'B' | 'I') && matches!(tag, 'B' | 'S' | 'O'))
        || (prev != 'O' && prev != '.' && prev_kind != kind)
}

fn start_of_chunk(prev: char, tag: char, prev_kind: &str, kind: &str) -> bool {
    matches!(tag, 'B' | 'S')
        || (matches!(prev, 'E' | 'S' | 'O') && matches!(tag, 'E' | 'I'))
        || (tag != 'O' && tag != '.' && prev_kind != kind)
}

/// The entities of one tag sequence.
pub fn entities<S: AsRef<str>>(tags: &[S]) -> Vec<Entity> {
    let mut out = Vec::new();
    let (mut prev, mut prev_kind, mut begin) = ('O', String::new(), 0);
    for (i, tag) in tags.iter().map(AsRef::as_ref).chain(std::iter::once("O")).enumerate() {
        let (t, kind) = split(tag);
        if end_of_chunk(prev, t, &prev_kind, kind) {
            out.push(Entity { kind: prev_kind.clone(), start: begin, end: i - 1 });
        }
        if start_of_chunk(prev, t, &prev_kind, kind) {
            begin = i;
        }
        prev = t;
        prev_kind = kind.to_string();
    }
    out
}

/// Micro-averaged entity precision, recall and F1 over sentences (`truth[i]` and `pred[i]`
/// tag the same words).
pub fn entity_scores<S: AsRef<str>>(truth: &[Vec<S>], pred: &[Vec<S>]) -> Result<EntityScores> {
    if truth.len() != pred.len() {
        return Err(EvalError::invalid(
            "entity_f1",
            format!("{} true and {} predicted sentences", truth.len(), pred.len()),
        ));
    }
    let (mut tp, mut n_true, mut n_pred) = (0usize, 0usize, 0usize);
    for (i, (t, p)) in truth.iter().zip(pred).enumerate() {
        if t.len() != p.len() {
            return Err(EvalError::invalid(
                "entity_f1",
                format!("sentence {i}: {} true tags and {} predicted", t.len(), p.len()),
            ));
        }
        let te: HashSet<Entity> = entities(t).into_iter().collect();
        let pe: HashSet<Entity> = entities(p).into_iter().collect();
        tp += te.intersection(&pe).count();
        n_true += te.len();
        n_pred += pe.len();
    }
    let ratio = |a: usize, b: usize| if b == 0 { 0.0 } else { a as f64 / b as f64 };
    let (precision, recall) = (ratio(tp, n_pred), ratio(tp, n_true));
    let f1 = if precision + recall == 0.0 { 0.0 } else { 2.0 * precision * recall / (precision + recall) };
    Ok(EntityScores { precision, recall, f1 })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_by_hand() {
        let e = entities(&["B-PER", "I-PER", "O", "B-LOC", "I-ORG", "O", "I-LOC"]);
        let got: Vec<(&str, usize, usize)> = e.iter().map(|x| (x.kind.as_str(), x.start, x.end)).collect();
        assert_eq!(got, vec![("PER", 0, 1), ("LOC", 3, 3), ("ORG", 4, 4), ("LOC", 6, 6)]);
        let s = entity_scores(&[vec!["B-PER", "I-PER", "O"]], &[vec!["B-PER", "O", "O"]]).unwrap();
        assert_eq!((s.precision, s.recall, s.f1), (0.0, 0.0, 0.0));
        assert!(entity_scores(&[vec!["O"]], &[vec!["O", "O"]]).is_err());
    }
}
