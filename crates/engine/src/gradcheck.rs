//! Finite-difference gradient checking in f64: every op's hand-written backward is compared with
//! central differences of its forward. Used by the engine's tests and by model crates.

use crate::error::{EngineError, Result};
use crate::rng::Rng;
use crate::{Grads, Graph, Tensor, Var};

/// Outcome of a successful check.
#[derive(Debug, Clone, Copy)]
pub struct GradCheckReport {
    /// Largest |analytic − numeric| seen.
    pub max_abs_err: f64,
    /// Largest |analytic − numeric| / max(|numeric|, 1e-3).
    pub max_rel_err: f64,
    /// Number of input elements checked.
    pub checked: usize,
}

/// Settings of a check.
#[derive(Debug, Clone, Copy)]
pub struct GradCheckOptions {
    /// Finite-difference step.
    pub eps: f64,
    /// Allowed absolute error.
    pub atol: f64,
    /// Allowed error relative to the numeric gradient.
    pub rtol: f64,
    /// Run the graph in training mode (dropout active with a fixed seed).
    pub training: bool,
    /// Check at most this many elements per input (spread evenly); 0 means all.
    pub max_elements: usize,
}

impl Default for GradCheckOptions {
    fn default() -> Self {
        GradCheckOptions { eps: 1e-6, atol: 1e-7, rtol: 1e-6, training: false, max_elements: 0 }
    }
}

/// A tensor of standard-normal f64 values.
pub fn randn(shape: &[usize], seed: u64) -> Tensor {
    let mut r = Rng::new(seed);
    let n = crate::numel(shape);
    Tensor::from_vec((0..n).map(|_| r.normal()).collect::<Vec<f64>>(), shape).expect("shape matches length")
}

/// A tensor of uniform f64 values in [lo, hi).
pub fn uniform(shape: &[usize], lo: f64, hi: f64, seed: u64) -> Tensor {
    let mut r = Rng::new(seed);
    let n = crate::numel(shape);
    Tensor::from_vec((0..n).map(|_| lo + (hi - lo) * r.uniform()).collect::<Vec<f64>>(), shape)
        .expect("shape matches length")
}

const GRAPH_SEED: u64 = 0x5eed;

/// Projects the output of `f` to a scalar with fixed random weights.
fn projected_loss<'m>(g: &Graph<'m>, out: &Var, weights: &Tensor) -> Result<Var> {
    if out.value().numel() == 1 {
        return Ok(out.clone());
    }
    let w = g.input(weights.clone());
    let prod = g.mul(out, &w)?;
    g.sum(&prod)
}

fn eval_loss<F>(inputs: &[Tensor], f: &F, weights: &Tensor, training: bool) -> Result<f64>
where
    F: Fn(&Graph<'_>, &[Var]) -> Result<Var>,
{
    let g = Graph::with_mode(false, training, GRAPH_SEED);
    let vars: Vec<Var> = inputs.iter().map(|t| g.input(t.clone())).collect();
    let out = f(&g, &vars)?;
    projected_loss(&g, &out, weights)?.value().scalar_value()
}

/// Checks the gradient of `f` with respect to every input (f64 tensors).
/// `f` may return any shape; it is reduced with fixed random weights.
pub fn check<F>(inputs: &[Tensor], opts: GradCheckOptions, f: F) -> Result<GradCheckReport>
where
    F: Fn(&Graph<'_>, &[Var]) -> Result<Var>,
{
    // Analytic pass.
    let g = Graph::with_mode(true, opts.training, GRAPH_SEED);
    let leaves: Vec<Var> = inputs.iter().map(|t| g.leaf(t.clone())).collect();
    let out = f(&g, &leaves)?;
    let weights = randn(out.shape(), 77);
    let loss = projected_loss(&g, &out, &weights)?;
    let mut grads = Grads::new();
    g.backward(&loss, &mut grads)?;

    let mut report = GradCheckReport { max_abs_err: 0.0, max_rel_err: 0.0, checked: 0 };
    for (i, input) in inputs.iter().enumerate() {
        let n = input.numel();
        let analytic = match grads.of(&leaves[i]) {
            Some(t) => t.to_vec_f64()?,
            None => vec![0.0; n],
        };
        let stride = if opts.max_elements > 0 && n > opts.max_elements { n.div_ceil(opts.max_elements) } else { 1 };
        let base = input.to_vec_f64()?;
        for j in (0..n).step_by(stride) {
            let mut perturbed: Vec<Tensor> = inputs.to_vec();
            let mut plus = base.clone();
            plus[j] += opts.eps;
            perturbed[i] = Tensor::from_vec(plus, input.shape())?;
            let lp = eval_loss(&perturbed, &f, &weights, opts.training)?;
            let mut minus = base.clone();
            minus[j] -= opts.eps;
            perturbed[i] = Tensor::from_vec(minus, input.shape())?;
            let lm = eval_loss(&perturbed, &f, &weights, opts.training)?;
            let numeric = (lp - lm) / (2.0 * opts.eps);
            let a = analytic[j];
            let abs = (a - numeric).abs();
            let rel = abs / numeric.abs().max(1e-3);
            report.max_abs_err = report.max_abs_err.max(abs);
            report.max_rel_err = report.max_rel_err.max(rel);
            report.checked += 1;
            if abs > opts.atol + opts.rtol * numeric.abs() {
                return Err(EngineError::Autograd(format!(
                    "gradient mismatch at input {i} element {j}: analytic {a:.10e}, numeric {numeric:.10e}"
                )));
            }
        }
    }
    Ok(report)
}
