//! TensorBoard event files (`events.out.tfevents.*`), so that `tensorboard --logdir RUN_DIR`
//! shows a run's scalars. Records are TensorFlow `Event` protobufs encoded with `prost`, framed
//! as TFRecords (length, masked CRC-32C of the length, data, masked CRC-32C of the data).

use std::io::Write;
use std::path::{Path, PathBuf};

use prost::Message;

use crate::error::{Result, TrainError};

/// `tensorflow.Summary.Value` (the scalar case).
#[derive(Clone, PartialEq, prost::Message)]
pub struct SummaryValue {
    /// The scalar's name.
    #[prost(string, tag = "1")]
    pub tag: String,
    /// The value.
    #[prost(float, tag = "2")]
    pub simple_value: f32,
}

/// `tensorflow.Summary`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Summary {
    /// The values.
    #[prost(message, repeated, tag = "1")]
    pub value: Vec<SummaryValue>,
}

/// `tensorflow.Event` (the fields tunesmith writes).
#[derive(Clone, PartialEq, prost::Message)]
pub struct Event {
    /// Seconds since the epoch.
    #[prost(double, tag = "1")]
    pub wall_time: f64,
    /// The global step.
    #[prost(int64, tag = "2")]
    pub step: i64,
    /// "brain.Event:2" in the first record.
    #[prost(string, optional, tag = "3")]
    pub file_version: Option<String>,
    /// Scalars.
    #[prost(message, optional, tag = "5")]
    pub summary: Option<Summary>,
}

/// TFRecord's masked CRC-32C.
pub fn masked_crc(data: &[u8]) -> u32 {
    let crc = crc32c::crc32c(data);
    crc.rotate_right(15).wrapping_add(0xa282_ead8)
}

/// One TFRecord frame around `data`.
pub fn frame(data: &[u8]) -> Vec<u8> {
    let len = (data.len() as u64).to_le_bytes();
    let mut out = Vec::with_capacity(data.len() + 16);
    out.extend_from_slice(&len);
    out.extend_from_slice(&masked_crc(&len).to_le_bytes());
    out.extend_from_slice(data);
    out.extend_from_slice(&masked_crc(data).to_le_bytes());
    out
}

/// Appends scalar events to an event file.
pub struct EventWriter {
    file: std::fs::File,
    path: PathBuf,
}

fn now() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}

impl EventWriter {
    /// Creates `dir/events.out.tfevents.<time>.tunesmith` with its version record.
    pub fn create(dir: &Path) -> Result<EventWriter> {
        std::fs::create_dir_all(dir).map_err(|e| TrainError::io(dir, e))?;
        let path = dir.join(format!("events.out.tfevents.{}.tunesmith", now() as u64));
        let file = std::fs::File::create(&path).map_err(|e| TrainError::io(&path, e))?;
        let mut w = EventWriter { file, path };
        w.write(&Event { wall_time: now(), step: 0, file_version: Some("brain.Event:2".into()), summary: None })?;
        Ok(w)
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn write(&mut self, e: &Event) -> Result<()> {
        self.file.write_all(&frame(&e.encode_to_vec())).map_err(|err| TrainError::io(&self.path, err))?;
        self.file.flush().map_err(|err| TrainError::io(&self.path, err))
    }

    /// Writes scalars (`tag`, value) at `step`.
    pub fn scalars(&mut self, step: u64, values: &[(&str, f64)]) -> Result<()> {
        let value = values
            .iter()
            .filter(|(_, v)| v.is_finite())
            .map(|(t, v)| SummaryValue { tag: (*t).to_string(), simple_value: *v as f32 })
            .collect();
        self.write(&Event { wall_time: now(), step: step as i64, file_version: None, summary: Some(Summary { value }) })
    }
}

/// Reads back an event file's records (for tests and tools): the decoded events, after
/// checking every frame's CRCs.
pub fn read_events(path: &Path) -> Result<Vec<Event>> {
    let bytes = std::fs::read(path).map_err(|e| TrainError::io(path, e))?;
    let bad = |why: &str| TrainError::Checkpoint { path: path.to_path_buf(), why: why.to_string() };
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if i + 12 > bytes.len() {
            return Err(bad("truncated record header"));
        }
        let len = u64::from_le_bytes(bytes[i..i + 8].try_into().expect("8 bytes")) as usize;
        let crc = u32::from_le_bytes(bytes[i + 8..i + 12].try_into().expect("4 bytes"));
        if crc != masked_crc(&bytes[i..i + 8]) {
            return Err(bad("length CRC mismatch"));
        }
        let start = i + 12;
        if len.checked_add(start + 4).is_none_or(|end| end > bytes.len()) {
            return Err(bad("truncated record"));
        }
        let data = &bytes[start..start + len];
        let dcrc = u32::from_le_bytes(bytes[start + len..start + len + 4].try_into().expect("4 bytes"));
        if dcrc != masked_crc(data) {
            return Err(bad("data CRC mismatch"));
        }
        out.push(Event::decode(data).map_err(|e| bad(&e.to_string()))?);
        i = start + len + 4;
    }
    Ok(out)
}
