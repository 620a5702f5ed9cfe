//! Class logits of any records with a run's model: the robustness suite scores perturbed copies
//! of the evaluation data and out-of-distribution texts with it.

use tunesmith_data::batch::{Loader, LoaderOptions, Position};
use tunesmith_data::encode::{EncodeOptions, Encoder, Truncation};
use tunesmith_data::example::{Example, Label, Record};
use tunesmith_engine::Graph;
use tunesmith_models::LossOptions;

use super::{targets, to_batch, Trainer};
use crate::config::TaskKind;
use crate::error::{Result, TrainError};
use crate::load;

impl Trainer {
    /// The class logits of `records` (texts truncated to `data.max_length`), in order. Labels
    /// outside the run's label map, and rows that are not labeled texts, are scored as texts
    /// (their labels are not used).
    pub fn class_logits(&mut self, records: &[Record]) -> Result<Vec<Vec<f64>>> {
        if self.cfg.task.kind != TaskKind::Classification {
            return Err(TrainError::Config("class logits need task.kind = \"classification\"".into()));
        }
        let placeholder = Label::Class(self.data.labels[0].clone());
        let as_text: Vec<Record> = records
            .iter()
            .map(|r| {
                let (text, text_pair) = match &r.example {
                    Example::Labeled { text, text_pair, .. } => (text.clone(), text_pair.clone()),
                    Example::Text(t) => (t.clone(), None),
                    other => (other.kind().to_string(), None),
                };
                Record {
                    example: Example::Labeled { text, text_pair, label: placeholder.clone() },
                    extra: Default::default(),
                    loc: r.loc.clone(),
                }
            })
            .collect();
        let (tokenizer, _) = load::load_tokenizer(&self.cfg.model.path)?;
        let opts = EncodeOptions {
            max_length: Some(self.cfg.data.max_length),
            truncation: Truncation::Right,
            ..EncodeOptions::default()
        };
        let encoder = Encoder::new(&tokenizer, None, &self.data.labels, opts)?;
        let mut encoded = Vec::with_capacity(as_text.len());
        for r in &as_text {
            encoded.push(encoder.encode(r).map_err(|e| TrainError::Data(e.to_string()))?);
        }
        let loader = Loader::new(
            encoded,
            LoaderOptions {
                batch_size: self.cfg.eval.batch_size,
                max_length: self.cfg.data.max_length,
                shuffle: false,
                group_by_length: true,
                pad_id: self.loader.options().pad_id,
                ..LoaderOptions::default()
            },
        )?;
        let mut logits: Vec<Vec<f64>> = vec![Vec::new(); records.len()];
        for (_, hb) in loader.epoch_from(Position::default()) {
            let g = Graph::inference();
            let batch = to_batch(&hb, false, 0)?;
            let out = self.model.loss(
                &g,
                &batch,
                &targets(&hb, TaskKind::Classification)?,
                &LossOptions::default(),
                false,
            )?;
            let l = out.logits.ok_or_else(|| TrainError::Config("the model returned no logits".into()))?;
            let k = l.shape().last().copied().unwrap_or(1);
            for (row, &ex) in l.to_vec_f64()?.chunks(k).zip(&hb.examples) {
                logits[ex] = row.to_vec();
            }
        }
        Ok(logits)
    }
}
