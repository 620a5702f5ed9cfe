//! lora_linear: y = x·Wᵀ + b + scale·(dropout(x)·Aᵀ)·Bᵀ, one fused op. The frozen W gets no
//! gradient GEMM, the dropout mask is regenerated from its seed, and only `x·Aᵀ` (`[n, r]`) is
//! saved beyond the inputs.

use super::{float_backend, single, split_last, LoraSpec};
use crate::autograd::{BackwardCtx, BackwardOp};
use crate::error::{EngineError, Result};
use crate::{Graph, Tensor, Var};

struct LoraBackward {
    x: Tensor,
    w: Tensor,
    a: Tensor,
    bm: Tensor,
    xa: Tensor,
    spec: LoraSpec,
    seed: u64,
    x_shape: Vec<usize>,
}

impl<'m> Graph<'m> {
    /// LoRA-adapted linear layer. W `[out, in]`, b `[out]`, A `[r, in]`, B `[out, r]`.
    /// Dropout on the low-rank path is applied only when the graph is in training mode.
    pub fn lora_linear(&self, x: &Var, w: &Var, b: Option<&Var>, a: &Var, bm: &Var, spec: LoraSpec) -> Result<Var> {
        const OP: &str = "lora_linear";
        let _t = crate::profile::timer("fwd", OP);
        let mut vars = vec![x, w, a, bm];
        vars.extend(b);
        let be = float_backend(OP, &vars)?;
        let (xs, ws, as_, bs) = (x.shape(), w.shape(), a.shape(), bm.shape());
        if ws.len() != 2 || xs.is_empty() || xs[xs.len() - 1] != ws[1] {
            return Err(EngineError::shape(OP, xs, ws, "x's last dimension must equal W's second (W is [out, in])"));
        }
        if as_.len() != 2 || as_[1] != ws[1] {
            return Err(EngineError::shape(OP, as_, ws, "A must be [r, in]"));
        }
        if bs.len() != 2 || bs[0] != ws[0] || bs[1] != as_[0] {
            return Err(EngineError::shape(OP, bs, as_, "B must be [out, r] with r = A's rows"));
        }
        if let Some(b) = b {
            if b.shape() != [ws[0]] {
                return Err(EngineError::shape(OP, b.shape(), &[ws[0]], "bias must be [out]"));
            }
        }
        if !(0.0..1.0).contains(&spec.dropout) {
            return Err(EngineError::invalid(OP, format!("dropout {} must be in [0, 1)", spec.dropout)));
        }
        let spec = LoraSpec { dropout: if self.is_training() { spec.dropout } else { 0.0 }, ..spec };
        let seed = if spec.dropout > 0.0 { self.next_seed() } else { 0 };
        let (mut lead, n, inp) = split_last(xs);
        let x2 = x.value().reshape(&[n, inp])?;
        let (y, xa) = be.lora_fwd(&x2, w.value(), b.map(Var::value), a.value(), bm.value(), spec, seed)?;
        lead.push(ws[0]);
        let y = y.reshape(&lead)?;
        Ok(self.record(y, &[Some(x), Some(w), b, Some(a), Some(bm)], || {
            Box::new(LoraBackward {
                x: x2.clone(),
                w: w.value().clone(),
                a: a.value().clone(),
                bm: bm.value().clone(),
                xa,
                spec,
                seed,
                x_shape: xs.to_vec(),
            })
        }))
    }
}

impl BackwardOp for LoraBackward {
    fn name(&self) -> &'static str {
        "lora_linear"
    }

    fn backward(
        self: Box<Self>,
        ctx: &mut BackwardCtx<'_>,
        needs: &[bool],
        grads: Vec<Option<Tensor>>,
    ) -> Result<Vec<Option<Tensor>>> {
        const OP: &str = "lora_linear";
        let dy = single(OP, grads)?;
        let out = self.w.shape()[0];
        let n = dy.numel() / out.max(1);
        let dy2 = dy.reshape(&[n, out])?;
        let be = crate::backend::common("lora_linear_backward", &[&dy2])?;
        let mut split = [None, None, None, None, None];
        for (i, s) in split.iter_mut().enumerate().skip(1) {
            if needs[i] {
                *s = ctx.per_example_runs(OP, i, n)?;
            }
        }
        let mut needs = [needs[0], needs[1], needs[2], needs[3], needs[4]];
        for (need, s) in needs.iter_mut().zip(&split) {
            *need &= s.is_none();
        }
        let [dx, mut dw, mut db, mut da, mut dbm] =
            be.lora_bwd(&dy2, &self.x, &self.w, &self.a, &self.bm, &self.xa, self.spec, self.seed, needs)?;
        if split.iter().any(Option::is_some) {
            let x = if self.spec.dropout > 0.0 {
                be.dropout(&self.x, self.spec.dropout, self.seed)?
            } else {
                self.x.clone()
            };
            let scale = self.spec.scale;
            if let Some((runs, e)) = &split[1] {
                dw = Some(be.segment_outer(&dy2, &self.x, runs, *e, 1.0)?);
            }
            if let Some((runs, e)) = &split[2] {
                db = Some(be.segment_sum(&dy2, runs, *e)?);
            }
            if let Some((runs, e)) = &split[3] {
                // dA_e = scale·(dY_e·B)ᵀ·drop(x)_e.
                let dy_b = be.linear_fwd(&dy2, &be.permute(&self.bm, &[1, 0])?, None)?;
                da = Some(be.segment_outer(&dy_b, &x, runs, *e, scale)?);
            }
            if let Some((runs, e)) = &split[4] {
                // dB_e = scale·dY_eᵀ·(drop(x)·Aᵀ)_e.
                dbm = Some(be.segment_outer(&dy2, &self.xa, runs, *e, scale)?);
            }
        }
        let dx = dx.map(|g| g.reshape(&self.x_shape)).transpose()?;
        Ok(vec![dx, dw, db, da, dbm])
    }
}
