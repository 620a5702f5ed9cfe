//! Parquet files (Hugging Face datasets' format), read row by row through the record API.

use std::path::Path;
use std::sync::Arc;

use parquet::file::reader::{ChunkReader, FileReader, SerializedFileReader};
use serde_json::Value;

use super::{RawRow, ReadOutput};
use crate::error::{DataError, Loc, Result, RowError};

/// Reads every row group of a Parquet file, streaming from disk.
pub fn read(file: &Arc<Path>) -> Result<ReadOutput> {
    let f = std::fs::File::open(file.as_ref()).map_err(|e| DataError::io(file.as_ref(), e))?;
    read_from(file, f)
}

/// Reads Parquet data held in memory (named `file` in errors).
pub fn read_bytes(file: &Arc<Path>, bytes: Vec<u8>) -> Result<ReadOutput> {
    read_from(file, bytes::Bytes::from(bytes))
}

fn read_from<R: ChunkReader + 'static>(file: &Arc<Path>, data: R) -> Result<ReadOutput> {
    let reader = SerializedFileReader::new(data)
        .map_err(|e| DataError::format(file.as_ref(), format!("not a readable Parquet file: {e}")))?;
    let rows =
        reader.get_row_iter(None).map_err(|e| DataError::format(file.as_ref(), format!("cannot read rows: {e}")))?;
    let mut out = ReadOutput::default();
    for (i, row) in rows.enumerate() {
        let loc = Loc { file: file.clone(), line: i + 1 };
        match row {
            Ok(row) => match row.to_json_value() {
                Value::Object(map) => out.rows.push(RawRow { value: map, loc }),
                other => out.errors.push(RowError::new(&loc, None, format!("row is not a record: {other}"))),
            },
            Err(e) => out.errors.push(RowError::new(&loc, None, format!("cannot decode row: {e}"))),
        }
    }
    Ok(out)
}
