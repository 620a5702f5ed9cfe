//! Optimizers over a [`ParamStore`] and its [`Grads`]: AdamW (decoupled weight decay) and SGD
//! with momentum, both with parameter groups of their own learning rate and weight decay, plus
//! global gradient-norm clipping. State can be exported and restored for exact resumption.

pub mod kernels;

use std::collections::BTreeMap;

use crate::autograd::Grads;
use crate::backend;
use crate::error::{EngineError, Result};
use crate::param::{ParamId, ParamStore};
use crate::Tensor;

/// A set of parameters sharing a learning rate and weight decay.
#[derive(Debug, Clone, PartialEq)]
pub struct ParamGroup {
    /// Members of the group.
    pub params: Vec<ParamId>,
    /// Learning rate before any schedule multiplier.
    pub lr: f64,
    /// Weight decay (decoupled for AdamW, L2 for SGD).
    pub weight_decay: f64,
}

/// Per-call hyper-parameters of one AdamW update (what a backend kernel needs).
#[derive(Debug, Clone, Copy)]
pub struct AdamWStep {
    /// Effective learning rate.
    pub lr: f64,
    /// β₁.
    pub beta1: f64,
    /// β₂.
    pub beta2: f64,
    /// ε.
    pub eps: f64,
    /// Decoupled weight decay.
    pub weight_decay: f64,
    /// 1 − β₁^t.
    pub bias_correction1: f64,
    /// 1 − β₂^t.
    pub bias_correction2: f64,
}

/// Per-call hyper-parameters of one SGD update.
#[derive(Debug, Clone, Copy)]
pub struct SgdStep {
    /// Effective learning rate.
    pub lr: f64,
    /// Momentum factor (0 = plain SGD).
    pub momentum: f64,
    /// Dampening of the momentum update.
    pub dampening: f64,
    /// Nesterov momentum.
    pub nesterov: bool,
    /// L2 weight decay.
    pub weight_decay: f64,
    /// True on the buffer's first update (it is initialised to the gradient).
    pub first_step: bool,
}

/// An optimizer's state in exportable form: step count and named state tensors
/// (`<param name>.<slot>`).
#[derive(Debug, Clone, Default)]
pub struct OptimizerState {
    /// Number of updates taken.
    pub step: u64,
    /// Named state tensors.
    pub tensors: Vec<(String, Tensor)>,
}

/// Common interface of the optimizers.
pub trait Optimizer {
    /// Applies one update from `grads` to the trainable parameters of `store`. Parameters
    /// without a gradient are left alone.
    fn step(&mut self, store: &mut ParamStore, grads: &Grads) -> Result<()>;
    /// Multiplies every group's base learning rate by `factor` for the following steps
    /// (learning-rate schedules).
    fn set_lr_factor(&mut self, factor: f64);
    /// The groups.
    fn groups(&self) -> &[ParamGroup];
    /// Effective learning rate of group `i`.
    fn lr(&self, group: usize) -> f64;
    /// Number of updates taken.
    fn steps_taken(&self) -> u64;
    /// Exports the state, naming tensors by parameter name.
    fn export_state(&self, store: &ParamStore) -> OptimizerState;
    /// Restores state exported by [`Optimizer::export_state`].
    fn import_state(&mut self, store: &ParamStore, state: &OptimizerState) -> Result<()>;
}

fn check_groups(store: &ParamStore, groups: &[ParamGroup]) -> Result<()> {
    let mut seen = std::collections::HashSet::new();
    for g in groups {
        for &id in &g.params {
            if id.0 >= store.len() {
                return Err(EngineError::invalid("optimizer", format!("parameter id {} is not in the store", id.0)));
            }
            if !seen.insert(id) {
                return Err(EngineError::invalid(
                    "optimizer",
                    format!("parameter '{}' is in two groups", store.get(id).name),
                ));
            }
        }
    }
    Ok(())
}

/// AdamW with decoupled weight decay, as torch.optim.AdamW.
#[derive(Debug, Clone)]
pub struct AdamW {
    groups: Vec<ParamGroup>,
    /// β₁, β₂.
    pub betas: (f64, f64),
    /// ε.
    pub eps: f64,
    lr_factor: f64,
    step: u64,
    moments: BTreeMap<ParamId, (Tensor, Tensor)>,
}

impl AdamW {
    /// An AdamW over `groups` of parameters of `store`.
    pub fn new(store: &ParamStore, groups: Vec<ParamGroup>, betas: (f64, f64), eps: f64) -> Result<Self> {
        check_groups(store, &groups)?;
        if !(0.0..1.0).contains(&betas.0) || !(0.0..1.0).contains(&betas.1) {
            return Err(EngineError::invalid("adamw", format!("betas {betas:?} must lie in [0, 1)")));
        }
        Ok(AdamW { groups, betas, eps, lr_factor: 1.0, step: 0, moments: BTreeMap::new() })
    }
}

impl Optimizer for AdamW {
    fn step(&mut self, store: &mut ParamStore, grads: &Grads) -> Result<()> {
        let _t = crate::profile::timer("opt", "adamw");
        self.step += 1;
        let t = self.step as i32;
        let bc1 = 1.0 - self.betas.0.powi(t);
        let bc2 = 1.0 - self.betas.1.powi(t);
        for group in &self.groups {
            let hp = AdamWStep {
                lr: group.lr * self.lr_factor,
                beta1: self.betas.0,
                beta2: self.betas.1,
                eps: self.eps,
                weight_decay: group.weight_decay,
                bias_correction1: bc1,
                bias_correction2: bc2,
            };
            for &id in &group.params {
                let Some(g) = grads.get(id) else { continue };
                let p = store.get_mut(id);
                if !p.trainable {
                    continue;
                }
                if g.shape() != p.value.shape() {
                    return Err(EngineError::shape(
                        "adamw",
                        p.value.shape(),
                        g.shape(),
                        format!("gradient of '{}'", p.name),
                    ));
                }
                let (m, v) = match self.moments.get_mut(&id) {
                    Some(s) => s,
                    None => {
                        let z = Tensor::zeros(p.value.shape(), p.value.dtype(), p.value.device())?;
                        self.moments.entry(id).or_insert((z.clone(), z.deep_clone()?))
                    }
                };
                let be = backend::common("adamw", &[&p.value, g])?;
                be.adamw_step(&mut p.value, g, m, v, hp)?;
            }
        }
        Ok(())
    }

    fn set_lr_factor(&mut self, factor: f64) {
        self.lr_factor = factor;
    }

    fn groups(&self) -> &[ParamGroup] {
        &self.groups
    }

    fn lr(&self, group: usize) -> f64 {
        self.groups.get(group).map_or(0.0, |g| g.lr * self.lr_factor)
    }

    fn steps_taken(&self) -> u64 {
        self.step
    }

    fn export_state(&self, store: &ParamStore) -> OptimizerState {
        let mut tensors = Vec::new();
        for (id, (m, v)) in &self.moments {
            let name = &store.get(*id).name;
            tensors.push((format!("{name}.exp_avg"), m.clone()));
            tensors.push((format!("{name}.exp_avg_sq"), v.clone()));
        }
        OptimizerState { step: self.step, tensors }
    }

    fn import_state(&mut self, store: &ParamStore, state: &OptimizerState) -> Result<()> {
        let by_name: BTreeMap<&str, &Tensor> = state.tensors.iter().map(|(k, v)| (k.as_str(), v)).collect();
        self.moments.clear();
        for group in &self.groups {
            for &id in &group.params {
                let p = store.get(id);
                let m = by_name.get(format!("{}.exp_avg", p.name).as_str());
                let v = by_name.get(format!("{}.exp_avg_sq", p.name).as_str());
                match (m, v) {
                    (Some(m), Some(v)) => {
                        if m.shape() != p.value.shape() || v.shape() != p.value.shape() {
                            return Err(EngineError::shape(
                                "adamw_state",
                                p.value.shape(),
                                m.shape(),
                                format!("state of '{}'", p.name),
                            ));
                        }
                        self.moments.insert(id, ((*m).deep_clone()?, (*v).deep_clone()?));
                    }
                    (None, None) => {}
                    _ => {
                        return Err(EngineError::invalid(
                            "adamw_state",
                            format!("state of '{}' is incomplete", p.name),
                        ));
                    }
                }
            }
        }
        self.step = state.step;
        Ok(())
    }
}

/// SGD with momentum, as torch.optim.SGD.
#[derive(Debug, Clone)]
pub struct Sgd {
    groups: Vec<ParamGroup>,
    /// Momentum factor.
    pub momentum: f64,
    /// Dampening.
    pub dampening: f64,
    /// Nesterov momentum.
    pub nesterov: bool,
    lr_factor: f64,
    step: u64,
    buffers: BTreeMap<ParamId, Tensor>,
}

impl Sgd {
    /// An SGD over `groups`.
    pub fn new(
        store: &ParamStore,
        groups: Vec<ParamGroup>,
        momentum: f64,
        dampening: f64,
        nesterov: bool,
    ) -> Result<Self> {
        check_groups(store, &groups)?;
        if nesterov && (momentum <= 0.0 || dampening != 0.0) {
            return Err(EngineError::invalid("sgd", "Nesterov momentum needs momentum > 0 and zero dampening"));
        }
        Ok(Sgd { groups, momentum, dampening, nesterov, lr_factor: 1.0, step: 0, buffers: BTreeMap::new() })
    }
}

impl Optimizer for Sgd {
    fn step(&mut self, store: &mut ParamStore, grads: &Grads) -> Result<()> {
        self.step += 1;
        for group in &self.groups {
            for &id in &group.params {
                let Some(g) = grads.get(id) else { continue };
                let p = store.get_mut(id);
                if !p.trainable {
                    continue;
                }
                let be = backend::common("sgd", &[&p.value, g])?;
                let mut hp = SgdStep {
                    lr: group.lr * self.lr_factor,
                    momentum: self.momentum,
                    dampening: self.dampening,
                    nesterov: self.nesterov,
                    weight_decay: group.weight_decay,
                    first_step: false,
                };
                if self.momentum != 0.0 {
                    let buf = match self.buffers.entry(id) {
                        std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
                        std::collections::btree_map::Entry::Vacant(e) => {
                            hp.first_step = true;
                            e.insert(Tensor::zeros(p.value.shape(), p.value.dtype(), p.value.device())?)
                        }
                    };
                    be.sgd_step(&mut p.value, g, Some(buf), hp)?;
                } else {
                    be.sgd_step(&mut p.value, g, None, hp)?;
                }
            }
        }
        Ok(())
    }

    fn set_lr_factor(&mut self, factor: f64) {
        self.lr_factor = factor;
    }

    fn groups(&self) -> &[ParamGroup] {
        &self.groups
    }

    fn lr(&self, group: usize) -> f64 {
        self.groups.get(group).map_or(0.0, |g| g.lr * self.lr_factor)
    }

    fn steps_taken(&self) -> u64 {
        self.step
    }

    fn export_state(&self, store: &ParamStore) -> OptimizerState {
        let tensors = self
            .buffers
            .iter()
            .map(|(id, b)| (format!("{}.momentum_buffer", store.get(*id).name), b.clone()))
            .collect();
        OptimizerState { step: self.step, tensors }
    }

    fn import_state(&mut self, store: &ParamStore, state: &OptimizerState) -> Result<()> {
        self.buffers.clear();
        for group in &self.groups {
            for &id in &group.params {
                let p = store.get(id);
                let key = format!("{}.momentum_buffer", p.name);
                if let Some((_, t)) = state.tensors.iter().find(|(k, _)| *k == key) {
                    if t.shape() != p.value.shape() {
                        return Err(EngineError::shape("sgd_state", p.value.shape(), t.shape(), key));
                    }
                    self.buffers.insert(id, t.deep_clone()?);
                }
            }
        }
        self.step = state.step;
        Ok(())
    }
}

/// Scales gradients so their global L2 norm is at most `max_norm`, as torch's
/// `clip_grad_norm_`: per-tensor norms accumulated in f64 and rounded to f32, their norm
/// rounded to f32, and the coefficient `max_norm / (total + 1e-6)` applied in f32 when below 1.
/// Returns the norm before clipping.
pub fn clip_grad_norm(grads: &mut Grads, max_norm: f64) -> Result<f64> {
    let mut sq = 0.0f64;
    for (_, g) in grads.params() {
        let n = g.to_vec_f64()?.iter().map(|x| x * x).sum::<f64>().sqrt() as f32 as f64;
        sq += n * n;
    }
    let total = sq.sqrt() as f32;
    let coef = (max_norm as f32) / (total + 1e-6);
    if coef < 1.0 {
        grads.scale(coef as f64)?;
    }
    Ok(total as f64)
}
