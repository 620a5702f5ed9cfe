//! Named parameters. A model owns a [`ParamStore`]; each parameter has an HF-style dotted
//! name (`model.layers.0.self_attn.q_proj.weight`), a value and a trainable flag.
//! Gradients live beside them in [`crate::Grads`], keyed by [`ParamId`].

use std::collections::HashMap;

use crate::error::{EngineError, Result};
use crate::Tensor;

/// Index of a parameter in its store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ParamId(pub usize);

/// One named parameter.
#[derive(Debug, Clone)]
pub struct Param {
    /// Dotted name, as in the checkpoint.
    pub name: String,
    /// Current value.
    pub value: Tensor,
    /// Whether optimizers update it (and autograd computes its gradient).
    pub trainable: bool,
}

/// An ordered set of named parameters.
#[derive(Debug, Clone, Default)]
pub struct ParamStore {
    params: Vec<Param>,
    by_name: HashMap<String, ParamId>,
}

impl ParamStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a parameter; the name must be new.
    pub fn insert(&mut self, name: impl Into<String>, value: Tensor, trainable: bool) -> Result<ParamId> {
        let name = name.into();
        if self.by_name.contains_key(&name) {
            return Err(EngineError::invalid("param_store", format!("parameter '{name}' is defined twice")));
        }
        let id = ParamId(self.params.len());
        self.by_name.insert(name.clone(), id);
        self.params.push(Param { name, value, trainable });
        Ok(id)
    }

    /// Number of parameters.
    pub fn len(&self) -> usize {
        self.params.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.params.is_empty()
    }

    /// The parameter with this id.
    pub fn get(&self, id: ParamId) -> &Param {
        &self.params[id.0]
    }

    /// Mutable access to a parameter.
    pub fn get_mut(&mut self, id: ParamId) -> &mut Param {
        &mut self.params[id.0]
    }

    /// Looks a parameter up by name.
    pub fn id(&self, name: &str) -> Option<ParamId> {
        self.by_name.get(name).copied()
    }

    /// Looks a parameter up by name, or errors naming it.
    pub fn require(&self, name: &str) -> Result<ParamId> {
        self.id(name).ok_or_else(|| EngineError::invalid("param_store", format!("no parameter named '{name}'")))
    }

    /// All parameters with their ids, in insertion order.
    pub fn iter(&self) -> impl Iterator<Item = (ParamId, &Param)> {
        self.params.iter().enumerate().map(|(i, p)| (ParamId(i), p))
    }

    /// Ids of the trainable parameters.
    pub fn trainable_ids(&self) -> Vec<ParamId> {
        self.iter().filter(|(_, p)| p.trainable).map(|(id, _)| id).collect()
    }

    /// Number of scalar elements, total and trainable.
    pub fn counts(&self) -> (usize, usize) {
        let total = self.params.iter().map(|p| p.value.numel()).sum();
        let trainable = self.params.iter().filter(|p| p.trainable).map(|p| p.value.numel()).sum();
        (total, trainable)
    }

    /// Sets the trainable flag of every parameter whose name satisfies `pred`.
    pub fn set_trainable(&mut self, pred: impl Fn(&str) -> bool, trainable: bool) {
        for p in &mut self.params {
            if pred(&p.name) {
                p.trainable = trainable;
            }
        }
    }

    /// Replaces a frozen parameter's value with an empty `[0]` tensor and returns the value:
    /// for weights held elsewhere in another form (a quantized base), so the f32 copy is
    /// freed. [`ParamStore::restore`] puts a value back.
    pub fn release(&mut self, id: ParamId) -> Tensor {
        let p = &mut self.params[id.0];
        let empty = Tensor::from_vec(Vec::<f32>::new(), &[0]).expect("an empty tensor");
        std::mem::replace(&mut p.value, empty)
    }

    /// Puts a value back into a parameter emptied by [`ParamStore::release`].
    pub fn restore(&mut self, id: ParamId, value: Tensor) -> Result<()> {
        let p = &mut self.params[id.0];
        if p.value.numel() != 0 {
            return Err(EngineError::invalid("restore", format!("'{}' was not released", p.name)));
        }
        p.value = value;
        Ok(())
    }

    /// Replaces a value, checking the shape is unchanged.
    pub fn set_value(&mut self, id: ParamId, value: Tensor) -> Result<()> {
        let p = &mut self.params[id.0];
        if p.value.shape() != value.shape() {
            return Err(EngineError::shape(
                "set_value",
                p.value.shape(),
                value.shape(),
                format!("new value of '{}'", p.name),
            ));
        }
        p.value = value;
        Ok(())
    }
}
