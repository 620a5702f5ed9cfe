//! JSON Lines and JSON arrays. Array elements are located by a byte scanner so every element
//! gets its own line number and its own parse error.

use std::path::Path;
use std::sync::Arc;

use serde_json::Value;

use super::{mb, RawRow, ReadOptions, ReadOutput};
use crate::error::{DataError, Loc, Result, RowError};

fn to_row(value: Value, loc: Loc, out: &mut ReadOutput) {
    match value {
        Value::Object(map) => out.rows.push(RawRow { value: map, loc }),
        other => out.errors.push(RowError::new(&loc, None, format!("expected a JSON object, found {}", kind(&other)))),
    }
}

/// The JSON type name of a value.
pub(crate) fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// One object per line; blank lines are skipped; each bad line is one row error.
pub fn read_jsonl(file: &Arc<Path>, bytes: &[u8], opts: &ReadOptions) -> Result<ReadOutput> {
    let mut out = ReadOutput::default();
    for (i, line) in bytes.split(|&b| b == b'\n').enumerate() {
        let loc = Loc { file: file.clone(), line: i + 1 };
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        if line.len() > opts.max_row_bytes {
            out.errors.push(RowError::new(
                &loc,
                None,
                format!("line is {}, over the {} row limit (max_row_bytes)", mb(line.len()), mb(opts.max_row_bytes)),
            ));
            continue;
        }
        let text = match std::str::from_utf8(line) {
            Ok(t) => t,
            Err(e) => {
                out.errors.push(RowError::new(
                    &loc,
                    None,
                    format!("not valid UTF-8 at byte {} of the line", e.valid_up_to()),
                ));
                continue;
            }
        };
        match serde_json::from_str::<Value>(text) {
            Ok(v) => to_row(v, loc, &mut out),
            Err(e) => out.errors.push(RowError::new(&loc, None, format!("invalid JSON at column {}: {e}", e.column()))),
        }
    }
    Ok(out)
}

/// Byte ranges of the top-level elements of a JSON array (None if `bytes` is not an array).
fn element_ranges(bytes: &[u8]) -> std::result::Result<Vec<(usize, usize)>, String> {
    let mut i = bytes.iter().position(|b| !b.is_ascii_whitespace()).ok_or("the file is empty")?;
    if bytes[i] != b'[' {
        return Err("expected a JSON array ('[' ...)".into());
    }
    i += 1;
    let mut ranges = Vec::new();
    let mut depth = 0usize;
    let mut in_str = false;
    let mut escaped = false;
    let mut start: Option<usize> = None;
    while i < bytes.len() {
        let b = bytes[i];
        if in_str {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_str = false;
            }
        } else {
            match b {
                b'"' => {
                    in_str = true;
                    start.get_or_insert(i);
                }
                b'{' | b'[' => {
                    depth += 1;
                    start.get_or_insert(i);
                }
                b'}' | b']' if depth > 0 => depth -= 1,
                b']' => {
                    if let Some(s) = start.take() {
                        ranges.push((s, i));
                    }
                    let rest = &bytes[i + 1..];
                    if rest.iter().any(|b| !b.is_ascii_whitespace()) {
                        return Err("unexpected content after the closing ']'".into());
                    }
                    return Ok(ranges);
                }
                b',' if depth == 0 => {
                    if let Some(s) = start.take() {
                        ranges.push((s, i));
                    }
                }
                c if !c.is_ascii_whitespace() => {
                    start.get_or_insert(i);
                }
                _ => {}
            }
        }
        i += 1;
    }
    Err(match start {
        Some(s) => format!("the array is not closed; the element starting at byte {s} is cut off"),
        None => "the array is not closed (missing ']')".into(),
    })
}

/// A JSON array of objects; each element parses (or fails) on its own.
pub fn read_array(file: &Arc<Path>, bytes: &[u8], opts: &ReadOptions) -> Result<ReadOutput> {
    let mut out = ReadOutput::default();
    let line_of = {
        let newlines: Vec<usize> = bytes.iter().enumerate().filter(|(_, &b)| b == b'\n').map(|(i, _)| i).collect();
        move |offset: usize| newlines.partition_point(|&n| n < offset) + 1
    };
    let ranges = match element_ranges(bytes) {
        Ok(r) => r,
        Err(why) => {
            // Recover the elements before a truncation, then report the cut.
            let recovered = recover_prefix(bytes);
            for (s, e) in &recovered {
                parse_element(&bytes[*s..*e], Loc { file: file.clone(), line: line_of(*s) }, opts, &mut out);
            }
            if recovered.is_empty() && !matches!(bytes.iter().find(|b| !b.is_ascii_whitespace()), Some(b'[')) {
                return Err(DataError::format(file.as_ref(), why));
            }
            let at = recovered.last().map_or(0, |r| r.1);
            out.errors.push(RowError::new(&Loc { file: file.clone(), line: line_of(at) }, None, why));
            return Ok(out);
        }
    };
    for (s, e) in ranges {
        parse_element(&bytes[s..e], Loc { file: file.clone(), line: line_of(s) }, opts, &mut out);
    }
    Ok(out)
}

fn recover_prefix(bytes: &[u8]) -> Vec<(usize, usize)> {
    // Elements that were completed before the input ended: scan as above but stop at the end.
    let mut ranges = Vec::new();
    let Some(open) = bytes.iter().position(|&b| b == b'[') else { return ranges };
    let (mut depth, mut in_str, mut escaped, mut start) = (0usize, false, false, None::<usize>);
    for (i, &b) in bytes.iter().enumerate().skip(open + 1) {
        if in_str {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_str = false;
            }
            continue;
        }
        match b {
            b'"' => {
                in_str = true;
                start.get_or_insert(i);
            }
            b'{' | b'[' => {
                depth += 1;
                start.get_or_insert(i);
            }
            b'}' | b']' if depth > 0 => depth -= 1,
            b',' if depth == 0 => {
                if let Some(s) = start.take() {
                    ranges.push((s, i));
                }
            }
            c if !c.is_ascii_whitespace() && c != b']' => {
                start.get_or_insert(i);
            }
            _ => {}
        }
    }
    ranges
}

fn parse_element(slice: &[u8], loc: Loc, opts: &ReadOptions, out: &mut ReadOutput) {
    if slice.len() > opts.max_row_bytes {
        out.errors.push(RowError::new(
            &loc,
            None,
            format!("element is {}, over the {} row limit", mb(slice.len()), mb(opts.max_row_bytes)),
        ));
        return;
    }
    match std::str::from_utf8(slice) {
        Err(e) => out.errors.push(RowError::new(
            &loc,
            None,
            format!("not valid UTF-8 at byte {} of the element", e.valid_up_to()),
        )),
        Ok(text) => match serde_json::from_str::<Value>(text) {
            Ok(v) => to_row(v, loc, out),
            Err(e) => out.errors.push(RowError::new(&loc, None, format!("invalid JSON: {e}"))),
        },
    }
}
