//! Sequence pooling: masked mean (sentence-transformers) and CLS (first token).

use super::{float_backend, single};
use crate::autograd::{BackwardCtx, BackwardOp};
use crate::error::{EngineError, Result};
use crate::{Graph, Tensor, Var};

struct MeanPoolBackward {
    mask: Tensor,
    counts: Tensor,
    t: usize,
}

impl<'m> Graph<'m> {
    /// Mean of `x [B, T, D]` over the positions where `mask [B, T]` is nonzero → `[B, D]`.
    pub fn mean_pool(&self, x: &Var, mask: &Tensor) -> Result<Var> {
        const OP: &str = "mean_pool";
        let _t = crate::profile::timer("fwd", OP);
        let be = float_backend(OP, &[x])?;
        let s = x.shape();
        if s.len() != 3 || mask.shape() != [s[0], s[1]] {
            return Err(EngineError::shape(OP, s, mask.shape(), "x must be [B, T, D] and mask [B, T]"));
        }
        let (y, counts) = be.mean_pool_fwd(x.value(), mask)?;
        Ok(self.record(y, &[Some(x)], || Box::new(MeanPoolBackward { mask: mask.clone(), counts, t: s[1] })))
    }

    /// The first position of `x [B, T, D]` → `[B, D]`.
    pub fn cls_pool(&self, x: &Var) -> Result<Var> {
        let s = x.shape().to_vec();
        if s.len() != 3 || s[1] == 0 {
            return Err(EngineError::shape("cls_pool", &s, &[], "x must be [B, T ≥ 1, D]"));
        }
        let first = self.narrow(x, 1, 0, 1)?;
        self.reshape(&first, &[s[0], s[2]])
    }
}

impl BackwardOp for MeanPoolBackward {
    fn name(&self) -> &'static str {
        "mean_pool"
    }

    fn backward(
        self: Box<Self>,
        _: &mut BackwardCtx<'_>,
        _needs: &[bool],
        grads: Vec<Option<Tensor>>,
    ) -> Result<Vec<Option<Tensor>>> {
        let dy = single("mean_pool", grads)?;
        let be = crate::backend::common("mean_pool_backward", &[&dy])?;
        Ok(vec![Some(be.mean_pool_bwd(&dy, &self.mask, &self.counts, self.t)?)])
    }
}
