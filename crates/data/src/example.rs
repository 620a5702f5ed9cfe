//! The one internal form every schema converts to: conversations of messages with a train
//! weight per message, plain text, text (or a text pair) with a label, and preference data.

use serde_json::{Map, Value};

use crate::error::Loc;

/// Who speaks a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// Instructions for the assistant.
    System,
    /// The user.
    User,
    /// The model.
    Assistant,
    /// A tool's result (ShareGPT `observation`).
    Tool,
}

impl Role {
    /// The OpenAI role name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
            Role::Tool => "tool",
        }
    }

    /// Parses OpenAI and ShareGPT role names.
    pub fn parse(s: &str) -> Option<Role> {
        Some(match s {
            "system" => Role::System,
            "user" | "human" => Role::User,
            "assistant" | "gpt" | "model" | "bot" => Role::Assistant,
            "tool" | "observation" | "function" | "ipython" => Role::Tool,
            _ => return None,
        })
    }
}

/// One message of a conversation.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    /// Speaker.
    pub role: Role,
    /// Text content.
    pub content: String,
    /// Explicit train weight (OpenAI's `weight`: 0 or 1); `None` follows the default policy.
    pub weight: Option<f32>,
    /// Tool calls the assistant makes (OpenAI format: a list of `{type, function: {name, arguments}}`).
    pub tool_calls: Option<Value>,
    /// Name of the tool that produced a tool message, or of a participant.
    pub name: Option<String>,
    /// The call a tool message answers.
    pub tool_call_id: Option<String>,
}

impl Message {
    /// A plain message.
    pub fn new(role: Role, content: impl Into<String>) -> Message {
        Message { role, content: content.into(), weight: None, tool_calls: None, name: None, tool_call_id: None }
    }

    /// The message as an OpenAI-style JSON object (what chat templates receive).
    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        m.insert("role".into(), Value::String(self.role.as_str().into()));
        m.insert("content".into(), Value::String(self.content.clone()));
        if let Some(tc) = &self.tool_calls {
            m.insert("tool_calls".into(), tc.clone());
        }
        if let Some(n) = &self.name {
            m.insert("name".into(), Value::String(n.clone()));
        }
        if let Some(id) = &self.tool_call_id {
            m.insert("tool_call_id".into(), Value::String(id.clone()));
        }
        if let Some(w) = self.weight {
            m.insert("weight".into(), Value::from(w as f64));
        }
        Value::Object(m)
    }
}

/// A label: a class name or a regression value.
#[derive(Debug, Clone, PartialEq)]
pub enum Label {
    /// A class, by name (integer labels are kept as their decimal string).
    Class(String),
    /// A real value.
    Value(f64),
}

impl std::fmt::Display for Label {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Label::Class(c) => f.write_str(c),
            Label::Value(v) => write!(f, "{v}"),
        }
    }
}

/// One training example in internal form.
#[derive(Debug, Clone, PartialEq)]
pub enum Example {
    /// A conversation (chat, instruction, prompt/completion data).
    Chat {
        /// Messages in order.
        messages: Vec<Message>,
        /// Tool definitions offered to the model (OpenAI function schemas).
        tools: Option<Value>,
    },
    /// Plain text for language modelling.
    Text(String),
    /// Text (or a text pair) with a label, for classification or regression.
    Labeled {
        /// The text.
        text: String,
        /// The second text of a pair task.
        text_pair: Option<String>,
        /// The target.
        label: Label,
    },
    /// A preferred and a dispreferred response to the same prompt.
    Preference {
        /// Shared prompt messages.
        prompt: Vec<Message>,
        /// Preferred continuation.
        chosen: Vec<Message>,
        /// Dispreferred continuation.
        rejected: Vec<Message>,
        /// Tool definitions.
        tools: Option<Value>,
    },
    /// Words with one tag each (named entities in IOB2, parts of speech), for token
    /// classification.
    Tagged {
        /// The words.
        tokens: Vec<String>,
        /// One tag per word.
        tags: Vec<String>,
    },
    /// Two texts that should embed close together (a query and a matching passage, a sentence
    /// and its paraphrase), optionally with a hard negative, for training sentence embeddings.
    Pair {
        /// The anchor (query) text.
        anchor: String,
        /// The text that matches the anchor.
        positive: String,
        /// A text that looks related but does not match.
        negative: Option<String>,
    },
    /// A single response judged desirable or not (KTO).
    Unpaired {
        /// Prompt messages.
        prompt: Vec<Message>,
        /// The response.
        completion: Vec<Message>,
        /// Whether the response is desirable.
        desirable: bool,
        /// Tool definitions.
        tools: Option<Value>,
    },
}

impl Example {
    /// A short name of the kind of example.
    pub fn kind(&self) -> &'static str {
        match self {
            Example::Chat { .. } => "chat",
            Example::Text(_) => "text",
            Example::Labeled { .. } => "labeled",
            Example::Preference { .. } => "preference",
            Example::Unpaired { .. } => "unpaired preference",
            Example::Pair { .. } => "pair",
            Example::Tagged { .. } => "tagged",
        }
    }
}

/// Tagged words as one line, each tag other than `O` attached to its word
/// (`Maria/B-PER lives in Lyon/B-LOC`): how `data inspect` shows token classification rows.
pub fn tagged_text(tokens: &[String], tags: &[String]) -> String {
    let shown: Vec<String> =
        tokens.iter().zip(tags).map(|(w, t)| if t == "O" { w.clone() } else { format!("{w}/{t}") }).collect();
    shown.join(" ")
}

/// An example with where it came from and the source fields the schema did not use (kept so
/// conversions lose nothing).
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// The example.
    pub example: Example,
    /// Unused source fields (e.g. `id`), carried through conversions.
    pub extra: Map<String, Value>,
    /// Source location.
    pub loc: Loc,
}
