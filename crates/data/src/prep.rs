//! Dataset preparation: exact and normalized-text deduplication, emptiness and length filters,
//! seeded (optionally stratified) train/validation/test splits, and token-length statistics.
//! Every removed row is returned with its reason, never dropped silently.

use std::collections::{BTreeMap, HashSet};
use std::hash::{Hash, Hasher};

use crate::batch::SplitMix64;
use crate::encode::Encoded;
use crate::error::{DataError, Reject, Result, RowError};
use crate::example::{Example, Label, Message, Record};

/// How duplicates are recognised.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dedup {
    /// Keep duplicates.
    None,
    /// Identical content (roles, texts, labels).
    Exact,
    /// The same after lower-casing, dropping punctuation and collapsing whitespace.
    Normalized,
}

impl std::str::FromStr for Dedup {
    type Err = DataError;
    fn from_str(s: &str) -> Result<Dedup> {
        match s {
            "none" | "off" => Ok(Dedup::None),
            "exact" => Ok(Dedup::Exact),
            "normalized" | "normalised" => Ok(Dedup::Normalized),
            other => Err(DataError::Invalid(format!("dedup '{other}' is not one of none, exact, normalized"))),
        }
    }
}

/// Filters applied before training.
#[derive(Debug, Clone)]
pub struct FilterOptions {
    /// Duplicate removal.
    pub dedup: Dedup,
    /// Remove examples whose content is empty (no text, or no non-empty assistant reply).
    pub drop_empty: bool,
    /// Minimum content length in characters.
    pub min_chars: Option<usize>,
    /// Maximum content length in characters.
    pub max_chars: Option<usize>,
}

impl Default for FilterOptions {
    fn default() -> Self {
        FilterOptions { dedup: Dedup::None, drop_empty: true, min_chars: None, max_chars: None }
    }
}

fn push_messages<'a>(out: &mut Vec<&'a str>, msgs: &'a [Message]) {
    for m in msgs {
        out.push(m.role.as_str());
        out.push(&m.content);
    }
}

/// The texts an example is made of, in order, with role names between messages.
fn parts(e: &Example) -> Vec<&str> {
    let mut out = Vec::new();
    match e {
        Example::Chat { messages, .. } => push_messages(&mut out, messages),
        Example::Text(t) => out.push(t),
        Example::Labeled { text, text_pair, .. } => {
            out.push(text);
            if let Some(p) = text_pair {
                out.push(p);
            }
        }
        Example::Preference { prompt, chosen, rejected, .. } => {
            push_messages(&mut out, prompt);
            out.push("\u{1}chosen");
            push_messages(&mut out, chosen);
            out.push("\u{1}rejected");
            push_messages(&mut out, rejected);
        }
        Example::Unpaired { prompt, completion, desirable, .. } => {
            push_messages(&mut out, prompt);
            out.push(if *desirable { "\u{1}desirable" } else { "\u{1}undesirable" });
            push_messages(&mut out, completion);
        }
        Example::Tagged { tokens, tags } => {
            for (w, t) in tokens.iter().zip(tags) {
                out.push(w);
                out.push(t);
            }
        }
        Example::Pair { anchor, positive, negative } => {
            out.push(anchor);
            out.push("\u{1}positive");
            out.push(positive);
            if let Some(n) = negative {
                out.push("\u{1}negative");
                out.push(n);
            }
        }
    }
    out
}

/// Characters of content (message texts, not role names).
pub fn content_chars(e: &Example) -> usize {
    let count = |msgs: &[Message]| msgs.iter().map(|m| m.content.chars().count()).sum::<usize>();
    match e {
        Example::Chat { messages, .. } => count(messages),
        Example::Text(t) => t.chars().count(),
        Example::Labeled { text, text_pair, .. } => {
            text.chars().count() + text_pair.as_ref().map_or(0, |p| p.chars().count())
        }
        Example::Preference { prompt, chosen, rejected, .. } => count(prompt) + count(chosen) + count(rejected),
        Example::Unpaired { prompt, completion, .. } => count(prompt) + count(completion),
        Example::Tagged { tokens, .. } => tokens.iter().map(|w| w.chars().count()).sum(),
        Example::Pair { anchor, positive, negative } => {
            anchor.chars().count() + positive.chars().count() + negative.as_ref().map_or(0, |n| n.chars().count())
        }
    }
}

/// Whether an example has nothing to learn from.
pub fn is_empty(e: &Example) -> bool {
    let reply = |msgs: &[Message]| {
        msgs.iter()
            .any(|m| m.role == crate::Role::Assistant && (!m.content.trim().is_empty() || m.tool_calls.is_some()))
    };
    match e {
        Example::Chat { messages, .. } => !reply(messages),
        Example::Text(t) => t.trim().is_empty(),
        Example::Labeled { text, .. } => text.trim().is_empty(),
        Example::Preference { chosen, rejected, .. } => !reply(chosen) || !reply(rejected),
        Example::Unpaired { completion, .. } => !reply(completion),
        Example::Pair { anchor, positive, .. } => anchor.trim().is_empty() || positive.trim().is_empty(),
        Example::Tagged { tokens, .. } => tokens.is_empty(),
    }
}

/// Lower-cases, drops punctuation and symbols, and collapses whitespace.
pub fn normalize(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut space = false;
    for c in s.chars() {
        if c.is_whitespace() {
            space = !out.is_empty();
        } else if c.is_alphanumeric() {
            if space {
                out.push(' ');
                space = false;
            }
            out.extend(c.to_lowercase());
        }
    }
    out
}

/// A 128-bit content key (two independent SipHash-1-3 digests).
fn key(e: &Example, normalized: bool) -> u128 {
    let label = match e {
        Example::Labeled { label: Label::Class(c), .. } => c.clone(),
        Example::Labeled { label: Label::Value(v), .. } => v.to_string(),
        _ => String::new(),
    };
    let mut h1 = std::hash::DefaultHasher::new();
    let mut h2 = std::hash::DefaultHasher::new();
    0x7475_6e65u32.hash(&mut h2);
    for p in parts(e).into_iter().chain(std::iter::once(label.as_str())) {
        if normalized {
            let n = normalize(p);
            n.hash(&mut h1);
            n.hash(&mut h2);
        } else {
            p.hash(&mut h1);
            p.hash(&mut h2);
        }
    }
    (u128::from(h1.finish()) << 64) | u128::from(h2.finish())
}

/// Applies the filters; returns the kept records and one error per removed record (duplicates
/// name the row they repeat).
pub fn filter(records: Vec<Record>, opts: &FilterOptions) -> (Vec<Record>, Vec<RowError>) {
    let mut kept = Vec::with_capacity(records.len());
    let mut removed = Vec::new();
    let mut seen: std::collections::HashMap<u128, crate::Loc> = std::collections::HashMap::new();
    for r in records {
        if opts.drop_empty && is_empty(&r.example) {
            removed.push(RowError::new(&r.loc, None, "empty: no text to train on").kind(Reject::Filtered));
            continue;
        }
        let chars = content_chars(&r.example);
        if let Some(min) = opts.min_chars.filter(|&m| chars < m) {
            removed.push(
                RowError::new(&r.loc, None, format!("{chars} characters, under min_chars {min}"))
                    .kind(Reject::Filtered),
            );
            continue;
        }
        if let Some(max) = opts.max_chars.filter(|&m| chars > m) {
            removed.push(
                RowError::new(&r.loc, None, format!("{chars} characters, over max_chars {max}")).kind(Reject::Filtered),
            );
            continue;
        }
        if opts.dedup != Dedup::None {
            let k = key(&r.example, opts.dedup == Dedup::Normalized);
            if let Some(first) = seen.get(&k) {
                removed.push(RowError::new(&r.loc, None, format!("duplicate of {first}")).kind(Reject::Duplicate));
                continue;
            }
            seen.insert(k, r.loc.clone());
        }
        kept.push(r);
    }
    (kept, removed)
}

/// Split fractions (the rest is training data).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SplitFractions {
    /// Validation share, in [0, 1).
    pub validation: f64,
    /// Test share, in [0, 1).
    pub test: f64,
}

/// Three parts of a dataset.
#[derive(Debug, Clone, Default)]
pub struct Splits<T> {
    /// Training part.
    pub train: Vec<T>,
    /// Validation part.
    pub validation: Vec<T>,
    /// Test part.
    pub test: Vec<T>,
}

/// Splits `items` by a seed. With `strata` (one class key per item), every class is split in
/// the same proportions (each class's share rounded to the nearest item). The order inside each
/// part follows the input order, so a split is stable for a seed.
pub fn split<T>(items: Vec<T>, fractions: SplitFractions, seed: u64, strata: Option<&[String]>) -> Result<Splits<T>> {
    let SplitFractions { validation, test } = fractions;
    if !(0.0..1.0).contains(&validation) || !(0.0..1.0).contains(&test) || validation + test >= 1.0 {
        return Err(DataError::Invalid(format!(
            "split fractions validation={validation} test={test} must be in [0, 1) and sum below 1"
        )));
    }
    if let Some(s) = strata {
        if s.len() != items.len() {
            return Err(DataError::Invalid(format!("{} strata for {} items", s.len(), items.len())));
        }
    }
    let n = items.len();
    let mut groups: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for i in 0..n {
        groups.entry(strata.map_or("", |s| s[i].as_str())).or_default().push(i);
    }
    let mut part = vec![0u8; n]; // 0 train, 1 validation, 2 test
    let mut rng = SplitMix64::new(seed ^ 0x5EED_5917);
    for (_, mut idx) in groups {
        rng.shuffle(&mut idx);
        let nv = (validation * idx.len() as f64).round() as usize;
        let nt = ((test * idx.len() as f64).round() as usize).min(idx.len() - nv.min(idx.len()));
        for (k, &i) in idx.iter().enumerate() {
            part[i] = if k < nv {
                1
            } else if k < nv + nt {
                2
            } else {
                0
            };
        }
    }
    let mut out = Splits { train: Vec::new(), validation: Vec::new(), test: Vec::new() };
    for (item, p) in items.into_iter().zip(part) {
        match p {
            1 => out.validation.push(item),
            2 => out.test.push(item),
            _ => out.train.push(item),
        }
    }
    Ok(out)
}

/// Summary statistics of a set of lengths.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct LengthStats {
    /// Sequences.
    pub count: usize,
    /// Shortest.
    pub min: usize,
    /// Mean.
    pub mean: f64,
    /// Median (nearest rank).
    pub p50: usize,
    /// 95th percentile (nearest rank).
    pub p95: usize,
    /// Longest.
    pub max: usize,
    /// Sum.
    pub total: usize,
}

impl LengthStats {
    /// Statistics of `lengths`.
    pub fn of(lengths: &[usize]) -> LengthStats {
        if lengths.is_empty() {
            return LengthStats::default();
        }
        let mut v = lengths.to_vec();
        v.sort_unstable();
        let rank = |p: f64| v[((p * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1];
        let total: usize = v.iter().sum();
        LengthStats {
            count: v.len(),
            min: v[0],
            mean: total as f64 / v.len() as f64,
            p50: rank(0.5),
            p95: rank(0.95),
            max: v[v.len() - 1],
            total,
        }
    }
}

/// Token statistics of encoded (untruncated) examples against a maximum length.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct TokenStats {
    /// Lengths of all sequences (both sides of preference pairs).
    pub tokens: LengthStats,
    /// Trained tokens per sequence.
    pub trained: LengthStats,
    /// The maximum length compared against.
    pub max_length: Option<usize>,
    /// Sequences longer than it (they would be truncated or dropped).
    pub over_max_length: usize,
}

/// Token statistics of `encoded` (encode without a maximum length to see true lengths).
pub fn token_stats(encoded: &[Encoded], max_length: Option<usize>) -> TokenStats {
    let seqs: Vec<&crate::encode::Sequence> =
        encoded.iter().flat_map(|e| std::iter::once(&e.sequence).chain(e.rejected.as_ref())).collect();
    let lengths: Vec<usize> = seqs.iter().map(|s| s.len()).collect();
    let trained: Vec<usize> = seqs.iter().map(|s| s.trained()).collect();
    TokenStats {
        tokens: LengthStats::of(&lengths),
        trained: LengthStats::of(&trained),
        max_length,
        over_max_length: max_length.map_or(0, |m| lengths.iter().filter(|&&l| l > m).count()),
    }
}

/// The class of each record, for stratified splits (`None` when some record has no class).
pub fn class_strata(records: &[Record]) -> Option<Vec<String>> {
    records
        .iter()
        .map(|r| match &r.example {
            Example::Labeled { label: Label::Class(c), .. } => Some(c.clone()),
            _ => None,
        })
        .collect()
}

/// The fold (0..k) of each of `n` items for K-fold cross-validation, seeded. With `strata` (a
/// class key per item), each class is shuffled and dealt round-robin over the folds, continuing
/// where the previous class stopped, so every fold holds each class's count to within one item
/// of n_c/k and fold sizes differ by at most one (as scikit-learn's `StratifiedKFold`).
pub fn kfold_assignments(n: usize, k: usize, seed: u64, strata: Option<&[String]>) -> Result<Vec<usize>> {
    if k < 2 {
        return Err(DataError::Invalid(format!("cross-validation needs at least 2 folds, got {k}")));
    }
    if n < k {
        return Err(DataError::Invalid(format!("{n} rows cannot fill {k} folds; use fewer folds or more rows")));
    }
    let mut groups: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    match strata {
        Some(s) if s.len() == n => {
            for (i, key) in s.iter().enumerate() {
                groups.entry(key.as_str()).or_default().push(i);
            }
        }
        Some(s) => return Err(DataError::Invalid(format!("{} strata for {n} items", s.len()))),
        None => {
            groups.insert("", (0..n).collect());
        }
    }
    let mut rng = SplitMix64::new(seed ^ 0x5EED_F01D);
    let mut folds = vec![0; n];
    let mut next = 0;
    for items in groups.values_mut() {
        rng.shuffle(items);
        for &i in items.iter() {
            folds[i] = next % k;
            next += 1;
        }
    }
    Ok(folds)
}

/// Unique rows by a content key, for tests and reports: how many distinct examples there are.
pub fn distinct(records: &[Record], normalized: bool) -> usize {
    records.iter().map(|r| key(&r.example, normalized)).collect::<HashSet<_>>().len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalization() {
        assert_eq!(normalize("  Hello,   WORLD!\n\tÉté "), "hello world été");
    }

    #[test]
    fn stats_nearest_rank() {
        let s = LengthStats::of(&[5, 1, 3, 2, 4, 100, 6, 7, 8, 9]);
        assert_eq!((s.min, s.p50, s.p95, s.max, s.total), (1, 5, 100, 100, 145));
        assert!((s.mean - 14.5).abs() < 1e-12);
    }

    #[test]
    fn stratified_split_keeps_proportions() {
        let labels: Vec<String> =
            (0..1000).map(|i| if i % 10 == 0 { "rare".into() } else { "common".into() }).collect();
        let items: Vec<usize> = (0..1000).collect();
        let f = SplitFractions { validation: 0.1, test: 0.2 };
        let s = split(items.clone(), f, 7, Some(&labels)).unwrap();
        assert_eq!((s.train.len(), s.validation.len(), s.test.len()), (700, 100, 200));
        let rare = |v: &[usize]| v.iter().filter(|&&i| i % 10 == 0).count();
        assert_eq!((rare(&s.train), rare(&s.validation), rare(&s.test)), (70, 10, 20));
        let again = split(items, f, 7, Some(&labels)).unwrap();
        assert_eq!(s.test, again.test);
        assert!(split(vec![1], SplitFractions { validation: 0.6, test: 0.5 }, 0, None).is_err());
    }

    #[test]
    fn stratified_folds_hold_each_class_within_one_row_of_its_share() {
        // 3 classes of 50, 30 and 17 rows over 5 folds.
        let strata: Vec<String> = (0..97)
            .map(|i| {
                if i < 50 {
                    "a"
                } else if i < 80 {
                    "b"
                } else {
                    "c"
                }
                .to_string()
            })
            .collect();
        let folds = kfold_assignments(97, 5, 3, Some(&strata)).unwrap();
        for class in ["a", "b", "c"] {
            let n_c = strata.iter().filter(|s| *s == class).count() as f64;
            for f in 0..5 {
                let in_fold = (0..97).filter(|&i| folds[i] == f && strata[i] == class).count() as f64;
                assert!((in_fold - n_c / 5.0).abs() < 1.0, "class {class} fold {f}: {in_fold} of {n_c}");
            }
        }
        let sizes: Vec<usize> = (0..5).map(|f| folds.iter().filter(|&&x| x == f).count()).collect();
        assert!(sizes.iter().max().unwrap() - sizes.iter().min().unwrap() <= 1, "{sizes:?}");
        assert_eq!(folds, kfold_assignments(97, 5, 3, Some(&strata)).unwrap(), "seeded");
        assert_ne!(folds, kfold_assignments(97, 5, 4, Some(&strata)).unwrap());
        assert!(kfold_assignments(3, 5, 0, None).is_err());
        assert!(kfold_assignments(10, 1, 0, None).is_err());
    }
}
