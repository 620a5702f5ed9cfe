//! `[multitask]`: several classification datasets trained together on one encoder, one head
//! each, mixed proportionally to size, temperature-scaled or uniformly; validation reports each
//! task's metrics and their mean. The task list and its preparation are shared with
//! `[continual]`.

pub mod heads;
pub mod sampling;

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use serde_json::json;
use tunesmith_data::tokenizer::Tokenizer;
use tunesmith_models::Model;

use crate::config::TaskKind;
use crate::error::{Result, TrainError};
use crate::prepare::{prepare, Prepared};
use crate::trainer::{self, Parts};
use crate::{methods, Progress, RunConfig, RunSummary, Trainer};
use heads::{add_head, MultiHead, TaskHead};
use sampling::Sampling;

/// One task of a several-task run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskData {
    /// A short name (letters, digits, `-` and `_`): it names the head and the metrics.
    pub name: String,
    /// Training file, folder or Hub dataset.
    pub train: String,
    /// Validation data; without it, `data.validation_split` of the training rows are held out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validation: Option<String>,
    /// Cap on training rows (0 = all), after shuffling with the seed.
    #[serde(default)]
    pub max_train_rows: usize,
    /// Class names in order (default: as the data lists them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<Vec<String>>,
}

/// `[multitask]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MultitaskSection {
    /// `"proportional"`, `"temperature"` or `"uniform"`.
    #[serde(default = "default_sampling")]
    pub sampling: String,
    /// T of temperature sampling (task probability ∝ size^(1/T)).
    #[serde(default = "default_temperature")]
    pub temperature: f64,
    /// The tasks.
    pub tasks: Vec<TaskData>,
}

fn default_sampling() -> String {
    "proportional".into()
}
fn default_temperature() -> f64 {
    2.0
}

/// The keys of `[multitask]`, for suggestions.
pub const KEYS: &[&str] = &["sampling", "temperature", "tasks"];

/// Checks a task list: at least `min` tasks, names usable as file and metric names, no name
/// twice; and a classification run.
pub fn check_tasks(tasks: &[TaskData], min: usize, cfg: &RunConfig) -> std::result::Result<(), (&'static str, String)> {
    if cfg.task.kind != TaskKind::Classification {
        return Err((
            "tasks",
            format!(
                "train classification heads; set task.kind = \"classification\" (got \"{}\")",
                cfg.task.kind.name()
            ),
        ));
    }
    if cfg.task.labels.is_some() {
        return Err(("tasks", "give each task's labels in its entry, not task.labels".into()));
    }
    if tasks.len() < min {
        return Err(("tasks", format!("needs at least {min} [[tasks]] entries, got {}", tasks.len())));
    }
    for (i, t) in tasks.iter().enumerate() {
        let ok = !t.name.is_empty() && t.name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !ok {
            return Err(("tasks", format!("entry {}: name \"{}\" must be letters, digits, '-' or '_'", i + 1, t.name)));
        }
        if tasks[..i].iter().any(|o| o.name == t.name) {
            return Err(("tasks", format!("the name \"{}\" is used twice", t.name)));
        }
        if t.train.trim().is_empty() {
            return Err(("tasks", format!("task \"{}\" has no train data", t.name)));
        }
    }
    Ok(())
}

impl MultitaskSection {
    /// Checks values against the run: `Err((key, why))`.
    pub fn check(&self, cfg: &RunConfig) -> std::result::Result<(), (&'static str, String)> {
        check_tasks(&self.tasks, 2, cfg)?;
        self.strategy().map(|_| ()).map_err(|why| ("sampling", why))?;
        if cfg.distill.is_some() {
            return Err(("tasks", "cannot be combined with [distill] yet: distil each task's model on its own".into()));
        }
        Ok(())
    }

    /// The sampling strategy.
    pub fn strategy(&self) -> std::result::Result<Sampling, String> {
        match self.sampling.as_str() {
            "proportional" => Ok(Sampling::Proportional),
            "uniform" => Ok(Sampling::Uniform),
            "temperature" if self.temperature > 0.0 && self.temperature.is_finite() => {
                Ok(Sampling::Temperature(self.temperature))
            }
            "temperature" => {
                Err(format!("temperature sampling needs multitask.temperature > 0, got {}", self.temperature))
            }
            other => Err(format!("must be \"proportional\", \"temperature\" or \"uniform\", got \"{other}\"")),
        }
    }
}

/// A task's data, prepared as a one-task run of `cfg` would prepare it.
pub fn prepare_task(
    cfg: &RunConfig,
    task: &TaskData,
    tokenizer: &Tokenizer,
    model_dir: &std::path::Path,
) -> Result<Prepared> {
    let mut one = cfg.clone();
    one.data.train = task.train.clone();
    one.data.validation = task.validation.clone();
    one.data.max_train_rows = task.max_train_rows;
    one.task.labels = task.labels.clone();
    prepare(&one, tokenizer, model_dir).map_err(|e| match e {
        TrainError::Data(why) => TrainError::Data(format!("task \"{}\": {why}", task.name)),
        other => other,
    })
}

/// The shared encoder of a several-task run: the base model with a classification head (left
/// frozen: each task gets its own) and the method applied.
pub struct Encoder {
    /// The model.
    pub model: Model,
    /// LoRA's configuration, when the method attached adapters.
    pub lora: Option<tunesmith_models::lora::LoraConfig>,
    /// Quantization of the frozen base.
    pub quantized: tunesmith_models::quantize::QuantReport,
    /// The tokenizer.
    pub tokenizer: Tokenizer,
    /// The model's folder.
    pub model_dir: PathBuf,
}

impl Encoder {
    /// Loads the base of `cfg` for heads of `labels` classes.
    pub fn load(cfg: &RunConfig, labels: &[String]) -> Result<Encoder> {
        let (tokenizer, model_dir) = crate::load::load_tokenizer(&cfg.model.path)?;
        let mut model = trainer::load_run_model(cfg, Some(labels.to_vec()))?;
        let lora = methods::apply(&mut model, &cfg.method, cfg.train.seed)?;
        let quantized = crate::load::quantize_base(&mut model, &cfg.model.path, &cfg.model.quantize)?;
        // The checkpoint's own head is not used: tasks have theirs.
        model.params.set_trainable(|n| ["classifier.weight", "classifier.bias", "score.weight"].contains(&n), false);
        Ok(Encoder { model, lora, quantized, tokenizer, model_dir })
    }
}

/// Writes `final/heads.json`: each head's parameter names and labels.
pub fn write_heads(dir: &std::path::Path, heads: &[TaskHead]) -> Result<()> {
    let list: Vec<serde_json::Value> = heads
        .iter()
        .map(|h| {
            json!({"name": h.name, "labels": h.labels, "weight": format!("classifier.{}.weight", h.name),
                        "bias": format!("classifier.{}.bias", h.name)})
        })
        .collect();
    let path = dir.join("final").join("heads.json");
    std::fs::create_dir_all(path.parent().unwrap_or(dir)).map_err(|e| TrainError::io(&path, e))?;
    tunesmith_models::io::write_json_atomic(&path, &json!({"heads": list}))?;
    Ok(())
}

/// Trains a `[multitask]` run.
pub fn run(cfg: RunConfig, resume: bool, progress: &mut dyn Progress) -> Result<RunSummary> {
    trainer::init_process(&cfg);
    let section = cfg.multitask.clone().ok_or_else(|| TrainError::Config("no [multitask] section".into()))?;
    let sampling = section.strategy().map_err(|why| TrainError::Config(format!("multitask.sampling {why}")))?;
    let (tokenizer, model_dir) = crate::load::load_tokenizer(&cfg.model.path)?;
    let prepared: Vec<Prepared> =
        section.tasks.iter().map(|t| prepare_task(&cfg, t, &tokenizer, &model_dir)).collect::<Result<_>>()?;
    let mut enc = Encoder::load(&cfg, &prepared[0].labels)?;
    let mut heads = Vec::new();
    for (i, (t, p)) in section.tasks.iter().zip(&prepared).enumerate() {
        heads.push(add_head(&mut enc.model, &t.name, &p.labels, cfg.train.seed.wrapping_add(i as u64))?);
    }
    let sizes: Vec<usize> = prepared.iter().map(|p| p.train.len()).collect();
    let counts = sampling::counts(&sizes, sampling);
    let mut data = Prepared {
        train: Vec::new(),
        validation: Vec::new(),
        validation_records: Vec::new(),
        labels: prepared[0].labels.clone(),
        files: Vec::new(),
        rejected: Vec::new(),
        augmented: 0,
    };
    let (mut train_head, mut val_head) = (Vec::new(), Vec::new());
    for (i, p) in prepared.into_iter().enumerate() {
        for k in sampling::draw(p.train.len(), counts[i], cfg.train.seed ^ (i as u64 + 1).wrapping_mul(0x9e37)) {
            data.train.push(p.train[k].clone());
            train_head.push(i);
        }
        val_head.extend(std::iter::repeat_n(i, p.validation.len()));
        data.validation.extend(p.validation);
        data.files.extend(p.files);
        data.rejected.extend(p.rejected.into_iter().map(|r| format!("{}: {r}", section.tasks[i].name)));
    }
    let objective = MultiHead::new(heads.clone(), train_head, val_head, enc.model.config.position_offset)
        .with_label_smoothing(cfg.train.label_smoothing);
    let pad_id = trainer::pad_id(&enc.tokenizer);
    let dir = cfg.output.dir.clone();
    let parts = Parts {
        model: enc.model,
        model_dir: enc.model_dir,
        data,
        lora: enc.lora,
        quantized: enc.quantized,
        objective: Some(Box::new(objective)),
        pad_id,
    };
    let summary = Trainer::assemble(cfg, parts, resume)?.train(progress)?;
    write_heads(&dir, &heads)?;
    Ok(summary)
}
