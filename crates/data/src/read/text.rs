//! Plain text: one example per line, per blank-line-separated paragraph, or per file. A unit
//! holding bytes that are not UTF-8 is rejected with its line; the rest of the file is kept.

use std::path::Path;
use std::sync::Arc;

use serde_json::{Map, Value};

use super::{mb, RawRow, ReadOptions, ReadOutput, TextUnit};
use crate::error::{Loc, Result, RowError};

/// One line: its number and text, or `None` when it is not valid UTF-8.
type Line<'a> = (usize, Option<&'a str>);

/// Reads a text file into `{"text": ...}` rows.
pub fn read(file: &Arc<Path>, bytes: &[u8], opts: &ReadOptions) -> Result<ReadOutput> {
    let mut out = ReadOutput::default();
    let body = bytes.strip_suffix(b"\n").unwrap_or(bytes);
    let lines: Vec<Line<'_>> = if body.is_empty() {
        Vec::new()
    } else {
        body.split(|&b| b == b'\n')
            .enumerate()
            .map(|(i, l)| (i + 1, std::str::from_utf8(l.strip_suffix(b"\r").unwrap_or(l)).ok()))
            .collect()
    };
    let blank = |l: &Line<'_>| l.1.is_some_and(|s| s.trim().is_empty());
    let unit = match opts.text_unit {
        TextUnit::Auto => {
            // Paragraphs when blank lines separate at least two of them.
            let has_blank_between = lines.iter().skip_while(|l| blank(l)).skip_while(|l| !blank(l)).any(|l| !blank(l));
            if has_blank_between {
                TextUnit::Paragraph
            } else {
                TextUnit::Line
            }
        }
        u => u,
    };
    let push = |group: &[Line<'_>], out: &mut ReadOutput| {
        let Some(&(first, _)) = group.first() else { return };
        let loc = Loc { file: file.clone(), line: first };
        if let Some(&(bad, _)) = group.iter().find(|l| l.1.is_none()) {
            out.errors.push(RowError::new(
                &Loc { file: file.clone(), line: bad },
                None,
                "not valid UTF-8 (re-encode the file as UTF-8)",
            ));
            return;
        }
        let text = group.iter().map(|l| l.1.unwrap_or_default()).collect::<Vec<_>>().join("\n");
        if text.len() > opts.max_row_bytes {
            out.errors.push(RowError::new(&loc, None, format!("text unit is {}, over the row limit", mb(text.len()))));
            return;
        }
        let mut m = Map::new();
        m.insert("text".into(), Value::String(text));
        out.rows.push(RawRow { value: m, loc });
    };
    match unit {
        TextUnit::Document => {
            let start = lines.iter().position(|l| !blank(l));
            let end = lines.iter().rposition(|l| !blank(l));
            if let (Some(s), Some(e)) = (start, end) {
                push(&lines[s..=e], &mut out);
            }
        }
        TextUnit::Line | TextUnit::Auto => {
            for l in lines.iter().filter(|l| !blank(l)) {
                push(std::slice::from_ref(l), &mut out);
            }
        }
        TextUnit::Paragraph => {
            for group in lines.split(blank) {
                push(group, &mut out);
            }
        }
    }
    Ok(out)
}
