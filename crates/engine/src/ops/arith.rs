//! Elementwise arithmetic (residual adds, gating, scaling) and whole-tensor reductions.
//! The second operand of a binary op may repeat over the leading dimensions of the first
//! (its shape a suffix of the first's), as a bias does.

use super::{float_backend, single};
use crate::autograd::{BackwardCtx, BackwardOp};
use crate::cpu::elementwise::BinaryOp;
use crate::error::{EngineError, Result};
use crate::{Graph, Tensor, Var};

struct BinaryBackward {
    op: BinaryOp,
    a: Option<Tensor>,
    b: Option<Tensor>,
    b_shape: Vec<usize>,
}

struct ScaleBackward {
    s: f64,
}

struct SumBackward {
    shape: Vec<usize>,
    factor: f64,
}

impl<'m> Graph<'m> {
    fn binary(&self, op: BinaryOp, name: &'static str, a: &Var, b: &Var) -> Result<Var> {
        let _t = crate::profile::timer("fwd", name);
        let be = float_backend(name, &[a, b])?;
        let (as_, bs) = (a.shape(), b.shape());
        if bs.len() > as_.len() || as_[as_.len() - bs.len()..] != *bs {
            return Err(EngineError::shape(name, as_, bs, "b's shape must equal a's or a suffix of it"));
        }
        let y = be.binary(op, a.value(), b.value())?;
        Ok(self.record(y, &[Some(a), Some(b)], || {
            let is_mul = op == BinaryOp::Mul;
            Box::new(BinaryBackward {
                op,
                a: (is_mul && b.requires_grad()).then(|| a.value().clone()),
                b: (is_mul && a.requires_grad()).then(|| b.value().clone()),
                b_shape: bs.to_vec(),
            })
        }))
    }

    /// a + b (b equal to a's shape or a suffix of it).
    pub fn add(&self, a: &Var, b: &Var) -> Result<Var> {
        self.binary(BinaryOp::Add, "add", a, b)
    }

    /// a − b (b equal to a's shape or a suffix of it).
    pub fn sub(&self, a: &Var, b: &Var) -> Result<Var> {
        self.binary(BinaryOp::Sub, "sub", a, b)
    }

    /// a ⊙ b (b equal to a's shape or a suffix of it).
    pub fn mul(&self, a: &Var, b: &Var) -> Result<Var> {
        self.binary(BinaryOp::Mul, "mul", a, b)
    }

    /// s·x.
    pub fn scale(&self, x: &Var, s: f64) -> Result<Var> {
        let _t = crate::profile::timer("fwd", "scale");
        let be = float_backend("scale", &[x])?;
        let y = be.scale(x.value(), s)?;
        Ok(self.record(y, &[Some(x)], || Box::new(ScaleBackward { s })))
    }

    /// Σ x as a scalar.
    pub fn sum(&self, x: &Var) -> Result<Var> {
        self.reduce_all(x, 1.0, "sum")
    }

    /// mean(x) as a scalar.
    pub fn mean(&self, x: &Var) -> Result<Var> {
        let n = x.value().numel().max(1) as f64;
        self.reduce_all(x, 1.0 / n, "mean")
    }

    fn reduce_all(&self, x: &Var, factor: f64, name: &'static str) -> Result<Var> {
        let be = float_backend(name, &[x])?;
        let s = be.sum_all(x.value())? * factor;
        let y = Tensor::full(&[], s, x.value().dtype(), x.value().device())?;
        Ok(self.record(y, &[Some(x)], || Box::new(SumBackward { shape: x.shape().to_vec(), factor })))
    }

    /// Mean squared error between two tensors of one shape (a scalar).
    pub fn mse(&self, pred: &Var, target: &Var) -> Result<Var> {
        if pred.shape() != target.shape() {
            return Err(EngineError::shape(
                "mse",
                pred.shape(),
                target.shape(),
                "prediction and target must have the same shape",
            ));
        }
        let d = self.sub(pred, target)?;
        let sq = self.mul(&d, &d)?;
        self.mean(&sq)
    }
}

impl BackwardOp for BinaryBackward {
    fn name(&self) -> &'static str {
        "binary"
    }

    fn backward(
        self: Box<Self>,
        _: &mut BackwardCtx<'_>,
        needs: &[bool],
        grads: Vec<Option<Tensor>>,
    ) -> Result<Vec<Option<Tensor>>> {
        let dy = single("binary", grads)?;
        let be = crate::backend::common("binary_backward", &[&dy])?;
        let period: usize = self.b_shape.iter().product();
        let reduce = |t: Tensor| -> Result<Tensor> {
            if t.numel() == period {
                t.reshape(&self.b_shape)
            } else {
                be.reduce_period(&t, period)?.reshape(&self.b_shape)
            }
        };
        let (da, db) = match self.op {
            BinaryOp::Add => (needs[0].then(|| dy.clone()), needs[1].then(|| reduce(dy.clone())).transpose()?),
            BinaryOp::Sub => {
                (needs[0].then(|| dy.clone()), needs[1].then(|| reduce(be.scale(&dy, -1.0)?)).transpose()?)
            }
            BinaryOp::Mul => {
                let da = match (&self.b, needs[0]) {
                    (Some(b), true) => Some(be.binary(BinaryOp::Mul, &dy, b)?),
                    _ => None,
                };
                let db = match (&self.a, needs[1]) {
                    (Some(a), true) => Some(reduce(be.binary(BinaryOp::Mul, &dy, a)?)?),
                    _ => None,
                };
                (da, db)
            }
        };
        Ok(vec![da, db])
    }
}

impl BackwardOp for ScaleBackward {
    fn name(&self) -> &'static str {
        "scale"
    }

    fn backward(
        self: Box<Self>,
        _: &mut BackwardCtx<'_>,
        _needs: &[bool],
        grads: Vec<Option<Tensor>>,
    ) -> Result<Vec<Option<Tensor>>> {
        let dy = single("scale", grads)?;
        let be = crate::backend::common("scale_backward", &[&dy])?;
        Ok(vec![Some(be.scale(&dy, self.s)?)])
    }
}

impl BackwardOp for SumBackward {
    fn name(&self) -> &'static str {
        "sum"
    }

    fn backward(
        self: Box<Self>,
        _: &mut BackwardCtx<'_>,
        _needs: &[bool],
        grads: Vec<Option<Tensor>>,
    ) -> Result<Vec<Option<Tensor>>> {
        let dy = single("sum", grads)?;
        let g = dy.scalar_value()? * self.factor;
        Ok(vec![Some(Tensor::full(&self.shape, g, dy.dtype(), dy.device())?)])
    }
}
