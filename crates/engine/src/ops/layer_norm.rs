//! layer_norm over the last dimension with optional affine γ, β.

use super::{float_backend, single};
use crate::autograd::{BackwardCtx, BackwardOp};
use crate::error::{EngineError, Result};
use crate::{Graph, Tensor, Var};

struct LayerNormBackward {
    x: Tensor,
    gamma: Option<Tensor>,
    mean: Tensor,
    rstd: Tensor,
}

impl<'m> Graph<'m> {
    /// (x − mean)/√(var + eps)·γ + β over the last dimension; γ, β are `[d]`.
    pub fn layer_norm(&self, x: &Var, gamma: Option<&Var>, beta: Option<&Var>, eps: f64) -> Result<Var> {
        const OP: &str = "layer_norm";
        let _t = crate::profile::timer("fwd", OP);
        let mut vars = vec![x];
        vars.extend(gamma);
        vars.extend(beta);
        let be = float_backend(OP, &vars)?;
        let d = *x.shape().last().ok_or_else(|| EngineError::shape(OP, x.shape(), &[], "x must have rank ≥ 1"))?;
        for p in gamma.iter().chain(beta.iter()) {
            if p.shape() != [d] {
                return Err(EngineError::shape(OP, p.shape(), &[d], "γ and β must be [last dim of x]"));
            }
        }
        let (y, mean, rstd) = be.layer_norm_fwd(x.value(), gamma.map(Var::value), beta.map(Var::value), eps)?;
        Ok(self.record(y, &[Some(x), gamma, beta], || {
            Box::new(LayerNormBackward { x: x.value().clone(), gamma: gamma.map(|g| g.value().clone()), mean, rstd })
        }))
    }
}

impl BackwardOp for LayerNormBackward {
    fn name(&self) -> &'static str {
        "layer_norm"
    }

    fn backward(
        self: Box<Self>,
        _: &mut BackwardCtx<'_>,
        needs: &[bool],
        grads: Vec<Option<Tensor>>,
    ) -> Result<Vec<Option<Tensor>>> {
        let dy = single("layer_norm", grads)?;
        let be = crate::backend::common("layer_norm_backward", &[&dy, &self.x])?;
        let [dx, dg, db] = be.layer_norm_bwd(
            &dy,
            &self.x,
            self.gamma.as_ref(),
            &self.mean,
            &self.rstd,
            [needs[0], needs[1], needs[2]],
        )?;
        Ok(vec![dx, dg, db])
    }
}
