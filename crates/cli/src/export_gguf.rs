//! `tunesmith export RUN --format gguf|gguf-lora`: a run whose base model is a GGUF file,
//! back to GGUF: the fine-tuned model (LoRA merged) or the LoRA adapter in llama.cpp's format.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde_json::Value;
use tunesmith_models::gguf::export::{self, ExportQuant};
use tunesmith_models::gguf::GgufFile;
use tunesmith_models::{lora, LoadOptions, Model, Task};

use crate::BadInput;

/// The GGUF file a run's base model came from, per its manifest.
fn base_gguf(run_dir: &Path) -> Result<PathBuf> {
    let path = run_dir.join("manifest.json");
    let manifest: Value = serde_json::from_str(
        &std::fs::read_to_string(&path)
            .with_context(|| format!("{}: no manifest.json; is this a run directory?", run_dir.display()))?,
    )?;
    let base = manifest["config"]["model"]["path"].as_str().context("manifest lacks config.model.path")?;
    if !tunesmith_models::gguf::is_gguf_reference(base) {
        return Err(BadInput(format!(
            "{}: the run's base model {base} is not a GGUF file; GGUF export needs a GGUF base (use --format hf or peft)",
            run_dir.display()
        ))
        .into());
    }
    if manifest["config"]["task"]["kind"].as_str() != Some("causal_lm") {
        return Err(BadInput(format!("{}: GGUF export is for causal_lm runs", run_dir.display())).into());
    }
    Ok(PathBuf::from(base))
}

/// Exports a run to GGUF: the model with `quant` (`lora` false) or its LoRA adapter.
pub fn export(run_dir: &Path, lora_only: bool, quant: &str, out: &Path) -> Result<()> {
    let quant = ExportQuant::parse(quant).ok_or_else(|| {
        BadInput(format!("--quant {quant} is not supported for GGUF export (use f32, f16, q8_0 or q4_k_m)"))
    })?;
    let source_path = base_gguf(run_dir)?;
    let source = GgufFile::open(&source_path)?;
    let fin = run_dir.join("final");
    let adapter = fin.join("adapter");
    let full = fin.join("model");
    let model = if adapter.is_dir() {
        let (mut model, _) = tunesmith_models::gguf::load::load_file(&source, &LoadOptions::new(Task::CausalLm))?;
        lora::load_adapter(&mut model, &adapter)?;
        if !lora_only {
            lora::merge_and_unload(&mut model)?;
        }
        model
    } else if full.is_dir() {
        if lora_only {
            return Err(BadInput(format!("{}: no LoRA adapter; use --format gguf", run_dir.display())).into());
        }
        Model::load(&full, &LoadOptions::new(Task::CausalLm))?.0
    } else {
        return Err(
            BadInput(format!("{}: no final/adapter or final/model; has the run finished?", run_dir.display())).into()
        );
    };
    if let Some(parent) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    if lora_only {
        export::write_lora(&source, &model, out)?;
    } else {
        export::write_model(&source, &model, quant, out)?;
    }
    Ok(())
}
