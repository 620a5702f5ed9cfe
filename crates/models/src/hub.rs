//! Resolving a model reference to a local folder: an existing path, or a Hugging Face Hub repo id
//! (`org/name`, optionally `org/name@revision`) fetched through the `hf-hub` crate into the
//! standard cache. Honours `HF_ENDPOINT`, `HF_HOME`, `HF_HUB_CACHE`, `HF_TOKEN` and
//! `HF_HUB_OFFLINE` (cache only, no network).

use std::path::{Path, PathBuf};

use hf_hub::api::sync::ApiBuilder;
use hf_hub::{Cache, Repo, RepoType};

use crate::error::{ModelError, Result};

/// Files a model folder may hold besides the weights; fetched when the repo lists them.
const OPTIONAL_FILES: [&str; 9] = [
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "chat_template.jinja",
    "modules.json",
    "sentence_bert_config.json",
    "1_Pooling/config.json",
    "vocab.txt",
];

/// The Hub cache in use: `HF_HUB_CACHE`, else `HF_HOME/hub`, else `~/.cache/huggingface/hub`.
pub fn cache() -> Cache {
    match std::env::var("HF_HUB_CACHE") {
        Ok(p) if !p.is_empty() => Cache::new(PathBuf::from(p)),
        _ => Cache::from_env(),
    }
}

/// True when `HF_HUB_OFFLINE` is set to a true value.
pub fn offline() -> bool {
    std::env::var("HF_HUB_OFFLINE")
        .is_ok_and(|v| matches!(v.trim().to_ascii_lowercase().as_str(), "1" | "true" | "yes" | "on"))
}

fn split_revision(reference: &str) -> (&str, &str) {
    match reference.split_once('@') {
        Some((id, rev)) if !rev.is_empty() => (id, rev),
        _ => (reference, "main"),
    }
}

fn looks_like_repo_id(s: &str) -> bool {
    let id = split_revision(s).0;
    let parts: Vec<&str> = id.split('/').collect();
    (1..=2).contains(&parts.len())
        && parts.iter().all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)))
        && !id.starts_with('.')
}

/// A local folder for `reference`: the path itself if it exists, else the Hub snapshot.
pub fn resolve_model(reference: &str) -> Result<PathBuf> {
    let p = Path::new(reference);
    if p.exists() {
        return Ok(p.to_path_buf());
    }
    if !looks_like_repo_id(reference) {
        return Err(ModelError::io(
            p,
            std::io::Error::new(std::io::ErrorKind::NotFound, "no such folder (and not a Hub repo id)"),
        ));
    }
    let (id, revision) = split_revision(reference);
    let repo = Repo::with_revision(id.to_string(), RepoType::Model, revision.to_string());
    if offline() {
        return resolve_cached(id, &repo);
    }
    let endpoint = std::env::var("HF_ENDPOINT").unwrap_or_else(|_| "https://huggingface.co".into());
    let token = std::env::var("HF_TOKEN").ok().filter(|t| !t.is_empty());
    let hub_err = |why: String| ModelError::Hub { id: id.to_string(), why };
    let api = ApiBuilder::from_cache(cache())
        .with_endpoint(endpoint.trim_end_matches('/').to_string())
        .with_token(token)
        .with_progress(false)
        .with_retries(2)
        .build()
        .map_err(|e| hub_err(e.to_string()))?;
    let api_repo = api.repo(repo);
    let info = api_repo.info().map_err(|e| hub_err(format!("fetching repo info from {endpoint}: {e}")))?;
    let listed: Vec<String> = info.siblings.iter().map(|s| s.rfilename.clone()).collect();
    let get = |f: &str| api_repo.get(f).map_err(|e| hub_err(format!("downloading {f}: {e}")));
    if !listed.iter().any(|f| f == "config.json") {
        return Err(hub_err("the repo has no config.json; is it a transformers model?".into()));
    }
    let config = get("config.json")?;
    for f in OPTIONAL_FILES {
        if listed.iter().any(|l| l == f) {
            get(f)?;
        }
    }
    if listed.iter().any(|f| f == "model.safetensors") {
        get("model.safetensors")?;
    } else if listed.iter().any(|f| f == "model.safetensors.index.json") {
        let index = get("model.safetensors.index.json")?;
        for shard in shard_files(&index)? {
            get(&shard)?;
        }
    } else {
        return Err(hub_err("the repo has no model.safetensors or model.safetensors.index.json".into()));
    }
    Ok(config.parent().expect("a file in the snapshot").to_path_buf())
}

fn shard_files(index: &Path) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(index).map_err(|e| ModelError::io(index, e))?;
    let v: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| ModelError::Json { path: index.into(), source: e })?;
    let map = v
        .get("weight_map")
        .and_then(|m| m.as_object())
        .ok_or_else(|| ModelError::config(index, "weight_map", "must be an object"))?;
    let mut files: Vec<String> = map.values().filter_map(|s| s.as_str().map(String::from)).collect();
    files.sort();
    files.dedup();
    Ok(files)
}

fn resolve_cached(id: &str, repo: &Repo) -> Result<PathBuf> {
    let cached = cache().repo(repo.clone());
    let config = cached.get("config.json").ok_or_else(|| ModelError::Hub {
        id: id.to_string(),
        why: format!(
            "HF_HUB_OFFLINE is set and the model is not in the cache ({}); download it once online or pass a local folder",
            cache().path().display()
        ),
    })?;
    let dir = config.parent().expect("a file in the snapshot").to_path_buf();
    if !dir.join("model.safetensors").exists() && !dir.join("model.safetensors.index.json").exists() {
        return Err(ModelError::Hub {
            id: id.to_string(),
            why: "HF_HUB_OFFLINE is set and the cached snapshot has no weights".into(),
        });
    }
    Ok(dir)
}
