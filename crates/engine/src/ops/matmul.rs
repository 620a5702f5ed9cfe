//! Batched matmul over the last two dimensions, with optional transposes of either operand.

use super::{float_backend, single};
use crate::autograd::{BackwardCtx, BackwardOp};
use crate::backend::BmmDims;
use crate::error::{EngineError, Result};
use crate::{Graph, Tensor, Var};

struct MatmulBackward {
    a: Tensor,
    b: Tensor,
    dims: BmmDims,
    a_shape: Vec<usize>,
    b_shape: Vec<usize>,
}

impl<'m> Graph<'m> {
    /// `a [..., m, k] × b [..., k, n] → [..., m, n]`, where `trans_a`/`trans_b` mean the operand
    /// is stored with its last two dimensions swapped. Leading dimensions must match.
    pub fn matmul(&self, a: &Var, b: &Var, trans_a: bool, trans_b: bool) -> Result<Var> {
        const OP: &str = "matmul";
        let _t = crate::profile::timer("fwd", OP);
        let be = float_backend(OP, &[a, b])?;
        let (as_, bs) = (a.shape(), b.shape());
        if as_.len() < 2 || bs.len() < 2 || as_[..as_.len() - 2] != bs[..bs.len() - 2] {
            return Err(EngineError::shape(OP, as_, bs, "operands need rank ≥ 2 and equal leading dimensions"));
        }
        let (ar, ac) = (as_[as_.len() - 2], as_[as_.len() - 1]);
        let (br, bc) = (bs[bs.len() - 2], bs[bs.len() - 1]);
        let (m, k) = if trans_a { (ac, ar) } else { (ar, ac) };
        let (k2, n) = if trans_b { (bc, br) } else { (br, bc) };
        if k != k2 {
            return Err(EngineError::shape(OP, as_, bs, format!("inner dimensions differ ({k} vs {k2})")));
        }
        let lead = &as_[..as_.len() - 2];
        let batch: usize = lead.iter().product();
        let dims = BmmDims { batch, m, k, n, trans_a, trans_b };
        let c = be.bmm_fwd(a.value(), b.value(), dims)?;
        let mut out_shape = lead.to_vec();
        out_shape.extend([m, n]);
        let c = c.reshape(&out_shape)?;
        Ok(self.record(c, &[Some(a), Some(b)], || {
            Box::new(MatmulBackward {
                a: a.value().clone(),
                b: b.value().clone(),
                dims,
                a_shape: as_.to_vec(),
                b_shape: bs.to_vec(),
            })
        }))
    }
}

impl BackwardOp for MatmulBackward {
    fn name(&self) -> &'static str {
        "matmul"
    }

    fn backward(
        self: Box<Self>,
        _: &mut BackwardCtx<'_>,
        needs: &[bool],
        grads: Vec<Option<Tensor>>,
    ) -> Result<Vec<Option<Tensor>>> {
        let dc = single("matmul", grads)?;
        let be = crate::backend::common("matmul_backward", &[&dc])?;
        let [da, db] = be.bmm_bwd(&dc, &self.a, &self.b, self.dims, [needs[0], needs[1]])?;
        Ok(vec![da.map(|g| g.reshape(&self.a_shape)).transpose()?, db.map(|g| g.reshape(&self.b_shape)).transpose()?])
    }
}
