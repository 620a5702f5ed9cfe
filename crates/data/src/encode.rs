//! Tokenization of internal records into training sequences: input ids and labels, with −100 on
//! every token that is not trained.
//!
//! Conversations are rendered with the model's chat template and tokenized as
//! `apply_chat_template` does; the tokens of each trained assistant turn (its end-of-turn token
//! included, see [`ChatTemplate::assistant_spans`]) keep their ids as labels. Attention masks and
//! position ids are made when sequences are batched or packed.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

use rayon::prelude::*;
use serde_json::{Map, Value as Json};

use crate::error::{DataError, Loc, Reject, Result, RowError};
use crate::example::{Example, Label, Message, Record, Role};
use crate::template::ChatTemplate;
use crate::tokenizer::Tokenizer;

/// The label of tokens that are not trained (PyTorch's cross-entropy ignore index).
pub const IGNORE: i32 = -100;

/// What to do with sequences longer than the maximum length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Truncation {
    /// Keep the start, cut the end.
    #[default]
    Right,
    /// Keep the end (a sequence-starting BOS is kept), cut the start.
    Left,
    /// Drop the example, counted as [`Reject::TooLong`].
    Drop,
}

impl FromStr for Truncation {
    type Err = DataError;
    fn from_str(s: &str) -> Result<Truncation> {
        match s {
            "right" => Ok(Truncation::Right),
            "left" => Ok(Truncation::Left),
            "drop" => Ok(Truncation::Drop),
            other => Err(DataError::Invalid(format!("truncation '{other}' is not one of right, left, drop"))),
        }
    }
}

impl fmt::Display for Truncation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Truncation::Right => "right",
            Truncation::Left => "left",
            Truncation::Drop => "drop",
        })
    }
}

/// Which tokens of a conversation are trained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TrainOn {
    /// Every assistant turn (except those with weight 0), end-of-turn tokens included.
    #[default]
    Assistant,
    /// Only the last assistant turn.
    LastAssistant,
    /// Everything, prompts included ("train on inputs").
    All,
}

impl FromStr for TrainOn {
    type Err = DataError;
    fn from_str(s: &str) -> Result<TrainOn> {
        match s {
            "assistant" => Ok(TrainOn::Assistant),
            "last_assistant" | "last" => Ok(TrainOn::LastAssistant),
            "all" | "inputs" => Ok(TrainOn::All),
            other => {
                Err(DataError::Invalid(format!("train_on '{other}' is not one of assistant, last_assistant, all")))
            }
        }
    }
}

impl fmt::Display for TrainOn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TrainOn::Assistant => "assistant",
            TrainOn::LastAssistant => "last_assistant",
            TrainOn::All => "all",
        })
    }
}

/// Tokenization settings.
#[derive(Debug, Clone)]
pub struct EncodeOptions {
    /// Longest sequence in tokens; `None` for no limit.
    pub max_length: Option<usize>,
    /// What to do with longer sequences.
    pub truncation: Truncation,
    /// Which conversation tokens are trained.
    pub train_on: TrainOn,
    /// Append the EOS token to plain-text examples (so the model learns to stop).
    pub append_eos: bool,
    /// Extra chat-template variables (e.g. `date_string`).
    pub template_vars: Map<String, Json>,
}

impl Default for EncodeOptions {
    fn default() -> Self {
        EncodeOptions {
            max_length: Some(2048),
            truncation: Truncation::Right,
            train_on: TrainOn::Assistant,
            append_eos: true,
            template_vars: Map::new(),
        }
    }
}

/// One tokenized sequence.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Sequence {
    /// Token ids.
    pub input_ids: Vec<u32>,
    /// Target ids, [`IGNORE`] where not trained (same length as `input_ids`).
    pub labels: Vec<i32>,
    /// Segment ids of text-pair inputs (BERT), else empty.
    pub token_type_ids: Vec<u32>,
}

impl Sequence {
    /// Length in tokens.
    pub fn len(&self) -> usize {
        self.input_ids.len()
    }

    /// Whether it has no tokens.
    pub fn is_empty(&self) -> bool {
        self.input_ids.is_empty()
    }

    /// Number of trained tokens.
    pub fn trained(&self) -> usize {
        self.labels.iter().filter(|&&l| l != IGNORE).count()
    }
}

/// What a sequence is trained to predict besides its labels.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Target {
    /// Nothing (language modelling: the labels are the target).
    None,
    /// A class id.
    Class(u32),
    /// A real value.
    Value(f32),
    /// Whether the completion is desirable (KTO).
    Desirable(bool),
}

/// A tokenized example.
#[derive(Debug, Clone, PartialEq)]
pub struct Encoded {
    /// The sequence (for preference pairs: the chosen one).
    pub sequence: Sequence,
    /// The rejected sequence of a preference pair.
    pub rejected: Option<Sequence>,
    /// The other texts of an embedding pair: the positive, then the hard negative if any.
    pub others: Vec<Sequence>,
    /// The example's target.
    pub target: Target,
    /// Whether truncation cut tokens.
    pub truncated: bool,
    /// Where it came from.
    pub loc: Loc,
}

/// Counts from encoding a dataset.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EncodeStats {
    /// Examples encoded.
    pub kept: usize,
    /// Of those, how many were truncated.
    pub truncated: usize,
    /// Tokens in all kept sequences.
    pub tokens: usize,
    /// Trained tokens in all kept sequences.
    pub trained_tokens: usize,
}

/// Turns records into token sequences for one tokenizer and chat template.
pub struct Encoder<'a> {
    tokenizer: &'a Tokenizer,
    template: Option<&'a ChatTemplate>,
    classes: HashMap<&'a str, u32>,
    opts: EncodeOptions,
    bos: Option<u32>,
    eos: Option<u32>,
}

impl<'a> Encoder<'a> {
    /// An encoder; `template` renders conversations, `labels` names the classes by id.
    pub fn new(
        tokenizer: &'a Tokenizer,
        template: Option<&'a ChatTemplate>,
        labels: &'a [String],
        opts: EncodeOptions,
    ) -> Result<Encoder<'a>> {
        if opts.max_length.is_some_and(|m| m < 2) {
            return Err(DataError::Invalid("max_length must be at least 2 tokens".into()));
        }
        let special = tokenizer.special();
        let classes = labels.iter().enumerate().map(|(i, l)| (l.as_str(), i as u32)).collect();
        Ok(Encoder {
            tokenizer,
            template,
            classes,
            opts,
            bos: special.bos.map(|(_, id)| id),
            eos: special.eos.map(|(_, id)| id),
        })
    }

    /// The settings.
    pub fn options(&self) -> &EncodeOptions {
        &self.opts
    }

    /// Encodes every record in parallel (output in input order); rejected records come back as
    /// errors with their reason.
    pub fn encode_all(&self, records: &[Record]) -> (Vec<Encoded>, Vec<RowError>, EncodeStats) {
        let results: Vec<std::result::Result<Encoded, RowError>> =
            records.par_iter().with_min_len(64).map(|r| self.encode(r)).collect();
        let mut kept = Vec::with_capacity(results.len());
        let mut errors = Vec::new();
        let mut stats = EncodeStats::default();
        for r in results {
            match r {
                Ok(e) => {
                    stats.kept += 1;
                    stats.truncated += usize::from(e.truncated);
                    for s in std::iter::once(&e.sequence).chain(e.rejected.as_ref()).chain(&e.others) {
                        stats.tokens += s.len();
                        stats.trained_tokens += s.trained();
                    }
                    kept.push(e);
                }
                Err(e) => errors.push(e),
            }
        }
        (kept, errors, stats)
    }

    /// Encodes one record.
    pub fn encode(&self, record: &Record) -> std::result::Result<Encoded, RowError> {
        let loc = &record.loc;
        let mut others = Vec::new();
        let (sequence, rejected, target, truncated) = match &record.example {
            Example::Chat { messages, tools } => {
                let (seq, cut) = self.conversation(messages, 0, tools.as_ref(), loc)?;
                (seq, None, Target::None, cut)
            }
            Example::Text(text) => {
                let (seq, cut) = self.text(text, loc)?;
                (seq, None, Target::None, cut)
            }
            Example::Labeled { text, text_pair, label } => {
                let target = match label {
                    Label::Class(c) => Target::Class(*self.classes.get(c.as_str()).ok_or_else(|| {
                        RowError::new(loc, Some("label"), format!("label '{c}' is not in the label map"))
                    })?),
                    Label::Value(v) => Target::Value(*v as f32),
                };
                let (seq, cut) = self.labeled(text, text_pair.as_deref(), loc)?;
                (seq, None, target, cut)
            }
            Example::Preference { prompt, chosen, rejected, tools } => {
                let (c, cut_c) = self.conversation(&concat(prompt, chosen), prompt.len(), tools.as_ref(), loc)?;
                let (r, cut_r) = self.conversation(&concat(prompt, rejected), prompt.len(), tools.as_ref(), loc)?;
                (c, Some(r), Target::None, cut_c || cut_r)
            }
            Example::Unpaired { prompt, completion, desirable, tools } => {
                let (seq, cut) = self.conversation(&concat(prompt, completion), prompt.len(), tools.as_ref(), loc)?;
                (seq, None, Target::Desirable(*desirable), cut)
            }
            Example::Tagged { tokens, tags } => {
                let (ids, words, cut) = self
                    .tokenizer
                    .encode_words(tokens, self.opts.max_length)
                    .map_err(|e| RowError::new(loc, Some("tokens"), e.to_string()))?;
                if cut && self.opts.truncation == Truncation::Drop {
                    return Err(too_long(loc, self.opts.max_length.unwrap_or(0)));
                }
                let ids_of: Vec<i32> = tags
                    .iter()
                    .map(|t| {
                        self.classes.get(t.as_str()).map(|&c| c as i32).ok_or_else(|| {
                            RowError::new(loc, Some("tags"), format!("tag '{t}' is not in the label map"))
                        })
                    })
                    .collect::<std::result::Result<_, _>>()?;
                // The first token of each word carries the word's tag; the word's other tokens
                // and special tokens are not trained (transformers' run_ner default).
                let mut labels = vec![IGNORE; ids.len()];
                for k in 0..ids.len() {
                    if let Some(w) = words[k] {
                        if k == 0 || words[k - 1] != Some(w) {
                            labels[k] = ids_of[w as usize];
                        }
                    }
                }
                if labels.iter().all(|&l| l == IGNORE) {
                    return Err(RowError::new(loc, Some("tokens"), "no word is left to tag after truncation"));
                }
                (Sequence { input_ids: ids, labels, token_type_ids: Vec::new() }, None, Target::None, cut)
            }
            Example::Pair { anchor, positive, negative } => {
                let (a, mut cut) = self.labeled(anchor, None, loc)?;
                for text in std::iter::once(positive).chain(negative) {
                    let (s, c) = self.labeled(text, None, loc)?;
                    cut |= c;
                    others.push(s);
                }
                (a, None, Target::None, cut)
            }
        };
        Ok(Encoded { sequence, rejected, others, target, truncated, loc: loc.clone() })
    }

    /// Renders and tokenizes a conversation; assistant messages at index ≥ `first_trained` may be
    /// trained (preference completions follow their prompt).
    fn conversation(
        &self,
        messages: &[Message],
        first_trained: usize,
        tools: Option<&Json>,
        loc: &Loc,
    ) -> std::result::Result<(Sequence, bool), RowError> {
        let template = self.template.ok_or_else(|| no_template(loc))?;
        let RenderedChat { text, trained } =
            render_chat(template, messages, first_trained, tools, self.opts.train_on, &self.opts.template_vars, loc)?;
        let (ids, offsets) =
            self.tokenizer.encode_with_offsets(&text).map_err(|e| RowError::new(loc, None, e.to_string()))?;
        let labels = token_labels(&ids, &offsets, &trained, self.opts.train_on == TrainOn::All);
        self.finish(Sequence { input_ids: ids, labels, token_type_ids: Vec::new() }, loc)
    }

    /// The example as text with its trained byte ranges (from the trained tokens), one entry per
    /// sequence: what `data inspect` shows. Nothing is truncated here; token counts are given.
    pub fn annotate(&self, record: &Record) -> std::result::Result<Vec<Annotated>, RowError> {
        let loc = &record.loc;
        let chat = |title: &'static str, messages: &[Message], first: usize, tools: Option<&Json>| {
            let template = self.template.ok_or_else(|| no_template(loc))?;
            let r = render_chat(template, messages, first, tools, self.opts.train_on, &self.opts.template_vars, loc)?;
            let (ids, offsets) =
                self.tokenizer.encode_with_offsets(&r.text).map_err(|e| RowError::new(loc, None, e.to_string()))?;
            let labels = token_labels(&ids, &offsets, &r.trained, self.opts.train_on == TrainOn::All);
            let mut trained: Vec<(usize, usize)> = Vec::new();
            for (&(s, e), &l) in offsets.iter().zip(&labels) {
                if l == IGNORE || s == e {
                    continue;
                }
                match trained.last_mut() {
                    Some(last) if last.1 >= s => last.1 = last.1.max(e),
                    _ => trained.push((s, e)),
                }
            }
            let trained_tokens = labels.iter().filter(|&&l| l != IGNORE).count();
            Ok(Annotated { title, text: r.text, trained, tokens: ids.len(), trained_tokens, target: None })
        };
        match &record.example {
            Example::Chat { messages, tools } => Ok(vec![chat("", messages, 0, tools.as_ref())?]),
            Example::Tagged { tokens, tags } => {
                let (ids, _, _) = self
                    .tokenizer
                    .encode_words(tokens, None)
                    .map_err(|e| RowError::new(loc, Some("tokens"), e.to_string()))?;
                Ok(vec![Annotated {
                    title: "",
                    text: crate::example::tagged_text(tokens, tags),
                    trained: Vec::new(),
                    tokens: ids.len(),
                    trained_tokens: tokens.len(),
                    target: None,
                }])
            }
            Example::Pair { anchor, positive, negative } => {
                let titled = [("anchor", Some(anchor)), ("positive", Some(positive)), ("negative", negative.as_ref())];
                titled
                    .into_iter()
                    .filter_map(|(title, text)| text.map(|t| (title, t)))
                    .map(|(title, text)| {
                        let (ids, _, _) = self
                            .tokenizer
                            .encode_for_classification(text, None, None, false)
                            .map_err(|e| RowError::new(loc, Some(title), e.to_string()))?;
                        Ok(Annotated {
                            title,
                            text: text.clone(),
                            trained: Vec::new(),
                            tokens: ids.len(),
                            trained_tokens: 0,
                            target: None,
                        })
                    })
                    .collect()
            }
            Example::Preference { prompt, chosen, rejected, tools } => Ok(vec![
                chat("chosen", &concat(prompt, chosen), prompt.len(), tools.as_ref())?,
                chat("rejected", &concat(prompt, rejected), prompt.len(), tools.as_ref())?,
            ]),
            Example::Unpaired { prompt, completion, desirable, tools } => {
                let mut a = chat("", &concat(prompt, completion), prompt.len(), tools.as_ref())?;
                a.target = Some(if *desirable { "desirable".into() } else { "undesirable".into() });
                Ok(vec![a])
            }
            Example::Text(text) => {
                let ids = self.text_ids(text, loc)?;
                Ok(vec![Annotated {
                    title: "",
                    text: text.clone(),
                    trained: vec![(0, text.len())],
                    tokens: ids.len(),
                    trained_tokens: ids.len(),
                    target: None,
                }])
            }
            Example::Labeled { text, text_pair, label } => {
                let (ids, _, _) = self
                    .tokenizer
                    .encode_for_classification(text, text_pair.as_deref(), None, false)
                    .map_err(|e| RowError::new(loc, Some("text"), e.to_string()))?;
                let shown = match text_pair {
                    Some(p) => format!("{text}\n  ‖ {p}"),
                    None => text.clone(),
                };
                let target = match label {
                    Label::Class(c) => {
                        format!("label {c} (id {})", self.classes.get(c.as_str()).map_or("?".into(), |i| i.to_string()))
                    }
                    Label::Value(v) => format!("value {v}"),
                };
                Ok(vec![Annotated {
                    title: "",
                    text: shown,
                    trained: Vec::new(),
                    tokens: ids.len(),
                    trained_tokens: 0,
                    target: Some(target),
                }])
            }
        }
    }

    /// Ids of a plain text: the tokenizer's special tokens, plus EOS when asked for.
    fn text_ids(&self, text: &str, loc: &Loc) -> std::result::Result<Vec<u32>, RowError> {
        let mut ids = self.tokenizer.encode(text, true).map_err(|e| RowError::new(loc, Some("text"), e.to_string()))?;
        if let (true, Some(eos)) = (self.opts.append_eos, self.eos) {
            if ids.last() != Some(&eos) {
                ids.push(eos);
            }
        }
        Ok(ids)
    }

    fn text(&self, text: &str, loc: &Loc) -> std::result::Result<(Sequence, bool), RowError> {
        let ids = self.text_ids(text, loc)?;
        let labels = ids.iter().map(|&i| i as i32).collect();
        self.finish(Sequence { input_ids: ids, labels, token_type_ids: Vec::new() }, loc)
    }

    fn labeled(&self, text: &str, pair: Option<&str>, loc: &Loc) -> std::result::Result<(Sequence, bool), RowError> {
        let max = self.opts.max_length;
        let from_left = self.opts.truncation == Truncation::Left;
        let (ids, types, cut) = self
            .tokenizer
            .encode_for_classification(text, pair, max, from_left)
            .map_err(|e| RowError::new(loc, Some("text"), e.to_string()))?;
        if cut && self.opts.truncation == Truncation::Drop {
            return Err(too_long(loc, max.unwrap_or(0)));
        }
        let labels = vec![IGNORE; ids.len()];
        let token_type_ids = if pair.is_some() { types } else { Vec::new() };
        Ok((Sequence { input_ids: ids, labels, token_type_ids }, cut))
    }

    /// Applies truncation and rejects sequences left with nothing to train.
    fn finish(&self, mut seq: Sequence, loc: &Loc) -> std::result::Result<(Sequence, bool), RowError> {
        let full = seq.len();
        let mut cut = false;
        if let Some(max) = self.opts.max_length.filter(|&m| full > m) {
            cut = true;
            match self.opts.truncation {
                Truncation::Drop => return Err(too_long(loc, max)),
                Truncation::Right => {
                    seq.input_ids.truncate(max);
                    seq.labels.truncate(max);
                }
                Truncation::Left => {
                    // A BOS that starts the sequence (and is not also a turn marker, as SmolLM's
                    // <|im_start|> is) stays in front.
                    let keep_bos = self.bos.is_some_and(|b| {
                        seq.input_ids.first() == Some(&b) && seq.input_ids.iter().filter(|&&t| t == b).count() == 1
                    });
                    let start = full - max + usize::from(keep_bos);
                    let from = usize::from(keep_bos);
                    seq.input_ids.drain(from..start);
                    seq.labels.drain(from..start);
                }
            }
        }
        if seq.trained() == 0 {
            let why = if cut {
                format!(
                    "all trained tokens were truncated away ({full} tokens, max_length {})",
                    self.opts.max_length.unwrap_or(0)
                )
            } else {
                "nothing to train on: no assistant turn with weight > 0 (use train_on = all to train on prompts)".into()
            };
            return Err(RowError::new(loc, None, why).kind(Reject::NoTrainedTokens));
        }
        Ok((seq, cut))
    }
}

/// An example shown as text, with what is trained (see [`Encoder::annotate`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Annotated {
    /// Which part of a pair this is (`chosen`/`rejected`, `anchor`/`positive`/`negative`), else
    /// empty.
    pub title: &'static str,
    /// The text the model sees (a rendered conversation).
    pub text: String,
    /// Byte ranges of the text covered by trained tokens.
    pub trained: Vec<(usize, usize)>,
    /// Tokens in the sequence (before truncation).
    pub tokens: usize,
    /// Trained tokens.
    pub trained_tokens: usize,
    /// The target, for classification and KTO examples.
    pub target: Option<String>,
}

/// Labels for tokens: their id where the token overlaps a trained range (or everywhere with
/// `all`), else [`IGNORE`].
fn token_labels(ids: &[u32], offsets: &[(usize, usize)], trained: &[(usize, usize)], all: bool) -> Vec<i32> {
    if all {
        return ids.iter().map(|&i| i as i32).collect();
    }
    let mut labels = vec![IGNORE; ids.len()];
    // Offsets and ranges are both in text order: one merge-like pass.
    let mut span = 0;
    for (k, &(s, e)) in offsets.iter().enumerate() {
        while span < trained.len() && trained[span].1 <= s {
            span += 1;
        }
        if span < trained.len() && trained[span].0 < e && s < trained[span].1 {
            labels[k] = ids[k] as i32;
        }
    }
    labels
}

/// A conversation rendered by its chat template, with the byte ranges that are trained.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedChat {
    /// The text.
    pub text: String,
    /// Trained byte ranges, in order (all of the text with [`TrainOn::All`]).
    pub trained: Vec<(usize, usize)>,
}

/// Renders a conversation and finds its trained ranges: the assistant turns at index
/// ≥ `first_trained` whose weight is not 0 (only the last one with [`TrainOn::LastAssistant`]).
pub fn render_chat(
    template: &ChatTemplate,
    messages: &[Message],
    first_trained: usize,
    tools: Option<&Json>,
    train_on: TrainOn,
    vars: &Map<String, Json>,
    loc: &Loc,
) -> std::result::Result<RenderedChat, RowError> {
    let json: Vec<Json> = messages.iter().map(template_message).collect();
    let (text, spans) = template
        .render_with_spans(&json, tools, vars)
        .map_err(|e| RowError::new(loc, None, e.to_string()).kind(Reject::Template))?;
    if train_on == TrainOn::All {
        let all = vec![(0, text.len())];
        return Ok(RenderedChat { text, trained: all });
    }
    let last_assistant = messages.iter().rposition(|m| m.role == Role::Assistant);
    let trained = spans
        .iter()
        .filter(|s| s.message >= first_trained && messages[s.message].weight.is_none_or(|w| w > 0.0))
        .filter(|s| train_on != TrainOn::LastAssistant || Some(s.message) == last_assistant)
        .map(|s| (s.start, s.end))
        .collect();
    Ok(RenderedChat { text, trained })
}

fn no_template(loc: &Loc) -> RowError {
    RowError::new(
        loc,
        None,
        "conversations need a chat template and the tokenizer has none; choose one (chatml, llama3, alpaca, or a .jinja file)",
    )
    .kind(Reject::Template)
}

fn too_long(loc: &Loc, max: usize) -> RowError {
    RowError::new(loc, None, format!("longer than max_length {max}")).kind(Reject::TooLong)
}

fn concat(a: &[Message], b: &[Message]) -> Vec<Message> {
    a.iter().chain(b).cloned().collect()
}

/// A message as chat templates receive it (the train weight is ours, not the template's).
fn template_message(m: &Message) -> Json {
    let mut j = m.to_json();
    if let Json::Object(o) = &mut j {
        o.remove("weight");
    }
    j
}
