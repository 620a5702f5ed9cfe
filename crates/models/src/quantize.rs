//! Quantized frozen bases (QLoRA): after adapters are attached, the backbone's frozen linear
//! weights are replaced by a [`QuantMatrix`] (NF4 or Q8_0 quantized here, or a GGUF file's own
//! blocks) and their f32 copies freed; the layers then run through the engine's
//! `quant_linear`, and only the adapters train.

use std::collections::HashMap;
use std::sync::Arc;

use tunesmith_engine::quant::QuantMatrix;

use crate::error::{ModelError, Result};
use crate::gguf::load::{file_blocks, hf_name_for};
use crate::gguf::GgufFile;
use crate::model::Model;

/// How a frozen base is held in memory (`model.quantize`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BaseQuant {
    /// f32 (no quantization).
    None,
    /// QLoRA's 4-bit NormalFloat, blocks of 64, double-quantized scales.
    Nf4,
    /// ggml's 8-bit blocks of 32.
    Q8_0,
    /// A GGUF base's own blocks, as the file holds them.
    Keep,
}

impl BaseQuant {
    /// Parses `none`, `nf4`, `q8_0` or `keep`.
    pub fn parse(s: &str) -> Option<BaseQuant> {
        match s {
            "none" => Some(BaseQuant::None),
            "nf4" => Some(BaseQuant::Nf4),
            "q8_0" => Some(BaseQuant::Q8_0),
            "keep" => Some(BaseQuant::Keep),
            _ => None,
        }
    }
}

/// What [`quantize_frozen`] did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct QuantReport {
    /// Layers now quantized.
    pub layers: usize,
    /// Their weights' f32 bytes before.
    pub f32_bytes: usize,
    /// Their bytes after.
    pub quantized_bytes: usize,
    /// Formats used, with layer counts (`Q4_1: 210`).
    pub formats: Vec<(String, usize)>,
}

/// Quantizes every frozen linear layer of `model`'s backbone as `mode` says (layers already
/// quantized, as a GGUF base loads them, are kept); `gguf` is the file the model was loaded
/// from, required by [`BaseQuant::Keep`]. The report covers every quantized layer.
pub fn quantize_frozen(model: &mut Model, mode: BaseQuant, gguf: Option<&GgufFile>) -> Result<QuantReport> {
    let mut report = QuantReport::default();
    if mode == BaseQuant::None {
        return Ok(report);
    }
    let keep = match (mode, gguf) {
        (BaseQuant::Keep, Some(f)) => {
            let arch = f.str("general.architecture")?.to_string();
            let names: HashMap<String, usize> = f
                .tensors
                .iter()
                .enumerate()
                .filter_map(|(i, t)| hf_name_for(&arch, &t.name).map(|hf| (hf, i)))
                .collect();
            Some((f, arch, names))
        }
        (BaseQuant::Keep, None) => return Err(ModelError::Invalid(
            "model.quantize = \"keep\" keeps a GGUF file's own blocks; the base is not a GGUF file (use nf4 or q8_0)"
                .into(),
        )),
        _ => None,
    };
    let (heads, kv_heads) = (model.config.num_heads, model.config.num_kv_heads);
    let mut formats: HashMap<String, usize> = HashMap::new();
    let frozen: Vec<bool> = model.backbone_linears_mut().iter().map(|l| l.quantized.is_none()).collect::<Vec<_>>();
    let ids: Vec<_> = model.backbone_linears_mut().iter().map(|l| l.weight).collect();
    for (i, id) in ids.into_iter().enumerate() {
        let trainable = model.params.get(id).trainable;
        if trainable || !frozen[i] {
            continue;
        }
        let (module, rows, cols, transposed) = {
            let l = &model.backbone_linears_mut()[i];
            (l.module.clone(), l.out_features, l.in_features, l.stored_transposed)
        };
        if transposed {
            return Err(ModelError::Invalid(format!(
                "{module}: quantized bases of Conv1D (GPT-2) layers are not supported"
            )));
        }
        let q = match &keep {
            Some((f, arch, names)) => {
                let hf_name = format!("{module}.weight");
                let info = names
                    .get(&hf_name)
                    .map(|&k| &f.tensors[k])
                    .ok_or_else(|| ModelError::Invalid(format!("{module}: no tensor in {}", f.path().display())))?;
                file_blocks(f, arch, info, &hf_name, heads, kv_heads)?
            }
            None => {
                let w = model.params.get(id).value.to_vec::<f32>()?;
                match mode {
                    BaseQuant::Nf4 => QuantMatrix::nf4(&w, rows, cols)?,
                    _ => QuantMatrix::q8_0(&w, rows, cols)?,
                }
            }
        };
        model.params.release(id);
        model.backbone_linears_mut()[i].quantized = Some(Arc::new(q));
    }
    // Report every quantized layer, including those loaded quantized (a GGUF base).
    for l in model.backbone_linears_mut() {
        if let Some(q) = &l.quantized {
            report.layers += 1;
            report.f32_bytes += q.rows() * q.cols() * 4;
            report.quantized_bytes += q.bytes();
            *formats.entry(q.format().name().to_string()).or_default() += 1;
        }
    }
    let mut formats: Vec<(String, usize)> = formats.into_iter().collect();
    formats.sort();
    report.formats = formats;
    Ok(report)
}
