//! A loaded dataset: read from local files or a Hub dataset repo, its schema detected (or named),
//! every row converted to the internal form, and every rejected row kept with its reason.

use std::path::{Path, PathBuf};

use crate::error::{DataError, RejectCounts, Result, RowError};
use crate::example::{Example, Label, Record};
use crate::read::{self, ReadOptions, ReadOutput};
use crate::schema::{self, FieldMap, Schema};

/// How to load a dataset.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// Reader settings.
    pub read: ReadOptions,
    /// The schema, or `None` to detect it.
    pub schema: Option<Schema>,
    /// Column renames (`text=sentence`).
    pub fields: FieldMap,
    /// For Hub repos: only the files of this split (e.g. `train`).
    pub split: Option<String>,
}

/// A dataset in internal form.
#[derive(Debug, Clone)]
pub struct Dataset {
    /// What was asked for (a path or a Hub id).
    pub source: String,
    /// Files read, in order.
    pub files: Vec<PathBuf>,
    /// The schema the rows were read with.
    pub schema: Schema,
    /// Whether the schema was detected rather than named.
    pub detected: bool,
    /// The usable rows.
    pub records: Vec<Record>,
    /// Every row that was read but rejected, with file, line, field and reason.
    pub rejected: Vec<RowError>,
    /// Class names by id, for classification data and the tags of token classification data
    /// (integer labels in numeric order, otherwise sorted names).
    pub labels: Vec<String>,
}

/// Where a dataset reference points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A local file or folder.
    Local(PathBuf),
    /// A Hub dataset repo id, optionally `@revision`.
    Hub(String),
}

impl Source {
    /// Resolves a reference: an existing path is local; `hf://datasets/owner/name[@rev]` or a bare
    /// `owner/name` that is not a local path is a Hub dataset.
    pub fn parse(reference: &str) -> Result<Source> {
        if let Some(id) = reference.strip_prefix("hf://datasets/").or_else(|| reference.strip_prefix("hf://")) {
            return Ok(Source::Hub(id.to_string()));
        }
        let path = Path::new(reference);
        if path.exists() {
            return Ok(Source::Local(path.to_path_buf()));
        }
        let repo_like = regex::Regex::new(r"^[A-Za-z0-9][\w.-]*/[\w.-]+(@[\w./-]+)?$").expect("valid regex");
        if repo_like.is_match(reference) && !reference.contains("..") {
            return Ok(Source::Hub(reference.to_string()));
        }
        Err(DataError::io(path, std::io::Error::new(std::io::ErrorKind::NotFound, "no such file or folder")))
    }
}

impl Dataset {
    /// Reads `reference` (a path or a Hub dataset id) and converts its rows.
    pub fn load(reference: &str, opts: &LoadOptions) -> Result<Dataset> {
        let output = match Source::parse(reference)? {
            Source::Local(p) => read::read_path(&p, &opts.read)?,
            Source::Hub(id) => {
                let mut out = ReadOutput::default();
                for f in read::resolve_dataset(&id, opts.split.as_deref())? {
                    out.extend(read::read_file(&f, &opts.read)?);
                }
                out
            }
        };
        Dataset::from_rows(reference, output, opts)
    }

    /// Converts rows already read.
    pub fn from_rows(source: &str, output: ReadOutput, opts: &LoadOptions) -> Result<Dataset> {
        let ReadOutput { rows, errors: mut rejected, files } = output;
        if rows.is_empty() {
            return Err(DataError::Empty {
                what: source.to_string(),
                details: if rejected.is_empty() {
                    "the input holds no rows".into()
                } else {
                    format!("all {} rows are unreadable; the first: {}", rejected.len(), rejected[0])
                },
            });
        }
        let (schema, detected) = match opts.schema {
            Some(s) => (s, false),
            None => {
                let mut probe: Vec<_> = rows.iter().take(5000).cloned().collect();
                for r in &mut probe {
                    opts.fields.apply(r);
                }
                (schema::detect(&probe)?, true)
            }
        };
        let (records, schema_errors) = schema::convert(rows, schema, &opts.fields);
        rejected.extend(schema_errors);
        rejected.sort_by(|a, b| a.loc.cmp(&b.loc));
        let labels = if matches!(schema, Schema::Classification | Schema::TokenClassification) {
            schema::label_map(&records)
        } else {
            Vec::new()
        };
        Ok(Dataset { source: source.to_string(), files, schema, detected, records, rejected, labels })
    }

    /// Rows read in all (usable + rejected).
    pub fn rows_read(&self) -> usize {
        self.records.len() + self.rejected.len()
    }

    /// Rejections by kind.
    pub fn reject_counts(&self) -> RejectCounts {
        RejectCounts::of(&self.rejected)
    }

    /// The class id of a record, when it is a classification example.
    pub fn class_id(&self, record: &Record) -> Option<usize> {
        match &record.example {
            Example::Labeled { label: Label::Class(c), .. } => self.labels.iter().position(|l| l == c),
            _ => None,
        }
    }
}
