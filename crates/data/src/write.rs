//! Writing records in the common formats: OpenAI (chat `messages`, DPO
//! `input`/`preferred_output`), Alpaca, ShareGPT, and tunesmith's canonical JSON Lines. The
//! records' extra source fields are written back, so conversions lose nothing.

use std::io::Write;
use std::path::Path;

use serde_json::{json, Map, Value};

use crate::error::{DataError, Result, RowError};
use crate::example::{Example, Label, Message, Record, Role};
use crate::schema::sharegpt_role;

/// A target format of `data convert`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputFormat {
    /// OpenAI fine-tuning layouts.
    OpenAi,
    /// Alpaca instruction/input/output.
    Alpaca,
    /// ShareGPT conversations.
    ShareGpt,
    /// Canonical layouts (messages, text, text+label, prompt/chosen/rejected, prompt/completion/label).
    Jsonl,
}

impl OutputFormat {
    /// Parses `openai`, `alpaca`, `sharegpt` or `jsonl`.
    pub fn parse(s: &str) -> Result<OutputFormat> {
        Ok(match s {
            "openai" => OutputFormat::OpenAi,
            "alpaca" => OutputFormat::Alpaca,
            "sharegpt" => OutputFormat::ShareGpt,
            "jsonl" => OutputFormat::Jsonl,
            other => {
                return Err(DataError::Invalid(format!(
                    "unknown output format '{other}'; use openai, alpaca, sharegpt or jsonl"
                )))
            }
        })
    }
}

fn messages_json(ms: &[Message]) -> Value {
    Value::Array(ms.iter().map(Message::to_json).collect())
}

fn with_extra(mut m: Map<String, Value>, extra: &Map<String, Value>) -> Value {
    for (k, v) in extra {
        m.entry(k.clone()).or_insert_with(|| v.clone());
    }
    Value::Object(m)
}

fn labeled_json(text: &str, pair: &Option<String>, label: &Label) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("text".into(), Value::String(text.into()));
    if let Some(p) = pair {
        m.insert("text_pair".into(), Value::String(p.clone()));
    }
    m.insert(
        "label".into(),
        match label {
            Label::Class(c) => Value::String(c.clone()),
            Label::Value(x) => json!(x),
        },
    );
    m
}

/// The record in the target format, or why it does not fit.
pub fn to_format(r: &Record, format: OutputFormat) -> std::result::Result<Value, RowError> {
    let err = |why: String| RowError::new(&r.loc, None, why);
    let mut m = Map::new();
    match (format, &r.example) {
        (_, Example::Text(t)) if format != OutputFormat::Alpaca && format != OutputFormat::ShareGpt => {
            m.insert("text".into(), Value::String(t.clone()));
        }
        (OutputFormat::Jsonl, Example::Tagged { tokens, tags }) => {
            m.insert("tokens".into(), json!(tokens));
            m.insert("tags".into(), json!(tags));
        }
        (OutputFormat::Jsonl, Example::Pair { anchor, positive, negative }) => {
            m.insert("anchor".into(), Value::String(anchor.clone()));
            m.insert("positive".into(), Value::String(positive.clone()));
            if let Some(n) = negative {
                m.insert("negative".into(), Value::String(n.clone()));
            }
        }
        (OutputFormat::Jsonl | OutputFormat::OpenAi, Example::Labeled { text, text_pair, label }) => {
            m = labeled_json(text, text_pair, label);
        }
        (OutputFormat::Jsonl | OutputFormat::OpenAi, Example::Chat { messages, tools }) => {
            m.insert("messages".into(), messages_json(messages));
            if let Some(t) = tools {
                m.insert("tools".into(), t.clone());
            }
        }
        (OutputFormat::Jsonl, Example::Preference { prompt, chosen, rejected, tools }) => {
            m.insert("prompt".into(), messages_json(prompt));
            m.insert("chosen".into(), messages_json(chosen));
            m.insert("rejected".into(), messages_json(rejected));
            if let Some(t) = tools {
                m.insert("tools".into(), t.clone());
            }
        }
        (OutputFormat::OpenAi, Example::Preference { prompt, chosen, rejected, tools }) => {
            let mut input = Map::new();
            input.insert("messages".into(), messages_json(prompt));
            if let Some(t) = tools {
                input.insert("tools".into(), t.clone());
            }
            m.insert("input".into(), Value::Object(input));
            m.insert("preferred_output".into(), messages_json(chosen));
            m.insert("non_preferred_output".into(), messages_json(rejected));
        }
        (OutputFormat::Jsonl | OutputFormat::OpenAi, Example::Unpaired { prompt, completion, desirable, tools }) => {
            m.insert("prompt".into(), messages_json(prompt));
            m.insert("completion".into(), messages_json(completion));
            m.insert("label".into(), Value::Bool(*desirable));
            if let Some(t) = tools {
                m.insert("tools".into(), t.clone());
            }
        }
        (OutputFormat::Alpaca, Example::Chat { messages, tools }) => {
            alpaca(&mut m, messages).map_err(err)?;
            if let Some(t) = tools {
                m.insert("tools".into(), Value::String(t.to_string()));
            }
        }
        (OutputFormat::Alpaca, Example::Preference { prompt, chosen, rejected, tools }) => {
            let mut with_reply = prompt.clone();
            let reply = |side: &[Message]| -> std::result::Result<String, String> {
                match side {
                    [m] if m.role == Role::Assistant && m.tool_calls.is_none() => Ok(m.content.clone()),
                    _ => Err("Alpaca preference rows hold one plain assistant reply per side".into()),
                }
            };
            let c = reply(chosen).map_err(err)?;
            let rj = reply(rejected).map_err(err)?;
            with_reply.push(Message::new(Role::Assistant, c.clone()));
            alpaca(&mut m, &with_reply).map_err(err)?;
            m.remove("output");
            m.insert("chosen".into(), Value::String(c));
            m.insert("rejected".into(), Value::String(rj));
            if let Some(t) = tools {
                m.insert("tools".into(), Value::String(t.to_string()));
            }
        }
        (OutputFormat::ShareGpt, Example::Chat { messages, tools }) => {
            m.insert("conversations".into(), sharegpt_turns(messages).map_err(err)?);
            if let Some(t) = tools {
                m.insert("tools".into(), Value::String(t.to_string()));
            }
        }
        (OutputFormat::ShareGpt, Example::Preference { prompt, chosen, rejected, tools }) => {
            let one = |side: &[Message]| -> std::result::Result<Value, String> {
                match side {
                    [m] => sharegpt_turn(m),
                    _ => Err("ShareGPT preference rows hold one reply per side".into()),
                }
            };
            m.insert("conversations".into(), sharegpt_turns(prompt).map_err(err)?);
            m.insert("chosen".into(), one(chosen).map_err(err)?);
            m.insert("rejected".into(), one(rejected).map_err(err)?);
            if let Some(t) = tools {
                m.insert("tools".into(), Value::String(t.to_string()));
            }
        }
        (f, e) => {
            return Err(err(format!(
                "{} examples have no {} form; convert them to jsonl",
                e.kind(),
                match f {
                    OutputFormat::OpenAi => "OpenAI",
                    OutputFormat::Alpaca => "Alpaca",
                    OutputFormat::ShareGpt => "ShareGPT",
                    OutputFormat::Jsonl => "JSON Lines",
                }
            )))
        }
    }
    Ok(with_extra(m, &r.extra))
}

/// ShareGPT turns, refusing what the format cannot hold (train weights, message names, tool
/// call ids, and tool calls other than a `function_call` turn's own JSON text).
fn sharegpt_turns(ms: &[Message]) -> std::result::Result<Value, String> {
    ms.iter().map(sharegpt_turn).collect::<std::result::Result<Vec<_>, _>>().map(Value::Array)
}

fn sharegpt_turn(m: &Message) -> std::result::Result<Value, String> {
    if m.weight.is_some() || m.name.is_some() || m.tool_call_id.is_some() {
        return Err(
            "ShareGPT turns cannot hold train weights, names or tool call ids; convert to openai or jsonl".into()
        );
    }
    if let Some(calls) = &m.tool_calls {
        let reparsed = crate::schema::function_call_tool_calls(&m.content);
        if reparsed.as_ref() != Some(calls) {
            return Err("ShareGPT function_call turns hold the calls as JSON text; this message's tool calls differ from its text; convert to openai or jsonl".into());
        }
    }
    Ok(json!({"from": sharegpt_role(m), "value": m.content}))
}

fn alpaca(m: &mut Map<String, Value>, messages: &[Message]) -> std::result::Result<(), String> {
    let mut rest: &[Message] = messages;
    if let Some(first) = rest.first().filter(|m| m.role == Role::System) {
        m.insert("system".into(), Value::String(first.content.clone()));
        rest = &rest[1..];
    }
    if rest.len() < 2 || !rest.len().is_multiple_of(2) {
        return Err("Alpaca needs alternating user/assistant turns ending with the assistant".into());
    }
    let mut history = Vec::new();
    for pair in rest.chunks(2) {
        let (u, a) = (&pair[0], &pair[1]);
        let plain =
            |m: &Message| m.tool_calls.is_none() && m.weight.is_none() && m.name.is_none() && m.tool_call_id.is_none();
        if u.role != Role::User || a.role != Role::Assistant || !plain(u) || !plain(a) {
            return Err("Alpaca needs alternating user/assistant turns without tool calls, weights or names".into());
        }
        history.push(json!([u.content, a.content]));
    }
    let last = history.pop().expect("at least one pair");
    m.insert("instruction".into(), last[0].clone());
    m.insert("input".into(), Value::String(String::new()));
    m.insert("output".into(), last[1].clone());
    if !history.is_empty() {
        m.insert("history".into(), Value::Array(history));
    }
    Ok(())
}

/// Writes records as JSON Lines to `path` atomically. Returns the rows that did not fit the
/// format (they are not written).
pub fn write_jsonl(path: &Path, records: &[Record], format: OutputFormat) -> Result<Vec<RowError>> {
    let mut buf: Vec<u8> = Vec::new();
    let mut rejected = Vec::new();
    for r in records {
        match to_format(r, format) {
            Ok(v) => {
                serde_json::to_writer(&mut buf, &v).map_err(|e| DataError::format(path, e.to_string()))?;
                buf.push(b'\n');
            }
            Err(e) => rejected.push(e),
        }
    }
    write_atomic(path, &buf)?;
    Ok(rejected)
}

/// Writes bytes to `path` through a temporary file and a rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| DataError::io(parent, e))?;
    }
    let tmp = path.with_file_name(format!(
        ".{}.tmp-{}",
        path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
        std::process::id()
    ));
    let res = (|| -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if res.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    res.map_err(|e| DataError::io(path, e))
}
