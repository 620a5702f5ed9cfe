//! GGUF, llama.cpp's model format: reading and writing the container ([`reader`],
//! [`writer`]), and loading its models into tunesmith.

pub mod export;
pub mod load;
pub mod mixture;
pub mod reader;
pub mod testing;
pub mod tokenizer;
pub mod writer;

pub use reader::{is_gguf, GgufFile, TensorInfo, Value};
pub use writer::GgufWriter;

use std::path::{Path, PathBuf};

use crate::error::{ModelError, Result};

/// The Hugging Face companion folder of a GGUF file: its `config.json`, `tokenizer.json` and
/// `tokenizer_config.json` (special tokens, chat template), so that everything that reads a
/// model folder (tokenizer, chat template, saving a fine-tuned model with its tokenizer)
/// works on the file. Written once per file (keyed by its path, size and modification time)
/// under `$TUNESMITH_CACHE/gguf` (default `~/.cache/tunesmith/gguf`), atomically.
pub fn companion_dir(f: &GgufFile) -> Result<PathBuf> {
    let meta = std::fs::metadata(f.path()).map_err(|e| ModelError::io(f.path(), e))?;
    let modified =
        meta.modified().ok().and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok()).map_or(0, |d| d.as_nanos());
    let absolute = std::fs::canonicalize(f.path()).unwrap_or_else(|_| f.path().to_path_buf());
    let key = format!("{}|{}|{modified}", absolute.display(), meta.len());
    let stem = f.path().file_stem().and_then(|s| s.to_str()).unwrap_or("model");
    let dir = cache_root().join(format!("{stem}-{:016x}", fnv1a(key.as_bytes())));
    if dir.join("tokenizer.json").is_file() && dir.join("config.json").is_file() {
        return Ok(dir);
    }
    let (tokenizer, tokenizer_config) = tokenizer::hf_files(f)?;
    let config = load::config_json(f)?;
    std::fs::create_dir_all(cache_root()).map_err(|e| ModelError::io(cache_root(), e))?;
    crate::io::write_dir_atomic(&dir, |tmp| {
        let text = serde_json::to_vec(&tokenizer)
            .map_err(|e| ModelError::Json { path: tmp.join("tokenizer.json"), source: e })?;
        crate::io::write_atomic(&tmp.join("tokenizer.json"), &text)?;
        crate::io::write_json_atomic(&tmp.join("tokenizer_config.json"), &tokenizer_config)?;
        crate::io::write_json_atomic(&tmp.join("config.json"), &config)
    })?;
    Ok(dir)
}

fn cache_root() -> PathBuf {
    std::env::var_os("TUNESMITH_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/tunesmith"))
        .join("gguf")
}

/// 64-bit FNV-1a, a stable name for a cache entry.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| (h ^ b as u64).wrapping_mul(0x0100_0000_01b3))
}

/// Whether a model reference names a GGUF file.
pub fn is_gguf_reference(reference: &str) -> bool {
    is_gguf(Path::new(reference))
}
