//! The CPU backend: unpacks host tensors, dispatches on f32/f64 and calls the kernels in
//! [`crate::cpu`].

use super::{AttentionMasks, Backend, BmmDims, CrossEntropyOut, GradsOut, Needs};
use crate::cpu::{self, elementwise::BinaryOp, segment::Run};
use crate::dtype::{DType, Real};
use crate::error::{EngineError, Result};
use crate::ops::{Activation, AttentionSpec, CrossEntropySpec, LoraSpec};
use crate::optim::{AdamWStep, SgdStep};
use crate::storage::HostElement;
use crate::Tensor;

/// The host backend (gemm + rayon).
#[derive(Debug, Default, Clone, Copy)]
pub struct CpuBackend;

macro_rules! float_dispatch {
    ($op:expr, $dt:expr, $T:ident => $body:expr) => {
        match $dt {
            DType::F32 => {
                type $T = f32;
                $body
            }
            DType::F64 => {
                type $T = f64;
                $body
            }
            other => Err(EngineError::DType { op: $op, got: other, expected: "f32 or f64".into() }),
        }
    };
}

fn t<T: HostElement>(v: Vec<T>, shape: &[usize]) -> Result<Tensor> {
    Tensor::from_vec(v, shape)
}

fn opt<T: HostElement>(v: Option<Vec<T>>, shape: &[usize]) -> Result<Option<Tensor>> {
    v.map(|v| t(v, shape)).transpose()
}

fn opt_slice<T: HostElement>(x: Option<&Tensor>) -> Result<Option<&[T]>> {
    x.map(|x| x.as_slice::<T>()).transpose()
}

/// Any integer or float tensor as i64 values (ids, labels, segment ids).
fn as_i64(x: &Tensor) -> Result<Vec<i64>> {
    match x.dtype() {
        DType::I64 => Ok(x.as_slice::<i64>()?.to_vec()),
        DType::U32 => Ok(x.as_slice::<u32>()?.iter().map(|&v| v as i64).collect()),
        _ => Ok(x.to_vec_f64()?.into_iter().map(|v| v as i64).collect()),
    }
}

/// Any tensor as a 0/1 mask.
fn as_mask(x: &Tensor) -> Result<Vec<u8>> {
    Ok(x.to_vec_f64()?.into_iter().map(|v| u8::from(v != 0.0)).collect())
}

/// The transposed copy of weight `w` that a forward over `rows` rows should read (see
/// [`cpu::linear::Weight`]), kept with the weight's data once built.
fn transposed_weight(w: &Tensor, rows: usize) -> Result<Option<Tensor>> {
    if !cpu::linear::transposed_applies(rows, w.shape()) {
        return Ok(None);
    }
    if w.has_cached_transpose() || cpu::linear::transposed_pays(w.count_read()) {
        w.transposed_cached().map(Some)
    } else {
        Ok(None)
    }
}

/// The copy of a weight that a forward reads instead of the weight itself.
enum ForwardCopy {
    /// None: the forward reads the weight.
    None,
    /// The transposed copy kept with the weight's data (see [`transposed_weight`]).
    Transposed(Tensor),
    /// A padded-row copy made for this forward (see `cpu::linear::padded_applies`).
    Padded(Tensor),
}

/// The copy of weight `w` that a forward over `rows` rows should read (see
/// [`cpu::linear::Weight`]).
fn forward_copy(w: &Tensor, rows: usize) -> Result<ForwardCopy> {
    if let Some(wt) = transposed_weight(w, rows)? {
        return Ok(ForwardCopy::Transposed(wt));
    }
    let (&[out, inp], DType::F32 | DType::F64) = (w.shape(), w.dtype()) else {
        return Ok(ForwardCopy::None);
    };
    float_dispatch!("linear", w.dtype(), T => {
        if !cpu::linear::padded_applies::<T>(rows, out, inp) {
            return Ok(ForwardCopy::None);
        }
        let padded = cpu::linear::pad_rows::<T>(w.as_slice()?, out, inp);
        Ok(ForwardCopy::Padded(t(padded, &[out, inp + cpu::linear::ROW_PAD])?))
    })
}

/// A weight and the copy its forward reads, as the kernels take them.
fn weight<'a, T: HostElement + Real>(w: &'a Tensor, copy: &'a ForwardCopy) -> Result<cpu::linear::Weight<'a, T>> {
    let w = w.as_slice()?;
    Ok(match copy {
        ForwardCopy::None => cpu::linear::Weight::plain(w),
        ForwardCopy::Transposed(wt) => cpu::linear::Weight::with_transposed(w, wt.as_slice()?),
        ForwardCopy::Padded(p) => cpu::linear::Weight::with_padded(w, p.as_slice()?),
    })
}

fn rows_cols(x: &Tensor) -> (usize, usize) {
    let cols = x.shape().last().copied().unwrap_or(1);
    (x.numel() / cols.max(1), cols)
}

fn attn_dims(q: &Tensor, k: &Tensor) -> cpu::attention::AttnDims {
    let (qs, ks) = (q.shape(), k.shape());
    cpu::attention::AttnDims { b: qs[0], t: qs[1], s: ks[1], h: qs[2], hkv: ks[2], d: qs[3] }
}

impl Backend for CpuBackend {
    fn name(&self) -> &'static str {
        "cpu"
    }

    fn upload(&self, host: &Tensor) -> Result<Tensor> {
        Ok(host.clone())
    }

    fn to_dtype(&self, x: &Tensor, dtype: DType) -> Result<Tensor> {
        x.to_dtype(dtype)
    }

    fn linear_fwd(&self, x: &Tensor, w: &Tensor, b: Option<&Tensor>) -> Result<Tensor> {
        let (n, inp) = rows_cols(x);
        let out = w.shape()[0];
        let copy = forward_copy(w, n)?;
        float_dispatch!("linear", x.dtype(), T => {
            let y = cpu::linear::forward::<T>(x.as_slice()?, weight(w, &copy)?, opt_slice(b)?, n, inp, out);
            t(y, &[n, out])
        })
    }

    fn linear_bwd(
        &self,
        dy: &Tensor,
        x: Option<&Tensor>,
        w: Option<&Tensor>,
        in_features: usize,
        needs: Needs<3>,
    ) -> Result<GradsOut<3>> {
        let (n, out) = rows_cols(dy);
        if (needs[1] && x.is_none()) || (needs[0] && w.is_none()) {
            return Err(EngineError::Autograd("linear_backward: missing saved input for a requested gradient".into()));
        }
        float_dispatch!("linear_backward", dy.dtype(), T => {
            let g = cpu::linear::backward::<T>(dy.as_slice()?, opt_slice(x)?, opt_slice(w)?, n, in_features, out, needs[0], needs[1], needs[2]);
            Ok([opt(g.dx, &[n, in_features])?, opt(g.dw, &[out, in_features])?, opt(g.db, &[out])?])
        })
    }

    fn lora_fwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        b: Option<&Tensor>,
        a: &Tensor,
        bm: &Tensor,
        spec: LoraSpec,
        seed: u64,
    ) -> Result<(Tensor, Tensor)> {
        let (n, inp) = rows_cols(x);
        let d = cpu::lora::LoraDims {
            n,
            inp,
            out: w.shape()[0],
            r: a.shape()[0],
            scale: spec.scale,
            dropout: spec.dropout,
            seed,
        };
        let copy = forward_copy(w, n)?;
        float_dispatch!("lora_linear", x.dtype(), T => {
            let (y, xa) = cpu::lora::forward::<T>(x.as_slice()?, weight(w, &copy)?, opt_slice(b)?, a.as_slice()?, bm.as_slice()?, d);
            Ok((t(y, &[n, d.out])?, t(xa, &[n, d.r])?))
        })
    }

    fn lora_bwd(
        &self,
        dy: &Tensor,
        x: &Tensor,
        w: &Tensor,
        a: &Tensor,
        bm: &Tensor,
        xa: &Tensor,
        spec: LoraSpec,
        seed: u64,
        needs: Needs<5>,
    ) -> Result<GradsOut<5>> {
        let (n, inp) = rows_cols(x);
        let d = cpu::lora::LoraDims {
            n,
            inp,
            out: w.shape()[0],
            r: a.shape()[0],
            scale: spec.scale,
            dropout: spec.dropout,
            seed,
        };
        let need = cpu::lora::LoraNeeds { dx: needs[0], dw: needs[1], db: needs[2], da: needs[3], dbm: needs[4] };
        float_dispatch!("lora_linear_backward", x.dtype(), T => {
            let g = cpu::lora::backward::<T>(dy.as_slice()?, x.as_slice()?, w.as_slice()?, a.as_slice()?, bm.as_slice()?, xa.as_slice()?, d, need);
            Ok([
                opt(g.dx, &[n, inp])?,
                opt(g.dw, &[d.out, inp])?,
                opt(g.db, &[d.out])?,
                opt(g.da, &[d.r, inp])?,
                opt(g.dbm, &[d.out, d.r])?,
            ])
        })
    }

    fn bmm_fwd(&self, a: &Tensor, b: &Tensor, dims: BmmDims) -> Result<Tensor> {
        float_dispatch!("matmul", a.dtype(), T => {
            let c = cpu::matmul::forward::<T>(a.as_slice()?, b.as_slice()?, dims);
            t(c, &[dims.batch, dims.m, dims.n])
        })
    }

    fn bmm_bwd(&self, dc: &Tensor, a: &Tensor, b: &Tensor, dims: BmmDims, needs: Needs<2>) -> Result<GradsOut<2>> {
        float_dispatch!("matmul_backward", a.dtype(), T => {
            let (da, db) = cpu::matmul::backward::<T>(dc.as_slice()?, a.as_slice()?, b.as_slice()?, dims, needs[0], needs[1]);
            Ok([opt(da, a.shape())?, opt(db, b.shape())?])
        })
    }

    fn embedding_fwd(&self, ids: &Tensor, table: &Tensor) -> Result<Tensor> {
        let (vocab, dim) = (table.shape()[0], table.shape()[1]);
        let idx = cpu::embedding::validate_ids(&as_i64(ids)?, vocab)?;
        let mut shape = ids.shape().to_vec();
        shape.push(dim);
        float_dispatch!("embedding", table.dtype(), T => {
            t(cpu::embedding::forward::<T>(&idx, table.as_slice()?, dim), &shape)
        })
    }

    fn embedding_bwd(&self, dy: &Tensor, ids: &Tensor, vocab: usize) -> Result<Tensor> {
        let dim = dy.shape().last().copied().unwrap_or(0);
        let idx = cpu::embedding::validate_ids(&as_i64(ids)?, vocab)?;
        float_dispatch!("embedding_backward", dy.dtype(), T => {
            t(cpu::embedding::backward::<T>(dy.as_slice()?, &idx, vocab, dim), &[vocab, dim])
        })
    }

    fn layer_norm_fwd(
        &self,
        x: &Tensor,
        gamma: Option<&Tensor>,
        beta: Option<&Tensor>,
        eps: f64,
    ) -> Result<(Tensor, Tensor, Tensor)> {
        let (rows, dim) = rows_cols(x);
        float_dispatch!("layer_norm", x.dtype(), T => {
            let (y, m, r) = cpu::layer_norm::forward::<T>(x.as_slice()?, opt_slice(gamma)?, opt_slice(beta)?, rows, dim, eps);
            Ok((t(y, x.shape())?, t(m, &[rows])?, t(r, &[rows])?))
        })
    }

    fn layer_norm_bwd(
        &self,
        dy: &Tensor,
        x: &Tensor,
        gamma: Option<&Tensor>,
        mean: &Tensor,
        rstd: &Tensor,
        needs: Needs<3>,
    ) -> Result<GradsOut<3>> {
        let (rows, dim) = rows_cols(x);
        float_dispatch!("layer_norm_backward", x.dtype(), T => {
            let g = cpu::layer_norm::backward::<T>(dy.as_slice()?, x.as_slice()?, opt_slice(gamma)?, mean.as_slice()?, rstd.as_slice()?, rows, dim, needs[0], needs[1], needs[2]);
            Ok([opt(g.dx, x.shape())?, opt(g.dgamma, &[dim])?, opt(g.dbeta, &[dim])?])
        })
    }

    fn rms_norm_fwd(&self, x: &Tensor, gamma: &Tensor, offset: f64, eps: f64) -> Result<(Tensor, Tensor)> {
        let (rows, dim) = rows_cols(x);
        float_dispatch!("rms_norm", x.dtype(), T => {
            let (y, r) = cpu::rms_norm::forward::<T>(x.as_slice()?, gamma.as_slice()?, offset, rows, dim, eps);
            Ok((t(y, x.shape())?, t(r, &[rows])?))
        })
    }

    fn rms_norm_bwd(
        &self,
        dy: &Tensor,
        x: &Tensor,
        gamma: &Tensor,
        offset: f64,
        rstd: &Tensor,
        needs: Needs<2>,
    ) -> Result<GradsOut<2>> {
        let (rows, dim) = rows_cols(x);
        float_dispatch!("rms_norm_backward", x.dtype(), T => {
            let (dx, dg) = cpu::rms_norm::backward::<T>(dy.as_slice()?, x.as_slice()?, gamma.as_slice()?, offset, rstd.as_slice()?, rows, dim, needs[0], needs[1]);
            Ok([opt(dx, x.shape())?, opt(dg, &[dim])?])
        })
    }

    fn rope(&self, x: &Tensor, cos: &Tensor, sin: &Tensor, rot_dim: usize, inverse: bool) -> Result<Tensor> {
        let s = x.shape();
        let (heads, head_dim) = (s[s.len() - 2], s[s.len() - 1]);
        let tokens = x.numel() / (heads * head_dim).max(1);
        float_dispatch!("rope", x.dtype(), T => {
            let y = cpu::rope::apply::<T>(x.as_slice()?, cos.as_slice()?, sin.as_slice()?, tokens, heads, head_dim, rot_dim, inverse);
            t(y, s)
        })
    }

    fn attention_fwd(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        masks: AttentionMasks<'_>,
        spec: AttentionSpec,
        seed: u64,
    ) -> Result<(Tensor, Tensor)> {
        let dims = attn_dims(q, k);
        let key_mask = masks.key_mask.map(as_mask).transpose()?;
        let segments = masks.segments.map(as_i64).transpose()?;
        let rule = cpu::attention::AttnRule {
            causal: spec.causal,
            key_mask: key_mask.as_deref(),
            segments: segments.as_deref(),
            window: spec.window,
            scale: spec.scale.unwrap_or(1.0 / (dims.d as f64).sqrt()),
            dropout: spec.dropout,
            seed,
        };
        float_dispatch!("attention", q.dtype(), T => {
            let (o, lse) = cpu::attention::forward::<T>(q.as_slice()?, k.as_slice()?, v.as_slice()?, dims, &rule);
            Ok((t(o, q.shape())?, t(lse, &[dims.b, dims.h, dims.t])?))
        })
    }

    fn attention_bwd(
        &self,
        dout: &Tensor,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        o: &Tensor,
        lse: &Tensor,
        masks: AttentionMasks<'_>,
        spec: AttentionSpec,
        seed: u64,
    ) -> Result<GradsOut<3>> {
        let dims = attn_dims(q, k);
        let key_mask = masks.key_mask.map(as_mask).transpose()?;
        let segments = masks.segments.map(as_i64).transpose()?;
        let rule = cpu::attention::AttnRule {
            causal: spec.causal,
            key_mask: key_mask.as_deref(),
            segments: segments.as_deref(),
            window: spec.window,
            scale: spec.scale.unwrap_or(1.0 / (dims.d as f64).sqrt()),
            dropout: spec.dropout,
            seed,
        };
        float_dispatch!("attention_backward", q.dtype(), T => {
            let (dq, dk, dv) = cpu::attention::backward::<T>(
                dout.as_slice()?, q.as_slice()?, k.as_slice()?, v.as_slice()?, o.as_slice()?, lse.as_slice()?, dims, &rule,
            );
            Ok([Some(t(dq, q.shape())?), Some(t(dk, k.shape())?), Some(t(dv, v.shape())?)])
        })
    }

    fn activation_fwd(&self, act: Activation, x: &Tensor) -> Result<Tensor> {
        float_dispatch!("activation", x.dtype(), T => t(cpu::activation::forward::<T>(act, x.as_slice()?), x.shape()))
    }

    fn activation_bwd(&self, act: Activation, dy: &Tensor, x: &Tensor) -> Result<Tensor> {
        float_dispatch!("activation_backward", x.dtype(), T => {
            t(cpu::activation::backward::<T>(act, dy.as_slice()?, x.as_slice()?), x.shape())
        })
    }

    fn swiglu_fwd(&self, gate: &Tensor, up: &Tensor) -> Result<Tensor> {
        float_dispatch!("swiglu", gate.dtype(), T => {
            t(cpu::activation::swiglu_forward::<T>(gate.as_slice()?, up.as_slice()?), gate.shape())
        })
    }

    fn swiglu_bwd(&self, dy: &Tensor, gate: &Tensor, up: &Tensor) -> Result<GradsOut<2>> {
        float_dispatch!("swiglu_backward", gate.dtype(), T => {
            let (dg, du) = cpu::activation::swiglu_backward::<T>(dy.as_slice()?, gate.as_slice()?, up.as_slice()?);
            Ok([Some(t(dg, gate.shape())?), Some(t(du, up.shape())?)])
        })
    }

    fn dropout(&self, x: &Tensor, p: f32, seed: u64) -> Result<Tensor> {
        float_dispatch!("dropout", x.dtype(), T => t(cpu::dropout::apply::<T>(x.as_slice()?, p, seed), x.shape()))
    }

    fn linear_cross_entropy_fwd(
        &self,
        h: &Tensor,
        w: &Tensor,
        b: Option<&Tensor>,
        labels: &Tensor,
        weights: Option<&Tensor>,
        spec: CrossEntropySpec,
        needs: Needs<3>,
    ) -> Result<CrossEntropyOut> {
        let (n, d) = rows_cols(h);
        let v = w.shape()[0];
        let labels = as_i64(labels)?;
        let copy = forward_copy(w, n)?;
        let opts = cpu::cross_entropy::CeOptions {
            ignore_index: spec.ignore_index,
            label_smoothing: spec.label_smoothing,
            normalizer: spec.normalizer,
        };
        float_dispatch!("cross_entropy", h.dtype(), T => {
            let wts: Option<Vec<T>> = weights.map(|w| w.to_vec_f64().map(|v| v.into_iter().map(T::from_f64).collect())).transpose()?;
            let out = cpu::cross_entropy::forward::<T>(
                h.as_slice()?, weight(w, &copy)?, opt_slice(b)?, &labels, wts.as_deref(), n, d, v, opts, needs[0], needs[1], needs[2],
            )?;
            Ok(CrossEntropyOut {
                loss: out.loss,
                token_logprobs: t(out.token_logprobs, &[n])?,
                normalizer: out.normalizer,
                counted: out.counted,
                grads: [opt(out.dh, &[n, d])?, opt(out.dw, &[v, d])?, opt(out.db, &[v])?],
            })
        })
    }

    fn linear_logprobs_fwd(
        &self,
        h: &Tensor,
        w: &Tensor,
        b: Option<&Tensor>,
        labels: &Tensor,
        ignore_index: i64,
    ) -> Result<(Tensor, Tensor)> {
        let (n, d) = rows_cols(h);
        let v = w.shape()[0];
        let labels = as_i64(labels)?;
        let copy = forward_copy(w, n)?;
        float_dispatch!("token_logprobs", h.dtype(), T => {
            let (lp, lse) = cpu::cross_entropy::logprobs_forward::<T>(h.as_slice()?, weight(w, &copy)?, opt_slice(b)?, &labels, n, d, v, ignore_index)?;
            Ok((t(lp, &[n])?, t(lse, &[n])?))
        })
    }

    fn linear_logprobs_bwd(
        &self,
        dlogp: &Tensor,
        h: &Tensor,
        w: &Tensor,
        b: Option<&Tensor>,
        labels: &Tensor,
        lse: &Tensor,
        ignore_index: i64,
        needs: Needs<3>,
    ) -> Result<GradsOut<3>> {
        let (n, d) = rows_cols(h);
        let v = w.shape()[0];
        let labels = as_i64(labels)?;
        let copy = forward_copy(w, n)?;
        float_dispatch!("token_logprobs_backward", h.dtype(), T => {
            let (dh, dw, db) = cpu::cross_entropy::logprobs_backward::<T>(
                dlogp.as_slice()?, h.as_slice()?, weight(w, &copy)?, opt_slice(b)?, &labels, lse.as_slice()?, n, d, v, ignore_index,
                (needs[0], needs[1], needs[2]),
            );
            Ok([opt(dh, &[n, d])?, opt(dw, &[v, d])?, opt(db, &[v])?])
        })
    }

    fn binary(&self, op: BinaryOp, a: &Tensor, b: &Tensor) -> Result<Tensor> {
        float_dispatch!("binary", a.dtype(), T => t(cpu::elementwise::binary::<T>(op, a.as_slice()?, b.as_slice()?), a.shape()))
    }

    fn reduce_period(&self, x: &Tensor, period: usize) -> Result<Tensor> {
        float_dispatch!("reduce", x.dtype(), T => t(cpu::elementwise::reduce_period::<T>(x.as_slice()?, period), &[period]))
    }

    fn scale(&self, x: &Tensor, s: f64) -> Result<Tensor> {
        float_dispatch!("scale", x.dtype(), T => t(cpu::elementwise::scale::<T>(x.as_slice()?, T::from_f64(s)), x.shape()))
    }

    fn add_assign(&self, a: &mut Tensor, b: &Tensor) -> Result<()> {
        float_dispatch!("add_assign", a.dtype(), T => {
            let bs = b.as_slice::<T>()?;
            cpu::elementwise::add_assign::<T>(a.as_mut_slice()?, bs);
            Ok(())
        })
    }

    fn sum_all(&self, x: &Tensor) -> Result<f64> {
        float_dispatch!("sum", x.dtype(), T => Ok(cpu::elementwise::sum_all::<T>(x.as_slice()?)))
    }

    fn permute(&self, x: &Tensor, perm: &[usize]) -> Result<Tensor> {
        let out_shape: Vec<usize> = perm.iter().map(|&p| x.shape()[p]).collect();
        match x.dtype() {
            DType::F32 => t(cpu::shape::permute(x.as_slice::<f32>()?, x.shape(), perm), &out_shape),
            DType::F64 => t(cpu::shape::permute(x.as_slice::<f64>()?, x.shape(), perm), &out_shape),
            DType::I64 => t(cpu::shape::permute(x.as_slice::<i64>()?, x.shape(), perm), &out_shape),
            DType::U32 => t(cpu::shape::permute(x.as_slice::<u32>()?, x.shape(), perm), &out_shape),
            other => Err(EngineError::DType { op: "permute", got: other, expected: "f32, f64, i64 or u32".into() }),
        }
    }

    fn narrow(&self, x: &Tensor, dim: usize, start: usize, len: usize) -> Result<Tensor> {
        let mut shape = x.shape().to_vec();
        shape[dim] = len;
        match x.dtype() {
            DType::F32 => t(cpu::shape::narrow(x.as_slice::<f32>()?, x.shape(), dim, start, len), &shape),
            DType::F64 => t(cpu::shape::narrow(x.as_slice::<f64>()?, x.shape(), dim, start, len), &shape),
            DType::I64 => t(cpu::shape::narrow(x.as_slice::<i64>()?, x.shape(), dim, start, len), &shape),
            DType::U32 => t(cpu::shape::narrow(x.as_slice::<u32>()?, x.shape(), dim, start, len), &shape),
            other => Err(EngineError::DType { op: "narrow", got: other, expected: "f32, f64, i64 or u32".into() }),
        }
    }

    fn narrow_bwd(&self, dy: &Tensor, shape: &[usize], dim: usize, start: usize) -> Result<Tensor> {
        let len = dy.shape()[dim];
        float_dispatch!("narrow_backward", dy.dtype(), T => {
            t(cpu::shape::narrow_backward::<T>(dy.as_slice()?, shape, dim, start, len), shape)
        })
    }

    fn concat(&self, parts: &[&Tensor], dim: usize) -> Result<Tensor> {
        let mut shape = parts[0].shape().to_vec();
        shape[dim] = parts.iter().map(|p| p.shape()[dim]).sum();
        float_dispatch!("concat", parts[0].dtype(), T => {
            let views = parts.iter().map(|p| Ok((p.as_slice::<T>()?, p.shape()))).collect::<Result<Vec<_>>>()?;
            t(cpu::shape::concat::<T>(&views, dim), &shape)
        })
    }

    fn softmax_fwd(&self, x: &Tensor, log: bool) -> Result<Tensor> {
        let (_, cols) = rows_cols(x);
        float_dispatch!("softmax", x.dtype(), T => {
            let xs = x.as_slice::<T>()?;
            let y = if log { cpu::softmax::log_softmax(xs, cols) } else { cpu::softmax::softmax(xs, cols) };
            t(y, x.shape())
        })
    }

    fn softmax_bwd(&self, dy: &Tensor, y: &Tensor, log: bool) -> Result<Tensor> {
        let (_, cols) = rows_cols(y);
        float_dispatch!("softmax_backward", y.dtype(), T => {
            let (g, ys) = (dy.as_slice::<T>()?, y.as_slice::<T>()?);
            let dx = if log { cpu::softmax::log_softmax_backward(g, ys, cols) } else { cpu::softmax::softmax_backward(g, ys, cols) };
            t(dx, y.shape())
        })
    }

    fn l2_normalize_fwd(&self, x: &Tensor, eps: f64) -> Result<(Tensor, Tensor)> {
        let (rows, cols) = rows_cols(x);
        float_dispatch!("l2_normalize", x.dtype(), T => {
            let (y, n) = cpu::softmax::l2_normalize::<T>(x.as_slice()?, cols, eps);
            Ok((t(y, x.shape())?, t(n, &[rows])?))
        })
    }

    fn l2_normalize_bwd(&self, dy: &Tensor, y: &Tensor, norms: &Tensor, eps: f64) -> Result<Tensor> {
        let (_, cols) = rows_cols(y);
        float_dispatch!("l2_normalize_backward", y.dtype(), T => {
            t(cpu::softmax::l2_normalize_backward::<T>(dy.as_slice()?, y.as_slice()?, norms.as_slice()?, cols, eps), y.shape())
        })
    }

    fn mean_pool_fwd(&self, x: &Tensor, mask: &Tensor) -> Result<(Tensor, Tensor)> {
        let s = x.shape();
        let (b, tl, d) = (s[0], s[1], s[2]);
        let m = as_mask(mask)?;
        float_dispatch!("mean_pool", x.dtype(), T => {
            let (y, c) = cpu::pool::mean_pool::<T>(x.as_slice()?, &m, b, tl, d);
            Ok((t(y, &[b, d])?, t(c, &[b])?))
        })
    }

    fn mean_pool_bwd(&self, dy: &Tensor, mask: &Tensor, counts: &Tensor, tl: usize) -> Result<Tensor> {
        let (b, d) = (dy.shape()[0], dy.shape()[1]);
        let m = as_mask(mask)?;
        float_dispatch!("mean_pool_backward", dy.dtype(), T => {
            t(cpu::pool::mean_pool_backward::<T>(dy.as_slice()?, &m, counts.as_slice()?, b, tl, d), &[b, tl, d])
        })
    }

    fn segment_outer(&self, a: &Tensor, b: &Tensor, runs: &[Run], examples: usize, alpha: f64) -> Result<Tensor> {
        let ((_, p), (_, q)) = (rows_cols(a), rows_cols(b));
        float_dispatch!("segment_outer", a.dtype(), T => {
            let out = cpu::segment::outer::<T>(a.as_slice()?, b.as_slice()?, p, q, runs, examples, T::from_f64(alpha));
            t(out, &[examples, p, q])
        })
    }

    fn segment_sum(&self, a: &Tensor, runs: &[Run], examples: usize) -> Result<Tensor> {
        let (_, p) = rows_cols(a);
        float_dispatch!("segment_sum", a.dtype(), T => t(cpu::segment::sum::<T>(a.as_slice()?, p, runs, examples), &[examples, p]))
    }

    fn segment_embedding_bwd(
        &self,
        dy: &Tensor,
        ids: &Tensor,
        vocab: usize,
        runs: &[Run],
        examples: usize,
    ) -> Result<Tensor> {
        let (_, d) = rows_cols(dy);
        let ids = as_i64(ids)?;
        float_dispatch!("segment_embedding_backward", dy.dtype(), T => {
            let out = cpu::segment::scatter_rows::<T>(dy.as_slice()?, &ids, d, vocab, runs, examples)?;
            t(out, &[examples, vocab, d])
        })
    }

    fn adamw_step(
        &self,
        param: &mut Tensor,
        grad: &Tensor,
        m: &mut Tensor,
        v: &mut Tensor,
        hp: AdamWStep,
    ) -> Result<()> {
        float_dispatch!("adamw", param.dtype(), T => {
            let g = grad.as_slice::<T>()?;
            let ms = m.as_mut_slice::<T>()?;
            let vs = v.as_mut_slice::<T>()?;
            crate::optim::kernels::adamw::<T>(param.as_mut_slice()?, g, ms, vs, hp);
            Ok(())
        })
    }

    fn sgd_step(
        &self,
        param: &mut Tensor,
        grad: &Tensor,
        momentum_buf: Option<&mut Tensor>,
        hp: SgdStep,
    ) -> Result<()> {
        float_dispatch!("sgd", param.dtype(), T => {
            let g = grad.as_slice::<T>()?;
            let buf = match momentum_buf {
                Some(b) => Some(b.as_mut_slice::<T>()?),
                None => None,
            };
            crate::optim::kernels::sgd::<T>(param.as_mut_slice()?, g, buf, hp);
            Ok(())
        })
    }
}
