//! Hugging Face Hub dataset repos through `hf-hub`: the repo's data files (Parquet, JSON(L), CSV)
//! are fetched into the standard cache. Honours HF_ENDPOINT, HF_HOME, HF_HUB_CACHE, HF_TOKEN and
//! HF_HUB_OFFLINE (cache only).

use std::path::PathBuf;

use hf_hub::api::sync::ApiBuilder;
use hf_hub::{Cache, Repo, RepoType};

use crate::error::{DataError, Result};

const DATA_SUFFIXES: [&str; 6] = [".parquet", ".jsonl", ".json", ".csv", ".tsv", ".txt"];

fn cache() -> Cache {
    match std::env::var("HF_HUB_CACHE") {
        Ok(p) if !p.is_empty() => Cache::new(PathBuf::from(p)),
        _ => Cache::from_env(),
    }
}

fn offline() -> bool {
    std::env::var("HF_HUB_OFFLINE")
        .is_ok_and(|v| matches!(v.trim().to_ascii_lowercase().as_str(), "1" | "true" | "yes" | "on"))
}

/// Local paths of a dataset repo's data files, optionally only those under `subdir` or whose
/// name contains `split` (e.g. "train").
pub fn resolve_dataset(reference: &str, split: Option<&str>) -> Result<Vec<PathBuf>> {
    let (id, revision) = match reference.split_once('@') {
        Some((i, r)) if !r.is_empty() => (i, r),
        _ => (reference, "main"),
    };
    let repo = Repo::with_revision(id.to_string(), RepoType::Dataset, revision.to_string());
    let hub = |why: String| DataError::Hub { id: id.to_string(), why };
    let wanted = |name: &str| {
        DATA_SUFFIXES.iter().any(|s| name.ends_with(s))
            && !name.starts_with('.')
            && split.is_none_or(|sp| name.split(['/', '-', '_', '.']).any(|part| part == sp))
    };
    if offline() {
        let cached = cache().repo(repo);
        let snapshot = cached
            .get(".gitattributes")
            .or_else(|| cached.get("README.md"))
            .and_then(|p| p.parent().map(PathBuf::from))
            .ok_or_else(|| hub("HF_HUB_OFFLINE is set and the dataset is not in the cache".into()))?;
        let mut files = Vec::new();
        collect(&snapshot, &snapshot, &wanted, &mut files);
        files.sort();
        if files.is_empty() {
            return Err(hub("HF_HUB_OFFLINE is set and the cached snapshot has no data files".into()));
        }
        return Ok(files);
    }
    let endpoint = std::env::var("HF_ENDPOINT").unwrap_or_else(|_| "https://huggingface.co".into());
    let api = ApiBuilder::from_cache(cache())
        .with_endpoint(endpoint.trim_end_matches('/').to_string())
        .with_token(std::env::var("HF_TOKEN").ok().filter(|t| !t.is_empty()))
        .with_progress(false)
        .build()
        .map_err(|e| hub(e.to_string()))?;
    let api_repo = api.repo(repo);
    let info = api_repo.info().map_err(|e| hub(format!("fetching repo info from {endpoint}: {e}")))?;
    let mut names: Vec<String> = info.siblings.into_iter().map(|s| s.rfilename).filter(|n| wanted(n)).collect();
    names.sort();
    if names.is_empty() {
        return Err(hub(format!(
            "no data files{} in the repo",
            split.map(|s| format!(" for split '{s}'")).unwrap_or_default()
        )));
    }
    for marker in [".gitattributes", "README.md"] {
        let _ = api_repo.get(marker);
    }
    names.iter().map(|n| api_repo.get(n).map_err(|e| hub(format!("downloading {n}: {e}")))).collect()
}

fn collect(root: &std::path::Path, dir: &std::path::Path, wanted: &dyn Fn(&str) -> bool, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            collect(root, &p, wanted, out);
        } else if let Ok(rel) = p.strip_prefix(root) {
            if wanted(&rel.to_string_lossy()) {
                out.push(p);
            }
        }
    }
}
