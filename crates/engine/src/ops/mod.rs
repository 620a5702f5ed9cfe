//! Differentiable ops: methods on [`crate::Graph`]. Each file validates shapes (returning a
//! `Result` error that names the op and both shapes), calls the device backend's forward
//! kernel, and records a backward node holding exactly what its backward kernel needs.

mod activation;
mod arith;
mod attention;
mod cross_entropy;
mod dropout;
mod embedding;
mod layer_norm;
mod linear;
mod lora;
mod matmul;
mod pool;
mod quant_linear;
mod rms_norm;
mod rope;
mod shape;
mod softmax;
mod spec;

use std::sync::Arc;

pub use cross_entropy::LossOutput;
pub use rope::{RopeScaling, RopeTables};
pub use spec::{Activation, AttentionSpec, CrossEntropySpec, LoraSpec};

use crate::backend::{self, Backend};
use crate::error::{EngineError, Result};
use crate::{Tensor, Var};

/// The backend shared by the vars' values, checking they are float and of one dtype.
pub(crate) fn float_backend(op: &'static str, vars: &[&Var]) -> Result<Arc<dyn Backend>> {
    let tensors: Vec<&Tensor> = vars.iter().map(|v| v.value()).collect();
    float_backend_t(op, &tensors)
}

/// Like [`float_backend`] for plain tensors.
pub(crate) fn float_backend_t(op: &'static str, tensors: &[&Tensor]) -> Result<Arc<dyn Backend>> {
    let first = tensors[0];
    first.expect_float(op)?;
    for t in &tensors[1..] {
        if t.dtype() != first.dtype() {
            return Err(EngineError::DType { op, got: t.dtype(), expected: first.dtype().name().to_string() });
        }
    }
    backend::common(op, tensors)
}

/// The single output gradient of a one-output op.
pub(crate) fn single(op: &'static str, grads: Vec<Option<Tensor>>) -> Result<Tensor> {
    grads
        .into_iter()
        .next()
        .flatten()
        .ok_or_else(|| EngineError::Autograd(format!("{op}: backward called without an output gradient")))
}

/// Checks a tensor's rank, naming the op and the operand.
pub(crate) fn expect_rank(op: &'static str, what: &str, t: &Tensor, rank: usize) -> Result<()> {
    if t.rank() != rank {
        return Err(EngineError::shape(op, t.shape(), &[], format!("{what} must have rank {rank}")));
    }
    Ok(())
}

/// Leading dims (all but the last) and their product.
pub(crate) fn split_last(shape: &[usize]) -> (Vec<usize>, usize, usize) {
    let last = shape.last().copied().unwrap_or(1);
    let lead = shape[..shape.len().saturating_sub(1)].to_vec();
    let rows = lead.iter().product();
    (lead, rows, last)
}
