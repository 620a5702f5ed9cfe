//! Scaled dot-product attention (flash-style tiles on every backend): causal, padding and
//! packed-segment masks, sliding windows, grouped-query heads and attention dropout.

use super::{float_backend, single, AttentionSpec};
use crate::autograd::{BackwardCtx, BackwardOp};
use crate::backend::AttentionMasks;
use crate::error::{EngineError, Result};
use crate::{Graph, Tensor, Var};

struct AttentionBackward {
    q: Tensor,
    k: Tensor,
    v: Tensor,
    o: Tensor,
    lse: Tensor,
    key_mask: Option<Tensor>,
    segments: Option<Tensor>,
    spec: AttentionSpec,
    seed: u64,
}

impl<'m> Graph<'m> {
    /// Attention of `q [B, T, H, D]` over `k, v [B, S, Hkv, D]` → `[B, T, H, D]`.
    /// `key_mask [B, S]` is nonzero for real keys; `segments [B, T]` (T == S) restricts each
    /// query to keys of its own packed example. Dropout applies only in training mode.
    pub fn attention(
        &self,
        q: &Var,
        k: &Var,
        v: &Var,
        key_mask: Option<&Tensor>,
        segments: Option<&Tensor>,
        spec: AttentionSpec,
    ) -> Result<Var> {
        const OP: &str = "attention";
        let _t = crate::profile::timer("fwd", OP);
        let be = float_backend(OP, &[q, k, v])?;
        let (qs, ks, vs) = (q.shape(), k.shape(), v.shape());
        if qs.len() != 4 || ks.len() != 4 || ks != vs {
            return Err(EngineError::shape(OP, qs, ks, "q must be [B, T, H, D] and k, v the same [B, S, Hkv, D]"));
        }
        if qs[0] != ks[0] || qs[3] != ks[3] {
            return Err(EngineError::shape(OP, qs, ks, "batch and head_dim of q and k must match"));
        }
        if ks[2] == 0 || qs[2] % ks[2] != 0 {
            return Err(EngineError::shape(OP, qs, ks, "query heads must be a multiple of key/value heads"));
        }
        if spec.causal && qs[1] > ks[1] {
            return Err(EngineError::shape(OP, qs, ks, "causal attention needs at least as many keys as queries"));
        }
        if let Some(m) = key_mask {
            if m.shape() != [ks[0], ks[1]] {
                return Err(EngineError::shape(OP, m.shape(), &[ks[0], ks[1]], "key_mask must be [B, S]"));
            }
        }
        if let Some(s) = segments {
            if qs[1] != ks[1] || s.shape() != [qs[0], qs[1]] {
                return Err(EngineError::shape(
                    OP,
                    s.shape(),
                    &[qs[0], qs[1]],
                    "segments must be [B, T] and need T == S",
                ));
            }
        }
        if !(0.0..1.0).contains(&spec.dropout) {
            return Err(EngineError::invalid(OP, format!("dropout {} must be in [0, 1)", spec.dropout)));
        }
        let spec = AttentionSpec { dropout: if self.is_training() { spec.dropout } else { 0.0 }, ..spec };
        let seed = if spec.dropout > 0.0 { self.next_seed() } else { 0 };
        let masks = AttentionMasks { key_mask, segments };
        let (o, lse) = be.attention_fwd(q.value(), k.value(), v.value(), masks, spec, seed)?;
        Ok(self.record(o.clone(), &[Some(q), Some(k), Some(v)], || {
            Box::new(AttentionBackward {
                q: q.value().clone(),
                k: k.value().clone(),
                v: v.value().clone(),
                o,
                lse,
                key_mask: key_mask.cloned(),
                segments: segments.cloned(),
                spec,
                seed,
            })
        }))
    }
}

impl BackwardOp for AttentionBackward {
    fn name(&self) -> &'static str {
        "attention"
    }

    fn backward(
        self: Box<Self>,
        _: &mut BackwardCtx<'_>,
        needs: &[bool],
        grads: Vec<Option<Tensor>>,
    ) -> Result<Vec<Option<Tensor>>> {
        let dout = single("attention", grads)?;
        let be = crate::backend::common("attention_backward", &[&dout, &self.q])?;
        let masks = AttentionMasks { key_mask: self.key_mask.as_ref(), segments: self.segments.as_ref() };
        let [dq, dk, dv] =
            be.attention_bwd(&dout, &self.q, &self.k, &self.v, &self.o, &self.lse, masks, self.spec, self.seed)?;
        Ok(vec![dq.filter(|_| needs[0]), dk.filter(|_| needs[1]), dv.filter(|_| needs[2])])
    }
}
