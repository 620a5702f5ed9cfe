//! Readers: JSONL, JSON arrays, CSV/TSV, Parquet and plain text, from files, folders or Hub
//! dataset repos. They yield raw rows (JSON objects) with their locations, and collect per-row
//! errors (bad JSON, invalid UTF-8, oversized rows, wrong field counts) instead of stopping.

mod csv;
mod hub;
mod json;
mod parquet;
mod text;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::{Map, Value};

pub use hub::resolve_dataset;
pub(crate) use json::kind as json_kind;

use crate::error::{DataError, Loc, Reject, Result, RowError};

/// A file format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// One JSON object per line.
    Jsonl,
    /// One JSON array of objects.
    JsonArray,
    /// Comma-separated values.
    Csv,
    /// Tab-separated values.
    Tsv,
    /// Apache Parquet (what Hugging Face datasets publish).
    Parquet,
    /// Plain text.
    Text,
}

impl Format {
    /// Parses a format name (`jsonl`, `json`, `csv`, `tsv`, `parquet`, `text`).
    pub fn parse(s: &str) -> Option<Format> {
        Some(match s {
            "jsonl" | "ndjson" => Format::Jsonl,
            "json" => Format::JsonArray,
            "csv" => Format::Csv,
            "tsv" => Format::Tsv,
            "parquet" => Format::Parquet,
            "text" | "txt" => Format::Text,
            _ => return None,
        })
    }
}

/// How a CSV/TSV file's first row is treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Header {
    /// Decide from the data: a first row whose values recur in their columns is data.
    #[default]
    Auto,
    /// The first row names the columns.
    Yes,
    /// There is no header; columns are `column_0`, `column_1`, ...
    No,
}

/// How plain text is cut into examples.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TextUnit {
    /// Paragraphs when the file has blank-line-separated paragraphs, else lines.
    #[default]
    Auto,
    /// One example per non-empty line.
    Line,
    /// One example per blank-line-separated paragraph.
    Paragraph,
    /// The whole file is one example.
    Document,
}

/// Reader settings.
#[derive(Debug, Clone)]
pub struct ReadOptions {
    /// Force a format instead of detecting it from the name and content.
    pub format: Option<Format>,
    /// CSV/TSV header handling.
    pub header: Header,
    /// Plain-text unit.
    pub text_unit: TextUnit,
    /// Rows larger than this are rejected (with their line) rather than parsed.
    pub max_row_bytes: usize,
}

impl Default for ReadOptions {
    fn default() -> Self {
        ReadOptions { format: None, header: Header::Auto, text_unit: TextUnit::Auto, max_row_bytes: 64 << 20 }
    }
}

/// One raw row: a JSON object and where it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct RawRow {
    /// Field values.
    pub value: Map<String, Value>,
    /// Location.
    pub loc: Loc,
}

/// What reading produced.
#[derive(Debug, Clone, Default)]
pub struct ReadOutput {
    /// Rows that parsed.
    pub rows: Vec<RawRow>,
    /// Rows that did not, with reasons.
    pub errors: Vec<RowError>,
    /// Files read, in order.
    pub files: Vec<PathBuf>,
}

impl ReadOutput {
    pub(crate) fn extend(&mut self, other: ReadOutput) {
        self.rows.extend(other.rows);
        self.errors.extend(other.errors);
        self.files.extend(other.files);
    }
}

const DATA_EXTENSIONS: [&str; 9] = ["jsonl", "ndjson", "json", "csv", "tsv", "parquet", "txt", "tab", "gz"];

/// Whether a path names a gzip-compressed file (`.gz`), read transparently.
fn is_gzip(path: &Path) -> bool {
    path.extension().is_some_and(|e| e.eq_ignore_ascii_case("gz"))
}

/// The first `n` bytes of a file (decompressed for `.gz`).
fn head_bytes(path: &Path, n: usize) -> Result<Vec<u8>> {
    use std::io::Read;
    let f = std::fs::File::open(path).map_err(|e| DataError::io(path, e))?;
    let mut head = Vec::with_capacity(n);
    let res = if is_gzip(path) {
        flate2::read::MultiGzDecoder::new(f).take(n as u64).read_to_end(&mut head)
    } else {
        f.take(n as u64).read_to_end(&mut head)
    };
    res.map_err(|e| DataError::format(path, format!("cannot read: {e}")))?;
    Ok(head)
}

/// Whether most of the first lines hold the same number (≥ 1) of tabs: a TSV file whatever its
/// extension.
fn looks_tab_separated(head: &[u8]) -> bool {
    let text = String::from_utf8_lossy(head);
    let lines: Vec<&str> = text.lines().filter(|l| !l.is_empty()).take(20).collect();
    let Some(tabs) = lines.first().map(|l| l.matches('\t').count()).filter(|&t| t > 0) else {
        return false;
    };
    let same = lines.iter().filter(|l| l.matches('\t').count() == tabs).count();
    same * 10 >= lines.len() * 9
}

/// Detects a file's format from its extension (under any `.gz`), or by sniffing its first bytes.
pub fn detect_format(path: &Path) -> Result<Format> {
    let inner = if is_gzip(path) { Path::new(path.file_stem().unwrap_or_default()) } else { path };
    let ext = inner.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase);
    match ext.as_deref() {
        Some("jsonl") | Some("ndjson") => return Ok(Format::Jsonl),
        Some("csv") => return Ok(Format::Csv),
        Some("tsv") | Some("tab") => return Ok(Format::Tsv),
        Some("parquet") => return Ok(Format::Parquet),
        Some("md") => return Ok(Format::Text),
        _ => {}
    }
    let head = head_bytes(path, 64 * 1024)?;
    let head = head.as_slice();
    if ext.as_deref() == Some("txt") {
        return Ok(if looks_tab_separated(head) { Format::Tsv } else { Format::Text });
    }
    if head.starts_with(b"PAR1") {
        return Ok(Format::Parquet);
    }
    let first = head.iter().copied().find(|b| !b.is_ascii_whitespace());
    match first {
        Some(b'[') => Ok(Format::JsonArray),
        Some(b'{') => {
            // `.json` files holding JSON lines are common: several top-level objects → JSONL.
            let text = String::from_utf8_lossy(head);
            let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).take(3).collect();
            if lines.len() >= 2 && lines.iter().all(|l| l.trim_start().starts_with('{') && l.trim_end().ends_with('}'))
            {
                Ok(Format::Jsonl)
            } else if ext.as_deref() == Some("json") {
                Ok(Format::JsonArray)
            } else {
                Ok(Format::Jsonl)
            }
        }
        _ => Ok(if looks_tab_separated(head) { Format::Tsv } else { Format::Text }),
    }
}

/// Reads one file, or every data file of a folder (sorted by name, hidden files skipped).
pub fn read_path(path: &Path, opts: &ReadOptions) -> Result<ReadOutput> {
    let meta = std::fs::metadata(path).map_err(|e| DataError::io(path, e))?;
    if meta.is_dir() {
        let mut files: Vec<PathBuf> = walk(path)?;
        files.retain(|p| {
            p.extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| DATA_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
        });
        files.sort();
        if files.is_empty() {
            return Err(DataError::format(path, "folder holds no .jsonl, .json, .csv, .tsv, .parquet or .txt files"));
        }
        let mut out = ReadOutput::default();
        for f in files {
            out.extend(read_file(&f, opts)?);
        }
        return Ok(out);
    }
    read_file(path, opts)
}

fn walk(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| DataError::io(dir, e))? {
        let entry = entry.map_err(|e| DataError::io(dir, e))?;
        let p = entry.path();
        if entry.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        if p.is_dir() {
            out.extend(walk(&p)?);
        } else {
            out.push(p);
        }
    }
    Ok(out)
}

/// Reads one file.
pub fn read_file(path: &Path, opts: &ReadOptions) -> Result<ReadOutput> {
    let format = match opts.format {
        Some(f) => f,
        None => detect_format(path)?,
    };
    let file: Arc<Path> = Arc::from(path);
    let mut out = match format {
        Format::Parquet if !is_gzip(path) => parquet::read(&file)?,
        _ => parse_bytes(format, &file, read_bytes(path)?, opts)?,
    };
    for e in &mut out.errors {
        e.kind = Reject::Unreadable;
    }
    out.files.push(path.to_path_buf());
    Ok(out)
}

/// Parses data already in memory as `format`, naming `file` in errors and row locations (what
/// the fuzz targets drive).
pub fn parse_bytes(format: Format, file: &Arc<Path>, bytes: Vec<u8>, opts: &ReadOptions) -> Result<ReadOutput> {
    match format {
        Format::Jsonl => json::read_jsonl(file, &bytes, opts),
        Format::JsonArray => json::read_array(file, &bytes, opts),
        Format::Csv => csv::read(file, &bytes, b',', opts),
        Format::Tsv => csv::read(file, &bytes, b'\t', opts),
        Format::Parquet => parquet::read_bytes(file, bytes),
        Format::Text => text::read(file, &bytes, opts),
    }
}

/// Reads raw bytes of a path, naming it in errors.
/// `.gz` files are decompressed.
pub(crate) fn read_bytes(path: &Path) -> Result<Vec<u8>> {
    let raw = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
    if !is_gzip(path) {
        return Ok(raw);
    }
    use std::io::Read;
    let mut out = Vec::with_capacity(raw.len() * 4);
    flate2::read::MultiGzDecoder::new(raw.as_slice())
        .read_to_end(&mut out)
        .map_err(|e| DataError::format(path, format!("not a valid gzip file: {e}")))?;
    Ok(out)
}

/// Human-readable byte size.
pub(crate) fn mb(n: usize) -> String {
    format!("{:.1} MB", n as f64 / (1 << 20) as f64)
}
