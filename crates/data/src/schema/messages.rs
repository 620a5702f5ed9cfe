//! Message lists: OpenAI `messages` (role/content/weight/tool_calls) and ShareGPT
//! `conversations` (from/value with human/gpt/system/function_call/observation roles).

use serde_json::{json, Value};

use super::fields::Fields;
use crate::error::RowError;
use crate::example::{Message, Role};
use crate::read::json_kind as kind;

fn content_text(f: &Fields, field: &str, v: &Value) -> Result<String, RowError> {
    match v {
        Value::String(s) => Ok(s.clone()),
        Value::Null => Ok(String::new()),
        Value::Array(parts) => {
            let mut out = String::new();
            for (i, p) in parts.iter().enumerate() {
                match (p.get("type").and_then(Value::as_str), p.get("text").and_then(Value::as_str)) {
                    (Some("text") | None, Some(t)) => out.push_str(t),
                    (Some(other), _) => {
                        return Err(f.err(
                            &format!("{field}[{i}].type"),
                            format!("content part '{other}' is not supported; only text"),
                        ))
                    }
                    _ => return Err(f.err(&format!("{field}[{i}]"), "content part has no text")),
                }
            }
            Ok(out)
        }
        other => Err(f.err(field, format!("content must be a string or a list of text parts, found {}", kind(other)))),
    }
}

/// Parses an OpenAI-style message list found in `field`.
pub fn openai_messages(f: &Fields, field: &str, v: &Value) -> Result<Vec<Message>, RowError> {
    let list = match v {
        Value::Array(a) => a,
        Value::Object(_) => return openai_messages(f, field, &Value::Array(vec![v.clone()])),
        other => return Err(f.err(field, format!("expected a list of messages, found {}", kind(other)))),
    };
    let mut out = Vec::with_capacity(list.len());
    for (i, m) in list.iter().enumerate() {
        let at = |k: &str| format!("{field}[{i}].{k}");
        let Value::Object(obj) = m else {
            return Err(f.err(&format!("{field}[{i}]"), format!("expected a message object, found {}", kind(m))));
        };
        let role_v = obj.get("role").ok_or_else(|| f.err(&at("role"), "is missing"))?;
        let role_s =
            role_v.as_str().ok_or_else(|| f.err(&at("role"), format!("expected a string, found {}", kind(role_v))))?;
        let role = Role::parse(role_s).ok_or_else(|| {
            f.err(&at("role"), format!("unknown role '{role_s}'; use system, user, assistant or tool"))
        })?;
        let content = content_text(f, &at("content"), obj.get("content").unwrap_or(&Value::Null))?;
        let tool_calls = match obj.get("tool_calls") {
            None | Some(Value::Null) => None,
            Some(v @ Value::Array(_)) => Some(v.clone()),
            Some(other) => return Err(f.err(&at("tool_calls"), format!("expected a list, found {}", kind(other)))),
        };
        let weight = match obj.get("weight") {
            None | Some(Value::Null) => None,
            Some(Value::Number(n)) if n.as_f64() == Some(0.0) || n.as_f64() == Some(1.0) => {
                n.as_f64().map(|x| x as f32)
            }
            Some(Value::Bool(b)) => Some(if *b { 1.0 } else { 0.0 }),
            Some(other) => return Err(f.err(&at("weight"), format!("must be 0 or 1, found {other}"))),
        };
        if weight.is_some() && role != Role::Assistant {
            return Err(f.err(&at("weight"), "only assistant messages carry a train weight"));
        }
        if content.trim().is_empty() && tool_calls.is_none() {
            return Err(f.err(&at("content"), "message is empty"));
        }
        out.push(Message {
            role,
            content,
            weight,
            tool_calls,
            name: obj.get("name").and_then(Value::as_str).map(String::from),
            tool_call_id: obj.get("tool_call_id").and_then(Value::as_str).map(String::from),
        });
    }
    Ok(out)
}

/// Parses a ShareGPT `conversations` list.
pub fn sharegpt_messages(f: &Fields, field: &str, v: &Value) -> Result<Vec<Message>, RowError> {
    let list = match v {
        Value::Array(a) => a,
        Value::Object(_) => return sharegpt_messages(f, field, &Value::Array(vec![v.clone()])),
        other => return Err(f.err(field, format!("expected a list of turns, found {}", kind(other)))),
    };
    let mut out = Vec::with_capacity(list.len());
    for (i, m) in list.iter().enumerate() {
        let at = |k: &str| format!("{field}[{i}].{k}");
        let Value::Object(obj) = m else {
            return Err(f.err(&format!("{field}[{i}]"), format!("expected a turn object, found {}", kind(m))));
        };
        let (role_key, content_key) = if obj.contains_key("from") { ("from", "value") } else { ("role", "content") };
        let from_v = obj.get(role_key).ok_or_else(|| f.err(&at(role_key), "is missing"))?;
        let from = from_v
            .as_str()
            .ok_or_else(|| f.err(&at(role_key), format!("expected a string, found {}", kind(from_v))))?;
        let value_v = obj.get(content_key).ok_or_else(|| f.err(&at(content_key), "is missing"))?;
        let value = value_v
            .as_str()
            .ok_or_else(|| f.err(&at(content_key), format!("expected a string, found {}", kind(value_v))))?;
        if value.trim().is_empty() {
            return Err(f.err(&at(content_key), "turn is empty"));
        }
        let msg = match from {
            "function_call" => {
                let tool_calls = function_call_tool_calls(value).ok_or_else(|| {
                    f.err(&at(content_key), "function_call value must be a JSON object (or list) of {name, arguments}")
                })?;
                Message { tool_calls: Some(tool_calls), ..Message::new(Role::Assistant, value) }
            }
            other => {
                let role = Role::parse(other).ok_or_else(|| {
                    f.err(
                        &at(role_key),
                        format!("unknown role '{other}'; use human, gpt, system, function_call or observation"),
                    )
                })?;
                Message::new(role, value)
            }
        };
        out.push(msg);
    }
    Ok(out)
}

/// OpenAI-style `tool_calls` of a ShareGPT `function_call` turn's JSON text (`{name, arguments}`
/// or a list of them); `None` when the text is not such JSON.
pub fn function_call_tool_calls(value: &str) -> Option<Value> {
    let calls: Vec<Value> = match serde_json::from_str(value).ok()? {
        Value::Array(a) => a,
        other @ Value::Object(_) => vec![other],
        _ => return None,
    };
    let mut out = Vec::with_capacity(calls.len());
    for c in calls {
        let name = c.get("name")?.clone();
        let arguments = c.get("arguments").cloned().unwrap_or(json!({}));
        out.push(json!({"type": "function", "function": {"name": name, "arguments": arguments}}));
    }
    Some(Value::Array(out))
}

/// The ShareGPT `from` name of a message.
pub fn sharegpt_role(m: &Message) -> &'static str {
    match m.role {
        Role::System => "system",
        Role::User => "human",
        Role::Assistant if m.tool_calls.is_some() => "function_call",
        Role::Assistant => "gpt",
        Role::Tool => "observation",
    }
}

/// A prompt or completion given as a plain string (wrapped as one message of `role`) or as a
/// message list.
pub fn string_or_messages(f: &Fields, field: &str, v: &Value, role: Role) -> Result<Vec<Message>, RowError> {
    match v {
        Value::String(s) => {
            if s.trim().is_empty() {
                return Err(f.err(field, "is empty"));
            }
            Ok(vec![Message::new(role, s.clone())])
        }
        Value::Array(_) | Value::Object(_) => openai_messages(f, field, v),
        other => Err(f.err(field, format!("expected a string or a list of messages, found {}", kind(other)))),
    }
}
