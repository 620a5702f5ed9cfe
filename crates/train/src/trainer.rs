//! The training loop: micro-batches accumulated into optimizer steps (the loss normalized by
//! the trained units of the whole accumulated batch), the schedule, clipping, evaluation with
//! the task's metrics, best tracking and early stopping, checkpoints and exact resume, the
//! metrics log, the manifest, the outputs and the report.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde_json::{json, Map, Value};
use tunesmith_data::batch::{HostBatch, Loader, LoaderOptions, Position};
use tunesmith_data::encode::Target;
use tunesmith_engine::optim::{clip_grad_norm, AdamW, Optimizer, Sgd};
use tunesmith_engine::precision::{self, Precision};
use tunesmith_engine::{Grads, Graph, PerExampleGrads, Tensor};
use tunesmith_eval::classification::{accuracy, argmax, matthews_corrcoef, precision_recall_f1};
use tunesmith_eval::lm::LmAccumulator;
use tunesmith_models::lora::{self, LoraConfig};
use tunesmith_models::{Batch, LossOptions, Model, Targets, Task};

use crate::checkpoint::{self, TrainState};
use crate::config::{MethodKind, RunConfig, TaskKind};
use crate::distill::Distiller;
use crate::error::{Result, TrainError};
use crate::load;
use crate::methods;
use crate::objective::{Metrics, Objective};
use crate::penalty::WeightPenalty;
use crate::prepare::{prepare, Prepared};
use crate::privacy::dp_sgd::{ClipTotals, DpSgd};
use crate::schedule::Schedule;

pub mod classify;
mod setup;
mod task_eval;

use setup::loader_options_for;
pub use setup::{init_process, load_run_model, loader_options, pad_id, Parts};

/// What a finished run reports.
#[derive(Debug, Clone)]
pub struct RunSummary {
    /// The run directory.
    pub dir: PathBuf,
    /// Optimizer steps taken.
    pub steps: u64,
    /// Metrics of the evaluation before training (None without validation data).
    pub initial_metrics: Option<Map<String, Value>>,
    /// Metrics of the last evaluation.
    pub final_metrics: Option<Map<String, Value>>,
    /// Whether early stopping ended the run.
    pub stopped_early: bool,
    /// Whether [`Progress::evaluated`] ended the run (a sweep's pruner).
    pub stopped_by_caller: bool,
    /// The optimizer steps the run planned.
    pub total_steps: u64,
    /// Batches skipped for a non-finite loss (`train.on_nan = "skip"`).
    pub skipped_batches: u64,
    /// The trained model's outputs (model folder, adapter).
    pub outputs: Vec<PathBuf>,
    /// The report.
    pub report: PathBuf,
}

/// How the trainer reports progress (the CLI draws a bar with it).
pub trait Progress {
    /// Called once with the total number of optimizer steps.
    fn start(&mut self, total_steps: u64, resumed_at: u64);
    /// Called after each optimizer step.
    fn step(&mut self, step: u64, loss: f64, lr: f64, tokens_per_s: f64);
    /// A line to show (evaluations, checkpoints).
    fn message(&mut self, line: &str);
    /// Called after each evaluation during training with the value of `eval.metric`; returning
    /// true stops the run there (a sweep's pruner). The default never stops it.
    fn evaluated(&mut self, _step: u64, _total_steps: u64, _value: f64, _metrics: &Map<String, Value>) -> bool {
        false
    }
    /// Called at the end.
    fn finish(&mut self);
}

/// A [`Progress`] that prints nothing.
pub struct Quiet;

impl Progress for Quiet {
    fn start(&mut self, _: u64, _: u64) {}
    fn step(&mut self, _: u64, _: f64, _: f64, _: f64) {}
    fn message(&mut self, _: &str) {}
    fn finish(&mut self) {}
}

fn model_task(kind: TaskKind) -> Task {
    match kind {
        TaskKind::Classification | TaskKind::Regression | TaskKind::Reward => Task::SequenceClassification,
        TaskKind::CausalLm | TaskKind::Preference | TaskKind::Grpo | TaskKind::Ppo => Task::CausalLm,
        TaskKind::Embedding => Task::Embedding,
        TaskKind::TokenClassification => Task::TokenClassification,
    }
}

/// Tensors of a host batch. Packed rows carry their restarting positions, shifted by
/// `position_offset` (RoBERTa counts positions from padding_idx + 1).
pub fn to_batch(hb: &HostBatch, packed: bool, position_offset: usize) -> Result<Batch> {
    let shape = [hb.rows, hb.len];
    let i64s = |v: &[u32]| v.iter().map(|&x| i64::from(x)).collect::<Vec<i64>>();
    let positions = || hb.position_ids.iter().map(|&p| i64::from(p) + position_offset as i64).collect::<Vec<i64>>();
    Ok(Batch {
        input_ids: Tensor::from_vec(i64s(&hb.input_ids), &shape)?,
        attention_mask: Some(Tensor::from_vec(
            hb.attention_mask.iter().map(|&m| i64::from(m)).collect::<Vec<i64>>(),
            &shape,
        )?),
        position_ids: if packed { Some(Tensor::from_vec(positions(), &shape)?) } else { None },
        token_type_ids: match &hb.token_type_ids {
            Some(t) => Some(Tensor::from_vec(i64s(t), &shape)?),
            None => None,
        },
        segment_ids: match &hb.segment_ids {
            Some(s) if packed => Some(Tensor::from_vec(s.iter().map(|&x| i64::from(x)).collect::<Vec<i64>>(), &shape)?),
            _ => None,
        },
    })
}

fn targets(hb: &HostBatch, kind: TaskKind) -> Result<Targets> {
    Ok(match kind {
        TaskKind::Embedding | TaskKind::Preference | TaskKind::Reward | TaskKind::Grpo | TaskKind::Ppo => {
            return Err(TrainError::Config("pairs have no per-example targets".into()));
        }
        TaskKind::CausalLm | TaskKind::TokenClassification => Targets::Tokens(Tensor::from_vec(
            hb.labels.iter().map(|&l| i64::from(l)).collect::<Vec<i64>>(),
            &[hb.rows, hb.len],
        )?),
        TaskKind::Classification => Targets::Classes(Tensor::from_vec(
            hb.targets.iter().map(|t| if let Target::Class(c) = t { i64::from(*c) } else { 0 }).collect::<Vec<i64>>(),
            &[hb.targets.len()],
        )?),
        TaskKind::Regression => Targets::Values(Tensor::from_vec(
            hb.targets.iter().map(|t| if let Target::Value(v) = t { *v } else { 0.0 }).collect::<Vec<f32>>(),
            &[hb.targets.len()],
        )?),
    })
}

/// Units the loss averages over: predicted tokens (causal LM, after the shift) or sequences.
fn loss_units(hb: &HostBatch, kind: TaskKind) -> usize {
    match kind {
        TaskKind::CausalLm => {
            (0..hb.rows).map(|r| hb.labels[r * hb.len + 1..(r + 1) * hb.len].iter().filter(|&&l| l >= 0).count()).sum()
        }
        TaskKind::TokenClassification => hb.labels.iter().filter(|&&l| l >= 0).count(),
        // Pairs (the loader batch holds each pair's chosen sequence) and other per-example losses.
        _ => hb.targets.len(),
    }
}

fn sha256_file(path: &Path) -> Option<String> {
    use sha2::{Digest, Sha256};
    let bytes = std::fs::read(path).ok()?;
    Some(Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect())
}

fn sha256_str(s: &str) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(s.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| std::env::consts::ARCH.to_string())
}

fn git_commit() -> Option<String> {
    let out = std::process::Command::new("git").args(["rev-parse", "HEAD"]).output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Appends records to metrics.jsonl.
struct MetricsLog {
    file: std::fs::File,
}

impl MetricsLog {
    /// Opens the log, dropping records after `keep_through_step` (a resumed run rewrites them).
    fn open(run_dir: &Path, keep_through_step: Option<u64>) -> Result<MetricsLog> {
        let path = run_dir.join("metrics.jsonl");
        let kept: String = match keep_through_step {
            Some(step) => std::fs::read_to_string(&path)
                .unwrap_or_default()
                .lines()
                .filter(|l| {
                    serde_json::from_str::<Value>(l).ok().and_then(|v| v["step"].as_u64()).is_some_and(|s| s <= step)
                })
                .map(|l| format!("{l}\n"))
                .collect(),
            None => String::new(),
        };
        tunesmith_eval::report::write_atomic(&path, kept.as_bytes())?;
        let file = std::fs::OpenOptions::new().append(true).open(&path).map_err(|e| TrainError::io(&path, e))?;
        Ok(MetricsLog { file })
    }

    fn write(&mut self, record: &Value) {
        // A log line that cannot be written must not kill the run; the checkpoints are the state.
        let _ = writeln!(self.file, "{record}");
        let _ = self.file.flush();
    }
}

/// Writes evaluation metrics as `eval/<name>` scalars (a failed write never stops training).
fn tb_eval(tb: &mut crate::tensorboard::EventWriter, step: u64, m: &Map<String, Value>) {
    let names: Vec<(String, f64)> = m.iter().filter_map(|(k, v)| Some((format!("eval/{k}"), v.as_f64()?))).collect();
    let refs: Vec<(&str, f64)> = names.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    let _ = tb.scalars(step, &refs);
}

/// A training run.
pub struct Trainer {
    cfg: RunConfig,
    dir: PathBuf,
    model_dir: PathBuf,
    model: Model,
    data: Prepared,
    loader: Loader,
    opt: Box<dyn Optimizer>,
    schedule: Schedule,
    lora: Option<LoraConfig>,
    /// What quantizing the frozen base did (`model.quantize`).
    quantized: tunesmith_models::quantize::QuantReport,
    state: TrainState,
    total_steps: u64,
    resumed: bool,
    /// The objective when the task is not a per-example loss (preference, reward, GRPO).
    objective: Option<Box<dyn Objective>>,
    /// How many other sequences training examples have at most (an embedding pair's positive
    /// and hard negative), found once.
    other_parts: usize,
    /// DP-SGD, when `[privacy]` is set.
    dp: Option<DpSgd>,
    /// The teacher, when `[distill]` is set.
    distill: Option<Distiller>,
    /// Pulls on the weights added to each step's gradient.
    penalties: Vec<Box<dyn WeightPenalty>>,
}

impl Trainer {
    /// Sets a run up: model, data, method, optimizer; with `resume`, restores the latest
    /// checkpoint of the run directory.
    pub fn new(cfg: RunConfig, resume: bool) -> Result<Trainer> {
        init_process(&cfg);
        // The tokenizer is needed before the model (the label map comes from the data).
        let (tokenizer, model_dir) = load::load_tokenizer(&cfg.model.path)?;
        let mut data = prepare(&cfg, &tokenizer, &model_dir)?;
        let is_kto = cfg.task.kind == TaskKind::Preference && cfg.task.loss_or_default() == "kto";
        if matches!(cfg.task.kind, TaskKind::Preference | TaskKind::Reward) && !is_kto {
            data.train = crate::preference::as_loader_examples(std::mem::take(&mut data.train))?;
            data.validation = crate::preference::as_loader_examples(std::mem::take(&mut data.validation))?;
        }
        let labels = match cfg.task.kind {
            TaskKind::Classification | TaskKind::TokenClassification => Some(data.labels.clone()),
            TaskKind::Regression => Some(vec!["score".into()]),
            TaskKind::Reward => Some(vec!["reward".into()]),
            TaskKind::CausalLm | TaskKind::Embedding | TaskKind::Preference | TaskKind::Grpo | TaskKind::Ppo => None,
        };
        let mut model = load_run_model(&cfg, labels)?;
        let lora = methods::apply(&mut model, &cfg.method, cfg.train.seed)?;
        let quantized = load::quantize_base(&mut model, &cfg.model.path, &cfg.model.quantize)?;
        let distill = match &cfg.distill {
            Some(d) => Some(crate::distill::Distiller::load(
                d,
                cfg.task.kind,
                &mut model,
                &tokenizer,
                &data.labels,
                cfg.train.seed,
            )?),
            None => None,
        };
        let opts = loader_options(&cfg, &tokenizer);
        let objective =
            crate::objective::for_run(&cfg, &mut model, lora.is_some(), &data, &opts, &tokenizer, &model_dir)?;
        let parts = Parts { model, model_dir, data, lora, quantized, objective, pad_id: opts.pad_id };
        let mut t = Trainer::assemble(cfg, parts, resume)?;
        t.distill = distill;
        Ok(t)
    }

    /// A run from parts already made (several-task runs prepare their own data, heads and
    /// objective): the loader, optimizer, schedule and DP plan of `cfg`; with `resume`, the latest
    /// checkpoint of the run directory is restored.
    pub fn assemble(cfg: RunConfig, parts: Parts, resume: bool) -> Result<Trainer> {
        let Parts { model, model_dir, data, lora, quantized, objective, pad_id } = parts;
        let dir = cfg.output.dir.clone();
        let loader = Loader::new(data.train.clone(), loader_options_for(&cfg, pad_id))?;
        let per_epoch = loader.batches_per_epoch().div_ceil(cfg.train.grad_accum) as u64;
        let total_steps =
            if cfg.train.max_steps > 0 { cfg.train.max_steps as u64 } else { per_epoch * cfg.train.epochs as u64 };
        // DP-SGD samples each step's examples with probability batch·accum / n; a target ε may
        // end the run before the planned steps.
        let dp = match &cfg.privacy {
            Some(p) => {
                let plan = p.plan(loader.num_rows(), cfg.train.batch_size * cfg.train.grad_accum, total_steps)?;
                Some(DpSgd::new(plan, cfg.train.seed))
            }
            None => None,
        };
        let total_steps = dp.as_ref().map_or(total_steps, |d| d.plan.steps);
        let warmup = if cfg.train.warmup_steps > 0 {
            cfg.train.warmup_steps
        } else {
            (cfg.train.warmup_ratio * total_steps as f64).ceil() as usize
        };
        let schedule = Schedule {
            kind: cfg.train.schedule.clone(),
            warmup,
            total: total_steps as usize,
            min_ratio: cfg.train.min_lr_ratio,
        };
        let groups = methods::param_groups(&model, &cfg.method, cfg.train.lr, cfg.train.weight_decay);
        let opt: Box<dyn Optimizer> = if cfg.train.optimizer == "sgd" {
            Box::new(Sgd::new(&model.params, groups, cfg.train.momentum, 0.0, false)?)
        } else {
            let b = cfg.train.betas;
            Box::new(AdamW::new(&model.params, groups, (b[0], b[1]), cfg.train.eps)?)
        };
        let config_hash = sha256_str(&cfg.to_toml());
        let other_parts = data.train.iter().map(|e| e.others.len()).max().unwrap_or(0);
        let mut t = Trainer {
            cfg,
            dir,
            model_dir,
            model,
            data,
            loader,
            opt,
            schedule,
            lora,
            quantized,
            state: TrainState { config_hash, ..TrainState::default() },
            total_steps,
            resumed: false,
            objective,
            other_parts,
            dp,
            distill: None,
            penalties: Vec::new(),
        };
        if t.cfg.method.kind == MethodKind::GradualUnfreeze {
            methods::unfreeze_stage(&mut t.model, 0);
        }
        checkpoint::clean_partial(&t.dir)?;
        if resume {
            t.restore()?;
        } else if checkpoint::list(&t.dir).last().is_some() {
            return Err(TrainError::Config(format!(
                "{} already holds checkpoints of a run; pass --resume to continue it, or choose another output.dir",
                t.dir.display()
            )));
        }
        Ok(t)
    }

    /// Adds a pull on the weights to every optimizer step (EWC, L2-SP).
    pub fn add_penalty(&mut self, penalty: Box<dyn WeightPenalty>) {
        self.penalties.push(penalty);
    }

    /// Hands the trained model back (after [`Trainer::run`]).
    pub fn into_model(self) -> Model {
        self.model
    }

    /// Restores the latest complete checkpoint; without one (a crash before the first save
    /// finished) the run starts from the beginning.
    fn restore(&mut self) -> Result<()> {
        let Some((_, path)) = checkpoint::list(&self.dir).pop() else {
            return Ok(());
        };
        let loaded = checkpoint::load(&path)?;
        if loaded.state.config_hash != self.state.config_hash {
            return Err(TrainError::Checkpoint {
                path,
                why: "was written with a different configuration; resume with the same config and --set values".into(),
            });
        }
        if self.cfg.method.kind == MethodKind::GradualUnfreeze {
            methods::unfreeze_stage(&mut self.model, loaded.state.unfreeze_stage);
        }
        for (name, value) in loaded.params {
            let id = self.model.params.id(&name).ok_or_else(|| TrainError::Checkpoint {
                path: path.clone(),
                why: format!("holds parameter '{name}' that this model does not have"),
            })?;
            self.model.params.set_value(id, value)?;
        }
        self.opt.import_state(&self.model.params, &loaded.optimizer)?;
        self.state = loaded.state;
        self.resumed = true;
        Ok(())
    }

    /// Applies a LoRA adapter (PEFT format) to the model, e.g. to evaluate a finished run.
    pub fn load_adapter(&mut self, dir: &Path) -> Result<()> {
        lora::load_adapter(&mut self.model, dir)?;
        Ok(())
    }

    /// Whether training batches are packed (several examples per row with segment ids).
    fn packed(&self) -> bool {
        self.cfg.data.packing || self.cfg.data.padding_free
    }

    /// The win rate of this run's model (with its adapter) against its base, judged by the
    /// reward model `reward`, on the validation prompts (greedy, `max_new_tokens` at most).
    pub fn win_rate(&mut self, reward: &Model, max_new_tokens: usize) -> Result<crate::preference::win_rate::WinRate> {
        let prompts: Vec<Vec<u32>> = self
            .data
            .validation
            .iter()
            .map(|e| crate::grpo::prompt_ids(e).to_vec())
            .filter(|p| !p.is_empty())
            .collect();
        let mut generation = tunesmith_models::generate::GenerationConfig::for_model(&self.model, &self.model_dir)?;
        generation.max_new_tokens = max_new_tokens;
        let batch = self.cfg.eval.batch_size;
        crate::preference::win_rate::win_rate(&mut self.model, reward, &prompts, &generation, batch)
    }

    /// Class names by id (classification).
    pub fn labels(&self) -> &[String] {
        &self.data.labels
    }

    /// Data rows left out while reading or encoding, each with its file, line and reason.
    pub fn rejected_rows(&self) -> &[String] {
        &self.data.rejected
    }

    /// Whether a checkpoint was restored.
    pub fn resumed(&self) -> bool {
        self.resumed
    }

    /// The model (for tests and commands that keep using it).
    pub fn model(&self) -> &Model {
        &self.model
    }

    /// The run state.
    pub fn state(&self) -> &TrainState {
        &self.state
    }

    fn write_manifest(&self) -> Result<()> {
        let files: Vec<Value> = self
            .data
            .files
            .iter()
            .map(|f| json!({"path": f.display().to_string(), "sha256": sha256_file(f)}))
            .collect();
        let (total, trainable) = self.model.params.counts();
        // Quantized base weights left the store (their f32 copies were freed) but still count.
        let total = total + self.quantized.f32_bytes / 4;
        let manifest = json!({
            "config": serde_json::to_value(&self.cfg).unwrap_or(Value::Null),
            "versions": {"tunesmith": env!("CARGO_PKG_VERSION")},
            "git_commit": git_commit(),
            "seed": self.cfg.train.seed,
            "threads": tunesmith_engine::threads::num_threads(),
            "quantized_base": {"mode": self.cfg.model.quantize, "layers": self.quantized.layers,
                               "f32_bytes": self.quantized.f32_bytes, "bytes": self.quantized.quantized_bytes,
                               "formats": self.quantized.formats.iter().map(|(f, n)| json!({"format": f, "layers": n})).collect::<Vec<_>>()},
            "precision": {"products": precision::current().name(),
                          "kernel": (precision::current() == Precision::Bf16).then(|| precision::bf16_kernel().name()),
                          "flush_denormals": tunesmith_engine::fpmode::denormals_flushed()},
            "hardware": {"cpu": cpu_model(), "cores": std::thread::available_parallelism().map_or(1, |n| n.get()),
                         "os": std::env::consts::OS, "arch": std::env::consts::ARCH},
            "model": {"path": self.model_dir.display().to_string(), "architecture": self.model.architecture(),
                      "parameters": total, "trainable_parameters": trainable},
            "data": files,
            "examples": {"train": self.data.train.len(), "validation": self.data.validation.len(),
                         "rejected": self.data.rejected.len(), "augmented": self.data.augmented},
            "labels": self.data.labels,
            "total_steps": self.total_steps,
        });
        let mut manifest = manifest;
        if let Some(dp) = &self.dp {
            let p = &dp.plan;
            let spent = dp.epsilon(self.state.step).map_err(|e| TrainError::Config(format!("privacy: {e}")))?;
            manifest["privacy"] = json!({"epsilon": spent, "delta": p.delta, "sample_rate": p.sample_rate,
                "steps": self.state.step, "planned_steps": p.steps, "noise_multiplier": p.noise_multiplier,
                "max_grad_norm": p.max_grad_norm, "expected_batch_size": p.expected_batch,
                "accountant": p.accountant, "target_epsilon": self.cfg.privacy.as_ref().and_then(|s| s.target_epsilon)});
        }
        tunesmith_models::io::write_json_atomic(&self.dir.join("manifest.json"), &manifest)?;
        Ok(())
    }

    /// Evaluates on the validation set; writes per-example predictions when `save` is set.
    pub fn evaluate(&mut self, save: bool) -> Result<Option<Map<String, Value>>> {
        if self.data.validation.is_empty() {
            return Ok(None);
        }
        let kind = self.cfg.task.kind;
        if let Some(o) = &self.objective {
            let opts = LoaderOptions { batch_size: self.cfg.eval.batch_size, ..self.loader.options().clone() };
            return o.evaluate(&mut self.model, &self.data.validation, &opts).map(Some);
        }
        let loader = Loader::new(
            self.data.validation.clone(),
            LoaderOptions {
                batch_size: self.cfg.eval.batch_size,
                packing: false,
                max_length: self.cfg.data.max_length,
                shuffle: false,
                // Sorted by length: far less padding, and the order does not change any metric
                // (results are put back in example order below).
                group_by_length: true,
                pad_id: self.loader.options().pad_id,
                ..LoaderOptions::default()
            },
        )?;
        if kind == TaskKind::Embedding {
            return self.evaluate_pairs(&loader).map(Some);
        }
        if kind == TaskKind::TokenClassification {
            return self.evaluate_tags(&loader).map(Some);
        }
        let mut loss_sum = 0.0;
        let mut units = 0usize;
        let mut lm = LmAccumulator::default();
        let n = self.data.validation.len();
        let mut probs: Vec<Vec<f64>> = vec![Vec::new(); n];
        let mut values: Vec<f64> = vec![0.0; n];
        for (_, hb) in loader.epoch_from(Position::default()) {
            let g = Graph::inference();
            let batch = to_batch(&hb, false, 0)?;
            let out = self.model.loss(&g, &batch, &targets(&hb, kind)?, &LossOptions::default(), false)?;
            let l = out.loss.value().scalar_value()?;
            loss_sum += l * out.counted as f64;
            units += out.counted;
            if kind == TaskKind::CausalLm {
                lm.add(l * out.counted as f64, out.counted as u64, 0);
            }
            if let Some(logits) = &out.logits {
                let v = logits.to_vec_f64()?;
                let k = logits.shape().last().copied().unwrap_or(1);
                for (row, &ex) in v.chunks(k).zip(&hb.examples) {
                    if kind == TaskKind::Regression {
                        values[ex] = row[0];
                    } else {
                        let m = row.iter().copied().fold(f64::MIN, f64::max);
                        let e: Vec<f64> = row.iter().map(|x| (x - m).exp()).collect();
                        let s: f64 = e.iter().sum();
                        probs[ex] = e.iter().map(|x| x / s).collect();
                    }
                }
            }
        }
        let mut m = Map::new();
        m.insert("loss".into(), json!(loss_sum / units.max(1) as f64));
        let ex = &self.data.validation;
        match kind {
            TaskKind::Classification => {
                let truth: Vec<usize> =
                    ex.iter().map(|e| if let Target::Class(c) = e.target { c as usize } else { 0 }).collect();
                let pred: Vec<usize> = probs.iter().map(|p| argmax(p)).collect();
                m.insert("accuracy".into(), json!(accuracy(&truth, &pred)?));
                m.insert("f1_macro".into(), json!(precision_recall_f1(&truth, &pred)?.macro_avg.f1));
                m.insert("mcc".into(), json!(matthews_corrcoef(&truth, &pred)?));
                if save {
                    self.save_predictions(&truth, &pred, &probs)?;
                }
            }
            TaskKind::Regression => {
                let truth: Vec<f64> =
                    ex.iter().map(|e| if let Target::Value(v) = e.target { f64::from(v) } else { 0.0 }).collect();
                let s = tunesmith_eval::regression::regression(&truth, &values)?;
                m.insert("mse".into(), json!(s.mse));
                m.insert("pearson".into(), json!(s.pearson));
                m.insert("spearman".into(), json!(s.spearman));
            }
            TaskKind::CausalLm => {
                if let Some(s) = lm.scores() {
                    m.insert("perplexity".into(), json!(s.perplexity));
                }
            }
            // Scored by evaluate_pairs, evaluate_tags and the preference objective above.
            TaskKind::Embedding
            | TaskKind::TokenClassification
            | TaskKind::Preference
            | TaskKind::Reward
            | TaskKind::Grpo
            | TaskKind::Ppo => {}
        }
        Ok(Some(m))
    }

    fn save_predictions(&self, truth: &[usize], pred: &[usize], probs: &[Vec<f64>]) -> Result<()> {
        let mut out = String::new();
        for (i, e) in self.data.validation.iter().enumerate() {
            let text = self
                .data
                .validation_records
                .iter()
                .find(|r| r.loc == e.loc)
                .and_then(|r| match &r.example {
                    tunesmith_data::example::Example::Labeled { text, .. } => Some(text.clone()),
                    _ => None,
                })
                .unwrap_or_default();
            let loss = -probs[i][truth[i]].max(1e-12).ln();
            out.push_str(&format!(
                "{}\n",
                json!({"text": text, "label": self.data.labels[truth[i]], "prediction": self.data.labels[pred[i]],
                       "probs": probs[i], "loss": loss})
            ));
        }
        let path = self.dir.join(tunesmith_eval::report::run::PREDICTIONS_FILE);
        std::fs::create_dir_all(path.parent().unwrap_or(&self.dir)).map_err(|e| TrainError::io(&path, e))?;
        tunesmith_eval::report::write_atomic(&path, out.as_bytes())?;
        Ok(())
    }

    fn metric_of(&self, m: &Map<String, Value>) -> Result<(f64, bool)> {
        let name = &self.cfg.eval.metric;
        let v = m.get(name).and_then(Value::as_f64).ok_or_else(|| {
            TrainError::Config(format!(
                "eval.metric = \"{name}\" is not computed for this task; choose one of {:?}",
                m.keys().collect::<Vec<_>>()
            ))
        })?;
        Ok((v, !crate::config::lower_is_better(name)))
    }

    /// Runs (or continues) training to the end and writes outputs and the report.
    pub fn train(mut self, progress: &mut dyn Progress) -> Result<RunSummary> {
        self.run(progress)
    }

    /// [`Trainer::train`], keeping the trainer (its model, [`Trainer::into_model`]) afterwards.
    pub fn run(&mut self, progress: &mut dyn Progress) -> Result<RunSummary> {
        std::fs::create_dir_all(&self.dir).map_err(|e| TrainError::io(&self.dir, e))?;
        self.write_manifest()?;
        let mut log = MetricsLog::open(&self.dir, self.resumed.then_some(self.state.step))?;
        let mut tb = crate::tensorboard::EventWriter::create(&self.dir.join("tensorboard"))?;
        let kind = self.cfg.task.kind;
        let initial_metrics = if self.resumed || !self.cfg.eval.at_start { None } else { self.evaluate(false)? };
        if let Some(m) = &initial_metrics {
            log.write(&json!({"step": 0, "split": "eval", "loss": m["loss"], "metrics": m}));
            tb_eval(&mut tb, 0, m);
        }
        progress.start(self.total_steps, self.state.step);
        let per_epoch = self.loader.batches_per_epoch();
        let accum = self.cfg.train.grad_accum;
        let mut grads = Grads::new();
        let mut last_metrics = None;
        let mut stopped_early = false;
        let mut stopped_by_caller = false;
        let mut window_start = Instant::now();
        let mut window_tokens = 0u64;
        // Skipping stops helping when the weights themselves have diverged.
        const MAX_CONSECUTIVE_SKIPS: u64 = 8;
        let mut consecutive_skips = 0u64;
        'epochs: while self.state.step < self.total_steps {
            let epoch = self.state.position.epoch;
            if self.cfg.train.max_steps == 0 && epoch >= self.cfg.train.epochs as u64 {
                break;
            }
            let plan: Vec<(Position, HostBatch)> = self.loader.epoch_from(self.state.position).collect();
            'groups: for group in plan.chunks(accum) {
                // Under DP-SGD the step's examples are a Poisson sample instead of the plan's
                // batches (the plan still paces epochs, evaluation and checkpoints).
                let sampled: Vec<HostBatch> = match &self.dp {
                    Some(dp) => dp
                        .sample(self.state.step, self.loader.num_rows())
                        .chunks(self.cfg.train.batch_size.max(1))
                        .map(|rows| self.loader.collate(rows))
                        .collect(),
                    None => Vec::new(),
                };
                let batches: Vec<&HostBatch> = match &self.dp {
                    Some(_) => sampled.iter().collect(),
                    None => group.iter().map(|(_, hb)| hb).collect(),
                };
                let group_examples: usize = batches.iter().map(|hb| hb.examples.len()).sum();
                let mut clip = ClipTotals::default();
                let units: usize = batches.iter().map(|hb| loss_units(hb, kind)).sum();
                let mut loss_total = 0.0;
                let mut group_tokens = 0u64;
                let mut metrics = Metrics::default();
                // An objective prepares its batches (samples, reference passes) before the
                // step's graphs borrow the model.
                let mut prepared = Vec::with_capacity(batches.len());
                for (i, hb) in batches.iter().enumerate() {
                    prepared.push(match &self.objective {
                        Some(o) => {
                            let seed =
                                self.cfg.train.seed.wrapping_mul(7_919).wrapping_add(self.state.step * 64 + i as u64);
                            Some(o.prepare(&mut self.model, &self.loader, hb, seed)?)
                        }
                        None => None,
                    });
                }
                // The loader gives the position after each batch.
                let next = group[group.len() - 1].0;
                let factor = self.schedule.factor(self.state.step as usize);
                self.opt.set_lr_factor(factor);
                let passes = self.objective.as_ref().map_or(1, |o| o.passes().max(1));
                let mut grad_norm = 0.0;
                for pass in 0..passes as u64 {
                    let mut pass_loss = 0.0;
                    for (i, &hb) in batches.iter().enumerate() {
                        let g = Graph::train(
                            self.cfg
                                .train
                                .seed
                                .wrapping_mul(1_000_003)
                                .wrapping_add(self.state.step * 64 + i as u64 + pass.wrapping_mul(0x9E37_79B9)),
                        );
                        let lopts = LossOptions {
                            label_smoothing: self.cfg.train.label_smoothing,
                            normalizer: Some(units.max(1) as f64),
                            ..LossOptions::default()
                        };
                        let checkpointing = self.cfg.train.activation_checkpointing;
                        let (loss, tokens) = if let (Some(o), Some(b)) = (&self.objective, &prepared[i]) {
                            let step = o.step(&self.model, &g, b, units.max(1) as f64, checkpointing)?;
                            metrics.merge(&step.metrics);
                            (step.loss, step.tokens)
                        } else if let Some(d) = &self.distill {
                            let batch = to_batch(hb, self.packed(), self.model.config.position_offset)?;
                            let step =
                                d.step(&self.model, &g, hb, &batch, &targets(hb, kind)?, &lopts, checkpointing)?;
                            metrics.merge(&step.metrics);
                            (step.loss, hb.tokens())
                        } else if kind == TaskKind::Embedding {
                            let (out, tokens) = self.pair_loss(&g, hb, lopts.normalizer, checkpointing)?;
                            (out.loss, tokens)
                        } else {
                            let batch = to_batch(hb, self.packed(), self.model.config.position_offset)?;
                            let out = self.model.loss(&g, &batch, &targets(hb, kind)?, &lopts, checkpointing)?;
                            (out.loss, hb.tokens())
                        };
                        pass_loss += loss.value().scalar_value()?;
                        match &self.dp {
                            Some(dp) => {
                                // Each example's gradient (of its loss, as Opacus scales a mean
                                // loss by the batch size), clipped, then summed.
                                let rows = crate::privacy::dp_sgd::example_rows(hb)?;
                                let mut per = PerExampleGrads::new();
                                g.backward_per_example(&loss, &rows, &mut Grads::new(), &mut per)?;
                                let s = per.clip_into(
                                    rows.examples(),
                                    dp.plan.max_grad_norm,
                                    group_examples as f64,
                                    &mut grads,
                                )?;
                                clip.add(s);
                            }
                            None => g.backward(&loss, &mut grads)?,
                        }
                        group_tokens += tokens as u64;
                    }
                    if !pass_loss.is_finite() {
                        grads.clear();
                        window_tokens += group_tokens;
                        consecutive_skips += 1;
                        if self.cfg.train.on_nan == "skip" && consecutive_skips <= MAX_CONSECUTIVE_SKIPS {
                            self.state.skipped_batches += 1;
                            self.state.position = next;
                            log.write(&json!({"step": self.state.step, "split": "train", "skipped_batch": true,
                                              "loss": Value::Null}));
                            progress
                                .message(&format!("step {}: loss is {pass_loss}; batch skipped", self.state.step + 1));
                            continue 'groups;
                        }
                        let kept = match checkpoint::list(&self.dir).pop() {
                            Some((step, path)) => {
                                format!("the last good checkpoint (step {step}) is kept in {}", path.display())
                            }
                            None => "no checkpoint had been written yet".to_string(),
                        };
                        return Err(TrainError::NonFinite { step: self.state.step + 1, value: pass_loss, kept });
                    }
                    consecutive_skips = 0;
                    if let Some(dp) = &self.dp {
                        dp.add_noise(self.state.step, &self.model.params, &mut grads)?;
                    }
                    for p in &self.penalties {
                        let v = p.apply(&self.model.params, &mut grads)?;
                        metrics.mean(&format!("penalty_{}", p.name()), v, 1.0);
                    }
                    grad_norm = if self.dp.is_some() {
                        grads.global_norm()?
                    } else if self.cfg.train.max_grad_norm > 0.0 {
                        clip_grad_norm(&mut grads, self.cfg.train.max_grad_norm)?
                    } else {
                        clip_grad_norm(&mut grads, f64::INFINITY)?
                    };
                    self.opt.step(&mut self.model.params, &grads)?;
                    grads.clear();
                    loss_total += pass_loss / passes as f64;
                }
                window_tokens += group_tokens;
                self.state.step += 1;
                self.state.position = next;
                self.state.tokens_seen += group_tokens;
                let lr = self.cfg.train.lr * factor;
                let elapsed = window_start.elapsed().as_secs_f64();
                let tps = window_tokens as f64 / elapsed.max(1e-9);
                progress.step(self.state.step, loss_total, lr, tps);
                if self.state.step.is_multiple_of(self.cfg.train.log_every.max(1) as u64) {
                    let mut record = json!({"step": self.state.step, "split": "train",
                        "epoch": epoch as f64 + next.index as f64 / per_epoch.max(1) as f64,
                        "loss": loss_total, "lr": lr, "grad_norm": grad_norm, "tokens_per_s": tps});
                    if self.objective.is_some() || self.distill.is_some() || !self.penalties.is_empty() {
                        record["metrics"] = Value::Object(metrics.values());
                    }
                    if let Some(dp) = &self.dp {
                        record["privacy"] = json!({"epsilon": dp.epsilon(self.state.step).ok(),
                            "examples": group_examples, "clipped_fraction": clip.clipped_fraction(),
                            "mean_example_grad_norm": clip.mean_norm()});
                    }
                    log.write(&record);
                    let _ = tb.scalars(
                        self.state.step,
                        &[
                            ("train/loss", loss_total),
                            ("train/lr", lr),
                            ("train/grad_norm", grad_norm),
                            ("train/tokens_per_s", tps),
                        ],
                    );
                    window_start = Instant::now();
                    window_tokens = 0;
                }
                let epoch_end = next.index >= per_epoch;
                let eval_due = match self.cfg.eval.every_steps {
                    0 => epoch_end,
                    n => self.state.step.is_multiple_of(n as u64),
                } || self.state.step == self.total_steps;
                if eval_due {
                    if let Some(m) = self.evaluate(true)? {
                        let (v, higher) = self.metric_of(&m)?;
                        let improved = match self.state.best {
                            None => true,
                            Some((b, _)) => {
                                if higher {
                                    v > b + self.cfg.eval.min_delta
                                } else {
                                    v < b - self.cfg.eval.min_delta
                                }
                            }
                        };
                        if improved {
                            self.state.best = Some((v, self.state.step));
                            self.state.evals_without_improvement = 0;
                        } else {
                            self.state.evals_without_improvement += 1;
                        }
                        log.write(&json!({"step": self.state.step, "split": "eval", "loss": m["loss"], "metrics": m}));
                        tb_eval(&mut tb, self.state.step, &m);
                        progress.message(&format!(
                            "step {}: {} = {v:.4}{}",
                            self.state.step,
                            self.cfg.eval.metric,
                            if improved { " (best)" } else { "" }
                        ));
                        if progress.evaluated(self.state.step, self.total_steps, v, &m) {
                            stopped_by_caller = true;
                        }
                        last_metrics = Some(m);
                        if self.cfg.eval.patience > 0 && self.state.evals_without_improvement >= self.cfg.eval.patience
                        {
                            stopped_early = true;
                        }
                    }
                }
                if epoch_end {
                    self.state.position = Position { epoch: epoch + 1, index: 0 };
                    if self.cfg.method.kind == MethodKind::GradualUnfreeze && self.cfg.method.unfreeze_every == "epoch"
                    {
                        self.state.unfreeze_stage += 1;
                        methods::unfreeze_stage(&mut self.model, self.state.unfreeze_stage);
                    }
                }
                if let Ok(n) = self.cfg.method.unfreeze_every.parse::<u64>() {
                    if self.cfg.method.kind == MethodKind::GradualUnfreeze && self.state.step.is_multiple_of(n) {
                        self.state.unfreeze_stage += 1;
                        methods::unfreeze_stage(&mut self.model, self.state.unfreeze_stage);
                    }
                }
                let save_due = match self.cfg.output.save_every_steps {
                    0 => epoch_end,
                    n => self.state.step.is_multiple_of(n as u64),
                } || self.state.step == self.total_steps
                    || stopped_early
                    || stopped_by_caller;
                if save_due && self.cfg.output.save_checkpoints {
                    checkpoint::save(&self.dir, &self.model, &self.opt.export_state(&self.model.params), &self.state)?;
                    checkpoint::prune(&self.dir, self.cfg.output.keep_last, self.state.best.map(|b| b.1))?;
                }
                if stopped_early {
                    progress.message(&format!(
                        "early stopping: {} evaluations without improvement",
                        self.state.evals_without_improvement
                    ));
                    break 'epochs;
                }
                if stopped_by_caller {
                    progress.message(&format!("stopped at step {} by the caller", self.state.step));
                    break 'epochs;
                }
                if self.state.step >= self.total_steps {
                    break 'epochs;
                }
                if epoch_end {
                    continue 'epochs;
                }
            }
            if self.state.position.index >= per_epoch {
                self.state.position = Position { epoch: epoch + 1, index: 0 };
            }
        }
        progress.finish();
        if let Some(dp) = &self.dp {
            self.write_manifest()?;
            if let Ok(eps) = dp.epsilon(self.state.step) {
                progress.message(&format!(
                    "privacy: ε = {eps:.3} at δ = {:e} after {} steps (σ = {:.4}, q = {:.5})",
                    dp.plan.delta, self.state.step, dp.plan.noise_multiplier, dp.plan.sample_rate
                ));
            }
        }
        let outputs = self.write_outputs()?;
        let report = tunesmith_eval::report::render_run(&self.dir)?.html;
        Ok(RunSummary {
            dir: self.dir.clone(),
            steps: self.state.step,
            initial_metrics,
            final_metrics: last_metrics,
            stopped_early,
            stopped_by_caller,
            total_steps: self.total_steps,
            skipped_batches: self.state.skipped_batches,
            outputs,
            report,
        })
    }

    /// Writes the trained model: the PEFT adapter (LoRA), the full model in HF format (full
    /// and partial runs, or LoRA with output.save_merged), and the classification head.
    fn write_outputs(&mut self) -> Result<Vec<PathBuf>> {
        let out = self.dir.join("final");
        std::fs::create_dir_all(&out).map_err(|e| TrainError::io(&out, e))?;
        let mut written = Vec::new();
        if let Some(cfg) = &self.lora {
            let adapter = out.join("adapter");
            lora::save_adapter(&self.model, cfg, &adapter, &self.cfg.model.path)?;
            written.push(adapter);
        }
        let head: Vec<(String, Tensor)> = self
            .model
            .params
            .iter()
            .filter(|(_, p)| methods::is_head(&p.name))
            .map(|(_, p)| (p.name.clone(), p.value.clone()))
            .collect();
        if !head.is_empty() {
            let path = out.join("head.safetensors");
            tunesmith_models::weights::save_safetensors(&path, &head, None)?;
            written.push(path);
        }
        if self.lora.is_none() || self.cfg.output.save_merged {
            let mut model = self.model.clone();
            if self.lora.is_some() {
                lora::merge_and_unload(&mut model)?;
            }
            let dir = out.join("model");
            model.save_pretrained(&dir)?;
            load::copy_tokenizer_files(&self.model_dir, &dir)?;
            written.push(dir);
        }
        Ok(written)
    }
}
