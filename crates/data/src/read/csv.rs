//! CSV and TSV with a header (or without: detected when the first row's values recur in their
//! columns). TSV follows GLUE's convention of no quoting; CSV uses standard quoting.

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;

use serde_json::{Map, Value};

use super::{mb, Header, RawRow, ReadOptions, ReadOutput};
use crate::error::{DataError, Loc, Result, RowError};

fn decode_fields(rec: &csv::ByteRecord) -> std::result::Result<Vec<String>, (usize, usize)> {
    rec.iter()
        .enumerate()
        .map(|(i, f)| std::str::from_utf8(f).map(String::from).map_err(|e| (i, e.valid_up_to())))
        .collect()
}

/// Reads a delimited file.
pub fn read(file: &Arc<Path>, bytes: &[u8], delimiter: u8, opts: &ReadOptions) -> Result<ReadOutput> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .delimiter(delimiter)
        .flexible(true)
        .quoting(delimiter != b'\t')
        .from_reader(bytes);
    let mut records: Vec<(usize, csv::ByteRecord)> = Vec::new();
    let mut out = ReadOutput::default();
    for result in reader.byte_records() {
        match result {
            Ok(rec) => {
                let line = rec.position().map_or(0, |p| p.line() as usize);
                records.push((line, rec));
            }
            Err(e) => {
                let line = e.position().map_or(0, |p| p.line() as usize);
                out.errors.push(RowError::new(&Loc { file: file.clone(), line }, None, format!("malformed CSV: {e}")));
            }
        }
    }
    records.retain(|(_, r)| !(r.len() == 1 && r.get(0).is_some_and(|f| f.iter().all(u8::is_ascii_whitespace))));
    let Some((first_line, first)) = records.first().cloned() else {
        return Ok(out);
    };
    let first_fields = decode_fields(&first).map_err(|(i, at)| {
        DataError::format(file.as_ref(), format!("line {first_line}: column {} is not valid UTF-8 at byte {at}", i + 1))
    })?;
    let has_header = match opts.header {
        Header::Yes => true,
        Header::No => false,
        Header::Auto => !first_row_recurs(&first_fields, &records[1..]),
    };
    let names: Vec<String> = if has_header {
        let mut seen = HashSet::new();
        for (i, n) in first_fields.iter().enumerate() {
            if n.trim().is_empty() || !seen.insert(n.clone()) {
                return Err(DataError::format(
                    file.as_ref(),
                    format!("line {first_line}: header column {} ('{n}') is empty or repeated", i + 1),
                ));
            }
        }
        first_fields.iter().map(|s| s.trim().to_string()).collect()
    } else {
        (0..first_fields.len()).map(|i| format!("column_{i}")).collect()
    };
    let body = if has_header { &records[1..] } else { &records[..] };
    for (line, rec) in body {
        let loc = Loc { file: file.clone(), line: *line };
        if rec.as_slice().len() > opts.max_row_bytes {
            out.errors.push(RowError::new(
                &loc,
                None,
                format!("row is {}, over the row limit", mb(rec.as_slice().len())),
            ));
            continue;
        }
        if rec.len() != names.len() {
            out.errors.push(RowError::new(
                &loc,
                None,
                format!("has {} fields, the header has {} ({})", rec.len(), names.len(), names.join(", ")),
            ));
            continue;
        }
        match decode_fields(rec) {
            Ok(fields) => {
                let value: Map<String, Value> =
                    names.iter().cloned().zip(fields.into_iter().map(Value::String)).collect();
                out.rows.push(RawRow { value, loc });
            }
            Err((i, at)) => out.errors.push(RowError::new(
                &loc,
                Some(&names[i]),
                format!("not valid UTF-8 at byte {at} of the field"),
            )),
        }
    }
    Ok(out)
}

/// True when a value of the first row reappears in its column among the next rows, which a
/// header name would not.
fn first_row_recurs(first: &[String], rest: &[(usize, csv::ByteRecord)]) -> bool {
    rest.iter()
        .take(2000)
        .any(|(_, r)| r.iter().zip(first).any(|(f, h)| !h.is_empty() && h.len() < 64 && f == h.as_bytes()))
}
