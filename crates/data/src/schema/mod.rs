//! Schemas: what the fields of a row mean. Detected from the rows' keys (or named), then every
//! row is converted to the internal [`Record`] form; rows that do not fit are rejected with the
//! field at fault, never dropped silently.

mod fields;
mod messages;

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde_json::Value;

pub use fields::Fields;
pub use messages::{function_call_tool_calls, openai_messages, sharegpt_messages, sharegpt_role};

use crate::error::{DataError, Result, RowError};
use crate::example::{Example, Label, Message, Record, Role};
use crate::read::{json_kind, RawRow};
use messages::string_or_messages;

/// The row layouts tunesmith understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Schema {
    /// Text (or a text pair) and a class label.
    Classification,
    /// Text (or a text pair) and a real-valued label.
    Regression,
    /// Plain text for language modelling.
    Text,
    /// `prompt`/`completion` (or `question`/`answer`) as strings or message lists.
    PromptCompletion,
    /// OpenAI chat: `messages` (+ `tools`).
    OpenAi,
    /// Alpaca: instruction / input / output / system / history.
    Alpaca,
    /// ShareGPT: `conversations` of from/value turns (+ `system`, `tools`).
    ShareGpt,
    /// Preference pairs: prompt/chosen/rejected (TRL, explicit or implicit prompt), also in Alpaca
    /// and ShareGPT spellings and `question`/`response_j`/`response_k`.
    Preference,
    /// OpenAI DPO: `input` / `preferred_output` / `non_preferred_output`.
    OpenAiDpo,
    /// Unpaired preference for KTO: prompt/completion (or messages) with a boolean `label`.
    Kto,
    /// Embedding pairs: `anchor` (or `query`) and `positive`, optionally a hard `negative`
    /// (sentence-transformers' column names).
    Pairs,
    /// Token classification: `tokens` (words) and one tag per word in `tags` (or `ner_tags`,
    /// `pos_tags`, `labels`), as names or integer ids.
    TokenClassification,
}

impl Schema {
    /// All schemas, for help texts.
    pub const ALL: [Schema; 12] = [
        Schema::Classification,
        Schema::Regression,
        Schema::Text,
        Schema::PromptCompletion,
        Schema::OpenAi,
        Schema::Alpaca,
        Schema::ShareGpt,
        Schema::Preference,
        Schema::OpenAiDpo,
        Schema::Kto,
        Schema::Pairs,
        Schema::TokenClassification,
    ];

    /// The name used in configs and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Schema::Classification => "classification",
            Schema::Regression => "regression",
            Schema::Text => "text",
            Schema::PromptCompletion => "prompt_completion",
            Schema::OpenAi => "openai",
            Schema::Alpaca => "alpaca",
            Schema::ShareGpt => "sharegpt",
            Schema::Preference => "preference",
            Schema::OpenAiDpo => "openai_dpo",
            Schema::Kto => "kto",
            Schema::Pairs => "pairs",
            Schema::TokenClassification => "token_classification",
        }
    }
}

impl fmt::Display for Schema {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Schema {
    type Err = DataError;
    fn from_str(s: &str) -> Result<Schema> {
        Schema::ALL.iter().copied().find(|x| x.name() == s || (s == "chat" && *x == Schema::OpenAi)).ok_or_else(|| {
            DataError::Invalid(format!(
                "unknown schema '{s}'; use one of {}",
                Schema::ALL.iter().map(|x| x.name()).collect::<Vec<_>>().join(", ")
            ))
        })
    }
}

/// Field names a user can remap (`text=sentence` makes the `sentence` column the text).
#[derive(Debug, Clone, Default)]
pub struct FieldMap {
    /// Canonical name → column name.
    pub map: BTreeMap<String, String>,
}

impl FieldMap {
    /// Parses `canonical=column` pairs.
    pub fn parse(pairs: &[String]) -> Result<FieldMap> {
        let mut map = BTreeMap::new();
        for p in pairs {
            let (k, v) = p
                .split_once('=')
                .ok_or_else(|| DataError::Invalid(format!("field mapping '{p}' must look like canonical=column")))?;
            map.insert(k.trim().to_string(), v.trim().to_string());
        }
        Ok(FieldMap { map })
    }

    pub(crate) fn apply(&self, row: &mut RawRow) {
        for (canonical, column) in &self.map {
            if let Some(v) = row.value.remove(column) {
                row.value.insert(canonical.clone(), v);
            }
        }
    }
}

const TEXT_KEYS: [&str; 7] = ["text", "sentence", "sentence1", "premise", "content", "review", "document"];
const PAIR_KEYS: [&str; 5] = ["text_pair", "sentence2", "hypothesis", "question2", "text2"];
const LABEL_KEYS: [&str; 5] = ["label", "labels", "class", "category", "target"];
const TAG_KEYS: [&str; 4] = ["tags", "ner_tags", "pos_tags", "labels"];

fn has(row: &RawRow, k: &str) -> bool {
    row.value.get(k).is_some_and(|v| !v.is_null())
}

fn detect_row(row: &RawRow) -> Option<Schema> {
    let h = |k| has(row, k);
    if h("input") && h("preferred_output") && h("non_preferred_output") {
        return Some(Schema::OpenAiDpo);
    }
    if h("chosen") && h("rejected") {
        return Some(Schema::Preference);
    }
    if h("question") && h("response_j") && h("response_k") {
        return Some(Schema::Preference);
    }
    let bool_label = row.value.get("label").is_some_and(Value::is_boolean);
    if bool_label && (h("messages") || (h("prompt") && h("completion"))) {
        return Some(Schema::Kto);
    }
    if row.value.get("tokens").is_some_and(Value::is_array) && TAG_KEYS.iter().any(|k| h(k)) {
        return Some(Schema::TokenClassification);
    }
    if (h("anchor") || h("query")) && h("positive") {
        return Some(Schema::Pairs);
    }
    if h("messages") {
        return Some(Schema::OpenAi);
    }
    if h("conversations") {
        return Some(Schema::ShareGpt);
    }
    if h("instruction") && h("output") {
        return Some(Schema::Alpaca);
    }
    if (h("prompt") && h("completion")) || (h("question") && h("answer")) {
        return Some(Schema::PromptCompletion);
    }
    let label = LABEL_KEYS.iter().find(|k| h(k));
    let text = TEXT_KEYS.iter().any(|k| h(k));
    if let (Some(l), true) = (label, text) {
        let v = &row.value[*l];
        let real = v.as_f64().is_some_and(|x| x.fract() != 0.0)
            || v.as_str().and_then(|s| s.trim().parse::<f64>().ok()).is_some_and(|x| x.fract() != 0.0);
        return Some(if real { Schema::Regression } else { Schema::Classification });
    }
    if text && row.value.len() <= 3 {
        return Some(Schema::Text);
    }
    None
}

/// For header-less two-column files (`column_0`, `column_1`): the column with few distinct short
/// values is the label, the other the text.
fn headerless_classification(rows: &[RawRow]) -> Option<(String, String)> {
    let first = rows.first()?;
    if first.value.len() != 2 || !first.value.contains_key("column_0") || !first.value.contains_key("column_1") {
        return None;
    }
    let distinct = |k: &str| {
        let mut s: Vec<&str> = rows.iter().take(5000).filter_map(|r| r.value.get(k).and_then(Value::as_str)).collect();
        s.sort();
        s.dedup();
        (s.len(), s.iter().map(|x| x.len()).max().unwrap_or(0))
    };
    let (n0, len0) = distinct("column_0");
    let (n1, len1) = distinct("column_1");
    if n0 <= 50 && len0 <= 32 && n1 > n0 {
        Some(("column_0".into(), "column_1".into()))
    } else if n1 <= 50 && len1 <= 32 && n0 > n1 {
        Some(("column_1".into(), "column_0".into()))
    } else {
        None
    }
}

/// Detects the schema of a set of rows (the majority vote of the first rows, which must agree).
pub fn detect(rows: &[RawRow]) -> Result<Schema> {
    if headerless_classification(rows).is_some() {
        return Ok(Schema::Classification);
    }
    let mut votes: BTreeMap<&'static str, (usize, Schema)> = BTreeMap::new();
    let sample: Vec<&RawRow> = rows.iter().take(200).collect();
    for r in &sample {
        if let Some(s) = detect_row(r) {
            votes.entry(s.name()).or_insert((0, s)).0 += 1;
        }
    }
    let best = votes.values().max_by_key(|(n, _)| *n).copied();
    match best {
        Some((n, s)) if n * 2 > sample.len() => {
            // Regression only if every sampled labeled row looks real-valued.
            if s == Schema::Classification && votes.contains_key("regression") {
                return Ok(Schema::Regression);
            }
            Ok(s)
        }
        _ => {
            let keys: Vec<String> = rows.first().map(|r| r.value.keys().cloned().collect()).unwrap_or_default();
            Err(DataError::Schema(format!(
                "cannot tell the schema from the fields [{}]; name it with --schema ({}) and map columns with --field canonical=column",
                keys.join(", "),
                Schema::ALL.iter().map(|x| x.name()).collect::<Vec<_>>().join(", ")
            )))
        }
    }
}

/// Converts raw rows to records; rejected rows come back as errors.
pub fn convert(rows: Vec<RawRow>, schema: Schema, fields: &FieldMap) -> (Vec<Record>, Vec<RowError>) {
    let headerless =
        if schema == Schema::Classification && fields.map.is_empty() { headerless_classification(&rows) } else { None };
    let mut records = Vec::with_capacity(rows.len());
    let mut errors = Vec::new();
    for mut row in rows {
        fields.apply(&mut row);
        if let Some((label, text)) = &headerless {
            if let Some(v) = row.value.remove(label) {
                row.value.insert("label".into(), v);
            }
            if let Some(v) = row.value.remove(text) {
                row.value.insert("text".into(), v);
            }
        }
        let mut f = Fields::new(row);
        match convert_row(&mut f, schema) {
            Ok(example) => {
                let loc = f.loc.clone();
                records.push(Record { example, extra: f.into_extra(), loc });
            }
            Err(e) => errors.push(e),
        }
    }
    (records, errors)
}

fn convert_row(f: &mut Fields, schema: Schema) -> std::result::Result<Example, RowError> {
    match schema {
        Schema::Classification | Schema::Regression => labeled(f, schema == Schema::Regression),
        Schema::Text => {
            let (k, v) = f.take_any(&TEXT_KEYS).ok_or_else(|| f.err("text", "is missing"))?;
            match v {
                Value::String(s) if !s.trim().is_empty() => Ok(Example::Text(s)),
                Value::String(_) => Err(f.err(&k, "is empty")),
                other => Err(f.err(&k, format!("expected a string, found {}", json_kind(&other)))),
            }
        }
        Schema::PromptCompletion => {
            let (pk, p) = f.take_any(&["prompt", "question"]).ok_or_else(|| f.err("prompt", "is missing"))?;
            let (ck, c) = f.take_any(&["completion", "answer"]).ok_or_else(|| f.err("completion", "is missing"))?;
            let mut messages = string_or_messages(f, &pk, &p, Role::User)?;
            let completion = string_or_messages(f, &ck, &c, Role::Assistant)?;
            if !completion.iter().any(|m| m.role == Role::Assistant) {
                return Err(f.err(&ck, "has no assistant message"));
            }
            messages.extend(completion);
            let tools = take_tools(f)?;
            Ok(Example::Chat { messages, tools })
        }
        Schema::OpenAi => {
            let v = f.take("messages").ok_or_else(|| f.err("messages", "is missing"))?;
            let messages = openai_messages(f, "messages", &v)?;
            check_conversation(f, "messages", &messages)?;
            let tools = take_tools(f)?;
            Ok(Example::Chat { messages, tools })
        }
        Schema::ShareGpt => {
            let v = f.take("conversations").ok_or_else(|| f.err("conversations", "is missing"))?;
            let mut messages = sharegpt_messages(f, "conversations", &v)?;
            if let Some(system) = f.take_str("system")? {
                if !system.trim().is_empty() && messages.first().is_none_or(|m| m.role != Role::System) {
                    messages.insert(0, Message::new(Role::System, system));
                }
            }
            check_conversation(f, "conversations", &messages)?;
            let tools = take_tools(f)?;
            Ok(Example::Chat { messages, tools })
        }
        Schema::Alpaca => {
            let messages = alpaca_prompt(f)?;
            let output = f.take_nonempty("output")?;
            let mut messages = messages;
            messages.push(Message::new(Role::Assistant, output));
            let tools = take_tools(f)?;
            Ok(Example::Chat { messages, tools })
        }
        Schema::Preference => preference(f),
        Schema::TokenClassification => tagged(f),
        Schema::Pairs => {
            let text = |f: &mut Fields, keys: &[&str]| -> std::result::Result<Option<(String, String)>, RowError> {
                match f.take_any(keys) {
                    None | Some((_, Value::Null)) => Ok(None),
                    Some((k, Value::String(s))) if !s.trim().is_empty() => Ok(Some((k, s))),
                    Some((k, Value::String(_))) => Err(f.err(&k, "is empty")),
                    Some((k, other)) => Err(f.err(&k, format!("expected a string, found {}", json_kind(&other)))),
                }
            };
            let (_, anchor) = text(f, &["anchor", "query"])?.ok_or_else(|| f.err("anchor", "is missing"))?;
            let (_, positive) = text(f, &["positive"])?.ok_or_else(|| f.err("positive", "is missing"))?;
            let negative = text(f, &["negative"])?.map(|(_, n)| n);
            Ok(Example::Pair { anchor, positive, negative })
        }
        Schema::OpenAiDpo => {
            let input = f.take("input").ok_or_else(|| f.err("input", "is missing"))?;
            let (prompt, tools) = match &input {
                Value::Object(o) => {
                    let msgs = o.get("messages").ok_or_else(|| f.err("input.messages", "is missing"))?;
                    let tools = match o.get("tools") {
                        Some(t) => fields::parse_tools(f, "input.tools", t.clone())?,
                        None => None,
                    };
                    (openai_messages(f, "input.messages", msgs)?, tools)
                }
                other => {
                    return Err(f.err("input", format!("expected an object with messages, found {}", json_kind(other))))
                }
            };
            let chosen = f.take("preferred_output").ok_or_else(|| f.err("preferred_output", "is missing"))?;
            let rejected = f.take("non_preferred_output").ok_or_else(|| f.err("non_preferred_output", "is missing"))?;
            Ok(Example::Preference {
                prompt,
                chosen: openai_messages(f, "preferred_output", &chosen)?,
                rejected: openai_messages(f, "non_preferred_output", &rejected)?,
                tools,
            })
        }
        Schema::Kto => {
            let label = f.take("label").ok_or_else(|| f.err("label", "is missing"))?;
            let desirable = match label {
                Value::Bool(b) => b,
                Value::String(s) if s == "true" || s == "false" => s == "true",
                other => return Err(f.err("label", format!("must be true or false, found {other}"))),
            };
            let tools = take_tools(f)?;
            if let Some(v) = f.take("messages") {
                let mut msgs = openai_messages(f, "messages", &v)?;
                let split = msgs.iter().rposition(|m| m.role != Role::Assistant).map_or(0, |i| i + 1);
                if split >= msgs.len() {
                    return Err(f.err("messages", "must end with an assistant message (the judged completion)"));
                }
                let completion = msgs.split_off(split);
                return Ok(Example::Unpaired { prompt: msgs, completion, desirable, tools });
            }
            let p = f.take("prompt").ok_or_else(|| f.err("prompt", "is missing"))?;
            let c = f.take("completion").ok_or_else(|| f.err("completion", "is missing"))?;
            Ok(Example::Unpaired {
                prompt: string_or_messages(f, "prompt", &p, Role::User)?,
                completion: string_or_messages(f, "completion", &c, Role::Assistant)?,
                desirable,
                tools,
            })
        }
    }
}

fn take_tools(f: &mut Fields) -> std::result::Result<Option<Value>, RowError> {
    match f.take("tools") {
        Some(v) => fields::parse_tools(f, "tools", v),
        None => Ok(None),
    }
}

/// A conversation must contain at least one assistant turn to learn from.
fn check_conversation(f: &Fields, field: &str, messages: &[Message]) -> std::result::Result<(), RowError> {
    if messages.is_empty() {
        return Err(f.err(field, "has no messages"));
    }
    if !messages.iter().any(|m| m.role == Role::Assistant) {
        return Err(f.err(field, "has no assistant message to train on"));
    }
    Ok(())
}

/// The Alpaca prompt: system, history turns, then instruction + "\n" + input (LLaMA-Factory's join).
fn alpaca_prompt(f: &mut Fields) -> std::result::Result<Vec<Message>, RowError> {
    let instruction = f.take_nonempty("instruction")?;
    let input = f.take_str("input")?.unwrap_or_default();
    let system = f.take_str("system")?;
    let mut messages = Vec::new();
    if let Some(s) = system.filter(|s| !s.trim().is_empty()) {
        messages.push(Message::new(Role::System, s));
    }
    if let Some(h) = f.take("history") {
        let Value::Array(turns) = h else {
            return Err(f.err("history", "must be a list of [instruction, response] pairs"));
        };
        for (i, t) in turns.iter().enumerate() {
            match t.as_array().map(|a| a.as_slice()) {
                Some([Value::String(q), Value::String(a)]) => {
                    messages.push(Message::new(Role::User, q.clone()));
                    messages.push(Message::new(Role::Assistant, a.clone()));
                }
                _ => return Err(f.err(&format!("history[{i}]"), "must be a pair of strings [instruction, response]")),
            }
        }
    }
    let user = if input.is_empty() { instruction } else { format!("{instruction}\n{input}") };
    messages.push(Message::new(Role::User, user));
    Ok(messages)
}

fn labeled(f: &mut Fields, regression: bool) -> std::result::Result<Example, RowError> {
    let (tk, text) = f.take_any(&TEXT_KEYS).ok_or_else(|| f.err("text", "is missing"))?;
    let text = match text {
        Value::String(s) if !s.trim().is_empty() => s,
        Value::String(_) => return Err(f.err(&tk, "is empty")),
        other => return Err(f.err(&tk, format!("expected a string, found {}", json_kind(&other)))),
    };
    let pair = match f.take_any(&PAIR_KEYS) {
        Some((k, Value::String(s))) => {
            if s.trim().is_empty() {
                return Err(f.err(&k, "is empty"));
            }
            Some(s)
        }
        Some((k, other)) => return Err(f.err(&k, format!("expected a string, found {}", json_kind(&other)))),
        None => None,
    };
    let (lk, label) = f.take_any(&LABEL_KEYS).ok_or_else(|| f.err("label", "is missing"))?;
    let label = if regression {
        let x = match &label {
            Value::Number(n) => n.as_f64(),
            Value::String(s) => s.trim().parse::<f64>().ok(),
            _ => None,
        };
        Label::Value(
            x.filter(|x| x.is_finite()).ok_or_else(|| f.err(&lk, format!("expected a number, found {label}")))?,
        )
    } else {
        match label {
            Value::String(s) if !s.trim().is_empty() => Label::Class(s.trim().to_string()),
            Value::Number(n) if n.as_i64().is_some() => Label::Class(n.to_string()),
            Value::Bool(b) => Label::Class(b.to_string()),
            other => return Err(f.err(&lk, format!("expected a class name or integer, found {other}"))),
        }
    };
    Ok(Example::Labeled { text, text_pair: pair, label })
}

fn preference(f: &mut Fields) -> std::result::Result<Example, RowError> {
    let tools = take_tools(f)?;
    // question / response_j (preferred) / response_k
    if f.has("response_j") && f.has("response_k") {
        let q = f.take_nonempty("question")?;
        let j = f.take_nonempty("response_j")?;
        let k = f.take_nonempty("response_k")?;
        return Ok(Example::Preference {
            prompt: vec![Message::new(Role::User, q)],
            chosen: vec![Message::new(Role::Assistant, j)],
            rejected: vec![Message::new(Role::Assistant, k)],
            tools,
        });
    }
    // Alpaca-style preference (instruction/input + chosen/rejected strings).
    let prompt: Option<Vec<Message>> = if f.has("instruction") {
        let p = alpaca_prompt(f)?;
        // An Alpaca `output` beside chosen/rejected is kept as an extra field.
        Some(p)
    } else if f.has("conversations") {
        let v = f.take("conversations").unwrap_or(Value::Null);
        let mut msgs = sharegpt_messages(f, "conversations", &v)?;
        if let Some(system) = f.take_str("system")? {
            if !system.trim().is_empty() {
                msgs.insert(0, Message::new(Role::System, system));
            }
        }
        Some(msgs)
    } else if let Some(p) = f.take("prompt") {
        Some(string_or_messages(f, "prompt", &p, Role::User)?)
    } else {
        None
    };
    let side = |f: &mut Fields, key: &str| -> std::result::Result<Vec<Message>, RowError> {
        let v = f.take(key).ok_or_else(|| f.err(key, "is missing"))?;
        match &v {
            Value::Object(o) if o.contains_key("from") => sharegpt_messages(f, key, &v),
            _ => string_or_messages(f, key, &v, Role::Assistant),
        }
    };
    let mut chosen = side(f, "chosen")?;
    let mut rejected = side(f, "rejected")?;
    let prompt = match prompt {
        Some(p) => p,
        None => {
            // Implicit prompt: the longest common prefix of the two conversations.
            let n = chosen.iter().zip(&rejected).take_while(|(a, b)| a == b).count();
            if n == 0 {
                return Err(f.err("prompt", "is missing and chosen/rejected share no prompt messages"));
            }
            let prompt: Vec<Message> = chosen.drain(..n).collect();
            rejected.drain(..n);
            prompt
        }
    };
    for (key, side) in [("chosen", &chosen), ("rejected", &rejected)] {
        if !side.iter().any(|m| m.role == Role::Assistant) {
            return Err(f.err(key, "has no assistant response"));
        }
    }
    if chosen == rejected {
        return Err(f.err("rejected", "is identical to chosen; the pair states no preference"));
    }
    Ok(Example::Preference { prompt, chosen, rejected, tools })
}

/// Words and their tags; integer tags (HF datasets' class ids) become their decimal names.
fn tagged(f: &mut Fields) -> std::result::Result<Example, RowError> {
    let words = |f: &Fields, key: &str, v: Value, ints: bool| -> std::result::Result<Vec<String>, RowError> {
        let Value::Array(items) = v else {
            return Err(f.err(key, format!("expected a list, found {}", json_kind(&v))));
        };
        items
            .into_iter()
            .enumerate()
            .map(|(i, x)| match x {
                Value::String(s) if !s.is_empty() => Ok(s),
                Value::Number(n) if ints && n.is_i64() => Ok(n.to_string()),
                other => Err(f.err(
                    key,
                    format!(
                        "item {i}: expected a non-empty {}, found {}",
                        if ints { "tag" } else { "string" },
                        json_kind(&other)
                    ),
                )),
            })
            .collect()
    };
    let v = f.take("tokens").ok_or_else(|| f.err("tokens", "is missing"))?;
    let tokens = words(f, "tokens", v, false)?;
    let (key, v) = f.take_any(&TAG_KEYS).ok_or_else(|| f.err("tags", "is missing"))?;
    let tags = words(f, &key, v, true)?;
    if tokens.is_empty() {
        return Err(f.err("tokens", "is empty"));
    }
    if tags.len() != tokens.len() {
        return Err(f.err(&key, format!("has {} tags for {} tokens; give one tag per token", tags.len(), tokens.len())));
    }
    Ok(Example::Tagged { tokens, tags })
}

/// The label ↔ id map of classification records (class labels, or the tags of tagged
/// words): integer labels in numeric order, otherwise names in sorted order.
pub fn label_map(records: &[Record]) -> Vec<String> {
    let mut names: Vec<String> = records
        .iter()
        .flat_map(|r| match &r.example {
            Example::Labeled { label: Label::Class(c), .. } => vec![c.clone()],
            Example::Tagged { tags, .. } => tags.clone(),
            _ => Vec::new(),
        })
        .collect();
    names.sort();
    names.dedup();
    if names.iter().all(|n| n.parse::<i64>().is_ok()) {
        names.sort_by_key(|n| n.parse::<i64>().unwrap_or(0));
    }
    names
}
