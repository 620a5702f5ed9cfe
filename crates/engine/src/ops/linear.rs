//! linear: y = x·Wᵀ + b. Saves x only if W needs a gradient and W only if x does, so a
//! frozen layer keeps nothing of its input alive and skips the weight GEMM.

use super::{float_backend, single, split_last};
use crate::autograd::{BackwardCtx, BackwardOp};
use crate::error::{EngineError, Result};
use crate::{Graph, Tensor, Var};

struct LinearBackward {
    x: Option<Tensor>,
    w: Option<Tensor>,
    x_shape: Vec<usize>,
    w_shape: Vec<usize>,
}

impl<'m> Graph<'m> {
    /// y = x·Wᵀ + b over the last dimension of x; W is `[out, in]`, b is `[out]`.
    pub fn linear(&self, x: &Var, w: &Var, b: Option<&Var>) -> Result<Var> {
        const OP: &str = "linear";
        let _t = crate::profile::timer("fwd", OP);
        let mut vars = vec![x, w];
        vars.extend(b);
        let be = float_backend(OP, &vars)?;
        let (ws, xs) = (w.shape(), x.shape());
        if ws.len() != 2 || xs.is_empty() || xs[xs.len() - 1] != ws[1] {
            return Err(EngineError::shape(OP, xs, ws, "x's last dimension must equal W's second (W is [out, in])"));
        }
        if let Some(b) = b {
            if b.shape() != [ws[0]] {
                return Err(EngineError::shape(OP, b.shape(), &[ws[0]], "bias must be [out]"));
            }
        }
        let (mut lead, n, inp) = split_last(xs);
        let x2 = x.value().reshape(&[n, inp])?;
        let y = be.linear_fwd(&x2, w.value(), b.map(Var::value))?;
        lead.push(ws[0]);
        let y = y.reshape(&lead)?;
        Ok(self.record(y, &[Some(x), Some(w), b], || {
            Box::new(LinearBackward {
                x: w.requires_grad().then(|| x2.clone()),
                w: x.requires_grad().then(|| w.value().clone()),
                x_shape: xs.to_vec(),
                w_shape: ws.to_vec(),
            })
        }))
    }
}

impl BackwardOp for LinearBackward {
    fn name(&self) -> &'static str {
        "linear"
    }

    fn backward(
        self: Box<Self>,
        ctx: &mut BackwardCtx<'_>,
        needs: &[bool],
        grads: Vec<Option<Tensor>>,
    ) -> Result<Vec<Option<Tensor>>> {
        const OP: &str = "linear";
        let dy = single(OP, grads)?;
        let out = self.w_shape[0];
        let inp = self.w_shape[1];
        let n = dy.numel() / out.max(1);
        let dy2 = dy.reshape(&[n, out])?;
        let be = crate::backend::common("linear_backward", &[&dy2])?;
        let w_split = if needs[1] { ctx.per_example_runs(OP, 1, n)? } else { None };
        let b_split = if needs.get(2) == Some(&true) { ctx.per_example_runs(OP, 2, n)? } else { None };
        let [dx, dw, db] = be.linear_bwd(
            &dy2,
            self.x.as_ref(),
            self.w.as_ref(),
            inp,
            [needs[0], needs[1] && w_split.is_none(), needs[2] && b_split.is_none()],
        )?;
        let dw = match (w_split, &self.x) {
            (Some((runs, e)), Some(x)) => Some(be.segment_outer(&dy2, x, &runs, e, 1.0)?),
            _ => dw,
        };
        let db = match b_split {
            Some((runs, e)) => Some(be.segment_sum(&dy2, &runs, e)?),
            None => db,
        };
        let dx = dx.map(|g| g.reshape(&self.x_shape)).transpose()?;
        Ok(vec![dx, dw, db])
    }
}
