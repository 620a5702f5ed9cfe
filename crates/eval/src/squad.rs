//! Exact match and token F1 with the SQuAD v1.1 evaluation script's answer normalization:
//! lowercase, drop ASCII punctuation, drop the articles a/an/the, collapse whitespace. With
//! several references, each prediction takes its best.

use std::collections::HashMap;

/// Normalizes an answer the way the SQuAD v1.1 script does.
pub fn normalize_answer(s: &str) -> String {
    let lower = s.to_lowercase();
    let no_punct: String = lower.chars().filter(|c| !c.is_ascii_punctuation()).collect();
    // Remove whole words "a", "an", "the" (regex \b(a|an|the)\b -> " ").
    let mut out = String::with_capacity(no_punct.len());
    let mut word = String::new();
    let flush = |word: &mut String, out: &mut String| {
        if matches!(word.as_str(), "a" | "an" | "the") {
            out.push(' ');
        } else {
            out.push_str(word);
        }
        word.clear();
    };
    for c in no_punct.chars() {
        if c.is_alphanumeric() || c == '_' {
            word.push(c);
        } else {
            flush(&mut word, &mut out);
            out.push(c);
        }
    }
    flush(&mut word, &mut out);
    crate::text::py_split(&out).collect::<Vec<_>>().join(" ")
}

/// 1.0 when the normalized answers are equal.
pub fn exact_match(pred: &str, reference: &str) -> f64 {
    f64::from(u8::from(normalize_answer(pred) == normalize_answer(reference)))
}

/// Token-overlap F1 of the normalized answers.
pub fn token_f1(pred: &str, reference: &str) -> f64 {
    let p = normalize_answer(pred);
    let r = normalize_answer(reference);
    let pt: Vec<&str> = crate::text::py_split(&p).collect();
    let rt: Vec<&str> = crate::text::py_split(&r).collect();
    let mut counts: HashMap<&str, i64> = HashMap::new();
    for t in &rt {
        *counts.entry(t).or_default() += 1;
    }
    let mut same = 0usize;
    for t in &pt {
        if let Some(c) = counts.get_mut(t) {
            if *c > 0 {
                *c -= 1;
                same += 1;
            }
        }
    }
    if same == 0 {
        return 0.0;
    }
    let precision = same as f64 / pt.len() as f64;
    let recall = same as f64 / rt.len() as f64;
    2.0 * precision * recall / (precision + recall)
}

/// The best of `metric` over the references (0 with none).
pub fn best_over<F: Fn(&str, &str) -> f64>(metric: F, pred: &str, refs: &[String]) -> f64 {
    refs.iter().map(|r| metric(pred, r)).fold(0.0, f64::max)
}
