//! GGUF out: a fine-tuned model as a GGUF file llama.cpp loads, and a LoRA adapter in
//! llama.cpp's adapter format (`general.type = adapter`, `adapter.type = lora`,
//! `adapter.lora.alpha`, tensors `<name>.lora_a` `[r, in]` and `<name>.lora_b` `[out, r]`).
//!
//! Both start from the GGUF file the model was loaded from: its metadata (architecture,
//! tokenizer, chat template) is carried over and its tensor names and order kept; tunesmith's
//! Hugging Face-named weights are mapped back, with llama's q/k rows permuted to llama.cpp's
//! interleaved rotary layout and Gemma's norms stored as 1 + γ, as llama.cpp's converter does.

use std::collections::HashMap;
use std::path::Path;

use tunesmith_engine::quant::{self, GgmlType};
use tunesmith_engine::Tensor;

use super::load::hf_name_for;
use super::mixture;
use super::reader::{GgufFile, Value};
use super::writer::GgufWriter;
use crate::error::{ModelError, Result};
use crate::layers::Adapter;
use crate::lora::{self, LoraConfig, TargetModules};
use crate::model::Model;

/// The weight encodings `export --format gguf --quant` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportQuant {
    /// 32-bit floats (lossless).
    F32,
    /// IEEE half.
    F16,
    /// ggml's 8-bit blocks of 32.
    Q8_0,
    /// llama.cpp's Q4_K_M mixture: Q4_K, with Q6_K where it matters (see [`super::mixture`]).
    Q4KM,
}

impl ExportQuant {
    /// Parses `f32`, `f16`, `q8_0` or `q4_k_m`.
    pub fn parse(s: &str) -> Option<ExportQuant> {
        match s.to_ascii_lowercase().as_str() {
            "f32" => Some(ExportQuant::F32),
            "f16" => Some(ExportQuant::F16),
            "q8_0" => Some(ExportQuant::Q8_0),
            "q4_k_m" => Some(ExportQuant::Q4KM),
            _ => None,
        }
    }

    /// `general.file_type` of a file whose matrices are in this encoding (llama.cpp's ftype).
    fn file_type(self) -> u32 {
        match self {
            ExportQuant::F32 => 0,
            ExportQuant::F16 => 1,
            ExportQuant::Q8_0 => 7,
            ExportQuant::Q4KM => 15,
        }
    }
}

/// The inverse of [`crate::llama2c::permute_rotary`]: Hugging Face rotate-half rows back to
/// llama.cpp's interleaved pairs.
fn unpermute_rotary(w: &[f32], n_heads: usize, rows: usize, cols: usize) -> Vec<f32> {
    let mut inverse = vec![0; rows];
    for (hf, src) in crate::llama2c::interleaved_source_rows(n_heads, rows).into_iter().enumerate() {
        inverse[src] = hf;
    }
    crate::llama2c::gather_rows(w, &inverse, cols)
}

/// Rows of a q or k projection (or of its LoRA B) in the file's layout.
fn to_file_layout(arch: &str, hf: &str, data: Vec<f32>, rows: usize, cols: usize, model: &Model) -> Vec<f32> {
    let c = &model.config;
    if arch == "llama" || arch == "mistral" {
        if hf.contains(".q_proj.") {
            return unpermute_rotary(&data, c.num_heads, rows, cols);
        }
        if hf.contains(".k_proj.") {
            return unpermute_rotary(&data, c.num_kv_heads, rows, cols);
        }
    }
    data
}

/// The metadata of `source` with `overrides` applied (in place, or appended).
fn metadata(source: &GgufFile, overrides: &[(&str, Value)], drop: &[&str]) -> GgufWriter {
    let mut w = GgufWriter::new();
    for (k, v) in &source.metadata {
        if !drop.contains(&k.as_str()) {
            w.set(k, v.clone());
        }
    }
    for (k, v) in overrides {
        w.set(k, v.clone());
    }
    w
}

/// Writes `model` (adapters merged by the caller) as a GGUF file shaped like `source`, the
/// file its base came from: matrices in `quant` (rows not a multiple of 32 stay F16 for
/// Q8_0), vectors in F32, as llama.cpp's converter writes them.
pub fn write_model(source: &GgufFile, model: &Model, quant: ExportQuant, out: &Path) -> Result<()> {
    let arch = source.str("general.architecture")?.to_string();
    let mut tensors: HashMap<String, Tensor> = model.export_tensors()?.into_iter().collect();
    let mut w = metadata(source, &[("general.file_type", Value::U32(quant.file_type()))], &[]);
    let has_output = source.tensors.iter().any(|t| t.name == "output.weight");
    for info in &source.tensors {
        let Some(hf) = hf_name_for(&arch, &info.name) else { continue };
        let t = tensors.remove(&hf).ok_or_else(|| {
            ModelError::Invalid(format!("GGUF export: the model has no tensor {hf} for {}", info.name))
        })?;
        let shape = t.shape().to_vec();
        let mut data = t.to_vec::<f32>()?;
        if shape.len() == 2 {
            data = to_file_layout(&arch, &hf, data, shape[0], shape[1], model);
        }
        if arch == "gemma3" && hf.ends_with("norm.weight") {
            data.iter_mut().for_each(|v| *v += 1.0);
        }
        let cols = shape[shape.len() - 1];
        let ty = match (shape.len(), quant) {
            (1, _) => GgmlType::F32,
            (_, ExportQuant::F32) => GgmlType::F32,
            (_, ExportQuant::F16) => GgmlType::F16,
            (_, ExportQuant::Q8_0) if cols % 32 == 0 => GgmlType::Q8_0,
            (_, ExportQuant::Q8_0) => GgmlType::F16,
            (dims, ExportQuant::Q4KM) => {
                match mixture::q4_k_m_type(&info.name, dims, cols, model.num_layers(), has_output) {
                    ty if cols % ty.block_len() == 0 => ty,
                    _ => GgmlType::F16,
                }
            }
        };
        w.add_tensor(&info.name, &shape, ty, quant::quantize(ty, &data)?)?;
    }
    w.write(out)
}

/// The GGUF name of an adapted module's weight (`model.layers.3.self_attn.q_proj` →
/// `blk.3.attn_q.weight`), from the source file's tensors.
fn gguf_names(source: &GgufFile, arch: &str) -> HashMap<String, String> {
    source
        .tensors
        .iter()
        .filter_map(|t| {
            hf_name_for(arch, &t.name).map(|hf| (hf.trim_end_matches(".weight").to_string(), t.name.clone()))
        })
        .collect()
}

/// Writes the LoRA adapters attached to `model` as a llama.cpp LoRA GGUF for the base
/// `source`. llama.cpp scales by `adapter.lora.alpha / r`; the alpha written is our scale × r,
/// so rsLoRA adapters keep their effective scale.
pub fn write_lora(source: &GgufFile, model: &Model, out: &Path) -> Result<()> {
    let arch = source.str("general.architecture")?.to_string();
    let names = gguf_names(source, &arch);
    let mut scale_r: Option<f64> = None;
    let mut w = GgufWriter::new();
    w.set("general.architecture", Value::String(arch.clone()))
        .set("general.type", Value::String("adapter".into()))
        .set("adapter.type", Value::String("lora".into()));
    let mut count = 0;
    for l in model.linears() {
        let Some(Adapter::Lora(a)) = &l.adapter else { continue };
        let gguf = names.get(&l.module).ok_or_else(|| {
            ModelError::Invalid(format!("GGUF LoRA export: {} has no tensor in {}", l.module, source.path().display()))
        })?;
        let base = gguf.trim_end_matches(".weight");
        let at = model.params.get(a.a).value.clone();
        let bt = model.params.get(a.b).value.clone();
        let r = at.shape()[0];
        let alpha = a.scale * r as f64;
        if scale_r.is_some_and(|s| (s - alpha).abs() > 1e-9 * alpha.abs().max(1.0)) {
            return Err(ModelError::Invalid(
                "GGUF LoRA export: adapters of different alpha/r cannot share one file".into(),
            ));
        }
        scale_r = Some(alpha);
        let b =
            to_file_layout(&arch, &format!("{}.", l.module), bt.to_vec::<f32>()?, bt.shape()[0], bt.shape()[1], model);
        w.add_tensor(
            &format!("{base}.weight.lora_a"),
            at.shape(),
            GgmlType::F32,
            quant::quantize(GgmlType::F32, &at.to_vec::<f32>()?)?,
        )?;
        w.add_tensor(&format!("{base}.weight.lora_b"), bt.shape(), GgmlType::F32, quant::quantize(GgmlType::F32, &b)?)?;
        count += 1;
    }
    let Some(alpha) = scale_r else {
        return Err(ModelError::Invalid("GGUF LoRA export: the model has no LoRA adapters".into()));
    };
    w.set("adapter.lora.alpha", Value::F32(alpha as f32));
    debug_assert!(count > 0);
    w.write(out)
}

/// One adapted module of a LoRA GGUF: its HF module name, A and its shape, B and its shape.
type LoraPair = (String, Vec<f32>, Vec<usize>, Vec<f32>, Vec<usize>);

/// Attaches the LoRA adapters of a llama.cpp LoRA GGUF (as [`write_lora`] writes them) to
/// `model`, loaded from `source`. Returns how many layers were adapted.
pub fn load_lora(model: &mut Model, source: &GgufFile, adapter: &Path) -> Result<usize> {
    let f = GgufFile::open(adapter)?;
    if f.get("general.type").and_then(Value::as_str) != Some("adapter")
        || f.get("adapter.type").and_then(Value::as_str) != Some("lora")
    {
        return Err(ModelError::format(adapter, "not a LoRA adapter (general.type = adapter, adapter.type = lora)"));
    }
    let arch = source.str("general.architecture")?.to_string();
    if f.str("general.architecture")? != arch {
        return Err(ModelError::format(
            adapter,
            format!("adapter for architecture {} applied to a {arch} model", f.str("general.architecture")?),
        ));
    }
    let alpha = f
        .f64_opt("adapter.lora.alpha")
        .ok_or_else(|| ModelError::config(adapter, "adapter.lora.alpha", "missing from the adapter"))?;
    let by_gguf: HashMap<String, String> = gguf_names(source, &arch).into_iter().map(|(hf, g)| (g, hf)).collect();
    let mut pairs: Vec<LoraPair> = Vec::new();
    for t in f.tensors.iter().filter(|t| t.name.ends_with(".lora_a")) {
        let weight = t.name.trim_end_matches(".lora_a");
        let b = f
            .tensor(&format!("{weight}.lora_b"))
            .ok_or_else(|| ModelError::format(adapter, format!("{} has no matching lora_b", t.name)))?;
        let module = by_gguf
            .get(weight)
            .ok_or_else(|| ModelError::format(adapter, format!("{weight} is not a tensor of the base model")))?;
        pairs.push((module.clone(), f.dequantize(t)?, t.shape(), f.dequantize(b)?, b.shape()));
    }
    let Some(r) = pairs.first().map(|p| p.2[0]) else {
        return Err(ModelError::format(adapter, "holds no LoRA tensors"));
    };
    if pairs.iter().any(|p| p.2[0] != r || p.4[1] != r) {
        return Err(ModelError::format(adapter, "LoRA tensors of different ranks are not supported"));
    }
    let mut cfg = LoraConfig::new(r, alpha, TargetModules::Names(pairs.iter().map(|p| p.0.clone()).collect()));
    cfg.seed = 0;
    lora::attach(model, &cfg)?;
    for (module, a, a_shape, b, b_shape) in pairs {
        let b = super::load::to_hf_layout(&arch, &module, b, b_shape[0], b_shape[1], model);
        for (suffix, data, shape) in [("lora_A", a, a_shape), ("lora_B", b, b_shape)] {
            let name = format!("{module}.{suffix}.weight");
            let id = model.params.id(&name).ok_or_else(|| ModelError::Invalid(format!("no parameter {name}")))?;
            model.params.set_value(id, Tensor::from_vec(data, &shape)?)?;
        }
    }
    Ok(model.linears().iter().filter(|l| l.adapter.is_some()).count())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unpermute_inverts_permute() {
        let (heads, rows, cols) = (3, 12, 5);
        let w: Vec<f32> = (0..rows * cols).map(|i| i as f32).collect();
        let p = crate::llama2c::permute_rotary(&w, heads, rows, cols);
        assert_ne!(p, w);
        assert_eq!(unpermute_rotary(&p, heads, rows, cols), w);
    }
}
