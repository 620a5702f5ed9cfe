//! Data cleaning (`tunesmith data clean`): exact and near-duplicate removal ([`minhash`]),
//! length and language filters, and likely label errors by confident learning
//! ([`label_issues`]). Every removed row is returned with its reason.

pub mod label_issues;
pub mod minhash;

pub use label_issues::{find_label_issues, LabelIssue};

use std::collections::HashMap;

use serde::Serialize;

use crate::error::Loc;
use crate::example::{Example, Label, Record};
use crate::prep::{filter, FilterOptions};

/// What to clean.
#[derive(Debug, Clone, Default)]
pub struct CleanOptions {
    /// Exact (or normalized) duplicates, empty rows and length limits.
    pub filters: FilterOptions,
    /// Near-duplicate threshold on estimated Jaccard similarity of 5-gram shingles (None: off).
    pub near_duplicates: Option<f64>,
    /// Keep only rows detected as one of these languages (ISO 639-3 codes such as "eng");
    /// empty: no language filter.
    pub languages: Vec<String>,
    /// Out-of-sample class probabilities for confident learning (None: no label check).
    pub probs: Option<OutOfSample>,
}

/// Out-of-sample class probabilities of rows, by their text.
#[derive(Debug, Clone, Default)]
pub struct OutOfSample {
    /// Class names in column order.
    pub labels: Vec<String>,
    /// Probabilities by row text ([`row_text`]).
    pub by_text: HashMap<String, Vec<f64>>,
}

/// Why a row was removed.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// Empty, or outside the length limits.
    Filtered,
    /// Identical (or identical when normalized) to an earlier row.
    Duplicate,
    /// Nearly identical to an earlier row.
    NearDuplicate,
    /// Not in an accepted language.
    Language,
    /// Its label is likely wrong.
    LabelIssue,
}

impl Reason {
    /// The reason's name.
    pub fn name(&self) -> &'static str {
        match self {
            Reason::Filtered => "filtered",
            Reason::Duplicate => "duplicate",
            Reason::NearDuplicate => "near_duplicate",
            Reason::Language => "language",
            Reason::LabelIssue => "label_issue",
        }
    }
}

/// A removed row.
#[derive(Debug, Clone, Serialize)]
pub struct Removed {
    /// Where it was.
    #[serde(serialize_with = "loc_string")]
    pub loc: Loc,
    /// Why.
    pub reason: Reason,
    /// Details (the row it repeats, the language detected, the label suggested).
    pub detail: String,
}

fn loc_string<S: serde::Serializer>(loc: &Loc, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&loc.to_string())
}

/// The outcome of cleaning.
#[derive(Debug, Clone, Default)]
pub struct Cleaned {
    /// Rows kept, in order.
    pub kept: Vec<Record>,
    /// Rows removed, with reasons.
    pub removed: Vec<Removed>,
    /// Rows the label check could not judge (no probabilities for their text).
    pub unchecked_labels: usize,
}

/// The text a row is judged by (its texts joined).
pub fn row_text(e: &Example) -> String {
    match e {
        Example::Labeled { text, text_pair, .. } => match text_pair {
            Some(p) => format!("{text}\n{p}"),
            None => text.clone(),
        },
        Example::Text(t) => t.clone(),
        Example::Chat { messages, .. } => messages.iter().map(|m| m.content.as_str()).collect::<Vec<_>>().join("\n"),
        Example::Pair { anchor, positive, .. } => format!("{anchor}\n{positive}"),
        Example::Tagged { tokens, .. } => tokens.join(" "),
        Example::Preference { prompt, chosen, .. } | Example::Unpaired { prompt, completion: chosen, .. } => {
            prompt.iter().chain(chosen).map(|m| m.content.as_str()).collect::<Vec<_>>().join("\n")
        }
    }
}

/// The ISO 639-3 code of a language named by its 2- or 3-letter code.
pub fn language_code(name: &str) -> Option<&'static str> {
    let name = name.trim().to_lowercase();
    whatlang::Lang::all()
        .iter()
        .find(|l| l.code() == name || two_letter(l.code()) == Some(name.as_str()))
        .map(|l| l.code())
}

fn two_letter(code: &str) -> Option<&'static str> {
    Some(match code {
        "eng" => "en",
        "fra" => "fr",
        "deu" => "de",
        "spa" => "es",
        "ita" => "it",
        "por" => "pt",
        "nld" => "nl",
        "rus" => "ru",
        "cmn" => "zh",
        "jpn" => "ja",
        "kor" => "ko",
        "ara" => "ar",
        "hin" => "hi",
        "tur" => "tr",
        "pol" => "pl",
        "swe" => "sv",
        "ukr" => "uk",
        _ => return None,
    })
}

/// Cleans `records` in order: filters and exact duplicates, near duplicates, language, then
/// label issues.
pub fn clean(records: Vec<Record>, opts: &CleanOptions) -> Cleaned {
    let (records, filtered) = filter(records, &opts.filters);
    let mut removed: Vec<Removed> = filtered
        .into_iter()
        .map(|e| {
            let reason = if e.kind == crate::error::Reject::Duplicate { Reason::Duplicate } else { Reason::Filtered };
            Removed { loc: e.loc.clone(), reason, detail: e.why.clone() }
        })
        .collect();
    let mut kept = records;
    if let Some(threshold) = opts.near_duplicates {
        let texts: Vec<String> = kept.iter().map(|r| row_text(&r.example)).collect();
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        let dups = minhash::near_duplicates(&refs, threshold);
        let mut next = Vec::with_capacity(kept.len());
        for (r, d) in kept.iter().zip(&dups) {
            match d {
                Some((j, s)) => removed.push(Removed {
                    loc: r.loc.clone(),
                    reason: Reason::NearDuplicate,
                    detail: format!("near duplicate of {} (estimated Jaccard {s:.2})", kept[*j].loc),
                }),
                None => next.push(r.clone()),
            }
        }
        kept = next;
    }
    if !opts.languages.is_empty() {
        let mut next = Vec::with_capacity(kept.len());
        for r in kept {
            let text = row_text(&r.example);
            match whatlang::detect(&text) {
                Some(info) if !opts.languages.iter().any(|l| l == info.lang().code()) && info.is_reliable() => removed
                    .push(Removed {
                        loc: r.loc.clone(),
                        reason: Reason::Language,
                        detail: format!("detected {} (confidence {:.2})", info.lang().code(), info.confidence()),
                    }),
                _ => next.push(r),
            }
        }
        kept = next;
    }
    let mut unchecked_labels = 0;
    if let Some(OutOfSample { labels, by_text }) = &opts.probs {
        let mut rows = Vec::new();
        let mut given = Vec::new();
        let mut probs = Vec::new();
        for (i, r) in kept.iter().enumerate() {
            let class = match &r.example {
                Example::Labeled { label: Label::Class(c), .. } => labels.iter().position(|l| l == c),
                _ => None,
            };
            match (class, by_text.get(&row_text(&r.example))) {
                (Some(c), Some(p)) if p.len() == labels.len() => {
                    rows.push(i);
                    given.push(c);
                    probs.push(p.clone());
                }
                _ => unchecked_labels += 1,
            }
        }
        let issues = find_label_issues(&given, &probs);
        let mut drop = vec![false; kept.len()];
        for issue in &issues {
            let i = rows[issue.index];
            drop[i] = true;
            removed.push(Removed {
                loc: kept[i].loc.clone(),
                reason: Reason::LabelIssue,
                detail: format!(
                    "labeled \"{}\" but the model says \"{}\" (p(given) = {:.3})",
                    labels[issue.given], labels[issue.suggested], issue.self_confidence
                ),
            });
        }
        kept = kept.into_iter().zip(drop).filter(|(_, d)| !d).map(|(r, _)| r).collect();
    }
    removed.sort_by(|a, b| (a.loc.file.as_ref(), a.loc.line).cmp(&(b.loc.file.as_ref(), b.loc.line)));
    Cleaned { kept, removed, unchecked_labels }
}

/// Counts of removed rows by reason.
pub fn counts(removed: &[Removed]) -> std::collections::BTreeMap<&'static str, usize> {
    let mut c = std::collections::BTreeMap::new();
    for r in removed {
        *c.entry(r.reason.name()).or_default() += 1;
    }
    c
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::sync::Arc;

    use super::*;
    use crate::prep::Dedup;

    fn rec(line: usize, text: &str, label: &str) -> Record {
        Record {
            example: Example::Labeled { text: text.into(), text_pair: None, label: Label::Class(label.into()) },
            extra: Default::default(),
            loc: Loc { file: Arc::from(Path::new("d.jsonl")), line },
        }
    }

    #[test]
    fn every_removed_row_has_its_reason() {
        let rows = vec![
            rec(1, "the service was quick and the staff were friendly and helpful", "pos"),
            rec(2, "the service was quick and the staff were friendly and helpful", "pos"),
            rec(3, "The service was quick, and the staff were friendly and helpful!!", "pos"),
            rec(4, "le service était rapide et le personnel était aimable et serviable", "pos"),
            rec(5, "the food arrived cold and the waiter ignored us for an hour", "pos"),
            rec(6, "terrible food, cold plates and a rude waiter all evening long", "neg"),
            rec(7, "a lovely dinner with great wine and a warm welcome from everyone", "pos"),
            rec(8, "x", "neg"),
        ];
        let labels = vec!["neg".to_string(), "pos".to_string()];
        let mut probs = HashMap::new();
        for r in &rows {
            let t = row_text(&r.example);
            let p = if t.contains("cold") { vec![0.95, 0.05] } else { vec![0.1, 0.9] };
            probs.insert(t, p);
        }
        let opts = CleanOptions {
            filters: FilterOptions { dedup: Dedup::Exact, min_chars: Some(3), ..FilterOptions::default() },
            near_duplicates: Some(0.8),
            languages: vec![language_code("en").unwrap().to_string()],
            probs: Some(OutOfSample { labels, by_text: probs }),
        };
        let c = clean(rows, &opts);
        let reasons: Vec<(usize, &str)> = c.removed.iter().map(|r| (r.loc.line, r.reason.name())).collect();
        assert_eq!(
            reasons,
            vec![(2, "duplicate"), (3, "near_duplicate"), (4, "language"), (5, "label_issue"), (8, "filtered")],
            "{:?}",
            c.removed
        );
        assert_eq!(c.kept.iter().map(|r| r.loc.line).collect::<Vec<_>>(), vec![1, 6, 7]);
        assert_eq!(counts(&c.removed)["label_issue"], 1);
        assert_eq!(language_code("eng"), Some("eng"));
        assert_eq!(language_code("xx"), None);
    }
}
