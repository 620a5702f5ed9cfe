//! `tunesmith data ...`: dataset inspection, validation, conversion, splitting and statistics.

mod augment;
mod clean;
mod convert;
mod inspect;
mod select;
mod show;
mod split;
mod stats;
mod validate;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use tunesmith_data::read::{Format, Header, ReadOptions, TextUnit};
use tunesmith_data::schema::{FieldMap, Schema};
use tunesmith_data::template::ChatTemplate;
use tunesmith_data::tokenizer::Tokenizer;
use tunesmith_data::{Dataset, LoadOptions};

/// The data subcommands.
#[derive(Subcommand)]
pub enum DataCommand {
    /// Show the detected format and schema, counts, and examples with trained spans marked.
    Inspect(inspect::InspectArgs),
    /// Check every row; list each bad one with file, line, field and reason.
    Validate(validate::ValidateArgs),
    /// Convert to another format (openai, alpaca, sharegpt, jsonl).
    Convert(convert::ConvertArgs),
    /// Split into train/validation/test files (seeded; stratified for classification).
    Split(split::SplitArgs),
    /// Token-length statistics for a tokenizer and chat template.
    Stats(stats::StatsArgs),
    /// Remove duplicates and near duplicates, filter by length and language, and find likely
    /// label errors (confident learning); every removed row is listed with its reason.
    Clean(clean::CleanArgs),
    /// EDA augmentation of labeled texts (synonym replacement, insertion, swap, deletion),
    /// seeded and counted.
    Augment(augment::AugmentArgs),
    /// Active learning: pick the pool rows to label next (uncertainty or k-center), or simulate
    /// the loop on labeled data.
    Select(select::SelectArgs),
}

/// Runs a data subcommand.
pub fn run(cmd: DataCommand) -> Result<()> {
    match cmd {
        DataCommand::Inspect(a) => inspect::run(a),
        DataCommand::Validate(a) => validate::run(a),
        DataCommand::Convert(a) => convert::run(a),
        DataCommand::Split(a) => split::run(a),
        DataCommand::Stats(a) => stats::run(a),
        DataCommand::Clean(a) => clean::run(a),
        DataCommand::Augment(a) => augment::run(a),
        DataCommand::Select(a) => select::run(a),
    }
}

/// The records of a dataset read with default options; rows left out on read are counted on
/// stderr (`data validate` lists them).
pub fn load_records(reference: &str) -> Result<Vec<tunesmith_data::example::Record>> {
    let ds = Dataset::load(reference, &LoadOptions::default())?;
    if !ds.rejected.is_empty() {
        eprintln!("note: {reference}: {} rows left out (`tunesmith data validate` lists them)", ds.rejected.len());
    }
    Ok(ds.records)
}

/// How to read a dataset: options shared by every data command.
#[derive(Args, Clone, Debug)]
pub struct ReadArgs {
    /// The schema instead of detecting it: classification, regression, text, prompt_completion,
    /// openai, alpaca, sharegpt, preference, openai_dpo, kto.
    #[arg(long)]
    pub schema: Option<String>,
    /// Map a canonical field to a column, e.g. `--field text=sentence` (repeatable).
    #[arg(long = "field", value_name = "CANONICAL=COLUMN")]
    pub fields: Vec<String>,
    /// The file format instead of detecting it: jsonl, json, csv, tsv, parquet, text.
    #[arg(long)]
    pub format: Option<String>,
    /// CSV/TSV header: auto, yes, no.
    #[arg(long, default_value = "auto")]
    pub header: String,
    /// Plain-text unit: auto, line, paragraph, document.
    #[arg(long, default_value = "auto")]
    pub text_unit: String,
    /// For Hub datasets: only the files of this split.
    #[arg(long)]
    pub split_name: Option<String>,
}

impl ReadArgs {
    /// The loader options these arguments describe.
    pub fn load_options(&self) -> Result<LoadOptions> {
        let schema = self.schema.as_deref().map(str::parse::<Schema>).transpose()?;
        let format = match self.format.as_deref() {
            Some(f) => Some(
                Format::parse(f)
                    .with_context(|| format!("--format '{f}' is not one of jsonl, json, csv, tsv, parquet, text"))?,
            ),
            None => None,
        };
        let header = match self.header.as_str() {
            "auto" => Header::Auto,
            "yes" | "true" => Header::Yes,
            "no" | "false" => Header::No,
            other => anyhow::bail!(tunesmith_data::DataError::Invalid(format!(
                "--header '{other}' is not one of auto, yes, no"
            ))),
        };
        let text_unit = match self.text_unit.as_str() {
            "auto" => TextUnit::Auto,
            "line" => TextUnit::Line,
            "paragraph" => TextUnit::Paragraph,
            "document" => TextUnit::Document,
            other => anyhow::bail!(tunesmith_data::DataError::Invalid(format!(
                "--text-unit '{other}' is not one of auto, line, paragraph, document"
            ))),
        };
        Ok(LoadOptions {
            read: ReadOptions { format, header, text_unit, ..ReadOptions::default() },
            schema,
            fields: FieldMap::parse(&self.fields)?,
            split: self.split_name.clone(),
        })
    }

    /// Loads `source` with these options.
    pub fn load(&self, source: &str) -> Result<Dataset> {
        Ok(Dataset::load(source, &self.load_options()?)?)
    }
}

/// Tokenizer and template options.
#[derive(Args, Clone, Debug)]
pub struct TokenizerArgs {
    /// A model folder or Hub id whose tokenizer (and chat template) to use.
    #[arg(long, value_name = "MODEL")]
    pub tokenizer: Option<String>,
    /// Chat template: the model's own (default), chatml, llama3, alpaca, or a .jinja file.
    #[arg(long)]
    pub template: Option<String>,
}

/// A resolved tokenizer with its template.
pub struct TokenizerSetup {
    /// The model folder.
    pub dir: PathBuf,
    /// The tokenizer.
    pub tokenizer: Tokenizer,
    /// The chat template, if the model has one or one was chosen.
    pub template: Option<ChatTemplate>,
}

impl TokenizerArgs {
    /// Loads the tokenizer and template, if `--tokenizer` was given.
    pub fn setup(&self) -> Result<Option<TokenizerSetup>> {
        let Some(model) = &self.tokenizer else { return Ok(None) };
        let dir = tunesmith_models::hub::resolve_model(model)?;
        let tokenizer = Tokenizer::from_dir(&dir)?;
        let template = tunesmith_data::template::resolve(self.template.as_deref(), Some(&dir))?;
        Ok(Some(TokenizerSetup { dir, tokenizer, template }))
    }

    /// The template to show conversations with when there is no tokenizer (ChatML by default).
    pub fn template_only(&self) -> Result<(ChatTemplate, String)> {
        let spec = self.template.as_deref().unwrap_or("chatml");
        let t = tunesmith_data::template::resolve(Some(spec), None)?
            .with_context(|| format!("template '{spec}' did not resolve"))?;
        Ok((t, spec.to_string()))
    }
}

/// A short description of a path's size.
pub fn describe_file(path: &Path) -> String {
    match std::fs::metadata(path) {
        Ok(m) => format!("{} ({})", path.display(), human_bytes(m.len())),
        Err(_) => path.display().to_string(),
    }
}

/// Bytes as B/KB/MB/GB.
pub fn human_bytes(n: u64) -> String {
    let units = ["B", "KB", "MB", "GB", "TB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < units.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", units[u])
    }
}
