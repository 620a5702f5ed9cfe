//! Test support shared by tunesmith's crates.

pub mod fake_hub;

use std::path::PathBuf;

/// The all-MiniLM-L6-v2 folder the tests load: `$TUNESMITH_MINILM`, else the cache that
/// scripts/fetch-test-models.sh fills (`$TUNESMITH_CACHE`, default ~/.cache/tunesmith).
pub fn minilm_dir() -> PathBuf {
    if let Some(p) = std::env::var_os("TUNESMITH_MINILM") {
        return PathBuf::from(p);
    }
    let cache = std::env::var_os("TUNESMITH_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/tunesmith"));
    cache.join("models/all-MiniLM-L6-v2")
}
