//! The seam for pulls on the weights that are added to every optimizer step's gradient rather
//! than to a batch's loss: EWC (each past task's Fisher-weighted anchor) and L2-SP (a pull toward
//! the pre-trained weights). A new penalty is an `impl WeightPenalty`, handed to
//! [`crate::Trainer::add_penalty`].

use tunesmith_engine::{Grads, ParamId, ParamStore, Tensor};

use crate::error::{Result, TrainError};

/// A differentiable function of the weights alone, added to the training loss.
pub trait WeightPenalty {
    /// Its name in the train log (`penalty_<name>`).
    fn name(&self) -> &str;

    /// Adds the penalty's gradient to `grads` and returns its value.
    fn apply(&self, params: &ParamStore, grads: &mut Grads) -> Result<f64>;
}

impl<P: WeightPenalty> WeightPenalty for std::rc::Rc<P> {
    fn name(&self) -> &str {
        (**self).name()
    }

    fn apply(&self, params: &ParamStore, grads: &mut Grads) -> Result<f64> {
        (**self).apply(params, grads)
    }
}

/// `strength/2 · Σ w ⊙ (θ − θ*)²` over some parameters: with `w` a diagonal Fisher this is one
/// past task's EWC term, with `w = 1` and θ* the pre-trained weights it is L2-SP.
pub struct QuadraticAnchor {
    name: String,
    strength: f64,
    terms: Vec<(ParamId, Vec<f32>, Option<Vec<f32>>)>,
}

impl QuadraticAnchor {
    /// An anchor at the current values of `ids` with per-element `weights` (None: 1).
    pub fn at_current(
        name: &str,
        strength: f64,
        params: &ParamStore,
        ids: &[ParamId],
        mut weights: Vec<Option<Vec<f32>>>,
    ) -> Result<QuadraticAnchor> {
        if weights.is_empty() {
            weights = vec![None; ids.len()];
        }
        if weights.len() != ids.len() {
            return Err(TrainError::Config(format!(
                "{name}: {} weight tensors for {} parameters",
                weights.len(),
                ids.len()
            )));
        }
        let mut terms = Vec::with_capacity(ids.len());
        for (&id, w) in ids.iter().zip(weights) {
            let anchor = params.get(id).value.to_vec_f32()?;
            if w.as_ref().is_some_and(|w| w.len() != anchor.len()) {
                return Err(TrainError::Config(format!(
                    "{name}: weights of '{}' have the wrong size",
                    params.get(id).name
                )));
            }
            terms.push((id, anchor, w));
        }
        Ok(QuadraticAnchor { name: name.to_string(), strength, terms })
    }

    /// Parameters it pulls on.
    pub fn len(&self) -> usize {
        self.terms.len()
    }

    /// Whether it pulls on nothing.
    pub fn is_empty(&self) -> bool {
        self.terms.is_empty()
    }
}

impl WeightPenalty for QuadraticAnchor {
    fn name(&self) -> &str {
        &self.name
    }

    fn apply(&self, params: &ParamStore, grads: &mut Grads) -> Result<f64> {
        let mut value = 0.0;
        for (id, anchor, weights) in &self.terms {
            let p = params.get(*id);
            if !p.trainable {
                continue;
            }
            let theta = p.value.to_vec_f32()?;
            let mut grad = vec![0f32; theta.len()];
            let mut sum = 0.0f64;
            for i in 0..theta.len() {
                let d = theta[i] - anchor[i];
                let w = weights.as_ref().map_or(1.0, |w| w[i]);
                sum += f64::from(w * d * d);
                grad[i] = (self.strength as f32) * w * d;
            }
            value += 0.5 * self.strength * sum;
            let g = Tensor::from_vec(grad, p.value.shape())?.to_dtype(p.value.dtype())?;
            grads.add_param(*id, g)?;
        }
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gradient_is_strength_times_weighted_offset() {
        let mut store = ParamStore::new();
        let a = store.insert("a", Tensor::from_vec(vec![1.0f32, 2.0], &[2]).unwrap(), true).unwrap();
        let b = store.insert("b", Tensor::from_vec(vec![5.0f32], &[1]).unwrap(), false).unwrap();
        let anchor =
            QuadraticAnchor::at_current("ewc", 3.0, &store, &[a, b], vec![Some(vec![0.5, 2.0]), None]).unwrap();
        store.set_value(a, Tensor::from_vec(vec![2.0f32, 1.0], &[2]).unwrap()).unwrap();
        let mut grads = Grads::new();
        let v = anchor.apply(&store, &mut grads).unwrap();
        // 3/2 · (0.5·1 + 2·1) = 3.75; d/dθ = 3·w·(θ − θ*).
        assert!((v - 3.75).abs() < 1e-9);
        assert_eq!(grads.get(a).unwrap().to_vec_f64().unwrap(), vec![1.5, -6.0]);
        // Frozen parameters get no gradient.
        assert!(grads.get(b).is_none());
    }

    #[test]
    fn at_the_anchor_the_penalty_is_zero() {
        let mut store = ParamStore::new();
        let a = store.insert("a", Tensor::from_vec(vec![1.0f32, -2.0], &[2]).unwrap(), true).unwrap();
        let anchor = QuadraticAnchor::at_current("l2sp", 1.0, &store, &[a], Vec::new()).unwrap();
        let mut grads = Grads::new();
        assert_eq!(anchor.apply(&store, &mut grads).unwrap(), 0.0);
        assert_eq!(grads.get(a).unwrap().to_vec_f64().unwrap(), vec![0.0, 0.0]);
    }
}
