//! Class logits (and the classifier's input features) of any records with a classification
//! model: the robustness suite scores perturbed copies of the evaluation data and
//! out-of-distribution texts, and active learning scores an unlabeled pool.

use tunesmith_data::batch::{Loader, LoaderOptions, Position};
use tunesmith_data::encode::{EncodeOptions, Encoder, Truncation};
use tunesmith_data::example::{Example, Label, Record};
use tunesmith_data::tokenizer::Tokenizer;
use tunesmith_engine::Graph;
use tunesmith_models::{LossOptions, Model};

use super::{targets, to_batch, Trainer};
use crate::config::TaskKind;
use crate::error::{Result, TrainError};
use crate::load;

/// How to score records.
#[derive(Debug, Clone)]
pub struct ScoreOptions {
    /// Tokens per text (longer texts are cut on the right).
    pub max_length: usize,
    /// Rows per forward pass.
    pub batch_size: usize,
    /// The tokenizer's padding id.
    pub pad_id: u32,
    /// Also return the classifier's input features (for diversity sampling).
    pub features: bool,
}

/// Logits, and features when asked for, in record order.
#[derive(Debug, Clone, Default)]
pub struct Scores {
    /// Class logits per record.
    pub logits: Vec<Vec<f64>>,
    /// The pooled features the classifier reads, per record.
    pub features: Vec<Vec<f64>>,
}

/// Scores `records` (only their texts are read; labels may be absent or unknown) with a
/// sequence-classification `model` whose classes are `labels`.
pub fn score_records(
    model: &Model,
    tokenizer: &Tokenizer,
    labels: &[String],
    records: &[Record],
    opts: &ScoreOptions,
) -> Result<Scores> {
    let first = labels.first().ok_or_else(|| TrainError::Config("the model has no class labels".into()))?;
    let placeholder = Label::Class(first.clone());
    let as_text: Vec<Record> = records
        .iter()
        .map(|r| {
            let (text, text_pair) = match &r.example {
                Example::Labeled { text, text_pair, .. } => (text.clone(), text_pair.clone()),
                Example::Text(t) => (t.clone(), None),
                other => (tunesmith_data::clean::row_text(other), None),
            };
            Record {
                example: Example::Labeled { text, text_pair, label: placeholder.clone() },
                extra: Default::default(),
                loc: r.loc.clone(),
            }
        })
        .collect();
    let enc_opts =
        EncodeOptions { max_length: Some(opts.max_length), truncation: Truncation::Right, ..EncodeOptions::default() };
    let encoder = Encoder::new(tokenizer, None, labels, enc_opts)?;
    let mut encoded = Vec::with_capacity(as_text.len());
    for r in &as_text {
        encoded.push(encoder.encode(r).map_err(|e| TrainError::Data(e.to_string()))?);
    }
    let loader = Loader::new(
        encoded,
        LoaderOptions {
            batch_size: opts.batch_size,
            max_length: opts.max_length,
            shuffle: false,
            group_by_length: true,
            pad_id: opts.pad_id,
            ..LoaderOptions::default()
        },
    )?;
    let mut out = Scores { logits: vec![Vec::new(); records.len()], features: Vec::new() };
    if opts.features {
        out.features = vec![Vec::new(); records.len()];
    }
    for (_, hb) in loader.epoch_from(Position::default()) {
        let g = Graph::inference();
        let batch = to_batch(&hb, false, 0)?;
        let loss = model.loss(&g, &batch, &targets(&hb, TaskKind::Classification)?, &LossOptions::default(), false)?;
        let l = loss.logits.ok_or_else(|| TrainError::Config("the model returned no logits".into()))?;
        let k = l.shape().last().copied().unwrap_or(1);
        for (row, &ex) in l.to_vec_f64()?.chunks(k).zip(&hb.examples) {
            out.logits[ex] = row.to_vec();
        }
        if opts.features {
            let var = model.classifier_input(&g, &batch, false)?;
            let f = var.value();
            let d = f.shape().last().copied().unwrap_or(1);
            for (row, &ex) in f.to_vec_f64()?.chunks(d).zip(&hb.examples) {
                out.features[ex] = row.to_vec();
            }
        }
    }
    Ok(out)
}

impl Trainer {
    /// The class logits of `records` with the run's model (texts truncated to
    /// `data.max_length`), in order; labels are not read.
    pub fn class_logits(&mut self, records: &[Record]) -> Result<Vec<Vec<f64>>> {
        Ok(self.score(records, false)?.logits)
    }

    /// Logits, and with `features` the classifier's input features, of `records`.
    pub fn score(&mut self, records: &[Record], features: bool) -> Result<Scores> {
        if self.cfg.task.kind != TaskKind::Classification {
            return Err(TrainError::Config("class logits need task.kind = \"classification\"".into()));
        }
        let (tokenizer, _) = load::load_tokenizer(&self.cfg.model.path)?;
        let opts = ScoreOptions {
            max_length: self.cfg.data.max_length,
            batch_size: self.cfg.eval.batch_size,
            pad_id: self.loader.options().pad_id,
            features,
        };
        score_records(&self.model, &tokenizer, &self.data.labels, records, &opts)
    }
}
