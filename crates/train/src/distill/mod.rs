//! `[distill]`: knowledge distillation. A teacher (any model tunesmith loads, or a finished
//! run's full model) reads each training batch; the student's loss is
//! `(1 − alpha)·task loss + alpha·T²·KL(teacher ‖ student)` on temperature-scaled logits, plus,
//! with `hidden_weight`, the mean squared error between the teacher's last hidden states and the
//! student's through a learned projection. Classification (and regression-free sequence or
//! token labels) and causal LM; the teacher must share the student's tokenizer (it reads the
//! same token ids), and a mismatch is refused.

pub mod kl;
pub mod teacher;

use serde::{Deserialize, Serialize};

use crate::config::TaskKind;
use crate::RunConfig;

pub use teacher::Distiller;

/// `[distill]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DistillSection {
    /// The teacher: a model folder, Hub id, GGUF file, or a finished run's directory (its
    /// `final/model`).
    pub teacher: String,
    /// Softmax temperature of both sides' logits (the KL term is scaled by T²).
    #[serde(default = "default_temperature")]
    pub temperature: f64,
    /// Weight of the KL term; the task loss gets `1 − alpha`.
    #[serde(default = "default_alpha")]
    pub alpha: f64,
    /// Weight of hidden-state matching through a learned projection (0 = off).
    #[serde(default)]
    pub hidden_weight: f64,
}

fn default_temperature() -> f64 {
    2.0
}
fn default_alpha() -> f64 {
    0.5
}

/// The keys of `[distill]`, for suggestions.
pub const KEYS: &[&str] = &["teacher", "temperature", "alpha", "hidden_weight"];

impl DistillSection {
    /// Checks values against the run: `Err((key, why))`.
    pub fn check(&self, cfg: &RunConfig) -> std::result::Result<(), (&'static str, String)> {
        if self.teacher.trim().is_empty() {
            return Err(("teacher", "is empty: name the teacher model or run directory".into()));
        }
        if !(self.temperature > 0.0 && self.temperature.is_finite()) {
            return Err(("temperature", format!("must be a positive number, got {}", self.temperature)));
        }
        if !(0.0..=1.0).contains(&self.alpha) {
            return Err(("alpha", format!("must be in [0, 1], got {}", self.alpha)));
        }
        if !(self.hidden_weight >= 0.0 && self.hidden_weight.is_finite()) {
            return Err(("hidden_weight", format!("must be 0 or more, got {}", self.hidden_weight)));
        }
        if cfg.privacy.is_some() {
            return Err((
                "teacher",
                "cannot be combined with [privacy]: DP-SGD's per-example gradients do not cover the distillation loss"
                    .into(),
            ));
        }
        if !matches!(cfg.task.kind, TaskKind::Classification | TaskKind::CausalLm | TaskKind::TokenClassification) {
            return Err((
                "teacher",
                format!(
                    "distils classification, token classification and causal_lm students; task.kind = \"{}\" has no \
                     logits to match",
                    cfg.task.kind.name()
                ),
            ));
        }
        Ok(())
    }
}
