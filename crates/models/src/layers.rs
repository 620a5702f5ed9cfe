//! Building blocks shared by the families: a linear layer carrying an optional adapter (the
//! seam every parameter-efficient method plugs into), and layer/RMS norms.

use std::sync::Arc;

use tunesmith_engine::ops::LoraSpec;
use tunesmith_engine::quant::QuantMatrix;
use tunesmith_engine::{Graph, ParamId, ParamStore, Tensor, Var};

use crate::checkpoint_names::take_param;
use crate::error::Result;
use crate::weights::Checkpoint;

/// LoRA state of one adapted linear layer.
#[derive(Debug, Clone)]
pub struct LoraAdapter {
    /// A, `[r, in]`.
    pub a: ParamId,
    /// B, `[out, r]`.
    pub b: ParamId,
    /// alpha/r (or alpha/√r with rsLoRA).
    pub scale: f64,
    /// Dropout on the low-rank path's input.
    pub dropout: f32,
    /// The base weight before merging, kept so that unmerge restores it bit for bit.
    pub merged_from: Option<Tensor>,
    /// Whether the low-rank path is applied; switched off, the layer computes the base model
    /// (PEFT's `disable_adapter()`, used for a preference run's reference pass).
    pub active: bool,
}

/// A parameter-efficient adapter attached to a linear layer.
#[derive(Debug, Clone)]
pub enum Adapter {
    /// Low-rank adaptation.
    Lora(LoraAdapter),
}

/// y = x·Wᵀ + b (W `[out, in]`), optionally adapted.
#[derive(Debug, Clone)]
pub struct Linear {
    /// Module path as in the checkpoint, e.g. `model.layers.0.self_attn.q_proj`.
    pub module: String,
    /// Weight parameter.
    pub weight: ParamId,
    /// Bias parameter.
    pub bias: Option<ParamId>,
    /// Input features.
    pub in_features: usize,
    /// Output features.
    pub out_features: usize,
    /// The checkpoint stores W as `[in, out]` (GPT-2's Conv1D); saving transposes it back.
    pub stored_transposed: bool,
    /// Attached adapter.
    pub adapter: Option<Adapter>,
    /// The frozen weight kept quantized (QLoRA); the `weight` parameter is then released
    /// (empty) and every use of W reads this.
    pub quantized: Option<Arc<QuantMatrix>>,
}

impl Linear {
    /// Loads `<module>.weight` (and `.bias` when `bias`) from a checkpoint into the store.
    pub fn load(
        ck: &Checkpoint,
        store: &mut ParamStore,
        module: &str,
        in_features: usize,
        out_features: usize,
        bias: bool,
        stored_transposed: bool,
    ) -> Result<Linear> {
        let shape = if stored_transposed { [in_features, out_features] } else { [out_features, in_features] };
        let wname = format!("{module}.weight");
        let quantized = ck
            .take_quantized(&wname)
            .filter(|q| !stored_transposed && q.rows() == out_features && q.cols() == in_features);
        let weight = match &quantized {
            // The weight lives in the quantized matrix; the parameter stays empty and frozen.
            Some(_) => store.insert(wname, Tensor::from_vec(Vec::<f32>::new(), &[0])?, false)?,
            None => take_param(ck, store, &wname, &shape, stored_transposed)?,
        };
        let bias =
            if bias { Some(take_param(ck, store, &format!("{module}.bias"), &[out_features], false)?) } else { None };
        Ok(Linear {
            module: module.to_string(),
            weight,
            bias,
            in_features,
            out_features,
            stored_transposed,
            adapter: None,
            quantized,
        })
    }

    /// W in f32: the parameter, or the quantized weight dequantized.
    pub fn weight_f32(&self, p: &ParamStore) -> Result<Tensor> {
        match &self.quantized {
            Some(q) => Ok(Tensor::from_vec(q.dequantize(), &[q.rows(), q.cols()])?),
            None => Ok(p.get(self.weight).value.clone()),
        }
    }

    /// Applies the layer (and its adapter, unless merged into the weight).
    pub fn forward<'m>(&self, g: &Graph<'m>, p: &ParamStore, x: &Var) -> Result<Var> {
        let b = self.bias.map(|id| g.param(p, id));
        if let Some(q) = &self.quantized {
            return Ok(match &self.adapter {
                Some(Adapter::Lora(l)) if l.merged_from.is_none() && l.active => g.quant_lora_linear(
                    x,
                    q,
                    b.as_ref(),
                    &g.param(p, l.a),
                    &g.param(p, l.b),
                    LoraSpec { scale: l.scale, dropout: l.dropout },
                )?,
                _ => g.quant_linear(x, q, b.as_ref())?,
            });
        }
        let w = g.param(p, self.weight);
        let y = match &self.adapter {
            Some(Adapter::Lora(l)) if l.merged_from.is_none() && l.active => g.lora_linear(
                x,
                &w,
                b.as_ref(),
                &g.param(p, l.a),
                &g.param(p, l.b),
                LoraSpec { scale: l.scale, dropout: l.dropout },
            )?,
            _ => g.linear(x, &w, b.as_ref())?,
        };
        Ok(y)
    }
}

/// LayerNorm with affine weight and bias.
#[derive(Debug, Clone, Copy)]
pub struct LayerNorm {
    /// γ.
    pub weight: ParamId,
    /// β.
    pub bias: ParamId,
    /// ε.
    pub eps: f64,
}

impl LayerNorm {
    /// Loads `<module>.weight` and `.bias` (or the old `.gamma` / `.beta` names).
    pub fn load(ck: &Checkpoint, store: &mut ParamStore, module: &str, dim: usize, eps: f64) -> Result<LayerNorm> {
        let weight = crate::checkpoint_names::take_param_any(
            ck,
            store,
            &format!("{module}.weight"),
            &[format!("{module}.gamma")],
            &[dim],
        )?;
        let bias = crate::checkpoint_names::take_param_any(
            ck,
            store,
            &format!("{module}.bias"),
            &[format!("{module}.beta")],
            &[dim],
        )?;
        Ok(LayerNorm { weight, bias, eps })
    }

    /// Applies the norm over the last dimension.
    pub fn forward<'m>(&self, g: &Graph<'m>, p: &ParamStore, x: &Var) -> Result<Var> {
        Ok(g.layer_norm(x, Some(&g.param(p, self.weight)), Some(&g.param(p, self.bias)), self.eps)?)
    }
}

/// RMSNorm with weight (Llama-style, offset 0).
#[derive(Debug, Clone, Copy)]
pub struct RmsNorm {
    /// γ.
    pub weight: ParamId,
    /// ε.
    pub eps: f64,
    /// Added to γ (Gemma's norms scale by 1 + γ).
    pub offset: f64,
}

impl RmsNorm {
    /// Loads `<module>.weight`.
    pub fn load(ck: &Checkpoint, store: &mut ParamStore, module: &str, dim: usize, eps: f64) -> Result<RmsNorm> {
        Ok(RmsNorm { weight: take_param(ck, store, &format!("{module}.weight"), &[dim], false)?, eps, offset: 0.0 })
    }

    /// The same norm scaling by γ + `offset`.
    pub fn with_offset(self, offset: f64) -> RmsNorm {
        RmsNorm { offset, ..self }
    }

    /// Applies the norm over the last dimension.
    pub fn forward<'m>(&self, g: &Graph<'m>, p: &ParamStore, x: &Var) -> Result<Var> {
        Ok(g.rms_norm(x, &g.param(p, self.weight), self.eps, self.offset)?)
    }
}
