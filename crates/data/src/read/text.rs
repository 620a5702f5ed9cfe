//! Plain text: one example per line, per blank-line-separated paragraph, or per file.

use std::path::Path;
use std::sync::Arc;

use serde_json::{Map, Value};

use super::{mb, read_bytes, RawRow, ReadOptions, ReadOutput, TextUnit};
use crate::error::{Loc, Result, RowError};

/// Reads a text file into `{"text": ...}` rows.
pub fn read(file: &Arc<Path>, opts: &ReadOptions) -> Result<ReadOutput> {
    let bytes = read_bytes(file)?;
    let mut out = ReadOutput::default();
    let text = match std::str::from_utf8(&bytes) {
        Ok(t) => t.to_string(),
        Err(e) => {
            // Keep what decodes; report where the invalid bytes are.
            let line = bytes[..e.valid_up_to()].iter().filter(|&&b| b == b'\n').count() + 1;
            out.errors.push(RowError::new(
                &Loc { file: file.clone(), line },
                None,
                "not valid UTF-8; the invalid bytes were replaced with U+FFFD",
            ));
            String::from_utf8_lossy(&bytes).into_owned()
        }
    };
    let push = |start_line: usize, body: &str, out: &mut ReadOutput| {
        let loc = Loc { file: file.clone(), line: start_line };
        if body.len() > opts.max_row_bytes {
            out.errors.push(RowError::new(&loc, None, format!("text unit is {}, over the row limit", mb(body.len()))));
            return;
        }
        let mut m = Map::new();
        m.insert("text".into(), Value::String(body.to_string()));
        out.rows.push(RawRow { value: m, loc });
    };
    match opts.text_unit {
        TextUnit::Document => {
            if !text.trim().is_empty() {
                push(1, text.trim_end_matches('\n'), &mut out);
            }
        }
        TextUnit::Line => {
            for (i, line) in text.lines().enumerate() {
                if !line.trim().is_empty() {
                    push(i + 1, line, &mut out);
                }
            }
        }
        TextUnit::Paragraph => {
            let mut start = None;
            let mut buf: Vec<&str> = Vec::new();
            for (i, line) in text.lines().enumerate() {
                if line.trim().is_empty() {
                    if let Some(s) = start.take() {
                        push(s, &buf.join("\n"), &mut out);
                        buf.clear();
                    }
                } else {
                    start.get_or_insert(i + 1);
                    buf.push(line);
                }
            }
            if let Some(s) = start {
                push(s, &buf.join("\n"), &mut out);
            }
        }
    }
    Ok(out)
}
