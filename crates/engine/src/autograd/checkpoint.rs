//! Activation checkpointing: a scope whose forward runs without recording, keeping only its
//! inputs; on backward it re-runs the same forward on a recording sub-graph (with the same
//! dropout seeds) and back-propagates through that.

use super::{BackwardCtx, BackwardOp, Grads, Graph, Var};
use crate::error::{EngineError, Result};
use crate::Tensor;

type ScopeFn<'m> = dyn Fn(&Graph<'m>, &[Var]) -> Result<Vec<Var>> + 'm;

struct CheckpointBackward<'m> {
    f: Box<ScopeFn<'m>>,
    inputs: Vec<(Tensor, bool)>,
    seed: u64,
    seed_position: u64,
    training: bool,
}

impl<'m> Graph<'m> {
    /// Runs `f` on `inputs` as a checkpointed scope: intermediate activations inside `f` are
    /// not kept; they are recomputed during backward. `f` must be deterministic given its
    /// inputs and the graph's seeds (all engine ops are).
    pub fn checkpoint<F>(&self, inputs: &[&Var], f: F) -> Result<Vec<Var>>
    where
        F: Fn(&Graph<'m>, &[Var]) -> Result<Vec<Var>> + 'm,
    {
        let input_refs: Vec<Option<&Var>> = inputs.iter().map(|v| Some(*v)).collect();
        if !self.record {
            let owned: Vec<Var> = inputs.iter().map(|v| (*v).clone()).collect();
            return f(self, &owned);
        }
        // The scope continues this graph's random stream, so checkpointing on or off draws the
        // same dropout masks; the recomputation restarts from the same position.
        let seed_position = self.seed_position();
        let sub: Graph<'m> = Graph::with_seed_position(false, self.training, self.seed, seed_position);
        let sub_inputs: Vec<Var> = inputs.iter().map(|v| sub.input(v.value.clone())).collect();
        let outs = f(&sub, &sub_inputs)?;
        self.set_seed_position(sub.seed_position());
        // Parameters used inside the scope must receive gradients even if no input requires
        // one, so the scope's outputs always require gradients while recording.
        let saved: Vec<(Tensor, bool)> = inputs.iter().map(|v| (v.value.clone(), v.requires_grad)).collect();
        let vars: Vec<Var> =
            outs.into_iter().map(|v| Var { id: self.new_id(), value: v.into_value(), requires_grad: true }).collect();
        let node = super::Node {
            inputs: input_refs.iter().map(|v| v.and_then(|v| v.requires_grad.then_some(v.id))).collect(),
            outputs: vars.iter().map(|v| v.id).collect(),
            op: Box::new(CheckpointBackward {
                f: Box::new(f),
                inputs: saved,
                seed: self.seed,
                seed_position,
                training: self.training,
            }),
        };
        self.state.borrow_mut().nodes.push(node);
        Ok(vars)
    }
}

impl<'m> BackwardOp for CheckpointBackward<'m> {
    fn name(&self) -> &'static str {
        "checkpoint"
    }

    fn backward(
        self: Box<Self>,
        ctx: &mut BackwardCtx<'_>,
        _needs: &[bool],
        out_grads: Vec<Option<Tensor>>,
    ) -> Result<Vec<Option<Tensor>>> {
        let sub: Graph<'m> = Graph::with_seed_position(true, self.training, self.seed, self.seed_position);
        let leaves: Vec<Var> = self
            .inputs
            .iter()
            .map(|(t, needs)| if *needs { sub.leaf(t.clone()) } else { sub.input(t.clone()) })
            .collect();
        let outs = (self.f)(&sub, &leaves)?;
        if outs.len() != out_grads.len() {
            return Err(EngineError::Autograd(format!(
                "checkpoint: recomputation produced {} outputs, the forward {}",
                outs.len(),
                out_grads.len()
            )));
        }
        let seeds: Vec<(&Var, Tensor)> = outs.iter().zip(out_grads).filter_map(|(v, g)| g.map(|g| (v, g))).collect();
        let mut local = Grads::new();
        match ctx.per_example.as_mut() {
            Some((ex, out)) => sub.backward_impl(&seeds, &mut local, Some((*ex, &mut **out)))?,
            None => sub.backward_with(&seeds, &mut local)?,
        }
        for (id, g) in local.params() {
            ctx.grads.add_param(id, g.clone())?;
        }
        Ok(leaves.iter().map(|v| local.of(v).cloned()).collect())
    }
}
