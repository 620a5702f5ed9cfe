//! The shared body of the reader fuzz targets: parse bytes as one format, then push every row
//! through schema detection, conversion, every writer and back, checking that nothing panics
//! and no row is lost from the counts.

use std::path::Path;
use std::sync::Arc;

use tunesmith_data::read::{parse_bytes, Format, ReadOptions};
use tunesmith_data::write::{to_format, OutputFormat};
use tunesmith_data::{Dataset, LoadOptions};

/// Runs one input through the reader for `format` and everything downstream of it.
pub fn exercise(format: Format, data: &[u8]) {
    let file: Arc<Path> = Arc::from(Path::new("fuzz-input"));
    let opts = ReadOptions { max_row_bytes: 1 << 20, ..ReadOptions::default() };
    let Ok(out) = parse_bytes(format, &file, data.to_vec(), &opts) else { return };
    let (rows, errors) = (out.rows.len(), out.errors.len());
    let Ok(ds) = Dataset::from_rows("fuzz-input", out, &LoadOptions::default()) else { return };
    assert_eq!(ds.rows_read(), rows + errors, "every row is either usable or rejected");
    for r in &ds.records {
        for f in [OutputFormat::OpenAi, OutputFormat::Alpaca, OutputFormat::ShareGpt, OutputFormat::Jsonl] {
            if let Ok(v) = to_format(r, f) {
                let line = serde_json::to_vec(&v).expect("JSON values serialize");
                let back = parse_bytes(Format::Jsonl, &file, line, &opts).expect("our own JSON parses");
                assert_eq!(back.rows.len(), 1, "a written row reads back as one row");
            }
        }
    }
}
