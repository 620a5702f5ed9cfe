//! Softmax cross-entropy fused with the output projection, chunked over tokens (the full
//! `[tokens, vocab]` probabilities never exist). Returns the scalar loss and the per-token
//! log-probabilities; [`Graph::token_logprobs`] makes those differentiable for preference losses.

use super::{float_backend, single, CrossEntropySpec};
use crate::autograd::{BackwardCtx, BackwardOp};
use crate::dtype::DType;
use crate::error::{EngineError, Result};
use crate::{Graph, Tensor, Var};

/// What [`Graph::linear_cross_entropy`] returns.
#[derive(Debug, Clone)]
pub struct LossOutput {
    /// The scalar loss (differentiable).
    pub loss: Var,
    /// log p(label) per token, 0 where ignored (not differentiable; see `token_logprobs`).
    pub token_logprobs: Tensor,
    /// Tokens that were not ignored.
    pub counted: usize,
    /// What the weighted sum was divided by.
    pub normalizer: f64,
}

struct LinearCeBackward {
    grads: [Option<Tensor>; 3],
    /// What a per-example pass needs to recompute the logits' gradient (kept only when the
    /// head's W or b is trained): h `[n, d]`, W, b, labels, token weights, the spec and the
    /// normalizer the forward divided by.
    head: Option<HeadInputs>,
}

struct HeadInputs {
    h: Tensor,
    w: Tensor,
    b: Option<Tensor>,
    labels: Tensor,
    weights: Option<Tensor>,
    spec: CrossEntropySpec,
    normalizer: f64,
}

impl HeadInputs {
    /// ∂loss/∂logits `[n, vocab]`: (softmax − ((1−ε)·one-hot + ε/V))·weight / normalizer, zero on
    /// ignored rows.
    fn dlogits(&self) -> Result<Tensor> {
        let be = crate::backend::common("cross_entropy_backward", &[&self.h, &self.w])?;
        let logits = be.linear_fwd(&self.h, &self.w, self.b.as_ref())?;
        let mut p = be.softmax_fwd(&logits, false)?.to_vec_f64()?;
        let v = self.w.shape()[0];
        let labels = self.labels.to_vec_f64()?;
        let weights = self.weights.as_ref().map(Tensor::to_vec_f64).transpose()?;
        let eps = self.spec.label_smoothing;
        for (i, row) in p.chunks_mut(v).enumerate() {
            let y = labels[i] as i64;
            if y == self.spec.ignore_index || y < 0 || y as usize >= v {
                row.fill(0.0);
                continue;
            }
            let scale = weights.as_ref().map_or(1.0, |w| w[i]) / self.normalizer;
            for (j, x) in row.iter_mut().enumerate() {
                let target = eps / v as f64 + if j == y as usize { 1.0 - eps } else { 0.0 };
                *x = (*x - target) * scale;
            }
        }
        Tensor::from_vec(p, &[labels.len(), v])?.to_dtype(self.h.dtype())
    }
}

struct LogprobBackward {
    h: Tensor,
    w: Tensor,
    b: Option<Tensor>,
    labels: Tensor,
    lse: Tensor,
    ignore_index: i64,
    h_shape: Vec<usize>,
}

fn check_head(op: &'static str, h: &Var, w: &Var, b: Option<&Var>, labels: &Tensor) -> Result<(usize, usize)> {
    let (hs, ws) = (h.shape(), w.shape());
    if ws.len() != 2 || hs.is_empty() || hs[hs.len() - 1] != ws[1] {
        return Err(EngineError::shape(op, hs, ws, "h's last dimension must equal W's second (W is [vocab, d])"));
    }
    let n: usize = hs[..hs.len() - 1].iter().product();
    if labels.numel() != n {
        return Err(EngineError::shape(op, labels.shape(), &hs[..hs.len() - 1], "one label per row of h"));
    }
    if !matches!(labels.dtype(), DType::I64 | DType::U32) {
        return Err(EngineError::DType { op, got: labels.dtype(), expected: "i64 labels".into() });
    }
    if let Some(b) = b {
        if b.shape() != [ws[0]] {
            return Err(EngineError::shape(op, b.shape(), &[ws[0]], "bias must be [vocab]"));
        }
    }
    Ok((n, ws[1]))
}

impl<'m> Graph<'m> {
    /// Mean (weighted) cross-entropy of `softmax(h·Wᵀ + b)` against `labels`, over tokens whose
    /// label is not `spec.ignore_index`. `weights` (one per token) scale each token's loss and
    /// its share of the normaliser.
    pub fn linear_cross_entropy(
        &self,
        h: &Var,
        w: &Var,
        b: Option<&Var>,
        labels: &Tensor,
        weights: Option<&Tensor>,
        spec: CrossEntropySpec,
    ) -> Result<LossOutput> {
        const OP: &str = "cross_entropy";
        let _t = crate::profile::timer("fwd", OP);
        let mut vars = vec![h, w];
        vars.extend(b);
        let be = float_backend(OP, &vars)?;
        let (n, d) = check_head(OP, h, w, b, labels)?;
        if let Some(wt) = weights {
            if wt.numel() != n {
                return Err(EngineError::shape(OP, wt.shape(), &[n], "one weight per token"));
            }
        }
        if !(0.0..1.0).contains(&spec.label_smoothing) {
            return Err(EngineError::invalid(
                OP,
                format!("label_smoothing {} must be in [0, 1)", spec.label_smoothing),
            ));
        }
        let needs = [self.needs_grad(&[Some(h)]), self.needs_grad(&[Some(w)]), self.needs_grad(&[b])];
        let h2 = h.value().reshape(&[n, d])?;
        let out = be.linear_cross_entropy_fwd(&h2, w.value(), b.map(Var::value), labels, weights, spec, needs)?;
        let loss_t = Tensor::full(&[], out.loss, h.value().dtype(), h.value().device())?;
        let [dh, dw, db] = out.grads;
        let dh = dh.map(|g| g.reshape(h.shape())).transpose()?;
        let head = (needs[1] || needs[2]).then(|| HeadInputs {
            h: h2.clone(),
            w: w.value().clone(),
            b: b.map(|b| b.value().clone()),
            labels: labels.clone(),
            weights: weights.cloned(),
            spec,
            normalizer: out.normalizer,
        });
        let loss =
            self.record(loss_t, &[Some(h), Some(w), b], || Box::new(LinearCeBackward { grads: [dh, dw, db], head }));
        Ok(LossOutput { loss, token_logprobs: out.token_logprobs, counted: out.counted, normalizer: out.normalizer })
    }

    /// Differentiable log p(label) per token, `[...]` matching h's leading dims (0 where the
    /// label is `ignore_index`). Logits are recomputed chunk by chunk in the backward.
    pub fn token_logprobs(&self, h: &Var, w: &Var, b: Option<&Var>, labels: &Tensor, ignore_index: i64) -> Result<Var> {
        const OP: &str = "token_logprobs";
        let _t = crate::profile::timer("fwd", OP);
        let mut vars = vec![h, w];
        vars.extend(b);
        let be = float_backend(OP, &vars)?;
        let (n, d) = check_head(OP, h, w, b, labels)?;
        let h2 = h.value().reshape(&[n, d])?;
        let (lp, lse) = be.linear_logprobs_fwd(&h2, w.value(), b.map(Var::value), labels, ignore_index)?;
        let lead = &h.shape()[..h.shape().len() - 1];
        let lp = lp.reshape(lead)?;
        Ok(self.record(lp, &[Some(h), Some(w), b], || {
            Box::new(LogprobBackward {
                h: h2.clone(),
                w: w.value().clone(),
                b: b.map(|b| b.value().clone()),
                labels: labels.clone(),
                lse,
                ignore_index,
                h_shape: h.shape().to_vec(),
            })
        }))
    }
}

impl BackwardOp for LinearCeBackward {
    fn name(&self) -> &'static str {
        "cross_entropy"
    }

    fn backward(
        self: Box<Self>,
        ctx: &mut BackwardCtx<'_>,
        needs: &[bool],
        grads: Vec<Option<Tensor>>,
    ) -> Result<Vec<Option<Tensor>>> {
        const OP: &str = "cross_entropy";
        let up = single(OP, grads)?.scalar_value()?;
        let mut out = Vec::with_capacity(3);
        let mut grads = self.grads;
        if let Some(head) = &self.head {
            let n = head.h.shape()[0];
            let w_split = if needs[1] { ctx.per_example_runs(OP, 1, n)? } else { None };
            let b_split = if needs.get(2) == Some(&true) { ctx.per_example_runs(OP, 2, n)? } else { None };
            if w_split.is_some() || b_split.is_some() {
                // The forward summed the head's gradient over rows; a per-example pass
                // recomputes the logits' gradient and splits it by example.
                let dl = head.dlogits()?;
                let be = crate::backend::common("cross_entropy_backward", &[&dl])?;
                if let Some((runs, e)) = w_split {
                    grads[1] = Some(be.segment_outer(&dl, &head.h, &runs, e, 1.0)?);
                }
                if let Some((runs, e)) = b_split {
                    grads[2] = Some(be.segment_sum(&dl, &runs, e)?);
                }
            }
        }
        for (g, need) in grads.into_iter().zip(needs) {
            out.push(match g {
                Some(g) if *need => {
                    Some(if up == 1.0 { g } else { crate::backend::for_device(g.device())?.scale(&g, up)? })
                }
                _ => None,
            });
        }
        Ok(out)
    }
}

impl BackwardOp for LogprobBackward {
    fn name(&self) -> &'static str {
        "token_logprobs"
    }

    fn backward(
        self: Box<Self>,
        _: &mut BackwardCtx<'_>,
        needs: &[bool],
        grads: Vec<Option<Tensor>>,
    ) -> Result<Vec<Option<Tensor>>> {
        let dlp = single("token_logprobs", grads)?;
        let dlp = dlp.reshape(&[dlp.numel()])?;
        let be = crate::backend::common("token_logprobs_backward", &[&dlp, &self.h])?;
        let [dh, dw, db] = be.linear_logprobs_bwd(
            &dlp,
            &self.h,
            &self.w,
            self.b.as_ref(),
            &self.labels,
            &self.lse,
            self.ignore_index,
            [needs[0], needs[1], needs[2]],
        )?;
        Ok(vec![dh.map(|g| g.reshape(&self.h_shape)).transpose()?, dw, db])
    }
}
