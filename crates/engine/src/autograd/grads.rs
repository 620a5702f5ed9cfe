//! Gradient buffers: per parameter (what optimizers read) and per plain leaf (what gradient
//! checks read). Backward passes accumulate into them, so micro-batches add up naturally.

use std::collections::BTreeMap;

use crate::backend;
use crate::error::{EngineError, Result};
use crate::param::ParamId;
use crate::Tensor;

use super::Var;

/// Accumulated gradients.
#[derive(Debug, Default, Clone)]
pub struct Grads {
    params: BTreeMap<ParamId, Tensor>,
    leaves: BTreeMap<usize, Tensor>,
}

pub(super) fn accumulate<K: Ord>(map: &mut BTreeMap<K, Tensor>, key: K, g: Tensor) -> Result<()> {
    match map.get_mut(&key) {
        Some(existing) => {
            if existing.shape() != g.shape() {
                return Err(EngineError::Autograd(format!(
                    "gradient shape {:?} does not match accumulated {:?}",
                    g.shape(),
                    existing.shape()
                )));
            }
            backend::common("grad_accumulate", &[existing, &g])?.add_assign(existing, &g)
        }
        None => {
            map.insert(key, g);
            Ok(())
        }
    }
}

impl Grads {
    /// Empty buffers.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a gradient for a parameter.
    pub fn add_param(&mut self, id: ParamId, g: Tensor) -> Result<()> {
        accumulate(&mut self.params, id, g)
    }

    pub(crate) fn add_leaf(&mut self, var_id: usize, g: Tensor) -> Result<()> {
        accumulate(&mut self.leaves, var_id, g)
    }

    /// The gradient of a parameter, if any flowed to it.
    pub fn get(&self, id: ParamId) -> Option<&Tensor> {
        self.params.get(&id)
    }

    /// Removes and returns a parameter's gradient.
    pub fn take(&mut self, id: ParamId) -> Option<Tensor> {
        self.params.remove(&id)
    }

    /// The gradient of a leaf created with [`super::Graph::leaf`].
    pub fn of(&self, var: &Var) -> Option<&Tensor> {
        self.leaves.get(&var.id())
    }

    /// Parameter gradients in id order.
    pub fn params(&self) -> impl Iterator<Item = (ParamId, &Tensor)> {
        self.params.iter().map(|(k, v)| (*k, v))
    }

    /// Mutable parameter gradients in id order.
    pub fn params_mut(&mut self) -> impl Iterator<Item = (ParamId, &mut Tensor)> {
        self.params.iter_mut().map(|(k, v)| (*k, v))
    }

    /// Drops every gradient.
    pub fn clear(&mut self) {
        self.params.clear();
        self.leaves.clear();
    }

    /// True when no gradient is held.
    pub fn is_empty(&self) -> bool {
        self.params.is_empty() && self.leaves.is_empty()
    }

    /// The global L2 norm over all parameter gradients (accumulated in f64, in id order).
    pub fn global_norm(&self) -> Result<f64> {
        let mut sq = 0.0f64;
        for g in self.params.values() {
            let v = g.to_vec_f64()?;
            sq += v.iter().map(|x| x * x).sum::<f64>();
        }
        Ok(sq.sqrt())
    }

    /// Multiplies every parameter gradient by `s`.
    pub fn scale(&mut self, s: f64) -> Result<()> {
        for g in self.params.values_mut() {
            *g = backend::for_device(g.device())?.scale(g, s)?;
        }
        Ok(())
    }

    /// True when every parameter gradient is finite.
    pub fn all_finite(&self) -> Result<bool> {
        for g in self.params.values() {
            if g.to_vec_f64()?.iter().any(|x| !x.is_finite()) {
                return Ok(false);
            }
        }
        Ok(true)
    }
}
