//! Commands that use a trained model: `generate`, `chat`, `merge`, `export` and `embed`.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::{Args, ValueEnum};
use serde_json::{json, Value};
use tunesmith_data::template;
use tunesmith_models::lora;
use tunesmith_models::{generate, Batch, GenerationConfig, Task};
use tunesmith_train::load::{load_base, Base};

use crate::BadInput;

/// Sampling options shared by `generate` and `chat`.
#[derive(Args, Debug, Clone)]
pub struct SamplingArgs {
    /// New tokens at most.
    #[arg(long, default_value_t = 128)]
    max_new_tokens: usize,
    /// Sample with this temperature (0 = greedy).
    #[arg(long, default_value_t = 0.0)]
    temperature: f64,
    /// Keep the k most likely tokens (0 = all).
    #[arg(long, default_value_t = 0)]
    top_k: usize,
    /// Nucleus sampling mass.
    #[arg(long, default_value_t = 1.0)]
    top_p: f64,
    /// Penalize repeated tokens (1 = off).
    #[arg(long, default_value_t = 1.0)]
    repetition_penalty: f64,
    /// Sampling seed.
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

/// Options of `tunesmith generate`.
#[derive(Args, Debug)]
pub struct GenerateArgs {
    /// The base model: a folder, a Hub id, a GGUF file or a llama2.c checkpoint.
    #[arg(long)]
    model: String,
    /// A LoRA adapter to apply: a PEFT folder, or a llama.cpp LoRA GGUF for a GGUF base.
    #[arg(long)]
    adapter: Option<PathBuf>,
    /// The prompt (plain text; with --chat, the user's message).
    #[arg(long)]
    prompt: String,
    /// Wrap the prompt in the model's chat template as a user turn.
    #[arg(long)]
    chat: bool,
    #[command(flatten)]
    sampling: SamplingArgs,
}

/// Options of `tunesmith chat`.
#[derive(Args, Debug)]
pub struct ChatArgs {
    /// The base model: a folder, a Hub id, a GGUF file or a llama2.c checkpoint.
    #[arg(long)]
    model: String,
    /// A LoRA adapter to apply: a PEFT folder, or a llama.cpp LoRA GGUF for a GGUF base.
    #[arg(long)]
    adapter: Option<PathBuf>,
    /// A system message.
    #[arg(long)]
    system: Option<String>,
    /// Chat template: the model's, or chatml / llama3 / alpaca / a file.
    #[arg(long)]
    template: Option<String>,
    #[command(flatten)]
    sampling: SamplingArgs,
}

fn load_causal(model: &str, adapter: Option<&Path>) -> Result<Base> {
    let mut base = load_base(model, Task::CausalLm, None, 0)?;
    if let Some(a) = adapter.filter(|a| tunesmith_models::gguf::is_gguf(a)) {
        // A llama.cpp LoRA adapter, for a GGUF base.
        if !tunesmith_models::gguf::is_gguf_reference(model) {
            return Err(BadInput(format!("{}: a GGUF LoRA adapter needs a GGUF base model", a.display())).into());
        }
        let source = tunesmith_models::gguf::GgufFile::open(Path::new(model))?;
        tunesmith_models::gguf::export::load_lora(&mut base.model, &source, a)?;
        return Ok(base);
    }
    if let Some(a) = adapter {
        let report = lora::load_adapter(&mut base.model, a)?;
        if !report.ignored.is_empty() {
            eprintln!("note: adapter keys ignored: {}", report.ignored.join(", "));
        }
    }
    Ok(base)
}

fn generation_config(base: &Base, s: &SamplingArgs) -> Result<GenerationConfig> {
    let mut g = GenerationConfig::for_model(&base.model, &base.dir)?;
    if g.eos_token_ids.is_empty() {
        g.eos_token_ids.extend(base.tokenizer.special().eos.map(|t| t.1));
    }
    g.max_new_tokens = s.max_new_tokens;
    g.do_sample = s.temperature > 0.0;
    if g.do_sample {
        g.temperature = s.temperature;
    }
    g.top_k = s.top_k;
    g.top_p = s.top_p;
    g.repetition_penalty = s.repetition_penalty;
    g.seed = s.seed;
    Ok(g)
}

fn complete(base: &Base, prompt: Vec<u32>, g: &GenerationConfig) -> Result<String> {
    let out = generate(&base.model, &[prompt], g, None)?;
    Ok(base.tokenizer.decode(&out.tokens[0], true)?)
}

/// Runs `tunesmith generate`.
pub fn generate_cmd(a: GenerateArgs) -> Result<()> {
    let base = load_causal(&a.model, a.adapter.as_deref())?;
    let g = generation_config(&base, &a.sampling)?;
    if a.chat {
        let t = template::resolve(None, Some(&base.dir))?
            .ok_or_else(|| BadInput(format!("{} has no chat template; drop --chat", a.model)))?;
        let text = t.render(&[json!({"role": "user", "content": a.prompt})], None, true, &Default::default())?.text;
        let ids = base.tokenizer.encode(&text, false)?;
        println!("{}", complete(&base, ids, &g)?);
    } else {
        // Decode prompt and continuation together, so word boundaries come out right.
        let ids = base.tokenizer.encode(&a.prompt, true)?;
        let out = generate(&base.model, std::slice::from_ref(&ids), &g, None)?;
        let all: Vec<u32> = ids.iter().chain(&out.tokens[0]).copied().collect();
        println!("{}", base.tokenizer.decode(&all, true)?);
    }
    Ok(())
}

/// Runs `tunesmith chat`: one line per user turn on stdin; an empty line or EOF ends it.
pub fn chat(a: ChatArgs) -> Result<()> {
    let base = load_causal(&a.model, a.adapter.as_deref())?;
    let g = generation_config(&base, &a.sampling)?;
    let t = template::resolve(a.template.as_deref(), Some(&base.dir))?
        .ok_or_else(|| BadInput(format!("{} has no chat template; pass --template chatml", a.model)))?;
    let mut messages: Vec<Value> = Vec::new();
    if let Some(s) = &a.system {
        messages.push(json!({"role": "system", "content": s}));
    }
    let stdin = std::io::stdin();
    let mut out = std::io::stdout();
    loop {
        write!(out, "> ")?;
        out.flush()?;
        let mut line = String::new();
        if stdin.lock().read_line(&mut line)? == 0 || line.trim().is_empty() {
            break;
        }
        messages.push(json!({"role": "user", "content": line.trim_end()}));
        let text = t.render(&messages, None, true, &Default::default())?.text;
        let reply = complete(&base, base.tokenizer.encode(&text, false)?, &g)?;
        writeln!(out, "{reply}")?;
        messages.push(json!({"role": "assistant", "content": reply}));
    }
    Ok(())
}

/// Options of `tunesmith merge`.
#[derive(Args, Debug)]
pub struct MergeArgs {
    /// The base model (folder, Hub id or GGUF file).
    #[arg(long)]
    model: String,
    /// The LoRA adapter folder.
    #[arg(long)]
    adapter: PathBuf,
    /// Where to write the merged model (HF format).
    #[arg(long)]
    out: PathBuf,
    /// Class names, for sequence-classification adapters (default: from the adapter's head).
    #[arg(long, value_delimiter = ',')]
    labels: Option<Vec<String>>,
}

/// The task of a PEFT adapter (its `task_type`) and, for classifiers, its number of labels.
fn adapter_task(dir: &Path) -> Result<(Task, Option<usize>)> {
    let path = dir.join("adapter_config.json");
    let v: Value = serde_json::from_str(&std::fs::read_to_string(&path).with_context(|| path.display().to_string())?)
        .with_context(|| format!("{}: invalid JSON", path.display()))?;
    let task = match v["task_type"].as_str() {
        Some("SEQ_CLS") => Task::SequenceClassification,
        Some("TOKEN_CLS") => Task::TokenClassification,
        Some("FEATURE_EXTRACTION") => Task::Embedding,
        _ => Task::CausalLm,
    };
    let labels = if task == Task::SequenceClassification {
        let weights = tunesmith_models::weights::Checkpoint::open_files(dir, &[dir.join("adapter_model.safetensors")])?;
        let head = weights.names().find(|n| n.contains("classifier") && n.ends_with("weight")).map(String::from);
        head.and_then(|n| weights.shape(&n).map(|s| s[0]))
    } else {
        None
    };
    Ok((task, labels))
}

/// Runs `tunesmith merge`.
pub fn merge(a: MergeArgs) -> Result<()> {
    let (task, n_labels) = adapter_task(&a.adapter)?;
    let labels = a.labels.clone().or_else(|| n_labels.map(|n| (0..n).map(|i| format!("LABEL_{i}")).collect()));
    let mut base = load_base(&a.model, task, labels, 0)?;
    let report = lora::load_adapter(&mut base.model, &a.adapter)?;
    let merged = lora::merge_and_unload(&mut base.model)?;
    base.model.save_pretrained(&a.out)?;
    tunesmith_train::load::copy_tokenizer_files(&base.dir, &a.out)?;
    println!("merged {merged} adapted layers into {} ({} adapter keys ignored)", a.out.display(), report.ignored.len());
    Ok(())
}

/// Export formats.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum ExportFormat {
    /// The PEFT adapter folder (adapter_config.json + adapter_model.safetensors).
    Peft,
    /// A full model in Hugging Face format (LoRA merged in).
    Hf,
    /// A GGUF file for llama.cpp (LoRA merged in; the run's base must be a GGUF file).
    Gguf,
    /// The LoRA adapter as a llama.cpp LoRA GGUF (`llama-cli --lora`).
    GgufLora,
}

/// Options of `tunesmith export`.
#[derive(Args, Debug)]
pub struct ExportArgs {
    /// A finished run's directory.
    run_dir: PathBuf,
    /// What to export.
    #[arg(long, value_enum)]
    format: ExportFormat,
    /// Weight encoding of `--format gguf`: f32, f16, q8_0 or q4_k_m (llama.cpp's mixture).
    #[arg(long, default_value = "f16")]
    quant: String,
    /// Destination folder (a file for the GGUF formats).
    #[arg(long)]
    out: PathBuf,
}

fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to)?;
    for e in std::fs::read_dir(from)? {
        let e = e?;
        std::fs::copy(e.path(), to.join(e.file_name()))?;
    }
    Ok(())
}

/// Runs `tunesmith export`.
pub fn export(a: ExportArgs) -> Result<()> {
    let fin = a.run_dir.join("final");
    match a.format {
        ExportFormat::Gguf => crate::export_gguf::export(&a.run_dir, false, &a.quant, &a.out)?,
        ExportFormat::GgufLora => crate::export_gguf::export(&a.run_dir, true, &a.quant, &a.out)?,
        ExportFormat::Peft => {
            let adapter = fin.join("adapter");
            if !adapter.is_dir() {
                return Err(BadInput(format!(
                    "{}: no adapter; only LoRA runs export --format peft (use --format hf)",
                    a.run_dir.display()
                ))
                .into());
            }
            copy_dir(&adapter, &a.out)?;
        }
        ExportFormat::Hf => {
            let model = fin.join("model");
            if model.is_dir() {
                copy_dir(&model, &a.out)?;
            } else {
                let manifest: Value =
                    serde_json::from_str(&std::fs::read_to_string(a.run_dir.join("manifest.json")).with_context(
                        || format!("{}: no manifest.json; is this a run directory?", a.run_dir.display()),
                    )?)?;
                let base = manifest["config"]["model"]["path"].as_str().context("manifest lacks config.model.path")?;
                let labels =
                    serde_json::from_value::<Vec<String>>(manifest["labels"].clone()).ok().filter(|l| !l.is_empty());
                merge(MergeArgs { model: base.to_string(), adapter: fin.join("adapter"), out: a.out.clone(), labels })?;
            }
        }
    }
    println!("exported {}", a.out.display());
    Ok(())
}

/// Options of `tunesmith embed`.
#[derive(Args, Debug)]
pub struct EmbedArgs {
    /// An encoder model (folder or Hub id).
    #[arg(long)]
    model: String,
    /// Input: JSONL (the `text` field, or --field) or one text per line.
    #[arg(long)]
    input: PathBuf,
    /// Field of JSONL input.
    #[arg(long, default_value = "text")]
    field: String,
    /// Output JSONL (default: stdout).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Longest input in tokens (longer ones are truncated, and counted).
    #[arg(long, default_value_t = 256)]
    max_length: usize,
    /// Texts per batch.
    #[arg(long, default_value_t = 32)]
    batch_size: usize,
}

/// Runs `tunesmith embed`: sentence embeddings (mean pooling + L2 norm) as JSONL.
pub fn embed(a: EmbedArgs) -> Result<()> {
    if a.max_length < 2 {
        return Err(BadInput(format!("--max-length must be at least 2, got {}", a.max_length)).into());
    }
    let base = load_base(&a.model, Task::Embedding, None, 0)?;
    let col = tunesmith_eval::inputs::Column::read(&a.input)?;
    let texts: Vec<String> =
        (0..col.items.len()).map(|i| col.string(i, Some(&a.field), &[])).collect::<Result<_, _>>()?;
    let mut out: Box<dyn Write> = match &a.out {
        Some(p) => Box::new(std::io::BufWriter::new(std::fs::File::create(p)?)),
        None => Box::new(std::io::stdout().lock()),
    };
    let mut truncated = 0usize;
    for chunk in texts.chunks(a.batch_size.max(1)) {
        let mut rows: Vec<Vec<i64>> = Vec::with_capacity(chunk.len());
        for t in chunk {
            let mut ids: Vec<i64> = base.tokenizer.encode(t, true)?.into_iter().map(i64::from).collect();
            if ids.len() > a.max_length {
                let last = *ids.last().unwrap_or(&0);
                ids.truncate(a.max_length);
                *ids.last_mut().expect("max_length > 0") = last;
                truncated += 1;
            }
            rows.push(ids);
        }
        let len = rows.iter().map(Vec::len).max().unwrap_or(1);
        let mask: Vec<i64> = rows.iter().flat_map(|r| (0..len).map(move |i| i64::from(i < r.len()))).collect();
        let ids: Vec<i64> = rows.iter().flat_map(|r| (0..len).map(move |i| r.get(i).copied().unwrap_or(0))).collect();
        let batch = Batch {
            input_ids: tunesmith_engine::Tensor::from_vec(ids, &[rows.len(), len])?,
            attention_mask: Some(tunesmith_engine::Tensor::from_vec(mask, &[rows.len(), len])?),
            position_ids: None,
            token_type_ids: None,
            segment_ids: None,
        };
        let g = tunesmith_engine::Graph::inference();
        let emb = base.model.forward(&g, &batch, false)?.value().to_vec_f32()?;
        let dim = emb.len() / rows.len();
        for (t, v) in chunk.iter().zip(emb.chunks(dim)) {
            writeln!(out, "{}", json!({"text": t, "embedding": v}))?;
        }
    }
    out.flush()?;
    if truncated > 0 {
        eprintln!(
            "note: {truncated} of {} texts were longer than {} tokens and were truncated",
            texts.len(),
            a.max_length
        );
    }
    Ok(())
}
