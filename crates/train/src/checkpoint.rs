//! Checkpoints: trainable parameters, optimizer state and trainer state, each checkpoint one
//! directory written atomically (a temporary directory renamed into place), so a crash never
//! leaves a half-written checkpoint and never loses the last good one.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tunesmith_data::batch::Position;
use tunesmith_engine::optim::OptimizerState;
use tunesmith_engine::Tensor;
use tunesmith_models::io::{write_dir_atomic, write_json_atomic};
use tunesmith_models::weights::{save_safetensors, Checkpoint};
use tunesmith_models::Model;

use crate::error::{Result, TrainError};

/// Where the trainer is: everything besides weights and optimizer moments that resuming needs.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TrainState {
    /// Optimizer steps taken.
    pub step: u64,
    /// The next batch to train on.
    pub position: Position,
    /// Best evaluation so far: (metric value, step).
    pub best: Option<(f64, u64)>,
    /// Evaluations since the best (early stopping).
    pub evals_without_improvement: usize,
    /// Gradual unfreezing stages done.
    pub unfreeze_stage: usize,
    /// Tokens trained on so far.
    pub tokens_seen: u64,
    /// Batches skipped for a non-finite loss.
    pub skipped_batches: u64,
    /// SHA-256 of the resolved config, to refuse resuming a different run.
    pub config_hash: String,
}

/// The checkpoints directory of a run.
pub fn dir(run_dir: &Path) -> PathBuf {
    run_dir.join("checkpoints")
}

fn name(step: u64) -> String {
    format!("step-{step:08}")
}

/// Complete checkpoints of a run, oldest first.
pub fn list(run_dir: &Path) -> Vec<(u64, PathBuf)> {
    let Ok(entries) = std::fs::read_dir(dir(run_dir)) else { return Vec::new() };
    let mut out: Vec<(u64, PathBuf)> = entries
        .flatten()
        .filter_map(|e| {
            let n = e.file_name().to_str()?.strip_prefix("step-")?.parse::<u64>().ok()?;
            e.path().join("state.json").exists().then(|| (n, e.path()))
        })
        .collect();
    out.sort();
    out
}

/// Writes a checkpoint of `model`'s trainable parameters, the optimizer and the state.
pub fn save(run_dir: &Path, model: &Model, opt: &OptimizerState, state: &TrainState) -> Result<PathBuf> {
    let target = dir(run_dir).join(name(state.step));
    std::fs::create_dir_all(dir(run_dir)).map_err(|e| TrainError::io(&dir(run_dir), e))?;
    let params: Vec<(String, Tensor)> =
        model.params.iter().filter(|(_, p)| p.trainable).map(|(_, p)| (p.name.clone(), p.value.clone())).collect();
    let mut meta = HashMap::new();
    meta.insert("optimizer_step".to_string(), opt.step.to_string());
    write_dir_atomic(&target, |tmp| {
        save_safetensors(&tmp.join("trainable.safetensors"), &params, None)?;
        save_safetensors(&tmp.join("optimizer.safetensors"), &opt.tensors, Some(meta))?;
        write_json_atomic(&tmp.join("state.json"), &serde_json::to_value(state).unwrap_or_default())
    })?;
    Ok(target)
}

/// A loaded checkpoint.
pub struct Loaded {
    /// Trainer state.
    pub state: TrainState,
    /// Optimizer state.
    pub optimizer: OptimizerState,
    /// Trainable parameters by name.
    pub params: Vec<(String, Tensor)>,
}

/// Reads checkpoint `path`.
pub fn load(path: &Path) -> Result<Loaded> {
    let bad = |why: String| TrainError::Checkpoint { path: path.to_path_buf(), why };
    let text =
        std::fs::read_to_string(path.join("state.json")).map_err(|e| TrainError::io(&path.join("state.json"), e))?;
    let state: TrainState = serde_json::from_str(&text).map_err(|e| bad(format!("state.json: {e}")))?;
    let read = |file: &str| -> Result<Vec<(String, Tensor)>> {
        let ck = Checkpoint::open_files(path, &[path.join(file)])?;
        let names: Vec<String> = ck.names().map(String::from).collect();
        names.into_iter().map(|n| Ok((n.clone(), ck.take(&n)?))).collect()
    };
    let params = read("trainable.safetensors")?;
    let tensors = read("optimizer.safetensors")?;
    let step = state.step;
    Ok(Loaded { optimizer: OptimizerState { step, tensors }, params, state })
}

/// Removes what a crash mid-save left in the checkpoints directory (temporary directories of an
/// unfinished checkpoint); complete checkpoints are untouched. Returns what was removed.
pub fn clean_partial(run_dir: &Path) -> Result<Vec<PathBuf>> {
    let complete: Vec<PathBuf> = list(run_dir).into_iter().map(|(_, p)| p).collect();
    let Ok(entries) = std::fs::read_dir(dir(run_dir)) else { return Ok(Vec::new()) };
    let mut removed = Vec::new();
    for e in entries.flatten() {
        let path = e.path();
        if !complete.contains(&path) {
            let r = if path.is_dir() { std::fs::remove_dir_all(&path) } else { std::fs::remove_file(&path) };
            r.map_err(|err| TrainError::io(&path, err))?;
            removed.push(path);
        }
    }
    Ok(removed)
}

/// Deletes checkpoints beyond the newest `keep_last`, never the one at `best_step`.
pub fn prune(run_dir: &Path, keep_last: usize, best_step: Option<u64>) -> Result<()> {
    let all = list(run_dir);
    let n = all.len();
    for (i, (step, path)) in all.into_iter().enumerate() {
        if i + keep_last.max(1) < n && Some(step) != best_step {
            std::fs::remove_dir_all(&path).map_err(|e| TrainError::io(&path, e))?;
        }
    }
    Ok(())
}
