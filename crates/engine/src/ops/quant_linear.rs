//! quant_linear: y = x·Wᵀ + b with W a frozen [`QuantMatrix`] (QLoRA's base). W is
//! dequantized one panel of rows at a time into a small buffer that the GEMM reads
//! (`cpu::quant_linear`); the backward computes dx the same way and never a gradient of W.
//! quant_lora_linear adds LoRA's low-rank path to the same product in one op, as lora_linear
//! does for a dense base.

use std::sync::Arc;

use super::{single, split_last, LoraSpec};
use crate::autograd::{BackwardCtx, BackwardOp};
use crate::cpu::linear::column_sums;
use crate::cpu::lora::{self as lora_kernel, LoraDims, LoraNeeds};
use crate::cpu::quant_linear as kernel;
use crate::error::{EngineError, Result};
use crate::quant::QuantMatrix;
use crate::{DType, Graph, Tensor, Var};

struct QuantLinearBackward {
    w: Arc<QuantMatrix>,
    x_shape: Vec<usize>,
}

struct QuantLoraBackward {
    w: Arc<QuantMatrix>,
    x: Tensor,
    a: Tensor,
    bm: Tensor,
    xa: Vec<f32>,
    dims: LoraDims,
    x_shape: Vec<usize>,
}

/// Checks x (and b) against W, for both quantized ops.
fn check_inputs(op: &'static str, x: &Var, w: &QuantMatrix, b: Option<&Var>) -> Result<()> {
    let xs = x.shape();
    let (out, inp) = (w.rows(), w.cols());
    if xs.is_empty() || xs[xs.len() - 1] != inp {
        return Err(EngineError::shape(op, xs, &[out, inp], "x's last dimension must equal W's columns"));
    }
    if x.value().dtype() != DType::F32 || b.is_some_and(|b| b.value().dtype() != DType::F32) {
        return Err(EngineError::DType {
            op,
            got: x.value().dtype(),
            expected: "f32 (a quantized base runs in f32)".into(),
        });
    }
    if let Some(b) = b {
        if b.shape() != [out] {
            return Err(EngineError::shape(op, b.shape(), &[out], "bias must be [out]"));
        }
    }
    Ok(())
}

impl<'m> Graph<'m> {
    /// y = x·Wᵀ + b over the last dimension of an f32 `x`; W (`[out, in]`) stays quantized
    /// and gets no gradient; b is `[out]`.
    pub fn quant_linear(&self, x: &Var, w: &Arc<QuantMatrix>, b: Option<&Var>) -> Result<Var> {
        const OP: &str = "quant_linear";
        let _t = crate::profile::timer("fwd", OP);
        check_inputs(OP, x, w, b)?;
        let (xs, out) = (x.shape(), w.rows());
        let (mut lead, n, _) = split_last(xs);
        let xv = x.value().as_slice::<f32>()?;
        let bias = b.map(|b| b.value().as_slice::<f32>()).transpose()?;
        let y = kernel::forward(xv, n, w, bias);
        lead.push(out);
        let y = Tensor::from_vec(y, &lead)?;
        Ok(self.record(y, &[Some(x), b], || Box::new(QuantLinearBackward { w: Arc::clone(w), x_shape: xs.to_vec() })))
    }

    /// LoRA on a quantized base: y = x·Wᵀ + b + s·(drop(x)·Aᵀ)·Bᵀ with W a frozen
    /// [`QuantMatrix`] `[out, in]`, A `[r, in]`, B `[out, r]`, all f32. One op, like
    /// [`Graph::lora_linear`]: only `x·Aᵀ` is saved beyond the inputs.
    pub fn quant_lora_linear(
        &self,
        x: &Var,
        w: &Arc<QuantMatrix>,
        b: Option<&Var>,
        a: &Var,
        bm: &Var,
        spec: LoraSpec,
    ) -> Result<Var> {
        const OP: &str = "quant_lora_linear";
        let _t = crate::profile::timer("fwd", OP);
        check_inputs(OP, x, w, b)?;
        let (xs, as_, bs) = (x.shape(), a.shape(), bm.shape());
        let (out, inp) = (w.rows(), w.cols());
        if as_.len() != 2 || as_[1] != inp {
            return Err(EngineError::shape(OP, as_, &[out, inp], "A must be [r, in]"));
        }
        if bs.len() != 2 || bs[0] != out || bs[1] != as_[0] {
            return Err(EngineError::shape(OP, bs, as_, "B must be [out, r] with r = A's rows"));
        }
        if a.value().dtype() != DType::F32 || bm.value().dtype() != DType::F32 {
            return Err(EngineError::DType {
                op: OP,
                got: a.value().dtype(),
                expected: "f32 adapters on a quantized base".into(),
            });
        }
        if !(0.0..1.0).contains(&spec.dropout) {
            return Err(EngineError::invalid(OP, format!("dropout {} must be in [0, 1)", spec.dropout)));
        }
        let dropout = if self.is_training() { spec.dropout } else { 0.0 };
        let seed = if dropout > 0.0 { self.next_seed() } else { 0 };
        let (mut lead, n, _) = split_last(xs);
        let dims = LoraDims { n, inp, out, r: as_[0], scale: spec.scale, dropout, seed };
        let x2 = x.value().reshape(&[n, inp])?;
        let (av, bv) = (a.value(), bm.value());
        let xv = x2.as_slice::<f32>()?;
        let bias = b.map(|b| b.value().as_slice::<f32>()).transpose()?;
        let mut y = kernel::forward(xv, n, w, bias);
        let xa = lora_kernel::low_rank_forward(xv, av.as_slice::<f32>()?, bv.as_slice::<f32>()?, &mut y, dims);
        lead.push(out);
        let y = Tensor::from_vec(y, &lead)?;
        Ok(self.record(y, &[Some(x), b, Some(a), Some(bm)], || {
            Box::new(QuantLoraBackward {
                w: Arc::clone(w),
                x: x2,
                a: av.clone(),
                bm: bv.clone(),
                xa,
                dims,
                x_shape: xs.to_vec(),
            })
        }))
    }
}

impl BackwardOp for QuantLoraBackward {
    fn name(&self) -> &'static str {
        "quant_lora_linear"
    }

    fn backward(
        self: Box<Self>,
        _: &mut BackwardCtx<'_>,
        needs: &[bool],
        grads: Vec<Option<Tensor>>,
    ) -> Result<Vec<Option<Tensor>>> {
        let dy = single("quant_lora_linear", grads)?.to_dtype(DType::F32)?;
        let d = self.dims;
        let dyv = dy.as_slice::<f32>()?;
        let need = |i: usize| needs.get(i).copied().unwrap_or(false);
        // needs: x, b, A, B (b false when the layer has no bias).
        let mut dx = need(0).then(|| kernel::backward_dx(dyv, d.n, &self.w));
        let lora_needs = LoraNeeds { dx: need(0), dw: false, db: false, da: need(2), dbm: need(3) };
        let (da, dbm) = lora_kernel::low_rank_backward(
            dyv,
            self.x.as_slice::<f32>()?,
            self.a.as_slice::<f32>()?,
            self.bm.as_slice::<f32>()?,
            &self.xa,
            d,
            lora_needs,
            dx.as_deref_mut(),
        );
        let dx = dx.map(|v| Tensor::from_vec(v, &self.x_shape)).transpose()?;
        let da = da.map(|v| Tensor::from_vec(v, &[d.r, d.inp])).transpose()?;
        let dbm = dbm.map(|v| Tensor::from_vec(v, &[d.out, d.r])).transpose()?;
        let db = need(1).then(|| Tensor::from_vec(column_sums(dyv, d.n, d.out), &[d.out])).transpose()?;
        Ok(vec![dx, db, da, dbm])
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
            Some(Tensor::from_vec(column_sums(dyv, n, out), &[out])?)
        } else {
            None
        };
        Ok(vec![dx, db])
    }
}
