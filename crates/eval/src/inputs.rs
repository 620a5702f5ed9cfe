//! Reading predictions and references for `tunesmith metrics`: JSONL (a field of each object)
//! or one item per line. Every line is an item, empty ones included (an empty hypothesis is a
//! valid hypothesis); only the newline ending the file does not start one.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::error::{EvalError, Result};

/// One item of a predictions or references file.
#[derive(Clone, Debug)]
pub struct Item {
    /// 1-based line number.
    pub line: usize,
    /// The parsed JSON line, or the raw line as a string.
    pub value: Value,
}

/// The items of a file, with its path for error messages.
#[derive(Clone, Debug)]
pub struct Column {
    /// The file.
    pub path: PathBuf,
    /// Its items.
    pub items: Vec<Item>,
}

impl Column {
    /// Reads `path`. Lines of a `.jsonl`/`.json` file must be JSON; other files take a line as
    /// JSON when it parses as an object or array, and as plain text otherwise.
    pub fn read(path: &Path) -> Result<Column> {
        let bytes = std::fs::read(path).map_err(|source| EvalError::Io { path: path.to_path_buf(), source })?;
        let text = String::from_utf8(bytes).map_err(|e| {
            let upto = &e.as_bytes()[..e.utf8_error().valid_up_to()];
            let line = upto.iter().filter(|&&b| b == b'\n').count() + 1;
            EvalError::Input { path: path.to_path_buf(), line, why: "not valid UTF-8".into() }
        })?;
        let jsonl = matches!(path.extension().and_then(|e| e.to_str()), Some("jsonl" | "json"));
        let body = text.strip_suffix('\n').unwrap_or(&text);
        let mut items = Vec::new();
        if body.is_empty() && text.is_empty() {
            return Ok(Column { path: path.to_path_buf(), items });
        }
        for (i, raw) in body.split('\n').enumerate() {
            let line = raw.strip_suffix('\r').unwrap_or(raw);
            let looks_json = line.trim_start().starts_with(['{', '[']);
            let value = if jsonl || looks_json {
                match serde_json::from_str::<Value>(line) {
                    Ok(v) => v,
                    Err(e) if jsonl => {
                        return Err(EvalError::Input { path: path.to_path_buf(), line: i + 1, why: format!("{e}") })
                    }
                    Err(_) => Value::String(line.to_string()),
                }
            } else {
                Value::String(line.to_string())
            };
            items.push(Item { line: i + 1, value });
        }
        Ok(Column { path: path.to_path_buf(), items })
    }

    /// An error about item `i`.
    pub fn error(&self, i: usize, why: impl Into<String>) -> EvalError {
        EvalError::Input { path: self.path.clone(), line: self.items[i].line, why: why.into() }
    }

    /// Item `i`'s value: the first of `fields` present when it is an object (or `field` when
    /// given), else the value itself.
    pub fn field(&self, i: usize, field: Option<&str>, fields: &[&str]) -> Result<&Value> {
        let v = &self.items[i].value;
        let Value::Object(m) = v else { return Ok(v) };
        if let Some(f) = field {
            return m.get(f).ok_or_else(|| self.error(i, format!("no field '{f}' (fields: {})", keys(m))));
        }
        fields.iter().find_map(|f| m.get(*f)).ok_or_else(|| {
            self.error(i, format!("none of the fields {fields:?} is present (fields: {}); pass --field", keys(m)))
        })
    }

    /// Item `i` as a string (see [`Column::field`]).
    pub fn string(&self, i: usize, field: Option<&str>, fields: &[&str]) -> Result<String> {
        match self.field(i, field, fields)? {
            Value::String(s) => Ok(s.clone()),
            Value::Number(n) => Ok(n.to_string()),
            other => Err(self.error(i, format!("expected a string, found {}", kind(other)))),
        }
    }

    /// Item `i` as one or more strings (a JSON array holds several references).
    pub fn strings(&self, i: usize, field: Option<&str>, fields: &[&str]) -> Result<Vec<String>> {
        match self.field(i, field, fields)? {
            Value::Array(a) => a
                .iter()
                .map(|v| match v {
                    Value::String(s) => Ok(s.clone()),
                    other => Err(self.error(i, format!("expected strings in the list, found {}", kind(other)))),
                })
                .collect(),
            Value::String(s) => Ok(vec![s.clone()]),
            other => Err(self.error(i, format!("expected a string or a list of strings, found {}", kind(other)))),
        }
    }

    /// Item `i` as a number.
    pub fn number(&self, i: usize, field: Option<&str>, fields: &[&str]) -> Result<f64> {
        let v = self.field(i, field, fields)?;
        let n = match v {
            Value::Number(n) => n.as_f64(),
            Value::String(s) => s.trim().parse::<f64>().ok(),
            _ => None,
        };
        match n {
            Some(x) if x.is_finite() => Ok(x),
            _ => Err(self.error(i, format!("expected a finite number, found {}", short(v)))),
        }
    }

    /// Checks that `other` has as many items.
    pub fn aligned_with(&self, other: &Column) -> Result<()> {
        if self.items.len() != other.items.len() {
            return Err(EvalError::Input {
                path: other.path.clone(),
                line: 0,
                why: format!(
                    "has {} items but {} has {}; predictions and references must align line by line",
                    other.items.len(),
                    self.path.display(),
                    self.items.len()
                ),
            });
        }
        Ok(())
    }
}

fn keys(m: &serde_json::Map<String, Value>) -> String {
    m.keys().cloned().collect::<Vec<_>>().join(", ")
}

/// A JSON value's kind, for messages.
pub fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 40 {
        format!("{}…", s.chars().take(40).collect::<String>())
    } else {
        s
    }
}
