//! Loading a base model and its tokenizer from what a config or command names: a Hugging Face
//! folder, a Hub id, a GGUF file (llama.cpp's format, quantized or not), or a llama2.c checkpoint
//! (`model.bin` with its `tok*.bin` beside it).

use std::path::{Path, PathBuf};

use tunesmith_data::tokenizer::Tokenizer;
use tunesmith_models::quantize::{quantize_frozen, BaseQuant, QuantReport};
use tunesmith_models::{gguf, llama2c, LoadOptions, Model, Task};

use crate::error::{Result, TrainError};

/// A loaded base model.
pub struct Base {
    /// The model.
    pub model: Model,
    /// Its tokenizer.
    pub tokenizer: Tokenizer,
    /// The folder it came from (tokenizer files, generation_config.json).
    pub dir: PathBuf,
}

/// Whether `reference` names a llama2.c checkpoint.
pub fn is_llama2c(reference: &str) -> bool {
    let p = Path::new(reference);
    p.is_file() && p.extension().is_some_and(|e| e == "bin")
}

/// The llama2.c tokenizer next to a checkpoint: `tok<vocab>.bin`, else `tokenizer.bin`.
fn llama2c_tokenizer(checkpoint: &Path, vocab: usize) -> Result<PathBuf> {
    let dir = checkpoint.parent().unwrap_or(Path::new("."));
    for name in [format!("tok{vocab}.bin"), "tokenizer.bin".to_string()] {
        if dir.join(&name).is_file() {
            return Ok(dir.join(name));
        }
    }
    Err(TrainError::Config(format!(
        "{}: a llama2.c checkpoint needs its tokenizer (tok{vocab}.bin or tokenizer.bin) in the same folder",
        checkpoint.display()
    )))
}

/// The files besides weights and config that a saved model folder needs to be loadable with
/// its tokenizer and generation defaults.
pub const TOKENIZER_FILES: [&str; 5] =
    ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt", "generation_config.json"];

/// Copies the [`TOKENIZER_FILES`] present in `from` into `to`.
pub fn copy_tokenizer_files(from: &Path, to: &Path) -> Result<()> {
    for f in TOKENIZER_FILES {
        let src = from.join(f);
        if src.exists() {
            std::fs::copy(&src, to.join(f)).map_err(|e| TrainError::io(&src, e))?;
        }
    }
    Ok(())
}

/// Loads the base model for `task` (with `labels` for classification heads), in f32.
pub fn load_base(reference: &str, task: Task, labels: Option<Vec<String>>, seed: u64) -> Result<Base> {
    load_base_quantized(reference, task, labels, seed, BaseQuant::None)
}

/// [`load_base`], with a GGUF base's block projections loaded as `quant` says (one tensor at a
/// time, so the f32 model never exists whole); other bases load in f32 and are quantized after
/// the method attaches its adapters ([`quantize_base`]).
pub fn load_base_quantized(
    reference: &str,
    task: Task,
    labels: Option<Vec<String>>,
    seed: u64,
    quant: BaseQuant,
) -> Result<Base> {
    let model = load_model(reference, task, labels, seed, quant)?;
    let (tokenizer, dir) = load_tokenizer(reference)?;
    Ok(Base { model, tokenizer, dir })
}

fn load_options(task: Task, labels: Option<Vec<String>>, seed: u64) -> LoadOptions {
    LoadOptions { labels, seed, ..LoadOptions::new(task) }
}

/// The model of [`load_base_quantized`] without its tokenizer (for callers that already have
/// it from [`load_tokenizer`]).
pub fn load_model(
    reference: &str,
    task: Task,
    labels: Option<Vec<String>>,
    seed: u64,
    quant: BaseQuant,
) -> Result<Model> {
    let opts = load_options(task, labels, seed);
    if is_llama2c(reference) {
        if !matches!(task, Task::CausalLm | Task::SequenceClassification) {
            return Err(TrainError::Config(format!(
                "{reference}: a llama2.c checkpoint is a decoder; use task.kind = \"causal_lm\", a sequence task (classification, regression, reward) or \"preference\""
            )));
        }
        return Ok(llama2c::load_with(Path::new(reference), &opts)?.0);
    }
    if gguf::is_gguf_reference(reference) {
        let file = gguf::GgufFile::open(Path::new(reference))?;
        return Ok(gguf::load::load_file_quantized(&file, &opts, quant)?.0);
    }
    let dir = tunesmith_models::hub::resolve_model(reference)?;
    Ok(Model::load(&dir, &opts)?.0)
}

/// [`load_model`] keeping only the first `num_layers` blocks (a model folder or Hub id).
pub fn load_model_truncated(
    reference: &str,
    task: Task,
    labels: Option<Vec<String>>,
    seed: u64,
    num_layers: usize,
) -> Result<Model> {
    if is_llama2c(reference) || gguf::is_gguf_reference(reference) {
        return Err(TrainError::Config(format!(
            "model.num_layers keeps the first blocks of a model folder; \"{reference}\" is a GGUF or llama2.c file"
        )));
    }
    let opts = LoadOptions { num_layers: Some(num_layers), ..load_options(task, labels, seed) };
    let dir = tunesmith_models::hub::resolve_model(reference)?;
    Ok(Model::load(&dir, &opts)?.0)
}

/// The tokenizer of a model reference and the folder its tokenizer files, chat template and
/// config come from (for a GGUF file, its companion folder), without loading the weights
/// where that can be avoided.
pub fn load_tokenizer(reference: &str) -> Result<(Tokenizer, PathBuf)> {
    if is_llama2c(reference) {
        let path = Path::new(reference);
        let header = llama2c::read_header(path)?;
        let tokenizer = Tokenizer::from_llama2c(&llama2c_tokenizer(path, header.vocab_size)?, header.vocab_size)?;
        return Ok((tokenizer, path.parent().unwrap_or(Path::new(".")).to_path_buf()));
    }
    if gguf::is_gguf_reference(reference) {
        let dir = gguf::companion_dir(&gguf::GgufFile::open(Path::new(reference))?)?;
        return Ok((Tokenizer::from_dir(&dir)?, dir));
    }
    let dir = tunesmith_models::hub::resolve_model(reference)?;
    Ok((Tokenizer::from_dir(&dir)?, dir))
}

/// Quantizes the frozen base of `model` (loaded from `reference`) as `model.quantize` says
/// (`none`, `nf4`, `q8_0`, `keep`); validated with the config.
pub fn quantize_base(model: &mut Model, reference: &str, mode: &str) -> Result<QuantReport> {
    let mode = BaseQuant::parse(mode).unwrap_or(BaseQuant::None);
    let file = match mode {
        BaseQuant::Keep => Some(gguf::GgufFile::open(Path::new(reference))?),
        _ => None,
    };
    Ok(quantize_frozen(model, mode, file.as_ref())?)
}
