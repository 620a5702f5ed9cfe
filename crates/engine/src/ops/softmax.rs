//! softmax, log-softmax and L2 normalisation over the last dimension.

use super::{float_backend, single};
use crate::autograd::{BackwardCtx, BackwardOp};
use crate::error::Result;
use crate::{Graph, Tensor, Var};

struct SoftmaxBackward {
    y: Tensor,
    log: bool,
}

struct L2Backward {
    y: Tensor,
    norms: Tensor,
    eps: f64,
}

impl<'m> Graph<'m> {
    /// softmax over the last dimension.
    pub fn softmax(&self, x: &Var) -> Result<Var> {
        self.softmax_impl(x, false)
    }

    /// log-softmax over the last dimension.
    pub fn log_softmax(&self, x: &Var) -> Result<Var> {
        self.softmax_impl(x, true)
    }

    fn softmax_impl(&self, x: &Var, log: bool) -> Result<Var> {
        let _t = crate::profile::timer("fwd", "softmax");
        let be = float_backend("softmax", &[x])?;
        let y = be.softmax_fwd(x.value(), log)?;
        Ok(self.record(y.clone(), &[Some(x)], || Box::new(SoftmaxBackward { y, log })))
    }

    /// x / max(‖x‖₂, eps) over the last dimension (sentence-embedding normalisation).
    pub fn l2_normalize(&self, x: &Var, eps: f64) -> Result<Var> {
        let _t = crate::profile::timer("fwd", "l2_normalize");
        let be = float_backend("l2_normalize", &[x])?;
        let (y, norms) = be.l2_normalize_fwd(x.value(), eps)?;
        Ok(self.record(y.clone(), &[Some(x)], || Box::new(L2Backward { y, norms, eps })))
    }
}

impl BackwardOp for SoftmaxBackward {
    fn name(&self) -> &'static str {
        "softmax"
    }

    fn backward(
        self: Box<Self>,
        _: &mut BackwardCtx<'_>,
        _needs: &[bool],
        grads: Vec<Option<Tensor>>,
    ) -> Result<Vec<Option<Tensor>>> {
        let dy = single("softmax", grads)?;
        let be = crate::backend::common("softmax_backward", &[&dy, &self.y])?;
        Ok(vec![Some(be.softmax_bwd(&dy, &self.y, self.log)?)])
    }
}

impl BackwardOp for L2Backward {
    fn name(&self) -> &'static str {
        "l2_normalize"
    }

    fn backward(
        self: Box<Self>,
        _: &mut BackwardCtx<'_>,
        _needs: &[bool],
        grads: Vec<Option<Tensor>>,
    ) -> Result<Vec<Option<Tensor>>> {
        let dy = single("l2_normalize", grads)?;
        let be = crate::backend::common("l2_normalize_backward", &[&dy, &self.y])?;
        Ok(vec![Some(be.l2_normalize_bwd(&dy, &self.y, &self.norms, self.eps)?)])
    }
}
