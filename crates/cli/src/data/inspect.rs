//! `tunesmith data inspect`: what a dataset is and what training on it would see.

use std::collections::BTreeMap;

use anyhow::Result;
use clap::Args;
use tunesmith_data::encode::{render_chat, EncodeOptions, Encoder, TrainOn};
use tunesmith_data::{Example, Record};

use super::show::{indent, mark};
use super::{describe_file, ReadArgs, TokenizerArgs};

/// Arguments of `data inspect`.
#[derive(Args)]
pub struct InspectArgs {
    /// A file, a folder of data files, or a Hub dataset id.
    pub source: String,
    #[command(flatten)]
    pub read: ReadArgs,
    #[command(flatten)]
    pub tok: TokenizerArgs,
    /// How many examples to show.
    #[arg(short = 'n', long, default_value_t = 3)]
    pub examples: usize,
    /// Which tokens are trained: assistant, last_assistant, all.
    #[arg(long, default_value = "assistant")]
    pub train_on: String,
    /// How many rejected rows to list.
    #[arg(long, default_value_t = 5)]
    pub errors: usize,
}

/// Runs `data inspect`.
pub fn run(a: InspectArgs) -> Result<()> {
    let ds = a.read.load(&a.source)?;
    let train_on: TrainOn = a.train_on.parse()?;
    for f in &ds.files {
        println!("file      {}", describe_file(f));
    }
    println!("schema    {} ({})", ds.schema, if ds.detected { "detected" } else { "given" });
    println!("rows      {} read: {} usable, {} rejected", ds.rows_read(), ds.records.len(), ds.rejected.len());
    if !ds.rejected.is_empty() {
        println!("rejected  {}", ds.reject_counts());
        for e in ds.rejected.iter().take(a.errors) {
            println!("          {e}");
        }
        if ds.rejected.len() > a.errors {
            println!("          ... {} more (tunesmith data validate lists them all)", ds.rejected.len() - a.errors);
        }
    }
    print_shape(&ds.records);
    if !ds.labels.is_empty() {
        let mut counts: BTreeMap<usize, usize> = BTreeMap::new();
        for r in &ds.records {
            if let Some(id) = ds.class_id(r) {
                *counts.entry(id).or_default() += 1;
            }
        }
        let shown: Vec<String> =
            ds.labels.iter().enumerate().map(|(i, l)| format!("{i}={l} ({})", counts.get(&i).unwrap_or(&0))).collect();
        println!("labels    {}", shown.join(", "));
    }
    let setup = a.tok.setup()?;
    let n = a.examples.min(ds.records.len());
    if n == 0 {
        return Ok(());
    }
    match &setup {
        Some(s) => println!(
            "template  {}",
            match (&s.template, &a.tok.template) {
                (None, _) => "none (the model has no chat template; pass --template)".to_string(),
                (Some(_), Some(t)) => t.clone(),
                (Some(_), None) => format!("the model's own ({})", s.dir.display()),
            }
        ),
        None if ds.records.iter().any(|r| !matches!(r.example, Example::Text(_) | Example::Labeled { .. })) => {
            println!(
                "template  {} (no --tokenizer given: spans come from the template alone)",
                a.tok.template.as_deref().unwrap_or("chatml")
            )
        }
        None => {}
    }
    println!("trained   ⟦marked⟧ ({train_on})");
    for r in ds.records.iter().take(n) {
        println!();
        println!("── {}", r.loc);
        match &setup {
            Some(s) => {
                let opts = EncodeOptions { max_length: None, train_on, ..EncodeOptions::default() };
                let enc = Encoder::new(&s.tokenizer, s.template.as_ref(), &ds.labels, opts)?;
                match enc.annotate(r) {
                    Ok(parts) => {
                        for p in parts {
                            if !p.title.is_empty() {
                                println!("[{}]", p.title);
                            }
                            println!("{}", indent(&mark(&p.text, &p.trained)));
                            let target = p.target.map(|t| format!(", {t}")).unwrap_or_default();
                            println!("  ({} tokens, {} trained{target})", p.tokens, p.trained_tokens);
                        }
                    }
                    Err(e) => println!("  rejected: {e}"),
                }
            }
            None => show_without_tokenizer(r, &a.tok, train_on)?,
        }
    }
    Ok(())
}

/// Counts of example kinds, roles and turns.
fn print_shape(records: &[Record]) {
    let mut kinds: BTreeMap<&str, usize> = BTreeMap::new();
    let mut roles: BTreeMap<&str, usize> = BTreeMap::new();
    let mut tools = 0;
    for r in records {
        *kinds.entry(r.example.kind()).or_default() += 1;
        let msgs: Vec<&tunesmith_data::Message> = match &r.example {
            Example::Chat { messages, tools: t } => {
                tools += usize::from(t.is_some());
                messages.iter().collect()
            }
            Example::Preference { prompt, chosen, rejected, .. } => {
                prompt.iter().chain(chosen).chain(rejected).collect()
            }
            Example::Unpaired { prompt, completion, .. } => prompt.iter().chain(completion).collect(),
            _ => Vec::new(),
        };
        for m in msgs {
            *roles.entry(m.role.as_str()).or_default() += 1;
        }
    }
    let fmt = |m: &BTreeMap<&str, usize>| m.iter().map(|(k, v)| format!("{v} {k}")).collect::<Vec<_>>().join(", ");
    println!("examples  {}", fmt(&kinds));
    if !roles.is_empty() {
        println!("messages  {}", fmt(&roles));
    }
    if tools > 0 {
        println!("tools     {tools} examples define tools");
    }
}

fn show_without_tokenizer(r: &Record, tok: &TokenizerArgs, train_on: TrainOn) -> Result<()> {
    let chat = |msgs: &[tunesmith_data::Message], first: usize, tools: Option<&serde_json::Value>| -> Result<()> {
        let (t, _) = tok.template_only()?;
        match render_chat(&t, msgs, first, tools, train_on, &Default::default(), &r.loc) {
            Ok(c) => println!("{}", indent(&mark(&c.text, &c.trained))),
            Err(e) => println!("  rejected: {e}"),
        }
        Ok(())
    };
    match &r.example {
        Example::Chat { messages, tools } => chat(messages, 0, tools.as_ref())?,
        Example::Text(t) => println!("{}", indent(&mark(t, &[(0, t.len())]))),
        Example::Labeled { text, text_pair, label } => {
            println!("{}", indent(text));
            if let Some(p) = text_pair {
                println!("  ‖ {p}");
            }
            println!("  → {label}");
        }
        Example::Preference { prompt, chosen, rejected, tools } => {
            let with = |side: &[tunesmith_data::Message]| prompt.iter().chain(side).cloned().collect::<Vec<_>>();
            println!("[chosen]");
            chat(&with(chosen), prompt.len(), tools.as_ref())?;
            println!("[rejected]");
            chat(&with(rejected), prompt.len(), tools.as_ref())?;
        }
        Example::Unpaired { prompt, completion, desirable, tools } => {
            let all: Vec<_> = prompt.iter().chain(completion).cloned().collect();
            chat(&all, prompt.len(), tools.as_ref())?;
            println!("  ({})", if *desirable { "desirable" } else { "undesirable" });
        }
        Example::Tagged { tokens, tags } => println!("{}", indent(&tunesmith_data::example::tagged_text(tokens, tags))),
        Example::Pair { anchor, positive, negative } => {
            println!("{}", indent(anchor));
            println!("  + {positive}");
            if let Some(n) = negative {
                println!("  - {n}");
            }
        }
    }
    Ok(())
}
