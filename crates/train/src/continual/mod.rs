//! `[continual]`: tasks trained one after another on one model, with per-task heads or one
//! shared head, and the remedies against forgetting: replay (a reservoir of past examples
//! mixed into each new task), EWC (a Fisher-weighted pull toward each past task's weights),
//! L2-SP (a pull toward the pre-trained weights) and LwF (the previous model's outputs
//! distilled on the new data). After each task every task seen so far is evaluated; the run
//! writes the accuracy matrix, average accuracy, backward transfer and forgetting to
//! `continual.json`, and each task's model to `tasks/<k>-<name>/final`.

pub mod fisher;
pub mod metrics;
pub mod replay;

use std::rc::Rc;

use serde::{Deserialize, Serialize};
use serde_json::json;
use tunesmith_data::batch::LoaderOptions;
use tunesmith_engine::ParamId;
use tunesmith_models::Model;

use crate::error::{Result, TrainError};
use crate::methods::is_head;
use crate::multitask::heads::{add_head, Lwf, MultiHead, TaskHead};
use crate::multitask::{prepare_task, write_heads, Encoder, TaskData};
use crate::penalty::QuadraticAnchor;
use crate::prepare::Prepared;
use crate::trainer::{self, Parts};
use crate::{Progress, RunConfig, Trainer};
use metrics::{scores, ContinualScores};
use replay::{Replayed, Reservoir};

/// `[continual]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContinualSection {
    /// `"per_task"` (a head per task, the task known at test time) or `"shared"` (one head; every
    /// task must have the same number of classes, class k of each task sharing output k).
    #[serde(default = "default_heads")]
    pub heads: String,
    /// Past training examples kept for replay (a reservoir sample); 0 = no replay.
    #[serde(default)]
    pub replay_buffer: usize,
    /// Share of each later task's training examples drawn from the buffer, in [0, 1).
    #[serde(default)]
    pub replay_ratio: f64,
    /// EWC's penalty weight λ (0 = off).
    #[serde(default)]
    pub ewc_lambda: f64,
    /// Training examples of each finished task that estimate its Fisher diagonal.
    #[serde(default = "default_ewc_samples")]
    pub ewc_samples: usize,
    /// L2-SP's weight α of the pull toward the pre-trained weights (0 = off).
    #[serde(default)]
    pub l2sp_alpha: f64,
    /// LwF's weight of the distillation term (0 = off).
    #[serde(default)]
    pub lwf_alpha: f64,
    /// LwF's softmax temperature.
    #[serde(default = "default_lwf_temperature")]
    pub lwf_temperature: f64,
    /// The tasks, in training order.
    pub tasks: Vec<TaskData>,
}

fn default_heads() -> String {
    "per_task".into()
}
fn default_ewc_samples() -> usize {
    512
}
fn default_lwf_temperature() -> f64 {
    2.0
}

/// The keys of `[continual]`, for suggestions.
pub const KEYS: &[&str] = &[
    "heads",
    "replay_buffer",
    "replay_ratio",
    "ewc_lambda",
    "ewc_samples",
    "l2sp_alpha",
    "lwf_alpha",
    "lwf_temperature",
    "tasks",
];

impl ContinualSection {
    /// Checks values against the run: `Err((key, why))`.
    pub fn check(&self, cfg: &RunConfig) -> std::result::Result<(), (&'static str, String)> {
        crate::multitask::check_tasks(&self.tasks, 2, cfg)?;
        if !["per_task", "shared"].contains(&self.heads.as_str()) {
            return Err(("heads", format!("must be \"per_task\" or \"shared\", got \"{}\"", self.heads)));
        }
        if !(0.0..1.0).contains(&self.replay_ratio) {
            return Err(("replay_ratio", format!("must be in [0, 1), got {}", self.replay_ratio)));
        }
        if self.replay_ratio > 0.0 && self.replay_buffer == 0 {
            return Err((
                "replay_buffer",
                format!(
                    "is 0, an empty replay buffer, but replay_ratio = {} asks to replay from it; set replay_buffer to \
                     the number of past examples to keep (e.g. 1000)",
                    self.replay_ratio
                ),
            ));
        }
        if self.replay_buffer > 0 && self.replay_ratio == 0.0 {
            return Err((
                "replay_ratio",
                format!("is 0, so the {} buffered examples are never replayed; set it in (0, 1)", self.replay_buffer),
            ));
        }
        for (key, v) in
            [("ewc_lambda", self.ewc_lambda), ("l2sp_alpha", self.l2sp_alpha), ("lwf_alpha", self.lwf_alpha)]
        {
            if !(v >= 0.0 && v.is_finite()) {
                return Err((key, format!("must be 0 or more, got {v}")));
            }
        }
        if self.ewc_lambda > 0.0 && self.ewc_samples == 0 {
            return Err(("ewc_samples", "must be at least 1 when ewc_lambda > 0".into()));
        }
        if !(self.lwf_temperature > 0.0 && self.lwf_temperature.is_finite()) {
            return Err(("lwf_temperature", format!("must be a positive number, got {}", self.lwf_temperature)));
        }
        if cfg.distill.is_some() {
            return Err((
                "tasks",
                "cannot be combined with [distill]; LwF (lwf_alpha) distils from the previous task's model".into(),
            ));
        }
        if cfg.eval.patience > 0 {
            return Err((
                "tasks",
                "train each task for its planned epochs; eval.patience (early stopping) is not supported".into(),
            ));
        }
        Ok(())
    }

    fn shared(&self) -> bool {
        self.heads == "shared"
    }
}

/// A finished continual run.
#[derive(Debug, Clone)]
pub struct ContinualSummary {
    /// Task names in order.
    pub tasks: Vec<String>,
    /// `matrix[i][j]`: accuracy on task i after training task j (j ≥ i; None before task i).
    pub matrix: Vec<Vec<Option<f64>>>,
    /// Average accuracy, backward transfer, forgetting.
    pub scores: ContinualScores,
    /// Optimizer steps per task.
    pub steps: Vec<u64>,
}

/// A copy of the model whose parameters do not share storage with it (training changes the
/// original in place).
fn snapshot(model: &Model) -> Result<Model> {
    let mut copy = model.clone();
    let ids: Vec<ParamId> = copy.params.iter().map(|(id, _)| id).collect();
    for id in ids {
        let v = copy.params.get(id).value.deep_clone()?;
        copy.params.get_mut(id).value = v;
    }
    Ok(copy)
}

/// Trainable parameters shared by the tasks: everything trainable but the heads (with one
/// shared head, it too).
fn shared_ids(model: &Model, shared_head: Option<&TaskHead>) -> Vec<ParamId> {
    model
        .params
        .iter()
        .filter(|(id, p)| {
            p.trainable && (!is_head(&p.name) || shared_head.is_some_and(|h| *id == h.weight || *id == h.bias))
        })
        .map(|(id, _)| id)
        .collect()
}

/// Trains a `[continual]` run.
pub fn run(cfg: RunConfig, progress: &mut dyn Progress) -> Result<ContinualSummary> {
    trainer::init_process(&cfg);
    let section = cfg.continual.clone().ok_or_else(|| TrainError::Config("no [continual] section".into()))?;
    let (tokenizer, model_dir) = crate::load::load_tokenizer(&cfg.model.path)?;
    let prepared: Vec<Prepared> =
        section.tasks.iter().map(|t| prepare_task(&cfg, t, &tokenizer, &model_dir)).collect::<Result<_>>()?;
    if section.shared() {
        if let Some((t, p)) =
            section.tasks.iter().zip(&prepared).find(|(_, p)| p.labels.len() != prepared[0].labels.len())
        {
            return Err(TrainError::Config(format!(
                "continual.heads = \"shared\": task \"{}\" has {} classes {:?}, task \"{}\" {}; a shared head needs the \
                 same number of classes in every task (or use heads = \"per_task\")",
                t.name,
                p.labels.len(),
                p.labels,
                section.tasks[0].name,
                prepared[0].labels.len()
            )));
        }
    }
    for (t, p) in section.tasks.iter().zip(&prepared) {
        if p.validation.is_empty() {
            return Err(TrainError::Config(format!(
                "task \"{}\" has no validation examples: give it `validation` or keep data.validation_split > 0",
                t.name
            )));
        }
    }
    let dir = cfg.output.dir.clone();
    std::fs::create_dir_all(&dir).map_err(|e| TrainError::io(&dir, e))?;
    let enc = Encoder::load(&cfg, &prepared[0].labels)?;
    let pad_id = trainer::pad_id(&enc.tokenizer);
    let eval_opts = LoaderOptions {
        batch_size: cfg.eval.batch_size,
        max_length: cfg.data.max_length,
        pad_id,
        ..LoaderOptions::default()
    };
    let mut model = enc.model;
    let mut heads: Vec<TaskHead> = Vec::new();
    // Head of each task.
    let mut head_of_task: Vec<usize> = Vec::new();
    let l2sp = if section.l2sp_alpha > 0.0 {
        let ids = shared_ids(&model, None);
        Some(Rc::new(QuadraticAnchor::at_current("l2sp", section.l2sp_alpha, &model.params, &ids, Vec::new())?))
    } else {
        None
    };
    let mut ewc: Vec<Rc<QuadraticAnchor>> = Vec::new();
    let mut reservoir = Reservoir::new(section.replay_buffer, cfg.train.seed);
    let n = section.tasks.len();
    let mut matrix: Vec<Vec<Option<f64>>> = vec![vec![None; n]; n];
    let mut steps = Vec::new();
    let mut log = String::new();
    for (j, task) in section.tasks.iter().enumerate() {
        let p = &prepared[j];
        let head = if section.shared() && j > 0 {
            0
        } else {
            let name = if section.shared() { "shared" } else { task.name.as_str() };
            heads.push(add_head(&mut model, name, &p.labels, cfg.train.seed.wrapping_add(j as u64))?);
            heads.len() - 1
        };
        head_of_task.push(head);
        let mut train: Vec<tunesmith_data::encode::Encoded> = p.train.clone();
        let mut train_head = vec![head; train.len()];
        let mut replayed = 0;
        if j > 0 && section.replay_ratio > 0.0 {
            if reservoir.items().is_empty() {
                return Err(TrainError::Config(format!(
                    "continual: the replay buffer is empty before task \"{}\" (the earlier tasks gave no examples)",
                    task.name
                )));
            }
            let count = (section.replay_ratio / (1.0 - section.replay_ratio) * p.train.len() as f64).round() as usize;
            for r in reservoir.draw(count, cfg.train.seed.wrapping_add(31 * j as u64)) {
                train.push(r.example);
                train_head.push(r.head);
            }
            replayed = count;
        }
        let val_head = vec![head; p.validation.len()];
        let mut objective = MultiHead::new(heads.clone(), train_head, val_head, model.config.position_offset)
            .with_label_smoothing(cfg.train.label_smoothing);
        if section.lwf_alpha > 0.0 && j > 0 {
            let old_heads: Vec<usize> = (0..heads.len()).filter(|&h| h != head).collect();
            let old_heads = if section.shared() { vec![0] } else { old_heads };
            objective = objective.with_lwf(Lwf {
                old: snapshot(&model)?,
                old_heads,
                alpha: section.lwf_alpha,
                temperature: section.lwf_temperature,
            });
        }
        let mut task_cfg = cfg.clone();
        task_cfg.output.dir = dir.join("tasks").join(format!("{}-{}", j + 1, task.name));
        task_cfg.continual = None;
        // The matrix evaluates every task after each; the start of a task is the end of the last.
        task_cfg.eval.at_start = false;
        task_cfg.data.train = task.train.clone();
        task_cfg.data.validation = task.validation.clone();
        let data = Prepared {
            train,
            validation: p.validation.clone(),
            validation_records: p.validation_records.clone(),
            labels: p.labels.clone(),
            files: p.files.clone(),
            rejected: p.rejected.clone(),
            augmented: p.augmented,
        };
        let parts = Parts {
            model,
            model_dir: enc.model_dir.clone(),
            data,
            lora: enc.lora.clone(),
            quantized: enc.quantized.clone(),
            objective: Some(Box::new(objective)),
            pad_id,
        };
        progress.message(&format!(
            "task {}/{n} \"{}\": {} examples{}",
            j + 1,
            task.name,
            p.train.len(),
            if replayed > 0 { format!(" + {replayed} replayed") } else { String::new() }
        ));
        let mut trainer = Trainer::assemble(task_cfg, parts, false)?;
        if let Some(a) = &l2sp {
            trainer.add_penalty(Box::new(a.clone()));
        }
        for e in &ewc {
            trainer.add_penalty(Box::new(e.clone()));
        }
        let summary = trainer.run(progress)?;
        steps.push(summary.steps);
        model = trainer.into_model();
        // Every task seen so far, with its own head.
        let scorer = MultiHead::new(heads.clone(), Vec::new(), Vec::new(), model.config.position_offset);
        for i in 0..=j {
            let ex = &prepared[i].validation;
            let head_of = vec![head_of_task[i]; ex.len()];
            let scored = scorer.score(&model, ex, &head_of, &eval_opts)?;
            let h = &scored[head_of_task[i]];
            let acc = tunesmith_eval::classification::accuracy(&h.truth, &h.predicted)?;
            matrix[i][j] = Some(acc);
        }
        let row: Vec<String> =
            (0..=j).map(|i| format!("{}: {:.4}", section.tasks[i].name, matrix[i][j].unwrap_or(0.0))).collect();
        progress.message(&format!("after task {} \"{}\": {}", j + 1, task.name, row.join(", ")));
        let mut record = json!({"after_task": j + 1, "task": task.name, "steps": summary.steps, "replayed": replayed,
               "accuracy": (0..=j).map(|i| json!({"task": section.tasks[i].name, "accuracy": matrix[i][j]})).collect::<Vec<_>>()});
        if j + 1 < n {
            if section.ewc_lambda > 0.0 {
                let shared_head = section.shared().then(|| &heads[0]);
                let ids = shared_ids(&model, shared_head);
                let opts = LoaderOptions { seed: cfg.train.seed.wrapping_add(j as u64), ..eval_opts.clone() };
                let f = fisher::diagonal_fisher(&mut model, &heads[head], &p.train, &ids, section.ewc_samples, &opts)?;
                // The scale λ works against (for tuning it): the mean Fisher entry.
                let (sum, count) = f.iter().flatten().fold((0.0, 0usize), |(s, c), &v| (s + f64::from(v), c + 1));
                record["ewc_fisher_mean"] = json!(sum / count.max(1) as f64);
                let name = "ewc";
                ewc.push(Rc::new(QuadraticAnchor::at_current(
                    name,
                    section.ewc_lambda,
                    &model.params,
                    &ids,
                    f.into_iter().map(Some).collect(),
                )?));
            }
            for e in &p.train {
                reservoir.offer(Replayed { example: e.clone(), head });
            }
        }
        log.push_str(&format!("{record}\n"));
        tunesmith_eval::report::write_atomic(&dir.join("continual.jsonl"), log.as_bytes())?;
    }
    let lower: Vec<Vec<f64>> = (0..n).map(|i| (i..n).filter_map(|j| matrix[i][j]).collect()).collect();
    let s = scores(&lower);
    let summary =
        ContinualSummary { tasks: section.tasks.iter().map(|t| t.name.clone()).collect(), matrix, scores: s, steps };
    let out = json!({
        "tasks": summary.tasks,
        "heads": section.heads,
        "strategies": {"replay_buffer": section.replay_buffer, "replay_ratio": section.replay_ratio,
                       "ewc_lambda": section.ewc_lambda, "l2sp_alpha": section.l2sp_alpha, "lwf_alpha": section.lwf_alpha},
        "accuracy_matrix": summary.matrix,
        "average_accuracy": s.average_accuracy,
        "backward_transfer": s.backward_transfer,
        "forgetting": s.forgetting,
        "steps": summary.steps,
        "final_model": dir.join("tasks").join(format!("{}-{}", n, section.tasks[n - 1].name)).join("final").display().to_string(),
    });
    tunesmith_models::io::write_json_atomic(&dir.join("continual.json"), &out)?;
    write_heads(&dir, &heads)?;
    progress.message(&format!(
        "average accuracy {:.4}, backward transfer {:+.4}, forgetting {:.4}",
        s.average_accuracy, s.backward_transfer, s.forgetting
    ));
    Ok(summary)
}
