//! The teacher side of distillation: loading the teacher (a model, or a finished run's full
//! model), refusing a teacher whose tokenizer differs from the student's, and the combined loss
//! of one micro-batch.

use std::path::Path;

use tunesmith_data::batch::HostBatch;
use tunesmith_data::tokenizer::Tokenizer;
use tunesmith_engine::{Graph, ParamId, Tensor, Var};
use tunesmith_models::{Batch, LossOptions, Model, Targets, Task};

use super::kl::soft_target_loss;
use super::DistillSection;
use crate::config::TaskKind;
use crate::error::{Result, TrainError};
use crate::load;
use crate::objective::Metrics;

/// The name of the learned projection of hidden-state matching (training-only: never exported
/// with the student).
pub const PROJECTION: &str = "aux.distill.projection.weight";

/// A loaded teacher and the loss settings.
pub struct Distiller {
    teacher: Model,
    section: DistillSection,
    projection: Option<ParamId>,
    kind: TaskKind,
}

/// What one distilled micro-batch gives the training loop.
pub struct DistillStep {
    /// The loss to differentiate.
    pub loss: Var,
    /// `task_loss`, `distill_kl` and (with hidden matching) `hidden_mse`.
    pub metrics: Metrics,
}

/// The model folder a teacher reference names: a finished run's directory gives its
/// `final/model` (a LoRA run must have written it with `output.save_merged = true`).
pub fn resolve_teacher(reference: &str) -> Result<String> {
    let dir = Path::new(reference);
    if dir.join("manifest.json").is_file() {
        let model = dir.join("final").join("model");
        if model.join("config.json").is_file() {
            return Ok(model.display().to_string());
        }
        return Err(TrainError::Config(format!(
            "distill.teacher = \"{reference}\" is a run without a full model in final/model; a LoRA run writes one \
             with output.save_merged = true"
        )));
    }
    Ok(reference.to_string())
}

/// Why two tokenizers would give different ids for the same text, if they would: vocabulary
/// size, special tokens, or the ids of probe texts and tokens.
pub fn tokenizer_mismatch(student: &Tokenizer, teacher: &Tokenizer) -> Option<String> {
    if student.vocab_size() != teacher.vocab_size() {
        return Some(format!(
            "vocabulary sizes differ ({} against the student's {})",
            teacher.vocab_size(),
            student.vocab_size()
        ));
    }
    let probes = [
        "The quick brown fox jumps over the lazy dog.",
        "Fine-tuning 3 models: naïve, déjà vu, 東京, 🙂!",
        "def f(x):\n    return x ** 2  # square",
    ];
    for p in probes {
        if let (Ok(a), Ok(b)) = (student.encode(p, true), teacher.encode(p, true)) {
            if a != b {
                return Some(format!("they split \"{}\" differently", p.escape_debug()));
            }
        }
    }
    let n = student.vocab_size() as u32;
    let step = (n / 97).max(1);
    if let Some(id) = (0..n).step_by(step as usize).find(|&i| student.id_to_token(i) != teacher.id_to_token(i)) {
        return Some(format!(
            "token {id} is {:?} for the teacher and {:?} for the student",
            teacher.id_to_token(id),
            student.id_to_token(id)
        ));
    }
    None
}

fn model_task(kind: TaskKind) -> Task {
    match kind {
        TaskKind::CausalLm => Task::CausalLm,
        TaskKind::TokenClassification => Task::TokenClassification,
        _ => Task::SequenceClassification,
    }
}

impl Distiller {
    /// Loads the teacher of `section` for a student with `student_tokenizer` and `labels`
    /// (classification); adds the hidden-state projection to `student` when asked.
    pub fn load(
        section: &DistillSection,
        kind: TaskKind,
        student: &mut Model,
        student_tokenizer: &Tokenizer,
        labels: &[String],
        seed: u64,
    ) -> Result<Distiller> {
        let reference = resolve_teacher(&section.teacher)?;
        let (teacher_tokenizer, teacher_dir) = load::load_tokenizer(&reference)?;
        if let Some(why) = tokenizer_mismatch(student_tokenizer, &teacher_tokenizer) {
            return Err(TrainError::Config(format!(
                "distill.teacher = \"{}\" ({}) does not share the student's tokenizer: {why}; the teacher reads the \
                 student's token ids, so choose a teacher of the same tokenizer family",
                section.teacher,
                teacher_dir.display()
            )));
        }
        let teacher = if kind == TaskKind::CausalLm {
            load::load_model(&reference, Task::CausalLm, None, seed, tunesmith_models::quantize::BaseQuant::None)?
        } else {
            let dir = tunesmith_models::hub::resolve_model(&reference)?;
            let (model, report) = Model::load(&dir, &tunesmith_models::LoadOptions::new(model_task(kind)))?;
            if !report.initialized.is_empty() {
                return Err(TrainError::Config(format!(
                    "distill.teacher = \"{}\" has no trained classification head ({} missing); distil from a \
                     fine-tuned model, e.g. a finished run's directory",
                    section.teacher,
                    report.initialized.join(", ")
                )));
            }
            if model.config.id2label != labels {
                return Err(TrainError::Config(format!(
                    "distill.teacher = \"{}\" predicts labels {:?}, the student {:?}; give the student the teacher's \
                     label order with task.labels",
                    section.teacher, model.config.id2label, labels
                )));
            }
            model
        };
        let projection = if section.hidden_weight > 0.0 {
            let (ds, dt) = (student.config.hidden_size, teacher.config.hidden_size);
            let mut rng = tunesmith_engine::rng::Rng::new(seed ^ 0xd157);
            let w: Vec<f32> = (0..dt * ds).map(|_| (rng.normal() * 0.02) as f32).collect();
            Some(student.params.insert(PROJECTION, Tensor::from_vec(w, &[dt, ds])?, true)?)
        } else {
            None
        };
        Ok(Distiller { teacher, section: section.clone(), projection, kind })
    }

    /// The teacher's hidden size and layers (for the report).
    pub fn teacher(&self) -> &Model {
        &self.teacher
    }

    /// Per-row weights of the logits: every example (sequence classification), trained tokens
    /// (token classification), or positions whose next token is trained (causal LM).
    fn row_weights(&self, hb: &HostBatch) -> Option<Vec<f32>> {
        match self.kind {
            TaskKind::CausalLm => Some(
                (0..hb.rows * hb.len)
                    .map(|i| {
                        let next = i + 1;
                        f32::from(u8::from(next % hb.len != 0 && hb.labels[next] >= 0))
                    })
                    .collect(),
            ),
            TaskKind::TokenClassification => Some(hb.labels.iter().map(|&l| f32::from(u8::from(l >= 0))).collect()),
            _ => None,
        }
    }

    /// The distilled loss of one micro-batch: the task loss (normalized by `normalizer`, as the
    /// loop's), the KL term and hidden matching, weighted.
    #[allow(clippy::too_many_arguments)]
    pub fn step<'m>(
        &self,
        student: &'m Model,
        g: &Graph<'m>,
        hb: &HostBatch,
        batch: &Batch,
        targets: &Targets,
        opts: &LossOptions,
        checkpoint: bool,
    ) -> Result<DistillStep> {
        let normalizer = opts.normalizer.unwrap_or(1.0);
        let (teacher_logits, teacher_hidden) = {
            let tg = Graph::inference();
            let h = self.teacher.hidden_states_for_head(&tg, batch, false)?;
            let logits = self.teacher.head_forward(&tg, &h, batch)?.value().clone();
            (logits, self.projection.is_some().then(|| h.value().clone()))
        };
        let h = student.hidden_states_for_head(g, batch, checkpoint)?;
        let task = student.head_loss(g, &h, batch, targets, opts)?;
        let logits = student.head_forward(g, &h, batch)?;
        let weights = self.row_weights(hb);
        let kd =
            soft_target_loss(g, &logits, &teacher_logits, weights.as_deref(), self.section.temperature, normalizer)?;
        let alpha = self.section.alpha;
        let mut loss = g.add(&g.scale(&task.loss, 1.0 - alpha)?, &g.scale(&kd.loss, alpha)?)?;
        let mut metrics = Metrics::default();
        // This micro-batch's loss units (examples, or trained tokens) and its share of the step.
        let units =
            weights.as_ref().map_or(hb.targets.len() as f64, |w| w.iter().map(|&x| f64::from(x)).sum()).max(1.0);
        metrics.mean("task_loss", task.loss.value().scalar_value()? * normalizer / units, units);
        metrics.mean("distill_kl", kd.kl * normalizer / units, units);
        if let (Some(p), Some(th)) = (self.projection, teacher_hidden) {
            if th.shape()[..th.shape().len() - 1] != h.shape()[..h.shape().len() - 1] {
                return Err(TrainError::Config(format!(
                    "distill.hidden_weight: teacher hidden states {:?} and student {:?} do not line up",
                    th.shape(),
                    h.shape()
                )));
            }
            let projected = g.linear(&h, &g.param(&student.params, p), None)?;
            let target = g.input(th.to_dtype(projected.value().dtype())?);
            // mse is a mean over this micro-batch; weight it by the micro-batch's share of the step.
            let share = (units / normalizer.max(1.0)).min(1.0);
            let mse = g.mse(&projected, &target)?;
            metrics.mean("hidden_mse", mse.value().scalar_value()?, units);
            loss = g.add(&loss, &g.scale(&mse, self.section.hidden_weight * share)?)?;
        }
        Ok(DistillStep { loss, metrics })
    }
}
