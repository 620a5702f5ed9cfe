//! Errors and row locations. Every rejected row carries the file, line and field it came from,
//! so a user can fix it; readers collect row errors instead of stopping at the first.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Where a row came from.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Loc {
    /// The file.
    pub file: Arc<Path>,
    /// 1-based line (JSONL, CSV, text) or element (JSON array, Parquet row) number.
    pub line: usize,
}

impl fmt::Display for Loc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file.display(), self.line)
    }
}

/// The kind of reason a row was rejected or removed, for the counts in summaries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reject {
    /// The row could not be read (malformed JSON/CSV, bad UTF-8, over the size limit).
    Unreadable,
    /// The row does not fit the schema (missing field, wrong type, unknown role...).
    Invalid,
    /// The chat template refused the conversation.
    Template,
    /// Longer than the maximum length, with the `drop` truncation strategy.
    TooLong,
    /// Nothing left to train on (no trained tokens, or all were truncated away).
    NoTrainedTokens,
    /// A duplicate of an earlier row.
    Duplicate,
    /// Removed by a length or emptiness filter.
    Filtered,
}

impl Reject {
    /// A short description for summaries.
    pub fn describe(self) -> &'static str {
        match self {
            Reject::Unreadable => "unreadable",
            Reject::Invalid => "invalid for the schema",
            Reject::Template => "refused by the chat template",
            Reject::TooLong => "longer than max_length (truncation = drop)",
            Reject::NoTrainedTokens => "no trained tokens",
            Reject::Duplicate => "duplicate",
            Reject::Filtered => "filtered",
        }
    }
}

impl fmt::Display for Reject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.describe())
    }
}

/// Why one row was rejected.
#[derive(Debug, Clone, PartialEq)]
pub struct RowError {
    /// The kind of reason.
    pub kind: Reject,
    /// The row.
    pub loc: Loc,
    /// The field, when one is at fault (`messages[2].role`).
    pub field: Option<String>,
    /// What is wrong and how to fix it.
    pub why: String,
}

impl fmt::Display for RowError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.field {
            Some(field) => write!(f, "{}: field '{}': {}", self.loc, field, self.why),
            None => write!(f, "{}: {}", self.loc, self.why),
        }
    }
}

impl RowError {
    /// A row error at `loc` (of kind [`Reject::Invalid`]; see [`RowError::kind`]).
    pub fn new(loc: &Loc, field: Option<&str>, why: impl Into<String>) -> RowError {
        RowError { kind: Reject::Invalid, loc: loc.clone(), field: field.map(String::from), why: why.into() }
    }

    /// The same error with another kind.
    pub fn kind(mut self, kind: Reject) -> RowError {
        self.kind = kind;
        self
    }
}

/// Counts of rejected rows by kind, with a few examples of each, for summaries.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RejectCounts {
    /// Rows per kind.
    pub counts: std::collections::BTreeMap<Reject, usize>,
}

impl RejectCounts {
    /// Counts `errors`.
    pub fn of(errors: &[RowError]) -> RejectCounts {
        let mut c = RejectCounts::default();
        for e in errors {
            *c.counts.entry(e.kind).or_default() += 1;
        }
        c
    }

    /// All rejected rows.
    pub fn total(&self) -> usize {
        self.counts.values().sum()
    }
}

impl fmt::Display for RejectCounts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.counts.is_empty() {
            return f.write_str("none");
        }
        let parts: Vec<String> = self.counts.iter().map(|(k, n)| format!("{n} {k}")).collect();
        f.write_str(&parts.join(", "))
    }
}

/// Errors of the data crate that stop an operation (as opposed to per-row rejections).
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A whole file is malformed (a JSON array that does not parse, a corrupt Parquet file).
    #[error("{path}: {why}")]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// A chat template failed to compile or render.
    #[error("chat template: {0}")]
    Template(String),
    /// A tokenizer failed to load or encode.
    #[error("tokenizer {path}: {why}")]
    Tokenizer {
        /// The tokenizer file.
        path: PathBuf,
        /// What went wrong.
        why: String,
    },
    /// A schema could not be detected or does not fit the rows.
    #[error("{0}")]
    Schema(String),
    /// Nothing usable: every row was rejected or filtered.
    #[error("no usable rows in {what}: {details}")]
    Empty {
        /// The input.
        what: String,
        /// Counts by reason.
        details: String,
    },
    /// A bad option value.
    #[error("{0}")]
    Invalid(String),
    /// Hub access failed.
    #[error("hub dataset '{id}': {why}")]
    Hub {
        /// Repository id.
        id: String,
        /// What went wrong.
        why: String,
    },
}

/// Shorthand for results of this crate.
pub type Result<T> = std::result::Result<T, DataError>;

impl DataError {
    /// An I/O error for `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        DataError::Io { path: path.into(), source }
    }

    /// A format error for `path`.
    pub fn format(path: impl Into<PathBuf>, why: impl Into<String>) -> Self {
        DataError::Format { path: path.into(), why: why.into() }
    }
}
