//! quant_linear: y = x·Wᵀ + b with W a frozen [`QuantMatrix`] (QLoRA's base). W is
//! dequantized one panel of rows at a time into a small buffer that the GEMM reads
//! (`cpu::quant_linear`); the backward computes dx the same way and never a gradient of W.

use std::sync::Arc;

use super::{single, split_last};
use crate::autograd::{BackwardCtx, BackwardOp};
use crate::cpu::quant_linear as kernel;
use crate::error::{EngineError, Result};
use crate::quant::QuantMatrix;
use crate::{DType, Graph, Tensor, Var};

struct QuantLinearBackward {
    w: Arc<QuantMatrix>,
    x_shape: Vec<usize>,
}

impl<'m> Graph<'m> {
    /// y = x·Wᵀ + b over the last dimension of an f32 `x`; W (`[out, in]`) stays quantized
    /// and gets no gradient; b is `[out]`.
    pub fn quant_linear(&self, x: &Var, w: &Arc<QuantMatrix>, b: Option<&Var>) -> Result<Var> {
        const OP: &str = "quant_linear";
        let _t = crate::profile::timer("fwd", OP);
        let xs = x.shape();
        let (out, inp) = (w.rows(), w.cols());
        if xs.is_empty() || xs[xs.len() - 1] != inp {
            return Err(EngineError::shape(OP, xs, &[out, inp], "x's last dimension must equal W's columns"));
        }
        if x.value().dtype() != DType::F32 || b.is_some_and(|b| b.value().dtype() != DType::F32) {
            return Err(EngineError::DType {
                op: OP,
                got: x.value().dtype(),
                expected: "f32 (a quantized base runs in f32)".into(),
            });
        }
        if let Some(b) = b {
            if b.shape() != [out] {
                return Err(EngineError::shape(OP, b.shape(), &[out], "bias must be [out]"));
            }
        }
        let (mut lead, n, _) = split_last(xs);
        let xv = x.value().as_slice::<f32>()?;
        let bias = b.map(|b| b.value().as_slice::<f32>()).transpose()?;
        let y = kernel::forward(xv, n, w, bias);
        lead.push(out);
        let y = Tensor::from_vec(y, &lead)?;
        Ok(self.record(y, &[Some(x), b], || Box::new(QuantLinearBackward { w: Arc::clone(w), x_shape: xs.to_vec() })))
    }
}

impl BackwardOp for QuantLinearBackward {
    fn name(&self) -> &'static str {
        "quant_linear"
    }

    fn backward(
        self: Box<Self>,
        _: &mut BackwardCtx<'_>,
        needs: &[bool],
        grads: Vec<Option<Tensor>>,
    ) -> Result<Vec<Option<Tensor>>> {
        let dy = single("quant_linear", grads)?.to_dtype(DType::F32)?;
        let out = self.w.rows();
        let n = dy.numel() / out.max(1);
        let dyv = dy.as_slice::<f32>()?;
        let dx =
            if needs[0] { Some(Tensor::from_vec(kernel::backward_dx(dyv, n, &self.w), &self.x_shape)?) } else { None };
        let db = if needs.get(1).copied().unwrap_or(false) {
            let mut db = vec![0f32; out];
            for row in dyv.chunks_exact(out) {
                db.iter_mut().zip(row).for_each(|(d, g)| *d += g);
            }
            Some(Tensor::from_vec(db, &[out])?)
        } else {
            None
        };
        Ok(vec![dx, db])
    }
}
