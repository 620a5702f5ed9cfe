//! The task-specific halves of the trainer that do not fit the per-example loss of
//! `Model::loss`: embedding pairs (in-batch negatives, retrieval metrics) and word tagging
//! (entity scores).

use serde_json::{json, Map, Value};
use tunesmith_data::batch::{HostBatch, Loader, Position};
use tunesmith_engine::Graph;
use tunesmith_eval::classification::argmax;

use super::{to_batch, Trainer};
use crate::error::{Result, TrainError};

/// log Σ exp(x), computed stably around the maximum.
pub(super) fn log_sum_exp(x: &[f64]) -> f64 {
    let m = x.iter().copied().fold(f64::MIN, f64::max);
    m + x.iter().map(|v| (v - m).exp()).sum::<f64>().ln()
}

impl Trainer {
    /// The in-batch-negatives loss of a batch of embedding pairs (`hb` holds the anchors; the
    /// positives and any hard negatives are collated beside it), and the tokens it read.
    pub(super) fn pair_loss<'m>(
        &'m self,
        g: &Graph<'m>,
        hb: &HostBatch,
        normalizer: Option<f64>,
        checkpoint: bool,
    ) -> Result<(tunesmith_models::ModelLoss, usize)> {
        let (packed, offset) = (self.packed(), self.model.config.position_offset);
        let mut candidates = Vec::new();
        // The example each candidate belongs to; positives (part 1) come first.
        let mut owners: Vec<usize> = Vec::new();
        let mut tokens = hb.tokens();
        for part in 1..=self.other_parts {
            // Without cross-batch packing, loader rows are single examples: rows = example ids.
            let c = self.loader.collate_part(&hb.examples, part);
            if c.examples.is_empty() {
                continue;
            }
            tokens += c.tokens();
            owners.extend(&c.examples);
            candidates.push(to_batch(&c, packed, offset)?);
        }
        let relevant = hb
            .examples
            .iter()
            .map(|ex| {
                owners.iter().position(|o| o == ex).ok_or_else(|| {
                    TrainError::Data(format!("{}: the pair has no positive", self.loader.examples()[*ex].loc))
                })
            })
            .collect::<Result<Vec<usize>>>()?;
        let anchors = to_batch(hb, packed, offset)?;
        let scale = 1.0 / self.cfg.task.temperature;
        let out = self.model.contrastive_loss(g, &anchors, &candidates, &relevant, scale, normalizer, checkpoint)?;
        Ok((out, tokens))
    }

    /// Validation of an embedding model: every validation anchor ranks all validation
    /// positives by cosine similarity (its own is the relevant one); the loss is the
    /// in-batch-negatives loss over the whole set. Hard negatives are not used here.
    pub(super) fn evaluate_pairs(&self, loader: &Loader) -> Result<Map<String, Value>> {
        let n = self.data.validation.len();
        let mut anchors: Vec<Vec<f64>> = vec![Vec::new(); n];
        let mut positives: Vec<Vec<f64>> = vec![Vec::new(); n];
        for (_, hb) in loader.epoch_from(Position::default()) {
            let g = Graph::inference();
            for (part, store) in [(0, &mut anchors), (1, &mut positives)] {
                let b = if part == 0 { hb.clone() } else { loader.collate_part(&hb.examples, part) };
                let e = self.model.forward(&g, &to_batch(&b, false, 0)?, false)?;
                let d = e.shape().last().copied().unwrap_or(1);
                for (row, &ex) in e.value().to_vec_f64()?.chunks(d).zip(&b.examples) {
                    let norm = row.iter().map(|x| x * x).sum::<f64>().sqrt().max(1e-12);
                    store[ex] = row.iter().map(|x| x / norm).collect();
                }
            }
        }
        let scale = 1.0 / self.cfg.task.temperature;
        let (mut ranks, mut loss, mut cos) = (Vec::with_capacity(n), 0.0, 0.0);
        for (i, a) in anchors.iter().enumerate() {
            let sims: Vec<f64> = positives.iter().map(|p| a.iter().zip(p).map(|(x, y)| x * y).sum()).collect();
            ranks.push(tunesmith_eval::retrieval::rank_of(&sims, i));
            let logits: Vec<f64> = sims.iter().map(|s| s * scale).collect();
            loss += log_sum_exp(&logits) - logits[i];
            cos += sims[i];
        }
        let s = tunesmith_eval::retrieval::from_ranks(&ranks)?;
        let mut m = Map::new();
        m.insert("loss".into(), json!(loss / n as f64));
        m.insert("accuracy_at_1".into(), json!(s.accuracy_at_1));
        m.insert("accuracy_at_5".into(), json!(s.accuracy_at_5));
        m.insert("mrr_at_10".into(), json!(s.mrr_at_10));
        m.insert("mean_positive_cosine".into(), json!(cos / n as f64));
        Ok(m)
    }

    /// Validation of token classification: loss and accuracy over the tagged words (the first
    /// token of each word), and entity precision/recall/F1 as seqeval scores them when the tags
    /// are IOB/IOBES entity tags.
    pub(super) fn evaluate_tags(&self, loader: &Loader) -> Result<Map<String, Value>> {
        let n = self.data.validation.len();
        let mut truth: Vec<Vec<String>> = vec![Vec::new(); n];
        let mut pred: Vec<Vec<String>> = vec![Vec::new(); n];
        let (mut loss, mut words, mut right) = (0.0, 0usize, 0usize);
        let names = &self.data.labels;
        for (_, hb) in loader.epoch_from(Position::default()) {
            let g = Graph::inference();
            let logits = self.model.forward(&g, &to_batch(&hb, false, 0)?, false)?;
            let k = logits.shape().last().copied().unwrap_or(1);
            let v = logits.value().to_vec_f64()?;
            for (r, &ex) in hb.examples.iter().enumerate() {
                for c in 0..hb.len {
                    let i = r * hb.len + c;
                    let Ok(label) = usize::try_from(hb.labels[i]) else { continue };
                    let row = &v[i * k..(i + 1) * k];
                    let best = argmax(row);
                    loss += log_sum_exp(row) - row[label];
                    words += 1;
                    right += usize::from(best == label);
                    truth[ex].push(names[label].clone());
                    pred[ex].push(names[best].clone());
                }
            }
        }
        let mut m = Map::new();
        m.insert("loss".into(), json!(loss / words.max(1) as f64));
        m.insert("accuracy".into(), json!(right as f64 / words.max(1) as f64));
        let entity_tags = names.iter().any(|t| ["B-", "I-", "E-", "S-"].iter().any(|p| t.starts_with(p)));
        if entity_tags {
            let s = tunesmith_eval::ner::entity_scores(&truth, &pred)?;
            m.insert("precision".into(), json!(s.precision));
            m.insert("recall".into(), json!(s.recall));
            m.insert("f1".into(), json!(s.f1));
        }
        Ok(m)
    }
}
