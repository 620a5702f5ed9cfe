//! dropout with a seeded, regenerable mask (identity outside training mode).

use super::{float_backend, single};
use crate::autograd::{BackwardCtx, BackwardOp};
use crate::error::{EngineError, Result};
use crate::{Graph, Tensor, Var};

struct DropoutBackward {
    p: f32,
    seed: u64,
}

impl<'m> Graph<'m> {
    /// Zeroes each element with probability `p` and scales the rest by 1/(1−p), in training
    /// mode only.
    pub fn dropout(&self, x: &Var, p: f32) -> Result<Var> {
        const OP: &str = "dropout";
        let _t = crate::profile::timer("fwd", OP);
        if !(0.0..1.0).contains(&p) {
            return Err(EngineError::invalid(OP, format!("p = {p} must be in [0, 1)")));
        }
        if !self.is_training() || p == 0.0 {
            return Ok(x.clone());
        }
        let be = float_backend(OP, &[x])?;
        let seed = self.next_seed();
        let y = be.dropout(x.value(), p, seed)?;
        Ok(self.record(y, &[Some(x)], || Box::new(DropoutBackward { p, seed })))
    }
}

impl BackwardOp for DropoutBackward {
    fn name(&self) -> &'static str {
        "dropout"
    }

    fn backward(
        self: Box<Self>,
        _: &mut BackwardCtx<'_>,
        _needs: &[bool],
        grads: Vec<Option<Tensor>>,
    ) -> Result<Vec<Option<Tensor>>> {
        let dy = single("dropout", grads)?;
        let be = crate::backend::common("dropout_backward", &[&dy])?;
        Ok(vec![Some(be.dropout(&dy, self.p, self.seed)?)])
    }
}
