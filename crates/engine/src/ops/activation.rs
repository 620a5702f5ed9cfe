//! Pointwise activations and the fused swiglu.

use super::{float_backend, single, Activation};
use crate::autograd::{BackwardCtx, BackwardOp};
use crate::error::{EngineError, Result};
use crate::{Graph, Tensor, Var};

struct ActivationBackward {
    act: Activation,
    x: Tensor,
}

struct SwigluBackward {
    gate: Tensor,
    up: Tensor,
}

impl<'m> Graph<'m> {
    /// y = f(x) elementwise.
    pub fn activation(&self, x: &Var, act: Activation) -> Result<Var> {
        let _t = crate::profile::timer("fwd", "activation");
        let be = float_backend("activation", &[x])?;
        let y = be.activation_fwd(act, x.value())?;
        Ok(self.record(y, &[Some(x)], || Box::new(ActivationBackward { act, x: x.value().clone() })))
    }

    /// GELU, exact (erf) form.
    pub fn gelu(&self, x: &Var) -> Result<Var> {
        self.activation(x, Activation::GeluErf)
    }

    /// GELU, tanh approximation.
    pub fn gelu_tanh(&self, x: &Var) -> Result<Var> {
        self.activation(x, Activation::GeluTanh)
    }

    /// x·σ(x).
    pub fn silu(&self, x: &Var) -> Result<Var> {
        self.activation(x, Activation::Silu)
    }

    /// tanh.
    pub fn tanh(&self, x: &Var) -> Result<Var> {
        self.activation(x, Activation::Tanh)
    }

    /// silu(gate)·up, fused; gate and up have the same shape.
    pub fn swiglu(&self, gate: &Var, up: &Var) -> Result<Var> {
        const OP: &str = "swiglu";
        let _t = crate::profile::timer("fwd", OP);
        let be = float_backend(OP, &[gate, up])?;
        if gate.shape() != up.shape() {
            return Err(EngineError::shape(OP, gate.shape(), up.shape(), "gate and up must have the same shape"));
        }
        let y = be.swiglu_fwd(gate.value(), up.value())?;
        Ok(self.record(y, &[Some(gate), Some(up)], || {
            Box::new(SwigluBackward { gate: gate.value().clone(), up: up.value().clone() })
        }))
    }
}

impl BackwardOp for ActivationBackward {
    fn name(&self) -> &'static str {
        "activation"
    }

    fn backward(
        self: Box<Self>,
        _: &mut BackwardCtx<'_>,
        _needs: &[bool],
        grads: Vec<Option<Tensor>>,
    ) -> Result<Vec<Option<Tensor>>> {
        let dy = single("activation", grads)?;
        let be = crate::backend::common("activation_backward", &[&dy, &self.x])?;
        Ok(vec![Some(be.activation_bwd(self.act, &dy, &self.x)?)])
    }
}

impl BackwardOp for SwigluBackward {
    fn name(&self) -> &'static str {
        "swiglu"
    }

    fn backward(
        self: Box<Self>,
        _: &mut BackwardCtx<'_>,
        needs: &[bool],
        grads: Vec<Option<Tensor>>,
    ) -> Result<Vec<Option<Tensor>>> {
        let dy = single("swiglu", grads)?;
        let be = crate::backend::common("swiglu_backward", &[&dy, &self.gate])?;
        let [dg, du] = be.swiglu_bwd(&dy, &self.gate, &self.up)?;
        Ok(vec![dg.filter(|_| needs[0]), du.filter(|_| needs[1])])
    }
}
