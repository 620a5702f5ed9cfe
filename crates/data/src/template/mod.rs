//! Chat templates: a model's own Jinja `chat_template` rendered with `minijinja` the way
//! transformers' `apply_chat_template` renders it (trim/lstrip blocks, loop controls, Python
//! string methods, `tojson` as `json.dumps`, `raise_exception`, `strftime_now`, special-token
//! variables), including `{% generation %}` blocks for assistant masks. Fallback templates
//! (ChatML, Llama-3, Alpaca) serve models without one.

pub mod python;

use std::collections::BTreeMap;
use std::path::Path;

use minijinja::value::{Kwargs, Value};
use minijinja::{Environment, Error, ErrorKind, State};
use serde_json::{Map, Value as Json};

use crate::error::{DataError, Result};

/// Marks the start of a `{% generation %}` block in the raw render (private-use character).
const GEN_START: char = '\u{E000}';
/// Marks its end.
const GEN_END: char = '\u{E001}';

/// The ChatML template (Qwen, SmolLM, OpenHermes style).
pub const CHATML: &str = "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

/// The Llama-3 instruct template (without tools).
pub const LLAMA3: &str = "{{ bos_token }}{% for message in messages %}{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n' + message['content'] | trim + '<|eot_id|>' }}{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}";

/// The Alpaca prompt format as a chat template.
pub const ALPACA: &str = "{% for message in messages %}{% if message['role'] == 'system' %}{{ message['content'] + '\n\n' }}{% elif message['role'] == 'user' %}{{ '### Instruction:\n' + message['content'] + '\n\n' }}{% elif message['role'] == 'assistant' %}{{ '### Response:\n' + message['content'] + eos_token + '\n\n' }}{% endif %}{% endfor %}{% if add_generation_prompt %}{{ '### Response:\n' }}{% endif %}";

/// Names of the built-in fallback templates.
pub fn fallback(name: &str) -> Option<&'static str> {
    match name {
        "chatml" => Some(CHATML),
        "llama3" | "llama-3" => Some(LLAMA3),
        "alpaca" => Some(ALPACA),
        _ => None,
    }
}

/// The special-token variables transformers passes to templates (`bos_token`, `eos_token`, ...).
pub type SpecialTokenVars = BTreeMap<String, String>;

/// The special-token strings of a tokenizer_config.json (string or `{"content": ...}` values).
pub fn special_token_vars(config: &Json) -> SpecialTokenVars {
    let mut out = BTreeMap::new();
    for k in ["bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token"] {
        let v = match config.get(k) {
            Some(Json::String(s)) => Some(s.clone()),
            Some(Json::Object(o)) => o.get("content").and_then(Json::as_str).map(String::from),
            _ => None,
        };
        if let Some(v) = v {
            out.insert(k.to_string(), v);
        }
    }
    out
}

/// A template source and the special tokens it may use, from a model folder: the
/// `chat_template` of tokenizer_config.json (or a `chat_template.jinja` beside it).
pub fn load_from_dir(dir: &Path) -> Result<Option<(String, SpecialTokenVars)>> {
    let cfg_path = dir.join("tokenizer_config.json");
    let cfg: Json = if cfg_path.exists() {
        let text = std::fs::read_to_string(&cfg_path).map_err(|e| DataError::io(&cfg_path, e))?;
        serde_json::from_str(&text).map_err(|e| DataError::format(&cfg_path, format!("invalid JSON: {e}")))?
    } else {
        Json::Null
    };
    let mut vars = special_token_vars(&cfg);
    let stm = dir.join("special_tokens_map.json");
    if stm.exists() {
        let text = std::fs::read_to_string(&stm).map_err(|e| DataError::io(&stm, e))?;
        let v: Json = serde_json::from_str(&text).map_err(|e| DataError::format(&stm, format!("invalid JSON: {e}")))?;
        for (k, val) in special_token_vars(&v) {
            vars.entry(k).or_insert(val);
        }
    }
    let source = match cfg.get("chat_template") {
        Some(Json::String(s)) => Some(s.clone()),
        Some(Json::Array(list)) => list
            .iter()
            .find(|t| t.get("name").and_then(Json::as_str) == Some("default"))
            .and_then(|t| t.get("template").and_then(Json::as_str))
            .map(String::from),
        _ => {
            let jinja = dir.join("chat_template.jinja");
            if jinja.exists() {
                Some(std::fs::read_to_string(&jinja).map_err(|e| DataError::io(&jinja, e))?)
            } else {
                None
            }
        }
    };
    Ok(source.map(|s| (s, vars)))
}

/// Chooses a chat template: `spec` names a fallback (`chatml`, `llama3`, `alpaca`) or a `.jinja`
/// file; without one, the model's own template from `model_dir` is used, if it has one. The
/// model's special tokens are available to every choice.
pub fn resolve(spec: Option<&str>, model_dir: Option<&Path>) -> Result<Option<ChatTemplate>> {
    let own = match model_dir {
        Some(d) => load_from_dir(d)?,
        None => None,
    };
    let special = match (&own, model_dir) {
        (Some((_, vars)), _) => vars.clone(),
        (None, Some(d)) if d.join("tokenizer_config.json").exists() => {
            let p = d.join("tokenizer_config.json");
            let text = std::fs::read_to_string(&p).map_err(|e| DataError::io(&p, e))?;
            special_token_vars(
                &serde_json::from_str(&text).map_err(|e| DataError::format(&p, format!("invalid JSON: {e}")))?,
            )
        }
        _ => SpecialTokenVars::new(),
    };
    match spec {
        None | Some("model") | Some("auto") => match own {
            Some((src, vars)) => ChatTemplate::new(&src, vars).map(Some),
            None if spec == Some("model") => Err(DataError::Template(format!(
                "{} has no chat_template; choose one of chatml, llama3, alpaca or a .jinja file",
                model_dir.map_or("the model".into(), |d| d.display().to_string())
            ))),
            None => Ok(None),
        },
        Some(name) => {
            if let Some(src) = fallback(name) {
                return ChatTemplate::new(src, special).map(Some);
            }
            let path = Path::new(name);
            if path.is_file() {
                let src = std::fs::read_to_string(path).map_err(|e| DataError::io(path, e))?;
                return ChatTemplate::new(&src, special)
                    .map_err(|e| DataError::Template(format!("{}: {e}", path.display())))
                    .map(Some);
            }
            Err(DataError::Template(format!(
                "'{name}' is neither a built-in template (chatml, llama3, alpaca, model) nor a template file"
            )))
        }
    }
}

/// A compiled chat template.
pub struct ChatTemplate {
    env: Environment<'static>,
    special: SpecialTokenVars,
    /// Whether the template marks assistant output with `{% generation %}` blocks.
    pub has_generation_blocks: bool,
}

/// A rendering and the byte ranges of its `{% generation %}` blocks.
#[derive(Debug, Clone, PartialEq)]
pub struct Rendered {
    /// The text.
    pub text: String,
    /// Byte ranges of generation blocks.
    pub generation: Vec<(usize, usize)>,
}

fn tojson(v: Value, kwargs: Kwargs) -> std::result::Result<Value, Error> {
    let opts = python::JsonOptions {
        ensure_ascii: kwargs.get::<Option<bool>>("ensure_ascii")?.unwrap_or(false),
        indent: kwargs.get::<Option<usize>>("indent")?,
        separators: match kwargs.get::<Option<Value>>("separators")? {
            Some(s) => {
                let parts: Vec<String> = s.try_iter()?.map(|x| x.to_string()).collect();
                match parts.as_slice() {
                    [a, b] => Some((a.clone(), b.clone())),
                    _ => return Err(Error::new(ErrorKind::InvalidOperation, "separators must be a pair of strings")),
                }
            }
            None => None,
        },
        sort_keys: kwargs.get::<Option<bool>>("sort_keys")?.unwrap_or(false),
    };
    kwargs.assert_all_used()?;
    python::dumps(&v, &opts).map(Value::from_safe_string).map_err(|e| Error::new(ErrorKind::InvalidOperation, e))
}

fn raise_exception(message: String) -> std::result::Result<Value, Error> {
    Err(Error::new(ErrorKind::InvalidOperation, message))
}

fn strftime_now(format: String) -> String {
    // The current UTC date/time in the few strftime fields chat templates use.
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let days = (secs / 86_400) as i64;
    let (y, m, d) = civil_from_days(days);
    let months = [
        "January",
        "February",
        "March",
        "April",
        "May",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
    ];
    let mut out = String::new();
    let mut chars = format.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('d') => out.push_str(&format!("{d:02}")),
            Some('m') => out.push_str(&format!("{m:02}")),
            Some('Y') => out.push_str(&y.to_string()),
            Some('y') => out.push_str(&format!("{:02}", y % 100)),
            Some('b') => out.push_str(&months[(m - 1) as usize][..3]),
            Some('B') => out.push_str(months[(m - 1) as usize]),
            Some('H') => out.push_str(&format!("{:02}", (secs / 3600) % 24)),
            Some('M') => out.push_str(&format!("{:02}", (secs / 60) % 60)),
            Some('S') => out.push_str(&format!("{:02}", secs % 60)),
            Some('%') => out.push('%'),
            Some(other) => {
                out.push('%');
                out.push(other);
            }
            None => out.push('%'),
        }
    }
    out
}

/// Days since 1970-01-01 → (year, month, day) in the proleptic Gregorian calendar.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Rewrites `{% generation %}` / `{% endgeneration %}` (a transformers extension) into blocks
/// that emit private-use markers, keeping their whitespace control.
fn rewrite_generation_tags(source: &str) -> (String, bool) {
    let open = regex::Regex::new(r"\{%(-?)\s*generation\s*(-?)%\}").expect("valid regex");
    let close = regex::Regex::new(r"\{%(-?)\s*endgeneration\s*(-?)%\}").expect("valid regex");
    let found = open.is_match(source);
    let s = open.replace_all(source, |c: &regex::Captures<'_>| {
        format!("{{%{} if true %}}{GEN_START}{{% endif {}%}}", &c[1], &c[2])
    });
    let s = close
        .replace_all(&s, |c: &regex::Captures<'_>| format!("{{%{} if true %}}{GEN_END}{{% endif {}%}}", &c[1], &c[2]));
    (s.into_owned(), found)
}

impl ChatTemplate {
    /// Compiles a template source with the special-token variables it may use.
    pub fn new(source: &str, special: SpecialTokenVars) -> Result<ChatTemplate> {
        let (source, has_generation_blocks) = rewrite_generation_tags(source);
        let mut env = Environment::new();
        let syntax = minijinja::syntax::SyntaxConfig::builder()
            .trim_blocks(true)
            .lstrip_blocks(true)
            .keep_trailing_newline(false)
            .build()
            .map_err(|e| DataError::Template(e.to_string()))?;
        env.set_syntax(syntax);
        env.set_auto_escape_callback(|_| minijinja::AutoEscape::None);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.set_formatter(|out: &mut minijinja::Output<'_>, _state: &mut State<'_, '_>, value: &Value| {
            out.write_str(&python::display(value)).map_err(|_| Error::new(ErrorKind::WriteFailure, "write failed"))
        });
        env.add_filter("tojson", tojson);
        env.add_function("raise_exception", raise_exception);
        env.add_function("strftime_now", strftime_now);
        env.add_template_owned("chat", source).map_err(|e| DataError::Template(format!("does not compile: {e:#}")))?;
        Ok(ChatTemplate { env, special, has_generation_blocks })
    }

    /// The special-token variables.
    pub fn special_tokens(&self) -> &SpecialTokenVars {
        &self.special
    }

    /// Renders `messages` (OpenAI-style JSON objects) with optional `tools`; `extra` variables
    /// (e.g. `date_string`) override the special tokens, as in transformers.
    pub fn render(
        &self,
        messages: &[Json],
        tools: Option<&Json>,
        add_generation_prompt: bool,
        extra: &Map<String, Json>,
    ) -> Result<Rendered> {
        let mut ctx = Map::new();
        for (k, v) in &self.special {
            ctx.insert(k.clone(), Json::String(v.clone()));
        }
        for (k, v) in extra {
            ctx.insert(k.clone(), v.clone());
        }
        ctx.insert("messages".into(), Json::Array(messages.to_vec()));
        ctx.insert("tools".into(), tools.cloned().unwrap_or(Json::Null));
        ctx.insert("documents".into(), Json::Null);
        ctx.insert("add_generation_prompt".into(), Json::Bool(add_generation_prompt));
        let tmpl = self.env.get_template("chat").map_err(|e| DataError::Template(e.to_string()))?;
        let raw = tmpl
            .render(Value::from(minijinja::value::Serde(&ctx)))
            .map_err(|e| DataError::Template(template_error(&e)))?;
        if !self.has_generation_blocks {
            return Ok(Rendered { text: raw, generation: Vec::new() });
        }
        let mut text = String::with_capacity(raw.len());
        let mut generation = Vec::new();
        let mut open = None;
        for c in raw.chars() {
            match c {
                GEN_START => open = Some(text.len()),
                GEN_END => {
                    if let Some(s) = open.take() {
                        generation.push((s, text.len()));
                    }
                }
                c => text.push(c),
            }
        }
        Ok(Rendered { text, generation })
    }
}

/// Where one assistant message sits in a rendered conversation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TurnSpan {
    /// Index of the message in the conversation.
    pub message: usize,
    /// Byte where the model's output starts (after the generation prompt).
    pub start: usize,
    /// Byte where it ends, its end-of-turn token included and trailing whitespace excluded.
    pub end: usize,
}

impl ChatTemplate {
    /// The byte spans of the assistant messages in `render(messages)`.
    ///
    /// With `{% generation %}` blocks, the blocks are the spans. Otherwise a turn `i` starts where
    /// `render(messages[..i], add_generation_prompt=true)` ends (it must be a prefix of the full
    /// render) and ends at the longest common prefix of `render(messages[..=i])` and the full
    /// render, trailing whitespace removed: so each trained span holds exactly what the model
    /// must produce after the generation prompt, its end-of-turn token included.
    pub fn assistant_spans(
        &self,
        messages: &[Json],
        tools: Option<&Json>,
        extra: &Map<String, Json>,
    ) -> Result<Vec<TurnSpan>> {
        self.render_with_spans(messages, tools, extra).map(|(_, spans)| spans)
    }

    /// The full rendering of `messages` and the spans of its assistant messages (see
    /// [`ChatTemplate::assistant_spans`]).
    pub fn render_with_spans(
        &self,
        messages: &[Json],
        tools: Option<&Json>,
        extra: &Map<String, Json>,
    ) -> Result<(String, Vec<TurnSpan>)> {
        let full = self.render(messages, tools, false, extra)?;
        let assistants: Vec<usize> = messages
            .iter()
            .enumerate()
            .filter(|(_, m)| m.get("role").and_then(Json::as_str) == Some("assistant"))
            .map(|(i, _)| i)
            .collect();
        if self.has_generation_blocks {
            if full.generation.len() != assistants.len() {
                return Err(DataError::Template(format!(
                    "the template's {{% generation %}} blocks ({}) do not match the assistant messages ({})",
                    full.generation.len(),
                    assistants.len()
                )));
            }
            let spans = assistants
                .iter()
                .zip(&full.generation)
                .map(|(&i, &(s, e))| TurnSpan { message: i, start: s, end: e })
                .collect();
            return Ok((full.text, spans));
        }
        let mut spans = Vec::with_capacity(assistants.len());
        for &i in &assistants {
            let prompt = self.render(&messages[..i], tools, true, extra)?.text;
            if !full.text.starts_with(&prompt) {
                return Err(DataError::Template(format!(
                    "cannot locate assistant message {i}: rendering the conversation up to it with add_generation_prompt \
                     is not a prefix of the whole rendering (the template rewrites earlier turns); use a template with \
                     {{% generation %}} blocks"
                )));
            }
            let upto = self.render(&messages[..=i], tools, false, extra)?.text;
            let common = upto.bytes().zip(full.text.bytes()).take_while(|(a, b)| a == b).count();
            let mut end = full.text[..floor_char_boundary(&full.text, common)].trim_end().len();
            if end < prompt.len() {
                end = prompt.len();
            }
            spans.push(TurnSpan { message: i, start: prompt.len(), end });
        }
        Ok((full.text, spans))
    }
}

/// The largest char boundary of `s` at or below `i`.
fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// The template's own message for `raise_exception`, else minijinja's description.
fn template_error(e: &Error) -> String {
    match e.kind() {
        ErrorKind::InvalidOperation => e.detail().map(String::from).unwrap_or_else(|| e.to_string()),
        _ => format!("{e:#}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generation_blocks_are_tracked() {
        let src = "{% for m in messages %}{% if m.role == 'assistant' %}{% generation %}{{ m.content }}!{% endgeneration %}\n{% else %}{{ m.content }}\n{% endif %}{% endfor %}";
        let t = ChatTemplate::new(src, SpecialTokenVars::new()).unwrap();
        let msgs = vec![
            serde_json::json!({"role": "user", "content": "hi"}),
            serde_json::json!({"role": "assistant", "content": "yo"}),
        ];
        let r = t.render(&msgs, None, false, &Map::new()).unwrap();
        // As in Jinja with trim_blocks, the newline after `{% endgeneration %}` goes.
        assert_eq!(r.text, "hi\nyo!");
        assert_eq!(r.generation, vec![(3, 6)]);
    }

    #[test]
    fn raise_exception_surfaces_the_message() {
        let t =
            ChatTemplate::new("{{ raise_exception('System role not supported') }}", SpecialTokenVars::new()).unwrap();
        let e = t.render(&[], None, false, &Map::new()).unwrap_err().to_string();
        assert!(e.contains("System role not supported"), "{e}");
    }

    #[test]
    fn civil_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(19_930), (2024, 7, 26));
    }
}
