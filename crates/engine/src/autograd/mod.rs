//! Reverse-mode autograd on a tape.
//!
//! A [`Graph`] records one node per op call whose inputs need gradients. Each node owns the
//! tensors its hand-written backward needs (and nothing else: activations no node saved are
//! freed as soon as the model drops their [`Var`]). [`Graph::backward`] walks the tape in
//! reverse, frees each node once used, and accumulates parameter gradients into [`Grads`].

mod checkpoint;
mod grads;
mod per_example;

use std::cell::RefCell;
use std::collections::HashMap;

pub use grads::Grads;
pub use per_example::{ClipStats, ExampleRows, PerExampleGrads};

use crate::backend;
use crate::error::{EngineError, Result};
use crate::param::{ParamId, ParamStore};
use crate::rng;
use crate::Tensor;

/// A value in a graph: a tensor plus its identity on the tape.
#[derive(Clone, Debug)]
pub struct Var {
    id: usize,
    value: Tensor,
    requires_grad: bool,
}

impl Var {
    /// The tensor.
    pub fn value(&self) -> &Tensor {
        &self.value
    }

    /// Consumes the var, returning its tensor.
    pub fn into_value(self) -> Tensor {
        self.value
    }

    /// Shape of the value.
    pub fn shape(&self) -> &[usize] {
        self.value.shape()
    }

    /// Whether gradients flow back through this value.
    pub fn requires_grad(&self) -> bool {
        self.requires_grad
    }

    /// The tape id (stable for the graph's lifetime).
    pub fn id(&self) -> usize {
        self.id
    }
}

/// Per example, the rows of a parameter's gradient that can be non-zero.
type RowSupport = Vec<Vec<u32>>;

/// What a backward step receives besides the output gradients.
pub struct BackwardCtx<'g> {
    /// Parameter gradients, for ops (checkpoint scopes) that produce them directly.
    pub grads: &'g mut Grads,
    /// In a per-example pass: which rows belong to which example, and where per-example
    /// parameter gradients go (for checkpoint scopes).
    per_example: Option<(&'g ExampleRows, &'g mut PerExampleGrads)>,
    /// Which of the current node's inputs are parameters.
    param_inputs: Vec<bool>,
    /// Rows of a parameter's per-example gradient that can be non-zero, per example, noted by
    /// the current op for its input (embedding tables: the rows of the example's tokens).
    row_support: Vec<(usize, Vec<Vec<u32>>)>,
}

impl BackwardCtx<'_> {
    /// In a per-example pass, when input `input` of the current op is a parameter: the runs of
    /// rows each example owns in the op's `rows`-row matrix, and the number of examples. The op
    /// must then return that input's gradient as `[examples, ...shape]`.
    pub fn per_example_runs(
        &self,
        op: &'static str,
        input: usize,
        rows: usize,
    ) -> Result<Option<(Vec<crate::backend::Run>, usize)>> {
        match &self.per_example {
            Some((ex, _)) if self.param_inputs.get(input).copied().unwrap_or(false) => {
                Ok(Some((ex.runs_for(op, rows)?, ex.examples())))
            }
            _ => Ok(None),
        }
    }

    /// Notes that the per-example gradient this op returns for `input` is zero outside
    /// `rows[e]` (rows of its second dimension) for each example e, so clipping reads only those.
    pub fn note_row_support(&mut self, input: usize, rows: Vec<Vec<u32>>) {
        self.row_support.push((input, rows));
    }

    /// True in a per-example pass.
    pub fn is_per_example(&self) -> bool {
        self.per_example.is_some()
    }
}

/// The hand-written backward of one recorded op.
pub trait BackwardOp {
    /// The op's name, for error messages.
    fn name(&self) -> &'static str;
    /// Given gradients of the outputs (None = zero), returns gradients of the inputs; only
    /// inputs with `needs[i]` must be produced.
    fn backward(
        self: Box<Self>,
        ctx: &mut BackwardCtx<'_>,
        needs: &[bool],
        out_grads: Vec<Option<Tensor>>,
    ) -> Result<Vec<Option<Tensor>>>;
}

struct Node<'m> {
    inputs: Vec<Option<usize>>,
    outputs: Vec<usize>,
    op: Box<dyn BackwardOp + 'm>,
}

#[derive(Clone)]
enum Leaf {
    Param(ParamId, Vec<usize>),
    Input,
}

struct State<'m> {
    nodes: Vec<Node<'m>>,
    next_var: usize,
    leaves: Vec<(usize, Leaf)>,
    seed_counter: u64,
}

/// A tape. Create one per forward pass; `'m` is the lifetime of what checkpoint scopes borrow
/// (usually the model).
pub struct Graph<'m> {
    state: RefCell<State<'m>>,
    record: bool,
    training: bool,
    seed: u64,
}

impl<'m> Graph<'m> {
    /// A recording graph in training mode (dropout active), seeded for dropout masks.
    pub fn train(seed: u64) -> Self {
        Self::with_mode(true, true, seed)
    }

    /// A non-recording graph in eval mode: no nodes, no saved tensors, dropout off.
    pub fn inference() -> Self {
        Self::with_mode(false, false, 0)
    }

    /// A graph with explicit recording and training flags.
    pub fn with_mode(record: bool, training: bool, seed: u64) -> Self {
        Self::with_seed_position(record, training, seed, 0)
    }

    /// A graph whose random-op stream starts `counter` draws into `seed`'s stream (so a
    /// checkpointed scope draws exactly what the surrounding graph would have).
    pub(crate) fn with_seed_position(record: bool, training: bool, seed: u64, counter: u64) -> Self {
        Graph {
            state: RefCell::new(State { nodes: Vec::new(), next_var: 0, leaves: Vec::new(), seed_counter: counter }),
            record,
            training,
            seed,
        }
    }

    pub(crate) fn seed_position(&self) -> u64 {
        self.state.borrow().seed_counter
    }

    pub(crate) fn set_seed_position(&self, counter: u64) {
        self.state.borrow_mut().seed_counter = counter;
    }

    /// Whether ops record backward nodes.
    pub fn is_recording(&self) -> bool {
        self.record
    }

    /// Whether dropout is active.
    pub fn is_training(&self) -> bool {
        self.training
    }

    /// The seed this graph derives dropout masks from.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// Number of recorded nodes (for tests and diagnostics).
    pub fn num_nodes(&self) -> usize {
        self.state.borrow().nodes.len()
    }

    /// A fresh seed for one random op call, deterministic in call order.
    pub fn next_seed(&self) -> u64 {
        let mut s = self.state.borrow_mut();
        s.seed_counter += 1;
        rng::derive_seed(self.seed, s.seed_counter)
    }

    fn new_id(&self) -> usize {
        let mut s = self.state.borrow_mut();
        s.next_var += 1;
        s.next_var - 1
    }

    /// A value that needs no gradient (inputs, masks, constants).
    pub fn input(&self, value: Tensor) -> Var {
        Var { id: self.new_id(), value, requires_grad: false }
    }

    /// A leaf whose gradient is wanted (read it back with [`Grads::of`]).
    pub fn leaf(&self, value: Tensor) -> Var {
        let id = self.new_id();
        if self.record {
            self.state.borrow_mut().leaves.push((id, Leaf::Input));
        }
        Var { id, value, requires_grad: self.record }
    }

    /// A parameter of a store; it requires a gradient when trainable and recording.
    pub fn param(&self, store: &ParamStore, id: ParamId) -> Var {
        let p = store.get(id);
        self.param_value(id, p.value.clone(), p.trainable)
    }

    /// A parameter given by id and value (for callers that keep values outside a store).
    pub fn param_value(&self, id: ParamId, value: Tensor, trainable: bool) -> Var {
        let var_id = self.new_id();
        let requires_grad = self.record && trainable;
        if requires_grad {
            self.state.borrow_mut().leaves.push((var_id, Leaf::Param(id, value.shape().to_vec())));
        }
        Var { id: var_id, value, requires_grad }
    }

    /// True if recording and any of `inputs` requires a gradient.
    pub fn needs_grad(&self, inputs: &[Option<&Var>]) -> bool {
        self.record && inputs.iter().flatten().any(|v| v.requires_grad)
    }

    /// Records an op with one output. `make` builds the backward node only if needed.
    pub fn record<F>(&self, output: Tensor, inputs: &[Option<&Var>], make: F) -> Var
    where
        F: FnOnce() -> Box<dyn BackwardOp + 'm>,
    {
        self.record_many(vec![output], inputs, make).pop().expect("one output")
    }

    /// Records an op with several outputs.
    pub fn record_many<F>(&self, outputs: Vec<Tensor>, inputs: &[Option<&Var>], make: F) -> Vec<Var>
    where
        F: FnOnce() -> Box<dyn BackwardOp + 'm>,
    {
        let requires_grad = self.needs_grad(inputs);
        let vars: Vec<Var> = outputs.into_iter().map(|value| Var { id: self.new_id(), value, requires_grad }).collect();
        if requires_grad {
            let node = Node {
                inputs: inputs.iter().map(|v| v.and_then(|v| v.requires_grad.then_some(v.id))).collect(),
                outputs: vars.iter().map(|v| v.id).collect(),
                op: make(),
            };
            self.state.borrow_mut().nodes.push(node);
        }
        vars
    }

    /// Back-propagates from a scalar `loss` (seed gradient 1) into `grads`. The tape is
    /// consumed: a second backward on the same graph sees no nodes.
    pub fn backward(&self, loss: &Var, grads: &mut Grads) -> Result<()> {
        if loss.value.numel() != 1 {
            return Err(EngineError::Autograd(format!(
                "backward needs a scalar loss, got shape {:?}; use backward_with for other outputs",
                loss.shape()
            )));
        }
        let seed = Tensor::full(loss.shape(), 1.0, loss.value.dtype(), loss.value.device())?;
        self.backward_with(&[(loss, seed)], grads)
    }

    /// Back-propagates from several outputs with given gradients.
    pub fn backward_with(&self, seeds: &[(&Var, Tensor)], grads: &mut Grads) -> Result<()> {
        self.backward_impl(seeds, grads, None)
    }

    /// Back-propagates from a scalar `loss`, giving each parameter one gradient per example
    /// (`[examples, ...shape]`, into `per_example`) from the rows `examples` assigns them.
    /// Plain leaves still get summed gradients in `grads`. An op that cannot split its
    /// parameter's gradient by example is an error naming it.
    pub fn backward_per_example(
        &self,
        loss: &Var,
        examples: &ExampleRows,
        grads: &mut Grads,
        per_example: &mut PerExampleGrads,
    ) -> Result<()> {
        if loss.value.numel() != 1 {
            return Err(EngineError::Autograd(format!("backward needs a scalar loss, got shape {:?}", loss.shape())));
        }
        let seed = Tensor::full(loss.shape(), 1.0, loss.value.dtype(), loss.value.device())?;
        self.backward_impl(&[(loss, seed)], grads, Some((examples, per_example)))
    }

    fn backward_impl(
        &self,
        seeds: &[(&Var, Tensor)],
        grads: &mut Grads,
        per_example: Option<(&ExampleRows, &mut PerExampleGrads)>,
    ) -> Result<()> {
        let (nodes, leaves) = {
            let mut s = self.state.borrow_mut();
            (std::mem::take(&mut s.nodes), std::mem::take(&mut s.leaves))
        };
        let mut acc: HashMap<usize, Tensor> = HashMap::new();
        for (var, g) in seeds {
            if g.shape() != var.shape() {
                return Err(EngineError::shape(
                    "backward",
                    var.shape(),
                    g.shape(),
                    "seed gradient must match the output",
                ));
            }
            if var.requires_grad {
                add_grad(&mut acc, var.id, g.clone())?;
            }
        }
        let param_shapes: HashMap<usize, &[usize]> = leaves
            .iter()
            .filter_map(|(id, leaf)| match leaf {
                Leaf::Param(_, shape) => Some((*id, shape.as_slice())),
                Leaf::Input => None,
            })
            .collect();
        let examples = per_example.as_ref().map(|(ex, _)| ex.examples());
        let mut ctx = BackwardCtx { grads, per_example, param_inputs: Vec::new(), row_support: Vec::new() };
        // Per parameter var: how many ops gave it a gradient, and the row supports they noted.
        let mut contributions: HashMap<usize, (usize, Vec<RowSupport>)> = HashMap::new();
        for node in nodes.into_iter().rev() {
            let outs: Vec<Option<Tensor>> = node.outputs.iter().map(|id| acc.remove(id)).collect();
            if outs.iter().all(Option::is_none) {
                continue;
            }
            let needs: Vec<bool> = node.inputs.iter().map(Option::is_some).collect();
            let name = node.op.name();
            let param_inputs: Vec<Option<&[usize]>> =
                node.inputs.iter().map(|id| id.and_then(|id| param_shapes.get(&id).copied())).collect();
            if examples.is_some() {
                ctx.param_inputs = param_inputs.iter().map(Option::is_some).collect();
            }
            let in_grads = {
                let _t = crate::profile::timer("bwd", name);
                node.op.backward(&mut ctx, &needs, outs)?
            };
            if in_grads.len() != node.inputs.len() {
                return Err(EngineError::Autograd(format!(
                    "{name}: backward returned {} gradients for {} inputs",
                    in_grads.len(),
                    node.inputs.len()
                )));
            }
            if let Some(e) = examples {
                let mut notes = std::mem::take(&mut ctx.row_support);
                for (i, (input, g)) in node.inputs.iter().zip(&in_grads).enumerate() {
                    if let (Some(id), Some(_), Some(_)) = (input, g, param_inputs[i]) {
                        let c = contributions.entry(*id).or_default();
                        c.0 += 1;
                        if let Some(k) = notes.iter().position(|(j, _)| *j == i) {
                            c.1.push(notes.swap_remove(k).1);
                        }
                    }
                }
                for (shape, g) in param_inputs.iter().zip(&in_grads) {
                    if let (Some(shape), Some(g)) = (shape, g) {
                        if g.shape().first() != Some(&e) || &g.shape()[1..] != *shape {
                            return Err(EngineError::Autograd(format!(
                                "{name} cannot give per-example gradients (as DP-SGD needs) for its parameter of shape {shape:?}; freeze that parameter or train it with a method whose ops support them"
                            )));
                        }
                    }
                }
            }
            for (input, g) in node.inputs.iter().zip(in_grads) {
                if let (Some(id), Some(g)) = (input, g) {
                    add_grad(&mut acc, *id, g)?;
                }
            }
        }
        for (id, leaf) in leaves {
            if let Some(g) = acc.remove(&id) {
                match (leaf, &mut ctx.per_example) {
                    (Leaf::Param(p, _), Some((_, out))) => {
                        // Sparse rows only when every contribution noted its support.
                        let support = contributions
                            .remove(&id)
                            .filter(|(n, notes)| *n == notes.len() && *n > 0)
                            .map(|(_, notes)| per_example::union_rows(notes));
                        out.add(p, g, support)?
                    }
                    (Leaf::Param(p, _), None) => ctx.grads.add_param(p, g)?,
                    (Leaf::Input, _) => ctx.grads.add_leaf(id, g)?,
                }
            }
        }
        Ok(())
    }
}

fn add_grad(acc: &mut HashMap<usize, Tensor>, id: usize, g: Tensor) -> Result<()> {
    match acc.get_mut(&id) {
        Some(existing) => {
            let _t = crate::profile::timer("bwd", "grad_accumulate");
            if existing.shape() != g.shape() {
                return Err(EngineError::Autograd(format!(
                    "gradient of shape {:?} added to {:?}",
                    g.shape(),
                    existing.shape()
                )));
            }
            backend::common("grad_accumulate", &[existing, &g])?.add_assign(existing, &g)
        }
        None => {
            acc.insert(id, g);
            Ok(())
        }
    }
}
