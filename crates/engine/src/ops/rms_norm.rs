//! rms_norm over the last dimension, weight γ (+ offset for Gemma-style `1 + w`).

use super::{float_backend, single};
use crate::autograd::{BackwardCtx, BackwardOp};
use crate::error::{EngineError, Result};
use crate::{Graph, Tensor, Var};

struct RmsNormBackward {
    x: Tensor,
    gamma: Tensor,
    offset: f64,
    rstd: Tensor,
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
            Box::new(RmsNormBackward { x: x.value().clone(), gamma: gamma.value().clone(), offset, rstd })
        }))
    }
}

impl BackwardOp for RmsNormBackward {
    fn name(&self) -> &'static str {
        "rms_norm"
    }

    fn backward(
        self: Box<Self>,
        _: &mut BackwardCtx<'_>,
        needs: &[bool],
        grads: Vec<Option<Tensor>>,
    ) -> Result<Vec<Option<Tensor>>> {
        let dy = single("rms_norm", grads)?;
        let be = crate::backend::common("rms_norm_backward", &[&dy, &self.x])?;
        let [dx, dg] = be.rms_norm_bwd(&dy, &self.x, &self.gamma, self.offset, &self.rstd, [needs[0], needs[1]])?;
        Ok(vec![dx, dg])
    }
}
