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

/// Per-example parameter gradients of one backward pass: `[examples, ...shape]` per parameter,
/// with, for sparse ones (embedding tables), the rows each example can have non-zero.
#[derive(Debug, Default)]
pub struct PerExampleGrads {
    params: BTreeMap<ParamId, Tensor>,
    support: BTreeMap<ParamId, Vec<Vec<u32>>>,
}

/// Per example, the sorted union of several row supports.
pub(crate) fn union_rows(notes: Vec<Vec<Vec<u32>>>) -> Vec<Vec<u32>> {
    let mut it = notes.into_iter();
    let mut acc = it.next().unwrap_or_default();
    for n in it {
        for (a, b) in acc.iter_mut().zip(n) {
            a.extend(b);
            a.sort_unstable();
            a.dedup();
        }
    }
    acc
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

/// A per-example gradient's values as f32 or f64.
enum Values<'a> {
    F32(&'a [f32]),
    F64(Vec<f64>),
}

impl Values<'_> {
    fn of(g: &Tensor) -> Result<Values<'_>> {
        Ok(match g.dtype() {
            crate::DType::F32 => Values::F32(g.as_slice::<f32>()?),
            _ => Values::F64(g.to_vec_f64()?),
        })
    }

    fn sq_norm(&self, range: std::ops::Range<usize>) -> f64 {
        match self {
            Values::F32(v) => v[range].iter().map(|&x| f64::from(x) * f64::from(x)).sum(),
            Values::F64(v) => v[range].iter().map(|x| x * x).sum(),
        }
    }

    /// `dst += f · self[range]`.
    fn add_scaled(&self, range: std::ops::Range<usize>, f: f64, dst: &mut [f64]) {
        match self {
            Values::F32(v) => dst.iter_mut().zip(&v[range]).for_each(|(d, &x)| *d += f * f64::from(x)),
            Values::F64(v) => dst.iter_mut().zip(&v[range]).for_each(|(d, x)| *d += f * x),
        }
    }
}

impl PerExampleGrads {
    /// Empty.
    pub fn new() -> Self {
        Self::default()
    }

    pub(crate) fn add(&mut self, id: ParamId, g: Tensor, support: Option<Vec<Vec<u32>>>) -> Result<()> {
        let existed = self.params.contains_key(&id);
        super::grads::accumulate(&mut self.params, id, g)?;
        match (existed, support) {
            (false, Some(s)) => {
                self.support.insert(id, s);
            }
            (true, Some(s)) if self.support.contains_key(&id) => {
                let old = self.support.remove(&id).unwrap_or_default();
                self.support.insert(id, union_rows(vec![old, s]));
            }
            (true, _) => {
                self.support.remove(&id);
            }
            (false, None) => {}
        }
        Ok(())
    }

    /// The per-example gradient of a parameter, `[examples, ...shape]`.
    pub fn get(&self, id: ParamId) -> Option<&Tensor> {
        self.params.get(&id)
    }

    /// Calls `f(example, range)` for every range of `g`'s flat values that can be non-zero.
    fn ranges(&self, id: ParamId, g: &Tensor, examples: usize, mut f: impl FnMut(usize, std::ops::Range<usize>)) {
        let per = g.numel() / examples.max(1);
        match self.support.get(&id) {
            Some(rows) => {
                let width = per / g.shape().get(1).copied().unwrap_or(1).max(1);
                for (e, rows) in rows.iter().enumerate().take(examples) {
                    for &r in rows {
                        let start = e * per + r as usize * width;
                        f(e, start..start + width);
                    }
                }
            }
            None => (0..examples).for_each(|e| f(e, e * per..(e + 1) * per)),
        }
    }

    /// Each example's gradient norm over all parameters.
    pub fn norms(&self, examples: usize) -> Result<Vec<f64>> {
        let mut sq = vec![0.0f64; examples];
        for (&id, g) in &self.params {
            let v = Values::of(g)?;
            self.ranges(id, g, examples, |e, r| sq[e] += v.sq_norm(r));
        }
        Ok(sq.into_iter().map(f64::sqrt).collect())
    }

    /// Scales each example's gradient by `scale`, clips it to `max_norm` with Opacus' clip
    /// factor `min(1, max_norm / (‖scale·g_e‖ + 1e-6))`, adds the sum to `grads`, and says how
    /// many examples were clipped (norms reported are of the scaled gradients).
    pub fn clip_into(&self, examples: usize, max_norm: f64, scale: f64, grads: &mut Grads) -> Result<ClipStats> {
        let norms: Vec<f64> = self.norms(examples)?.into_iter().map(|n| n * scale).collect();
        let factors: Vec<f64> = norms.iter().map(|n| (max_norm / (n + 1e-6)).min(1.0) * scale).collect();
        for (&id, g) in &self.params {
            let shape = g.shape()[1..].to_vec();
            let per = g.numel() / examples.max(1);
            let mut sum = vec![0.0f64; per];
            let v = Values::of(g)?;
            self.ranges(id, g, examples, |e, r| {
                let local = r.start - e * per..r.end - e * per;
                v.add_scaled(r, factors[e], &mut sum[local]);
            });
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
