//! The diagonal of the (empirical) Fisher information of a finished task for EWC: the mean over
//! a seeded sample of the task's training examples of each parameter's squared gradient of
//! −log p(y | x), one example per backward pass, dropout off.

use tunesmith_data::batch::{Loader, LoaderOptions, Position};
use tunesmith_data::encode::Encoded;
use tunesmith_engine::{Grads, Graph, ParamId};
use tunesmith_models::Model;

use crate::error::{Result, TrainError};
use crate::multitask::heads::{MultiHead, TaskHead};
use crate::objective::Objective;

/// Per parameter of `ids`, the mean squared per-example gradient over at most `samples`
/// examples of `examples` (all scored by `head`).
pub fn diagonal_fisher(
    model: &mut Model,
    head: &TaskHead,
    examples: &[Encoded],
    ids: &[ParamId],
    samples: usize,
    opts: &LoaderOptions,
) -> Result<Vec<Vec<f32>>> {
    if examples.is_empty() {
        return Err(TrainError::Config(format!("EWC: task \"{}\" has no training examples for its Fisher", head.name)));
    }
    let objective =
        MultiHead::new(vec![head.clone()], vec![0; examples.len()], Vec::new(), model.config.position_offset);
    let loader = Loader::new(
        examples.to_vec(),
        LoaderOptions { batch_size: 1, packing: false, padding_free: false, shuffle: true, ..opts.clone() },
    )?;
    let mut sums: Vec<Vec<f64>> = ids.iter().map(|&id| vec![0.0; model.params.get(id).value.numel()]).collect();
    let mut n = 0usize;
    for (_, hb) in loader.epoch_from(Position::default()).take(samples.max(1)) {
        let prepared = objective.prepare(model, &loader, &hb, 0)?;
        let mut grads = Grads::new();
        {
            let g = Graph::with_mode(true, false, 0);
            let step = objective.step(model, &g, &prepared, 1.0, false)?;
            g.backward(&step.loss, &mut grads)?;
        }
        for (sum, &id) in sums.iter_mut().zip(ids) {
            if let Some(gr) = grads.get(id) {
                for (s, v) in sum.iter_mut().zip(gr.to_vec_f64()?) {
                    *s += v * v;
                }
            }
        }
        n += 1;
    }
    Ok(sums.into_iter().map(|s| s.into_iter().map(|v| (v / n as f64) as f32).collect()).collect())
}
