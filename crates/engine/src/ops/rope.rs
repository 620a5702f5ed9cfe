//! Rotary position embedding (HF "rotate half" layout) and its cos/sin tables, including
//! rope_theta and the linear, dynamic-NTK and Llama-3 frequency scalings. Tables are computed
//! in the compute dtype with the same operation order as transformers (f32 for f32).

use super::{float_backend, single};
use crate::autograd::{BackwardCtx, BackwardOp};
use crate::dtype::{DType, Real};
use crate::error::{EngineError, Result};
use crate::{Device, Graph, Tensor, Var};

/// How rotary frequencies are rescaled for long contexts (HF `rope_scaling`).
#[derive(Debug, Clone, PartialEq, Default)]
pub enum RopeScaling {
    /// Plain 1/θ^(2i/d).
    #[default]
    None,
    /// Positions divided by `factor` (inv_freq / factor).
    Linear {
        /// Scale factor.
        factor: f64,
    },
    /// Dynamic NTK: θ grows once the sequence exceeds the trained length.
    Dynamic {
        /// Scale factor.
        factor: f64,
        /// Trained context length (max_position_embeddings).
        original_max_position_embeddings: usize,
    },
    /// Llama 3.x frequency-dependent scaling.
    Llama3 {
        /// Scale factor.
        factor: f64,
        /// Low-frequency factor.
        low_freq_factor: f64,
        /// High-frequency factor.
        high_freq_factor: f64,
        /// Trained context length before scaling.
        original_max_position_embeddings: usize,
    },
}

/// The inverse frequencies for `rot_dim` rotated features, in the arithmetic of `T`.
fn inv_freq<T: Real>(rot_dim: usize, theta: f64, scaling: &RopeScaling, seq_len: usize) -> Vec<T> {
    let half = rot_dim / 2;
    let mut base = theta;
    if let RopeScaling::Dynamic { factor, original_max_position_embeddings: orig } = scaling {
        if seq_len > *orig {
            let f = (factor * seq_len as f64 / *orig as f64) - (factor - 1.0);
            base = theta * f.powf(rot_dim as f64 / (rot_dim as f64 - 2.0));
        }
    }
    let base_t = T::from_f64(base);
    let dim_t = T::from_f64(rot_dim as f64);
    let mut inv: Vec<T> = (0..half).map(|i| T::ONE / base_t.powf(T::from_f64((2 * i) as f64) / dim_t)).collect();
    match scaling {
        RopeScaling::None | RopeScaling::Dynamic { .. } => {}
        RopeScaling::Linear { factor } => {
            let f = T::from_f64(*factor);
            inv.iter_mut().for_each(|v| *v /= f);
        }
        RopeScaling::Llama3 { factor, low_freq_factor, high_freq_factor, original_max_position_embeddings } => {
            let old = T::from_f64(*original_max_position_embeddings as f64);
            let (lf, hf, f) = (T::from_f64(*low_freq_factor), T::from_f64(*high_freq_factor), T::from_f64(*factor));
            let low_wavelen = old / lf;
            let high_wavelen = old / hf;
            let two_pi = T::from_f64(2.0 * std::f64::consts::PI);
            for v in inv.iter_mut() {
                let wavelen = two_pi / *v;
                let scaled = if wavelen > low_wavelen { *v / f } else { *v };
                let smooth = (old / wavelen - lf) / (hf - lf);
                let smoothed = (T::ONE - smooth) * scaled / f + smooth * scaled;
                let medium = wavelen >= high_wavelen && wavelen <= low_wavelen;
                *v = if medium { smoothed } else { scaled };
            }
        }
    }
    inv
}

/// Per-token cos/sin tables `[tokens, rot_dim/2]` for one batch of positions.
#[derive(Debug, Clone)]
pub struct RopeTables {
    /// cos(pos·inv_freq)·attention_scaling.
    pub cos: Tensor,
    /// sin(pos·inv_freq)·attention_scaling.
    pub sin: Tensor,
    /// Number of rotated features per head (even).
    pub rot_dim: usize,
}

impl RopeTables {
    /// Builds tables for `positions` (one per token, any batch layout flattened).
    pub fn new(
        positions: &[i64],
        rot_dim: usize,
        theta: f64,
        scaling: &RopeScaling,
        dtype: DType,
        device: Device,
    ) -> Result<RopeTables> {
        if !rot_dim.is_multiple_of(2) || rot_dim == 0 {
            return Err(EngineError::invalid("rope", format!("rotary dimension {rot_dim} must be even and positive")));
        }
        let seq_len = positions.iter().copied().max().map_or(0, |m| m as usize + 1);
        let (cos, sin) = match dtype {
            DType::F32 => tables::<f32>(positions, rot_dim, theta, scaling, seq_len),
            DType::F64 => tables::<f64>(positions, rot_dim, theta, scaling, seq_len),
            other => return Err(EngineError::DType { op: "rope", got: other, expected: "f32 or f64".into() }),
        }?;
        Ok(RopeTables { cos: cos.to_device(device)?, sin: sin.to_device(device)?, rot_dim })
    }
}

fn tables<T: Real + crate::storage::HostElement>(
    positions: &[i64],
    rot_dim: usize,
    theta: f64,
    scaling: &RopeScaling,
    seq_len: usize,
) -> Result<(Tensor, Tensor)> {
    let inv = inv_freq::<T>(rot_dim, theta, scaling, seq_len);
    let half = rot_dim / 2;
    let mut cos = Vec::with_capacity(positions.len() * half);
    let mut sin = Vec::with_capacity(positions.len() * half);
    for &p in positions {
        let pt = T::from_f64(p as f64);
        for &f in &inv {
            let a = pt * f;
            cos.push(a.cos());
            sin.push(a.sin());
        }
    }
    Ok((Tensor::from_vec(cos, &[positions.len(), half])?, Tensor::from_vec(sin, &[positions.len(), half])?))
}

struct RopeBackward {
    tables: RopeTables,
}

impl<'m> Graph<'m> {
    /// Rotates `x [..., heads, head_dim]` whose leading dims flatten to the tables' tokens.
    pub fn rope(&self, x: &Var, tables: &RopeTables) -> Result<Var> {
        const OP: &str = "rope";
        let _t = crate::profile::timer("fwd", OP);
        let be = float_backend(OP, &[x])?;
        let s = x.shape();
        if s.len() < 3 {
            return Err(EngineError::shape(OP, s, &[], "x must be [..., heads, head_dim]"));
        }
        let head_dim = s[s.len() - 1];
        let tokens: usize = s[..s.len() - 2].iter().product();
        if tables.cos.shape() != [tokens, tables.rot_dim / 2] || tables.rot_dim > head_dim {
            return Err(EngineError::shape(
                OP,
                s,
                tables.cos.shape(),
                format!("tables must be [tokens = {tokens}, rot_dim/2] with rot_dim ≤ head_dim {head_dim}"),
            ));
        }
        if tables.cos.dtype() != x.value().dtype() {
            return Err(EngineError::DType {
                op: OP,
                got: tables.cos.dtype(),
                expected: x.value().dtype().name().into(),
            });
        }
        let y = be.rope(x.value(), &tables.cos, &tables.sin, tables.rot_dim, false)?;
        Ok(self.record(y, &[Some(x)], || Box::new(RopeBackward { tables: tables.clone() })))
    }
}

impl BackwardOp for RopeBackward {
    fn name(&self) -> &'static str {
        "rope"
    }

    fn backward(
        self: Box<Self>,
        _: &mut BackwardCtx<'_>,
        _needs: &[bool],
        grads: Vec<Option<Tensor>>,
    ) -> Result<Vec<Option<Tensor>>> {
        let dy = single("rope", grads)?;
        let be = crate::backend::common("rope_backward", &[&dy])?;
        Ok(vec![Some(be.rope(&dy, &self.tables.cos, &self.tables.sin, self.tables.rot_dim, true)?)])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn llama3_scaling_keeps_high_and_scales_low_frequencies() {
        let s = RopeScaling::Llama3 {
            factor: 8.0,
            low_freq_factor: 1.0,
            high_freq_factor: 4.0,
            original_max_position_embeddings: 8192,
        };
        let plain = inv_freq::<f64>(64, 500_000.0, &RopeScaling::None, 0);
        let scaled = inv_freq::<f64>(64, 500_000.0, &s, 0);
        assert_eq!(plain[0], scaled[0]);
        assert!((scaled[31] - plain[31] / 8.0).abs() < 1e-15);
    }
}
