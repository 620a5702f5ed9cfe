//! Setting a run up: per-process settings, the run's base model, the loader's options, and the
//! parts [`super::Trainer::assemble`] builds a run from.

use std::path::PathBuf;

use tunesmith_data::batch::LoaderOptions;
use tunesmith_engine::precision::{self, Precision};
use tunesmith_models::lora::LoraConfig;
use tunesmith_models::Model;

use super::model_task;
use crate::config::{RunConfig, TaskKind};
use crate::error::Result;
use crate::load;
use crate::objective::Objective;
use crate::prepare::Prepared;

/// What [`super::Trainer::assemble`] builds a run from.
pub struct Parts {
    /// The model, with its method applied.
    pub model: Model,
    /// The folder its tokenizer and config came from.
    pub model_dir: PathBuf,
    /// Encoded data.
    pub data: Prepared,
    /// The LoRA configuration, when the method attached adapters.
    pub lora: Option<LoraConfig>,
    /// What quantizing the frozen base did.
    pub quantized: tunesmith_models::quantize::QuantReport,
    /// The objective, when the loss is not `Model::loss` of one batch.
    pub objective: Option<Box<dyn Objective>>,
    /// The tokenizer's padding id.
    pub pad_id: u32,
}

/// Per-process settings of a run: threads and the precision of products.
pub fn init_process(cfg: &RunConfig) {
    tunesmith_engine::threads::init((cfg.train.threads > 0).then_some(cfg.train.threads));
    // Validated with the config; the products of this process (training and evaluation) run at
    // this precision from here on.
    precision::set(Precision::parse(&cfg.train.precision).unwrap_or_default());
}

/// The base model of a run (`model.path`, `model.num_layers`, `model.quantize`) with the task's
/// head for `labels`, and `train.dropout`.
pub fn load_run_model(cfg: &RunConfig, labels: Option<Vec<String>>) -> Result<Model> {
    let quant = tunesmith_models::quantize::BaseQuant::parse(&cfg.model.quantize)
        .unwrap_or(tunesmith_models::quantize::BaseQuant::None);
    let task = model_task(cfg.task.kind);
    let mut model = match cfg.model.num_layers {
        Some(n) => load::load_model_truncated(&cfg.model.path, task, labels, cfg.train.seed, n)?,
        None => load::load_model(&cfg.model.path, task, labels, cfg.train.seed, quant)?,
    };
    if let Some(p) = cfg.train.dropout {
        model.set_dropout(p as f32);
    }
    Ok(model)
}

/// The padding id of a tokenizer (its pad token, else its end-of-sequence token, else 0).
pub fn pad_id(tokenizer: &tunesmith_data::tokenizer::Tokenizer) -> u32 {
    tokenizer.special().pad.or(tokenizer.special().eos).map_or(0, |t| t.1)
}

/// The training loader's options of a run.
pub fn loader_options(cfg: &RunConfig, tokenizer: &tunesmith_data::tokenizer::Tokenizer) -> LoaderOptions {
    loader_options_for(cfg, pad_id(tokenizer))
}

pub(super) fn loader_options_for(cfg: &RunConfig, pad_id: u32) -> LoaderOptions {
    LoaderOptions {
        batch_size: cfg.train.batch_size,
        packing: cfg.data.packing,
        padding_free: cfg.data.padding_free,
        max_length: cfg.data.max_length,
        group_by_length: false,
        shuffle: true,
        seed: cfg.train.seed,
        drop_last: false,
        pad_id,
        pad_to_multiple_of: 1,
        causal_labels: matches!(
            cfg.task.kind,
            TaskKind::CausalLm | TaskKind::Preference | TaskKind::Grpo | TaskKind::Ppo
        ),
    }
}
