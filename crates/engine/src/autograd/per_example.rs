//! Per-example gradients, for DP-SGD: a backward pass in which every op that produces a
//! parameter's gradient produces one per example (`[examples, ...shape]`) instead of their sum,
//! from the rows each example owns; then each example's gradient is clipped to a norm and the
//! clipped gradients summed. Exact, and computed inside the ops' fused backwards, not by a
//! backward per example.

use std::collections::BTreeMap;

use crate::backend::Run;
use crate::error::{EngineError, Result};
use crate::param::ParamId;
use crate::Tensor;

use super::Grads;

/// Which example each row of a batch's token matrix belongs to.
#[derive(Debug, Clone, PartialEq)]
pub struct ExampleRows {
    examples: usize,
    token_rows: usize,
    runs: Vec<Run>,
}

impl ExampleRows {
    /// From one example index per token row (`None` for padding, which owns no gradient).
    /// `examples` is the number of examples; a row matrix of `examples` rows (a pooled
    /// sequence head) maps row i to example i.
    pub fn from_token_examples(token_examples: &[Option<usize>], examples: usize) -> Result<Self> {
        let mut runs: Vec<Run> = Vec::new();
        for (row, e) in token_examples.iter().enumerate() {
            let Some(e) = *e else { continue };
            if e >= examples {
                return Err(EngineError::invalid("per_example", format!("row {row} names example {e} of {examples}")));
            }
            match runs.last_mut() {
                Some(r) if r.example == e && r.end == row => r.end += 1,
                _ => runs.push(Run { start: row, end: row + 1, example: e }),
            }
        }
        Ok(ExampleRows { examples, token_rows: token_examples.len(), runs })
    }

    /// Number of examples.
    pub fn examples(&self) -> usize {
        self.examples
    }

    /// The runs of a matrix of `rows` rows: the token runs for the token matrix, one row per
    /// example for a pooled one.
    pub fn runs_for(&self, op: &'static str, rows: usize) -> Result<Vec<Run>> {
        if rows == self.token_rows {
            Ok(self.runs.clone())
        } else if rows == self.examples {
            Ok((0..rows).map(|e| Run { start: e, end: e + 1, example: e }).collect())
        } else {
            Err(EngineError::invalid(
                op,
                format!(
                    "per-example gradients: {rows} rows are neither the batch's {} tokens nor its {} examples",
                    self.token_rows, self.examples
                ),
            ))
        }
    }
}

/// Per-example parameter gradients of one backward pass: `[examples, ...shape]` per parameter.
#[derive(Debug, Default)]
pub struct PerExampleGrads {
    params: BTreeMap<ParamId, Tensor>,
}

/// What clipping did to one batch.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ClipStats {
    /// Examples in the batch.
    pub examples: usize,
    /// Examples whose gradient norm exceeded the bound.
    pub clipped: usize,
    /// Mean per-example gradient norm before clipping.
    pub mean_norm: f64,
}

impl PerExampleGrads {
    /// Empty.
    pub fn new() -> Self {
        Self::default()
    }

    pub(crate) fn add(&mut self, id: ParamId, g: Tensor) -> Result<()> {
        super::grads::accumulate(&mut self.params, id, g)
    }

    /// The per-example gradient of a parameter, `[examples, ...shape]`.
    pub fn get(&self, id: ParamId) -> Option<&Tensor> {
        self.params.get(&id)
    }

    /// Each example's gradient norm over all parameters.
    pub fn norms(&self, examples: usize) -> Result<Vec<f64>> {
        let mut sq = vec![0.0f64; examples];
        for g in self.params.values() {
            let v = g.to_vec_f64()?;
            let per = v.len() / examples.max(1);
            for (e, s) in sq.iter_mut().enumerate() {
                *s += v[e * per..(e + 1) * per].iter().map(|x| x * x).sum::<f64>();
            }
        }
        Ok(sq.into_iter().map(f64::sqrt).collect())
    }

    /// Adds `scale · Σ_e min(1, max_norm / (‖g_e‖ + 1e-6)) · g_e` to `grads` (Opacus' clip
    /// factor), and says how many examples were clipped.
    pub fn clip_into(&self, examples: usize, max_norm: f64, scale: f64, grads: &mut Grads) -> Result<ClipStats> {
        let norms = self.norms(examples)?;
        let factors: Vec<f64> = norms.iter().map(|n| (max_norm / (n + 1e-6)).min(1.0) * scale).collect();
        for (&id, g) in &self.params {
            let shape = g.shape()[1..].to_vec();
            let v = g.to_vec_f64()?;
            let per = v.len() / examples.max(1);
            let mut sum = vec![0.0f64; per];
            for (e, f) in factors.iter().enumerate() {
                for (s, x) in sum.iter_mut().zip(&v[e * per..(e + 1) * per]) {
                    *s += f * x;
                }
            }
            let t = Tensor::from_vec(sum, &shape)?.to_dtype(g.dtype())?;
            grads.add_param(id, t)?;
        }
        Ok(ClipStats {
            examples,
            clipped: norms.iter().filter(|&&n| n > max_norm).count(),
            mean_norm: if examples == 0 { 0.0 } else { norms.iter().sum::<f64>() / examples as f64 },
        })
    }

    /// Parameters that received per-example gradients.
    pub fn len(&self) -> usize {
        self.params.len()
    }

    /// True when no parameter received one.
    pub fn is_empty(&self) -> bool {
        self.params.is_empty()
    }
}
