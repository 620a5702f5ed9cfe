//! Contrastive training of sentence embeddings with in-batch negatives (what
//! sentence-transformers calls MultipleNegativesRankingLoss): each anchor must pick its own
//! positive among every candidate of the batch, the other examples' positives and any hard
//! negatives, by the scaled cosine similarity.

use tunesmith_engine::ops::CrossEntropySpec;
use tunesmith_engine::{Graph, Tensor, Var};

use crate::batch::Batch;
use crate::error::{ModelError, Result};
use crate::model::{Head, Model, ModelLoss};

impl Model {
    /// Cross-entropy over candidates of `scale · cos(anchor_i, candidate_j)` with target
    /// `relevant[i]`. `candidates` are embedded batch by batch and concatenated in order;
    /// `normalizer` replaces the anchor count in the mean (gradient accumulation).
    #[allow(clippy::too_many_arguments)]
    pub fn contrastive_loss<'m>(
        &'m self,
        g: &Graph<'m>,
        anchors: &Batch,
        candidates: &[Batch],
        relevant: &[usize],
        scale: f64,
        normalizer: Option<f64>,
        checkpoint: bool,
    ) -> Result<ModelLoss> {
        let Head::Embedding { normalize } = self.head else {
            return Err(ModelError::Invalid(format!(
                "a contrastive loss needs an embedding model, this one has a {:?} head",
                self.task()
            )));
        };
        let unit = |v: Var| -> Result<Var> { Ok(if normalize { v } else { g.l2_normalize(&v, 1e-12)? }) };
        let a = unit(self.forward(g, anchors, checkpoint)?)?;
        let embedded: Vec<Var> =
            candidates.iter().map(|b| unit(self.forward(g, b, checkpoint)?)).collect::<Result<_>>()?;
        let c = match embedded.as_slice() {
            [] => return Err(ModelError::Invalid("a contrastive loss needs at least one candidate batch".into())),
            [one] => one.clone(),
            many => g.concat(&many.iter().collect::<Vec<_>>(), 0)?,
        };
        let (n, m) = (a.shape()[0], c.shape()[0]);
        if relevant.len() != n {
            return Err(ModelError::Invalid(format!("{} relevant candidates for {n} anchors", relevant.len())));
        }
        if let Some(&r) = relevant.iter().find(|&&r| r >= m) {
            return Err(ModelError::Invalid(format!("relevant candidate {r} is out of range: {m} candidates")));
        }
        let labels = Tensor::from_vec(relevant.iter().map(|&r| r as i64).collect::<Vec<i64>>(), &[n])?;
        let spec = CrossEntropySpec { ignore_index: -100, label_smoothing: 0.0, normalizer };
        let out = g.linear_cross_entropy(&g.scale(&a, scale)?, &c, None, &labels, None, spec)?;
        Ok(ModelLoss { loss: out.loss, counted: out.counted, token_logprobs: None, logits: None })
    }
}
