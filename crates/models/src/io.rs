//! Crash-safe writes: files go to a temporary sibling, are flushed to disk and then renamed
//! over the target, so readers see either the old or the new content, never half of it.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{ModelError, Result};

fn temp_sibling(path: &Path, tag: &str) -> PathBuf {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    path.with_file_name(format!(".{name}.{tag}-{}.tmp", std::process::id()))
}

/// Writes `bytes` to `path` atomically.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::create_dir_all(parent).map_err(|e| ModelError::io(parent, e))?;
    }
    let tmp = temp_sibling(path, "write");
    let result = (|| -> std::io::Result<()> {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)?;
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            if let Ok(d) = fs::File::open(parent) {
                let _ = d.sync_all();
            }
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map_err(|e| ModelError::io(path, e))
}

/// Writes a JSON value (pretty-printed) atomically.
pub fn write_json_atomic(path: &Path, value: &serde_json::Value) -> Result<()> {
    let text = serde_json::to_string_pretty(value).map_err(|e| ModelError::Json { path: path.into(), source: e })?;
    write_atomic(path, text.as_bytes())
}

/// Builds a directory atomically: `fill` writes into a fresh temporary sibling directory, which
/// then replaces `dir` (an existing `dir` is moved aside first and removed after the swap).
pub fn write_dir_atomic(dir: &Path, fill: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let tmp = temp_sibling(dir, "dir");
    if tmp.exists() {
        fs::remove_dir_all(&tmp).map_err(|e| ModelError::io(&tmp, e))?;
    }
    fs::create_dir_all(&tmp).map_err(|e| ModelError::io(&tmp, e))?;
    if let Err(e) = fill(&tmp) {
        let _ = fs::remove_dir_all(&tmp);
        return Err(e);
    }
    let old = temp_sibling(dir, "old");
    if dir.exists() {
        if old.exists() {
            fs::remove_dir_all(&old).map_err(|e| ModelError::io(&old, e))?;
        }
        fs::rename(dir, &old).map_err(|e| ModelError::io(dir, e))?;
    }
    fs::rename(&tmp, dir).map_err(|e| ModelError::io(dir, e))?;
    if old.exists() {
        let _ = fs::remove_dir_all(&old);
    }
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        if let Ok(d) = fs::File::open(parent) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}
