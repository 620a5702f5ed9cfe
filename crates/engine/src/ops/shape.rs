//! Shape ops: reshape (free), permute/transpose, narrow (slice), concat and split.

use super::single;
use crate::autograd::{BackwardCtx, BackwardOp};
use crate::backend;
use crate::cpu::shape::inverse_perm;
use crate::error::{EngineError, Result};
use crate::{Graph, Tensor, Var};

struct ReshapeBackward {
    shape: Vec<usize>,
}

struct PermuteBackward {
    inverse: Vec<usize>,
}

struct NarrowBackward {
    shape: Vec<usize>,
    dim: usize,
    start: usize,
}

struct ConcatBackward {
    dim: usize,
    sizes: Vec<usize>,
}

impl<'m> Graph<'m> {
    /// Same elements, new shape (no copy).
    pub fn reshape(&self, x: &Var, shape: &[usize]) -> Result<Var> {
        let y = x.value().reshape(shape)?;
        Ok(self.record(y, &[Some(x)], || Box::new(ReshapeBackward { shape: x.shape().to_vec() })))
    }

    /// Reorders dimensions: output dim i is input dim `perm[i]` (materialised).
    pub fn permute(&self, x: &Var, perm: &[usize]) -> Result<Var> {
        let _t = crate::profile::timer("fwd", "permute");
        let r = x.shape().len();
        let mut seen = vec![false; r];
        if perm.len() != r || perm.iter().any(|&p| p >= r || std::mem::replace(&mut seen[p], true)) {
            return Err(EngineError::shape("permute", x.shape(), perm, "perm must be a permutation of the dimensions"));
        }
        let be = backend::common("permute", &[x.value()])?;
        let y = be.permute(x.value(), perm)?;
        Ok(self.record(y, &[Some(x)], || Box::new(PermuteBackward { inverse: inverse_perm(perm) })))
    }

    /// Swaps two dimensions (materialised).
    pub fn transpose(&self, x: &Var, d0: usize, d1: usize) -> Result<Var> {
        let r = x.shape().len();
        if d0 >= r || d1 >= r {
            return Err(EngineError::shape("transpose", x.shape(), &[d0, d1], "dimension out of range"));
        }
        let mut perm: Vec<usize> = (0..r).collect();
        perm.swap(d0, d1);
        self.permute(x, &perm)
    }

    /// Elements `[start, start+len)` along `dim`.
    pub fn narrow(&self, x: &Var, dim: usize, start: usize, len: usize) -> Result<Var> {
        let _t = crate::profile::timer("fwd", "narrow");
        let s = x.shape();
        if dim >= s.len() || start + len > s[dim] {
            return Err(EngineError::shape(
                "narrow",
                s,
                &[dim, start, len],
                "slice [start, start+len) must lie inside dim",
            ));
        }
        let be = backend::common("narrow", &[x.value()])?;
        let y = be.narrow(x.value(), dim, start, len)?;
        Ok(self.record(y, &[Some(x)], || Box::new(NarrowBackward { shape: s.to_vec(), dim, start })))
    }

    /// Concatenates along `dim`; the other dimensions must agree.
    pub fn concat(&self, parts: &[&Var], dim: usize) -> Result<Var> {
        let _t = crate::profile::timer("fwd", "concat");
        let first = parts.first().ok_or_else(|| EngineError::invalid("concat", "needs at least one tensor"))?;
        let s0 = first.shape();
        if dim >= s0.len() {
            return Err(EngineError::shape("concat", s0, &[dim], "dimension out of range"));
        }
        for p in parts {
            let s = p.shape();
            if s.len() != s0.len() || s.iter().enumerate().any(|(i, &v)| i != dim && v != s0[i]) {
                return Err(EngineError::shape("concat", s0, s, "all dimensions but the concatenated one must agree"));
            }
        }
        let tensors: Vec<&Tensor> = parts.iter().map(|p| p.value()).collect();
        let be = super::float_backend_t("concat", &tensors)?;
        let y = be.concat(&tensors, dim)?;
        let inputs: Vec<Option<&Var>> = parts.iter().map(|p| Some(*p)).collect();
        let sizes = parts.iter().map(|p| p.shape()[dim]).collect();
        Ok(self.record(y, &inputs, || Box::new(ConcatBackward { dim, sizes })))
    }

    /// Splits along `dim` into pieces of the given sizes.
    pub fn split(&self, x: &Var, dim: usize, sizes: &[usize]) -> Result<Vec<Var>> {
        let total: usize = sizes.iter().sum();
        if dim >= x.shape().len() || total != x.shape()[dim] {
            return Err(EngineError::shape("split", x.shape(), sizes, "sizes must add up to the dimension"));
        }
        let _t = crate::profile::timer("fwd", "split");
        let be = backend::common("split", &[x.value()])?;
        let mut start = 0;
        let mut parts = Vec::with_capacity(sizes.len());
        for &len in sizes {
            parts.push(be.narrow(x.value(), dim, start, len)?);
            start += len;
        }
        let shapes: Vec<Vec<usize>> = parts.iter().map(|p| p.shape().to_vec()).collect();
        Ok(self.record_many(parts, &[Some(x)], || Box::new(SplitBackward { dim, shapes })))
    }
}

/// Backward of split: the part gradients concatenated (zeros for parts without one).
struct SplitBackward {
    dim: usize,
    shapes: Vec<Vec<usize>>,
}

impl BackwardOp for SplitBackward {
    fn name(&self) -> &'static str {
        "split"
    }

    fn backward(
        self: Box<Self>,
        _: &mut BackwardCtx<'_>,
        _needs: &[bool],
        grads: Vec<Option<Tensor>>,
    ) -> Result<Vec<Option<Tensor>>> {
        let like = grads.iter().flatten().next().ok_or_else(|| EngineError::Autograd("split: no gradient".into()))?;
        let (dtype, device) = (like.dtype(), like.device());
        let be = backend::common("split_backward", &[like])?;
        let filled: Vec<Tensor> = grads
            .into_iter()
            .zip(&self.shapes)
            .map(|(g, s)| match g {
                Some(g) => Ok(g),
                None => Tensor::zeros(s, dtype, device),
            })
            .collect::<Result<_>>()?;
        let refs: Vec<&Tensor> = filled.iter().collect();
        Ok(vec![Some(be.concat(&refs, self.dim)?)])
    }
}

impl BackwardOp for ReshapeBackward {
    fn name(&self) -> &'static str {
        "reshape"
    }

    fn backward(
        self: Box<Self>,
        _: &mut BackwardCtx<'_>,
        _needs: &[bool],
        grads: Vec<Option<Tensor>>,
    ) -> Result<Vec<Option<Tensor>>> {
        Ok(vec![Some(single("reshape", grads)?.reshape(&self.shape)?)])
    }
}

impl BackwardOp for PermuteBackward {
    fn name(&self) -> &'static str {
        "permute"
    }

    fn backward(
        self: Box<Self>,
        _: &mut BackwardCtx<'_>,
        _needs: &[bool],
        grads: Vec<Option<Tensor>>,
    ) -> Result<Vec<Option<Tensor>>> {
        let dy = single("permute", grads)?;
        let be = backend::common("permute_backward", &[&dy])?;
        Ok(vec![Some(be.permute(&dy, &self.inverse)?)])
    }
}

impl BackwardOp for NarrowBackward {
    fn name(&self) -> &'static str {
        "narrow"
    }

    fn backward(
        self: Box<Self>,
        _: &mut BackwardCtx<'_>,
        _needs: &[bool],
        grads: Vec<Option<Tensor>>,
    ) -> Result<Vec<Option<Tensor>>> {
        let dy = single("narrow", grads)?;
        let be = backend::common("narrow_backward", &[&dy])?;
        Ok(vec![Some(be.narrow_bwd(&dy, &self.shape, self.dim, self.start)?)])
    }
}

impl BackwardOp for ConcatBackward {
    fn name(&self) -> &'static str {
        "concat"
    }

    fn backward(
        self: Box<Self>,
        _: &mut BackwardCtx<'_>,
        needs: &[bool],
        grads: Vec<Option<Tensor>>,
    ) -> Result<Vec<Option<Tensor>>> {
        let dy = single("concat", grads)?;
        let be = backend::common("concat_backward", &[&dy])?;
        let mut start = 0;
        let mut out = Vec::with_capacity(self.sizes.len());
        for (&len, &need) in self.sizes.iter().zip(needs) {
            out.push(if need { Some(be.narrow(&dy, self.dim, start, len)?) } else { None });
            start += len;
        }
        Ok(out)
    }
}
