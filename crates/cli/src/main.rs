//! `tunesmith`: fine-tune foundation models from one binary.
//!
//! Exit codes: 0 success; 1 the command ran and found problems (rejected rows, a failed run);
//! 2 bad input (unreadable files, invalid options or data). Errors never panic.

mod cv;
mod data;
mod export_gguf;
mod metrics;
mod models;
mod progress;
mod report;
mod robustness;
mod sweep;
mod train;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Fine-tune foundation models: full, partial or parameter-efficient, from a config file.
#[derive(Parser)]
#[command(name = "tunesmith", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Inspect, validate, convert, split and measure datasets.
    #[command(subcommand)]
    Data(data::DataCommand),
    /// Score predictions against references (classification, regression, generation, lm, preference).
    Metrics(metrics::MetricsArgs),
    /// Render a run's HTML and JSON report from its metrics log.
    Report(report::ReportArgs),
    /// Fine-tune a model from a TOML run config.
    Train(train::TrainArgs),
    /// Search hyperparameters: trials of a base run config over a search space (grid, random or
    /// TPE; ASHA or median pruning), resumable and shareable between processes.
    Sweep(sweep::SweepArgs),
    /// Write a commented starter run config.
    Init(train::InitArgs),
    /// Download a model from the Hub into the standard cache and print its folder.
    Fetch(train::FetchArgs),
    /// Evaluate a model (optionally with an adapter) on a dataset with the task's metrics.
    Eval(train::EvalArgs),
    /// Generate text from a prompt (optionally with a LoRA adapter).
    Generate(models::GenerateArgs),
    /// Chat interactively with a model through its chat template.
    Chat(models::ChatArgs),
    /// Merge a LoRA adapter into its base model and save it in HF format.
    Merge(models::MergeArgs),
    /// Export a finished run as a PEFT adapter or a full HF model.
    Export(models::ExportArgs),
    /// Sentence embeddings of texts as JSONL (encoder models).
    Embed(models::EmbedArgs),
}

/// The command found problems it already reported (exit code 1).
#[derive(Debug)]
pub struct Problems(pub String);

impl std::fmt::Display for Problems {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Problems {}

/// The user's input is wrong in a way the message explains (exit code 2).
#[derive(Debug)]
pub struct BadInput(pub String);

impl std::fmt::Display for BadInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BadInput {}

fn exit_code(e: &anyhow::Error) -> u8 {
    if e.downcast_ref::<Problems>().is_some() {
        return 1;
    }
    let bad_input = e.chain().any(|c| {
        c.is::<tunesmith_data::DataError>()
            || c.is::<tunesmith_models::ModelError>()
            || c.is::<tunesmith_eval::EvalError>()
            || c.is::<BadInput>()
            || c.downcast_ref::<tunesmith_train::TrainError>().is_some_and(|t| t.is_bad_input())
            || c.is::<std::io::Error>()
    });
    if bad_input {
        2
    } else {
        1
    }
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    let result = match cli.command {
        Command::Data(cmd) => data::run(cmd),
        Command::Metrics(a) => metrics::run(a),
        Command::Report(a) => report::run(a),
        Command::Train(a) => train::run(a),
        Command::Sweep(a) => sweep::run(a),
        Command::Init(a) => train::init(a),
        Command::Fetch(a) => train::fetch(a),
        Command::Eval(a) => train::eval(a),
        Command::Generate(a) => models::generate_cmd(a),
        Command::Chat(a) => models::chat(a),
        Command::Merge(a) => models::merge(a),
        Command::Export(a) => models::export(a),
        Command::Embed(a) => models::embed(a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(exit_code(&e))
        }
    }
}
