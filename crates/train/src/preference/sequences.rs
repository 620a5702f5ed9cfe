//! Per-sequence scores of a batch that holds several sequences (a pair's chosen and rejected,
//! stacked or packed together), differentiably, in one forward pass: a policy's per-token
//! log-probs summed over each member's trained tokens, or a reward model's scalar output.

use tunesmith_data::batch::HostBatch;
use tunesmith_data::encode::IGNORE;
use tunesmith_data::pairs::member_spans;
use tunesmith_engine::{Graph, Tensor, Var};
use tunesmith_models::Model;

use crate::error::Result;

/// A score `[S, 1]` for each of a batch's S member sequences (differentiable when `g` records):
/// summed log-probabilities, or rewards. With their values and each member's token count.
pub struct SequenceLogps {
    /// Σ log p over each member's trained tokens (or its reward), `[S, 1]`.
    pub sums: Var,
    /// The same values on the host.
    pub values: Vec<f64>,
    /// Trained tokens per member (all its tokens for a reward).
    pub tokens: Vec<usize>,
}

/// Scores every member sequence of `hb` under `model`. Position t of the model's output scores
/// label t + 1, so a member spanning tokens [a, b) owns output positions [a, b − 1); each
/// member's first label is never trained (it has no context), so no sum crosses members.
pub fn sequence_logps<'m>(
    model: &'m Model,
    g: &Graph<'m>,
    hb: &HostBatch,
    packed: bool,
    checkpoint: bool,
) -> Result<SequenceLogps> {
    let batch = crate::trainer::to_batch(hb, packed, model.config.position_offset)?;
    let labels = Tensor::from_vec(hb.labels.iter().map(|&l| i64::from(l)).collect::<Vec<i64>>(), &[hb.rows, hb.len])?;
    let lp = model.token_logprobs(g, &batch, &labels, checkpoint)?;
    let spans = member_spans(hb);
    let n = hb.rows * hb.len;
    let mut owner = vec![0f32; spans.len() * n];
    let mut tokens = Vec::with_capacity(spans.len());
    for (s, &(a, b)) in spans.iter().enumerate() {
        owner[s * n + a..s * n + b.saturating_sub(1).max(a)].fill(1.0);
        tokens.push(hb.labels[(a + 1).min(b)..b].iter().filter(|&&l| l != IGNORE).count());
    }
    let owner = g.input(Tensor::from_vec(owner, &[spans.len(), n])?.to_dtype(lp.value().dtype())?);
    let sums = g.matmul(&owner, &g.reshape(&lp, &[n, 1])?, false, false)?;
    let values = sums.value().to_vec_f64()?;
    Ok(SequenceLogps { sums, values, tokens })
}

/// The reward `[S, 1]` of each member sequence of `hb` from a model with a one-output sequence
/// classification head (read at each member's last token, as transformers reads it).
pub fn reward_scores<'m>(
    model: &'m Model,
    g: &Graph<'m>,
    hb: &HostBatch,
    packed: bool,
    checkpoint: bool,
) -> Result<SequenceLogps> {
    let batch = crate::trainer::to_batch(hb, packed, model.config.position_offset)?;
    let sums = model.forward(g, &batch, checkpoint)?;
    if sums.shape() != [hb.examples.len(), 1] {
        return Err(crate::error::TrainError::Config(format!(
            "a reward model needs one output per sequence, got {:?} for {} sequences",
            sums.shape(),
            hb.examples.len()
        )));
    }
    let values = sums.value().to_vec_f64()?;
    Ok(SequenceLogps { sums, values, tokens: member_spans(hb).iter().map(|(a, b)| b - a).collect() })
}
