//! Several classification heads on one encoder: each example is scored by its task's head
//! (the heads share the pooled features of one forward pass). The training objective of
//! multi-task runs and of continual learning with per-task (or one shared) head, with
//! Learning without Forgetting as an option: the previous model's outputs on each batch, under
//! every earlier head, are distilled into the current model.

use serde_json::{json, Map, Value};
use tunesmith_data::batch::{HostBatch, Loader, LoaderOptions, Position};
use tunesmith_data::encode::{Encoded, Target};
use tunesmith_engine::ops::CrossEntropySpec;
use tunesmith_engine::{Graph, ParamId, Tensor};
use tunesmith_eval::classification::{accuracy, argmax, precision_recall_f1};
use tunesmith_models::{Batch as ModelBatch, Model};

use crate::distill::kl::soft_target_loss;
use crate::error::{Result, TrainError};
use crate::objective::{Batch, Metrics, Objective, ObjectiveStep};

/// One task's output layer.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskHead {
    /// The task's name (its parameters are `classifier.<name>.weight` and `.bias`).
    pub name: String,
    /// Class names by id.
    pub labels: Vec<String>,
    /// `[labels, hidden]`.
    pub weight: ParamId,
    /// `[labels]`.
    pub bias: ParamId,
}

/// Adds a fresh output layer for `labels` to `model` (N(0, initializer_range), zero bias, as
/// transformers initializes a new head), trainable.
pub fn add_head(model: &mut Model, name: &str, labels: &[String], seed: u64) -> Result<TaskHead> {
    if !matches!(model.head, tunesmith_models::model::Head::SequenceClassification(_)) {
        return Err(TrainError::Config("task heads need a sequence classification model".into()));
    }
    let (d, n) = (model.config.hidden_size, labels.len());
    let mut rng = tunesmith_engine::rng::Rng::new(seed ^ 0x4ead_7a5c);
    let std = model.config.initializer_range;
    let w: Vec<f32> = (0..n * d).map(|_| (rng.normal() * std) as f32).collect();
    let weight = model.params.insert(format!("classifier.{name}.weight"), Tensor::from_vec(w, &[n, d])?, true)?;
    let bias = model.params.insert(format!("classifier.{name}.bias"), Tensor::from_vec(vec![0f32; n], &[n])?, true)?;
    Ok(TaskHead { name: name.to_string(), labels: labels.to_vec(), weight, bias })
}

/// Learning without Forgetting: the model as it was before this task, and the weight and
/// temperature of the distillation term.
pub struct Lwf {
    /// The previous model (its own copies of every head).
    pub old: Model,
    /// Heads (indices into the objective's heads) whose outputs are kept.
    pub old_heads: Vec<usize>,
    /// Weight of the term.
    pub alpha: f64,
    /// Softmax temperature.
    pub temperature: f64,
}

/// What scoring gives one head: the summed loss, the true classes and the predictions of its
/// examples.
#[derive(Debug, Clone, Default)]
pub struct HeadScores {
    /// Σ −log p(true class).
    pub loss: f64,
    /// True classes.
    pub truth: Vec<usize>,
    /// Predicted classes.
    pub predicted: Vec<usize>,
}

/// The multi-head objective.
pub struct MultiHead {
    heads: Vec<TaskHead>,
    train_head: Vec<usize>,
    val_head: Vec<usize>,
    position_offset: usize,
    label_smoothing: f64,
    lwf: Option<Lwf>,
}

struct Prepared {
    batch: ModelBatch,
    /// Per head: the class of each example of this head, −100 elsewhere.
    labels: Vec<Option<Tensor>>,
    /// Per old head: the previous model's logits `[examples, labels]`.
    old_logits: Vec<(usize, Tensor)>,
    tokens: usize,
}

fn class_of(t: &Target) -> Result<i64> {
    match t {
        Target::Class(c) => Ok(i64::from(*c)),
        other => Err(TrainError::Config(format!("task heads train class labels, got {other:?}"))),
    }
}

impl MultiHead {
    /// `heads`, with the head of each training and validation example (indices into `heads`).
    pub fn new(
        heads: Vec<TaskHead>,
        train_head: Vec<usize>,
        val_head: Vec<usize>,
        position_offset: usize,
    ) -> MultiHead {
        MultiHead { heads, train_head, val_head, position_offset, label_smoothing: 0.0, lwf: None }
    }

    /// Label smoothing of the heads' cross-entropy.
    pub fn with_label_smoothing(mut self, eps: f64) -> MultiHead {
        self.label_smoothing = eps;
        self
    }

    /// Adds Learning without Forgetting.
    pub fn with_lwf(mut self, lwf: Lwf) -> MultiHead {
        self.lwf = Some(lwf);
        self
    }

    fn batch(&self, hb: &HostBatch, packed: bool) -> Result<ModelBatch> {
        crate::trainer::to_batch(hb, packed, self.position_offset)
    }

    /// Per head, the labels of a batch's examples (−100 for other heads' examples).
    fn labels(&self, hb: &HostBatch, head_of: &[usize]) -> Result<Vec<Option<Tensor>>> {
        let n = hb.examples.len();
        let mut out = Vec::with_capacity(self.heads.len());
        for h in 0..self.heads.len() {
            let mut any = false;
            let mut v = vec![-100i64; n];
            for (k, (&ex, t)) in hb.examples.iter().zip(&hb.targets).enumerate() {
                let head = *head_of.get(ex).ok_or_else(|| TrainError::Config(format!("example {ex} has no task")))?;
                if head == h {
                    v[k] = class_of(t)?;
                    any = true;
                }
            }
            out.push(if any { Some(Tensor::from_vec(v, &[n])?) } else { None });
        }
        Ok(out)
    }

    /// `examples` scored by their heads (`head_of`, one per example), by head index.
    pub fn score(
        &self,
        model: &Model,
        examples: &[Encoded],
        head_of: &[usize],
        opts: &LoaderOptions,
    ) -> Result<Vec<HeadScores>> {
        let mut per_head = vec![HeadScores::default(); self.heads.len()];
        if examples.is_empty() {
            return Ok(per_head);
        }
        let loader = Loader::new(
            examples.to_vec(),
            LoaderOptions {
                packing: false,
                padding_free: false,
                shuffle: false,
                group_by_length: true,
                ..opts.clone()
            },
        )?;
        for (_, hb) in loader.epoch_from(Position::default()) {
            let g = Graph::inference();
            let batch = self.batch(&hb, false)?;
            let x = model.classifier_input(&g, &batch, false)?;
            for (h, head) in self.heads.iter().enumerate() {
                let rows: Vec<usize> = (0..hb.examples.len()).filter(|&k| head_of[hb.examples[k]] == h).collect();
                if rows.is_empty() {
                    continue;
                }
                let logits =
                    g.linear(&x, &g.param(&model.params, head.weight), Some(&g.param(&model.params, head.bias)))?;
                let v = logits.value().to_vec_f64()?;
                let c = head.labels.len();
                for k in rows {
                    let row = &v[k * c..(k + 1) * c];
                    let truth = class_of(&hb.targets[k])? as usize;
                    let m = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                    let lse = m + row.iter().map(|x| (x - m).exp()).sum::<f64>().ln();
                    per_head[h].loss += lse - row[truth];
                    per_head[h].truth.push(truth);
                    per_head[h].predicted.push(argmax(row));
                }
            }
        }
        Ok(per_head)
    }

    /// The heads.
    pub fn heads(&self) -> &[TaskHead] {
        &self.heads
    }
}

impl Objective for MultiHead {
    fn prepare(&self, _model: &mut Model, loader: &Loader, hb: &HostBatch, _seed: u64) -> Result<Batch> {
        let packed = loader.options().packing || loader.options().padding_free;
        let batch = self.batch(hb, packed)?;
        let labels = self.labels(hb, &self.train_head)?;
        let mut old_logits = Vec::new();
        if let Some(l) = &self.lwf {
            let g = Graph::inference();
            let x = l.old.classifier_input(&g, &batch, false)?;
            for &h in &l.old_heads {
                let name = &self.heads[h].name;
                let w = l.old.params.require(&format!("classifier.{name}.weight"))?;
                let b = l.old.params.require(&format!("classifier.{name}.bias"))?;
                let logits = g.linear(&x, &g.param(&l.old.params, w), Some(&g.param(&l.old.params, b)))?;
                old_logits.push((h, logits.value().clone()));
            }
        }
        Ok(Box::new(Prepared { batch, labels, old_logits, tokens: hb.tokens() }))
    }

    fn step<'m>(
        &self,
        model: &'m Model,
        g: &Graph<'m>,
        batch: &Batch,
        normalizer: f64,
        checkpoint: bool,
    ) -> Result<ObjectiveStep> {
        let b =
            batch.downcast_ref::<Prepared>().ok_or_else(|| TrainError::Config("multi-head batch expected".into()))?;
        let x = model.classifier_input(g, &b.batch, checkpoint)?;
        let spec = CrossEntropySpec {
            ignore_index: -100,
            label_smoothing: self.label_smoothing,
            normalizer: Some(normalizer),
        };
        let mut loss: Option<tunesmith_engine::Var> = None;
        let mut metrics = Metrics::default();
        let add = |loss: &mut Option<tunesmith_engine::Var>, term: tunesmith_engine::Var| -> Result<()> {
            *loss = Some(match loss.take() {
                Some(l) => g.add(&l, &term)?,
                None => term,
            });
            Ok(())
        };
        let examples = b.labels.iter().flatten().next().map_or(0, |t| t.numel()) as f64;
        for (head, labels) in self.heads.iter().zip(&b.labels) {
            let Some(labels) = labels else { continue };
            let (w, bias) = (g.param(&model.params, head.weight), g.param(&model.params, head.bias));
            let out = g.linear_cross_entropy(&x, &w, Some(&bias), labels, None, spec)?;
            metrics.mean(
                &format!("{}/loss", head.name),
                out.loss.value().scalar_value()? * normalizer / out.counted.max(1) as f64,
                out.counted as f64,
            );
            add(&mut loss, out.loss)?;
        }
        if let Some(l) = &self.lwf {
            for (h, old) in &b.old_logits {
                let head = &self.heads[*h];
                let student =
                    g.linear(&x, &g.param(&model.params, head.weight), Some(&g.param(&model.params, head.bias)))?;
                let kd = soft_target_loss(g, &student, old, None, l.temperature, normalizer)?;
                metrics.mean("lwf_kl", kd.kl * normalizer / examples.max(1.0), examples);
                add(&mut loss, g.scale(&kd.loss, l.alpha)?)?;
            }
        }
        let loss = loss.ok_or_else(|| TrainError::Config("a batch without examples of any task".into()))?;
        Ok(ObjectiveStep { loss, tokens: b.tokens, metrics })
    }

    fn evaluate(&self, model: &mut Model, examples: &[Encoded], opts: &LoaderOptions) -> Result<Map<String, Value>> {
        if examples.len() != self.val_head.len() {
            return Err(TrainError::Config(format!(
                "{} validation examples but {} task assignments",
                examples.len(),
                self.val_head.len()
            )));
        }
        let scored = self.score(model, examples, &self.val_head, opts)?;
        let mut m = Map::new();
        let (mut loss, mut n, mut accs) = (0.0, 0usize, Vec::new());
        for (head, HeadScores { loss: l, truth, predicted: pred }) in self.heads.iter().zip(&scored) {
            if truth.is_empty() {
                continue;
            }
            let acc = accuracy(truth, pred)?;
            m.insert(format!("{}/accuracy", head.name), json!(acc));
            m.insert(format!("{}/f1_macro", head.name), json!(precision_recall_f1(truth, pred)?.macro_avg.f1));
            loss += l;
            n += truth.len();
            accs.push(acc);
        }
        m.insert("loss".into(), json!(loss / n.max(1) as f64));
        // The mean over tasks (each task counts once, whatever its size).
        m.insert("accuracy".into(), json!(accs.iter().sum::<f64>() / accs.len().max(1) as f64));
        Ok(m)
    }
}
