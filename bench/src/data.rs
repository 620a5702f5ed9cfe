//! `bench -- data`: tokenizing and packing chat examples, tunesmith against TRL's SFT
//! preprocessing (bench/data_peer.py), on the same file, tokenizer, template and core count.
//!
//! The corpus is built from the chat datasets in ../shared/data (Alpaca, ShareGPT, instruction
//! and GSM8K rows as OpenAI `messages`), repeated to the requested size. Both sides read the
//! JSONL file, render every conversation with the chat template, tokenize it, mark the assistant
//! tokens (end-of-turn included), truncate to max_length and pack best-fit-decreasing. The totals
//! of tokens and trained tokens must agree.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use tunesmith_data::encode::{EncodeOptions, Encoder};
use tunesmith_data::pack::{best_fit_decreasing, PackedRow};
use tunesmith_data::template;
use tunesmith_data::tokenizer::Tokenizer;
use tunesmith_data::write::{to_format, OutputFormat};
use tunesmith_data::{Dataset, Example, LoadOptions};

use crate::{peer, table, timing};

/// Options of the data suite.
#[derive(clap::Args)]
pub struct Args {
    /// Chat examples in the corpus.
    #[arg(long, default_value_t = 100_000)]
    examples: usize,
    /// Packed row length (and truncation length).
    #[arg(long, default_value_t = 1024)]
    max_length: usize,
    /// Threads for tunesmith and processes for TRL (`dataset_num_proc`).
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Rounds per side, alternating; the fastest of each side is reported.
    #[arg(long, default_value_t = 2)]
    rounds: usize,
    /// The tokenizer (a model folder).
    #[arg(long)]
    tokenizer: Option<PathBuf>,
    /// Skip the TRL side.
    #[arg(long)]
    no_peer: bool,
}

const SOURCES: [&str; 6] = [
    "llamafactory-demo/alpaca_en_demo.json",
    "llamafactory-demo/identity.json",
    "sharegpt-dummy-fastchat/dummy_conversation.json",
    "rasbt-instruction/instruction-data.json",
    "gsm8k/train.jsonl",
    "torchtune-fixtures/alpaca_tiny.json",
];

/// Writes `n` chat rows (`{"messages": [...]}`) cycling through the shared chat datasets.
fn build_corpus(shared: &Path, n: usize, out: &Path) -> Result<()> {
    let mut base: Vec<String> = Vec::new();
    for s in SOURCES {
        let ds = Dataset::load(shared.join("data").join(s).to_str().context("utf-8 path")?, &LoadOptions::default())?;
        for r in &ds.records {
            if !matches!(r.example, Example::Chat { tools: None, .. }) {
                continue;
            }
            let mut plain = r.clone();
            plain.extra.clear();
            let v = to_format(&plain, OutputFormat::OpenAi).map_err(|e| anyhow::anyhow!("{e}"))?;
            base.push(serde_json::to_string(&json!({"messages": v["messages"]}))?);
        }
    }
    if base.is_empty() {
        bail!("no chat rows found under {}", shared.display());
    }
    let mut text = String::new();
    for i in 0..n {
        text.push_str(&base[i % base.len()]);
        text.push('\n');
    }
    std::fs::create_dir_all(out.parent().context("output has a parent")?)?;
    std::fs::write(out, text)?;
    Ok(())
}

/// One tunesmith pass: read, encode, pack. Returns (seconds, tokens, trained tokens, rows).
fn ours(file: &Path, tok: &Tokenizer, tmpl: &template::ChatTemplate, max_length: usize) -> Result<(f64, Value)> {
    let t0 = Instant::now();
    let ds = Dataset::load(file.to_str().context("utf-8 path")?, &LoadOptions::default())?;
    let load_s = t0.elapsed().as_secs_f64();
    let opts = EncodeOptions { max_length: Some(max_length), ..EncodeOptions::default() };
    let enc = Encoder::new(tok, Some(tmpl), &[], opts)?;
    let (encoded, errors, stats) = enc.encode_all(&ds.records);
    if !errors.is_empty() {
        bail!("{} examples rejected; the first: {}", errors.len(), errors[0]);
    }
    let lengths: Vec<usize> = encoded.iter().map(|e| e.sequence.len()).collect();
    let bins = best_fit_decreasing(&lengths, max_length)?;
    let rows: Vec<PackedRow> =
        bins.iter().map(|b| PackedRow::new(&b.iter().map(|&i| &encoded[i].sequence).collect::<Vec<_>>())).collect();
    let total = t0.elapsed().as_secs_f64();
    let packed_tokens: usize = rows.iter().map(PackedRow::len).sum();
    Ok((
        total,
        json!({"load_s": load_s, "total_s": total, "tokens": packed_tokens, "trained_tokens": stats.trained_tokens,
               "rows": rows.len(), "truncated": stats.truncated}),
    ))
}

/// Runs the suite.
pub fn run(a: Args) -> Result<()> {
    let root = peer::repo_root();
    let shared = root.join("../shared");
    let tok_dir = a.tokenizer.clone().unwrap_or_else(|| shared.join("chat-templates/smollm2-135m-instruct"));
    let corpus = root.join(format!("bench/out/data/chats-{}.jsonl", a.examples));
    build_corpus(&shared, a.examples, &corpus)?;
    let gen_template = root.join("bench/data/smollm2-generation.jinja");
    rayon::ThreadPoolBuilder::new().num_threads(a.threads).build_global().ok();
    let tok = Tokenizer::from_dir(&tok_dir)?;
    let own = template::resolve(None, Some(&tok_dir))?.context("the tokenizer has no chat template")?;
    let marked = template::resolve(Some(gen_template.to_str().context("utf-8 path")?), Some(&tok_dir))?
        .context("generation template")?;

    let mut best_own: Option<(f64, Value)> = None;
    let mut best_marked: Option<(f64, Value)> = None;
    let mut best_peer: Option<(f64, Value)> = None;
    let keep = |best: &mut Option<(f64, Value)>, run: (f64, Value)| {
        if best.as_ref().is_none_or(|b| run.0 < b.0) {
            *best = Some(run);
        }
    };
    for round in 0..a.rounds {
        keep(&mut best_own, ours(&corpus, &tok, &own, a.max_length)?);
        keep(&mut best_marked, ours(&corpus, &tok, &marked, a.max_length)?);
        if !a.no_peer {
            let out = peer::run_python(
                &root.join("bench/data_peer.py"),
                &[
                    "--input".into(),
                    corpus.display().to_string(),
                    "--tokenizer".into(),
                    tok_dir.display().to_string(),
                    "--template".into(),
                    gen_template.display().to_string(),
                    "--max-length".into(),
                    a.max_length.to_string(),
                    "--num-proc".into(),
                    a.threads.to_string(),
                ],
            )
            .context("running the TRL side (see bench/README.md to set up its venv)")?;
            let v = peer::last_json(&out)?;
            let t = v["total_s"].as_f64().context("total_s")?;
            keep(&mut best_peer, (t, v));
        }
        eprintln!("round {} of {} done", round + 1, a.rounds);
    }
    let n = a.examples as f64;
    let mut rows = Vec::new();
    let peer_s = best_peer.as_ref().map(|p| p.0);
    for (name, best) in [
        ("tunesmith, model's template (prefix spans)", &best_own),
        ("tunesmith, {% generation %} template", &best_marked),
        ("TRL SFT prep, {% generation %} template", &best_peer),
    ] {
        let Some((s, v)) = best else { continue };
        rows.push(vec![
            name.to_string(),
            format!("{:.0}", n / s),
            format!("{s:.2}"),
            peer_s.map_or("-".into(), |p| format!("{:.2}", p / s)),
            v["tokens"].to_string(),
            v["trained_tokens"].to_string(),
            v["rows"].to_string(),
        ]);
    }
    println!(
        "data: {} chat examples, max_length {}, {} threads/processes, {} rounds (fastest kept); CPU {}",
        a.examples,
        a.max_length,
        a.threads,
        a.rounds,
        timing::cpu_model()
    );
    println!(
        "{}",
        table::markdown(
            &["pipeline", "examples/s", "seconds", "x TRL", "tokens", "trained tokens", "packed rows"],
            &rows
        )
    );
    if let (Some((_, o)), Some((_, p))) = (&best_own, &best_peer) {
        let agree = o["tokens"] == p["tokens"] && o["trained_tokens"] == p["trained_tokens"];
        println!("token agreement with TRL: {}", if agree { "exact" } else { "DIFFERENT" });
        if !agree {
            bail!("tunesmith and TRL disagree on the token totals: {o} vs {p}");
        }
    }
    Ok(())
}
