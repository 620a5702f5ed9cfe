//! Taking typed fields out of a raw row, with errors that name the field. What a converter
//! does not take stays in the row and is kept as the record's extra fields.

use serde_json::{Map, Value};

use crate::error::{Loc, RowError};
use crate::read::RawRow;

/// A raw row being consumed by a schema converter.
pub struct Fields {
    /// The remaining fields.
    pub map: Map<String, Value>,
    /// Where the row came from.
    pub loc: Loc,
}

fn kind(v: &Value) -> &'static str {
    crate::read::json_kind(v)
}

impl Fields {
    /// Wraps a raw row.
    pub fn new(row: RawRow) -> Fields {
        Fields { map: row.value, loc: row.loc }
    }

    /// An error about `field`.
    pub fn err(&self, field: &str, why: impl Into<String>) -> RowError {
        RowError::new(&self.loc, Some(field), why)
    }

    /// True if the field is present and not null.
    pub fn has(&self, name: &str) -> bool {
        self.map.get(name).is_some_and(|v| !v.is_null())
    }

    /// Removes a field (null counts as absent).
    pub fn take(&mut self, name: &str) -> Option<Value> {
        self.map.remove(name).filter(|v| !v.is_null())
    }

    /// Removes an optional string field.
    pub fn take_str(&mut self, name: &str) -> Result<Option<String>, RowError> {
        match self.take(name) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(other) => Err(self.err(name, format!("expected a string, found {}", kind(&other)))),
        }
    }

    /// Removes a required string field.
    pub fn take_req_str(&mut self, name: &str) -> Result<String, RowError> {
        self.take_str(name)?.ok_or_else(|| self.err(name, "is missing"))
    }

    /// Removes a required non-empty string field.
    pub fn take_nonempty(&mut self, name: &str) -> Result<String, RowError> {
        let s = self.take_req_str(name)?;
        if s.trim().is_empty() {
            return Err(self.err(name, "is empty"));
        }
        Ok(s)
    }

    /// Removes the first present field among `names`, returning its name too.
    pub fn take_any(&mut self, names: &[&str]) -> Option<(String, Value)> {
        for n in names {
            if let Some(v) = self.take(n) {
                return Some((n.to_string(), v));
            }
        }
        None
    }

    /// The remaining fields.
    pub fn into_extra(self) -> Map<String, Value> {
        self.map
    }
}

/// A string or a JSON value rendered as a string (for tools given as JSON text or objects).
pub fn parse_tools(f: &Fields, field: &str, v: Value) -> Result<Option<Value>, RowError> {
    match v {
        Value::String(s) if s.trim().is_empty() => Ok(None),
        Value::String(s) => match serde_json::from_str::<Value>(&s) {
            Ok(v @ Value::Array(_)) => Ok(Some(v)),
            Ok(v @ Value::Object(_)) => Ok(Some(Value::Array(vec![v]))),
            Ok(other) => {
                Err(f.err(field, format!("tools JSON must be a list of function definitions, found {}", kind(&other))))
            }
            Err(e) => Err(f.err(field, format!("tools is a string but not valid JSON: {e}"))),
        },
        v @ Value::Array(_) => Ok(Some(v)),
        other => Err(f.err(field, format!("tools must be a list (or its JSON text), found {}", kind(&other)))),
    }
}
