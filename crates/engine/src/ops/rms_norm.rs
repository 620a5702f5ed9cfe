//! rms_norm over the last dimension, weight γ (+ offset for Gemma-style `1 + w`).

use super::{float_backend, single};
use crate::autograd::{BackwardCtx, BackwardOp};
use crate::cpu::elementwise::BinaryOp;
use crate::error::{EngineError, Result};
use crate::{Graph, Tensor, Var};

struct RmsNormBackward {
    x: Tensor,
    gamma: Tensor,
    offset: f64,
    rstd: Tensor,
    eps: f64,
}

impl<'m> Graph<'m> {
    /// x/√(mean(x²) + eps)·(γ + offset) over the last dimension; γ is `[d]`.
    pub fn rms_norm(&self, x: &Var, gamma: &Var, eps: f64, offset: f64) -> Result<Var> {
        const OP: &str = "rms_norm";
        let _t = crate::profile::timer("fwd", OP);
        let be = float_backend(OP, &[x, gamma])?;
        let d = *x.shape().last().ok_or_else(|| EngineError::shape(OP, x.shape(), &[], "x must have rank ≥ 1"))?;
        if gamma.shape() != [d] {
            return Err(EngineError::shape(OP, gamma.shape(), &[d], "γ must be [last dim of x]"));
        }
        let (y, rstd) = be.rms_norm_fwd(x.value(), gamma.value(), offset, eps)?;
        Ok(self.record(y, &[Some(x), Some(gamma)], || {
            Box::new(RmsNormBackward { x: x.value().clone(), gamma: gamma.value().clone(), offset, rstd, eps })
        }))
    }
}

impl BackwardOp for RmsNormBackward {
    fn name(&self) -> &'static str {
        "rms_norm"
    }

    fn backward(
        self: Box<Self>,
        ctx: &mut BackwardCtx<'_>,
        needs: &[bool],
        grads: Vec<Option<Tensor>>,
    ) -> Result<Vec<Option<Tensor>>> {
        const OP: &str = "rms_norm";
        let dy = single(OP, grads)?;
        let be = crate::backend::common("rms_norm_backward", &[&dy, &self.x])?;
        let d = self.x.shape().last().copied().unwrap_or(1);
        let n = self.x.numel() / d.max(1);
        let g_split = if needs[1] { ctx.per_example_runs(OP, 1, n)? } else { None };
        let [dx, mut dg] = be.rms_norm_bwd(
            &dy,
            &self.x,
            &self.gamma,
            self.offset,
            &self.rstd,
            [needs[0], needs[1] && g_split.is_none()],
        )?;
        if let Some((runs, e)) = g_split {
            // dγ_e = Σ_rows dy ⊙ x·rstd.
            let ones = Tensor::full(&[d], 1.0, self.x.dtype(), self.x.device())?;
            let (xn, _) = be.rms_norm_fwd(&self.x, &ones, 0.0, self.eps)?;
            let prod = be.binary(BinaryOp::Mul, &dy.reshape(&[n, d])?, &xn.reshape(&[n, d])?)?;
            dg = Some(be.segment_sum(&prod, &runs, e)?);
        }
        Ok(vec![dx, dg])
    }
}
