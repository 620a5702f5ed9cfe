//! layer_norm over the last dimension with optional affine γ, β.

use super::{float_backend, single};
use crate::autograd::{BackwardCtx, BackwardOp};
use crate::cpu::elementwise::BinaryOp;
use crate::error::{EngineError, Result};
use crate::{Graph, Tensor, Var};

struct LayerNormBackward {
    x: Tensor,
    gamma: Option<Tensor>,
    mean: Tensor,
    rstd: Tensor,
    eps: f64,
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
            Box::new(LayerNormBackward {
                x: x.value().clone(),
                gamma: gamma.map(|g| g.value().clone()),
                mean,
                rstd,
                eps,
            })
        }))
    }
}

impl BackwardOp for LayerNormBackward {
    fn name(&self) -> &'static str {
        "layer_norm"
    }

    fn backward(
        self: Box<Self>,
        ctx: &mut BackwardCtx<'_>,
        needs: &[bool],
        grads: Vec<Option<Tensor>>,
    ) -> Result<Vec<Option<Tensor>>> {
        const OP: &str = "layer_norm";
        let dy = single(OP, grads)?;
        let be = crate::backend::common("layer_norm_backward", &[&dy, &self.x])?;
        let d = self.x.shape().last().copied().unwrap_or(1);
        let n = self.x.numel() / d.max(1);
        let g_split = if needs[1] { ctx.per_example_runs(OP, 1, n)? } else { None };
        let b_split = if needs[2] { ctx.per_example_runs(OP, 2, n)? } else { None };
        let [dx, mut dg, mut db] = be.layer_norm_bwd(
            &dy,
            &self.x,
            self.gamma.as_ref(),
            &self.mean,
            &self.rstd,
            [needs[0], needs[1] && g_split.is_none(), needs[2] && b_split.is_none()],
        )?;
        let dy2 = dy.reshape(&[n, d])?;
        if let Some((runs, e)) = g_split {
            // dγ_e = Σ_rows dy ⊙ x̂, x̂ the normalized input.
            let (xhat, _, _) = be.layer_norm_fwd(&self.x, None, None, self.eps)?;
            let prod = be.binary(BinaryOp::Mul, &dy2, &xhat.reshape(&[n, d])?)?;
            dg = Some(be.segment_sum(&prod, &runs, e)?);
        }
        if let Some((runs, e)) = b_split {
            db = Some(be.segment_sum(&dy2, &runs, e)?);
        }
        Ok(vec![dx, dg, db])
    }
}
