//! Python behaviour chat templates rely on: `json.dumps` (transformers' `tojson` filter) and
//! `str()` of values printed with `{{ ... }}` (True/False/None, Python reprs of lists and dicts).

use minijinja::value::{Value, ValueKind};

/// Python's `repr()` of a float (shortest round-trip digits, always with a fraction or exponent).
pub fn float_repr(f: f64) -> String {
    if f.is_nan() {
        return "NaN".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "Infinity".into() } else { "-Infinity".into() };
    }
    if f == f.trunc() && f.abs() < 1e16 {
        return format!("{f:.1}");
    }
    let s = format!("{f}");
    if f.abs() >= 1e16 || (f != 0.0 && f.abs() < 1e-4) {
        // Python switches to exponent notation: 1e+16, 1e-05.
        let e = format!("{f:e}");
        let (mant, exp) = e.split_once('e').unwrap_or((&e, "0"));
        let exp: i32 = exp.parse().unwrap_or(0);
        return format!("{mant}e{}{:02}", if exp < 0 { '-' } else { '+' }, exp.abs());
    }
    s
}

fn number(v: &Value) -> String {
    if v.is_integer() {
        if let Some(i) = v.as_i64() {
            return i.to_string();
        }
        return v.to_string();
    }
    match f64::try_from(v.clone()) {
        Ok(f) => float_repr(f),
        Err(_) => v.to_string(),
    }
}

fn json_string(s: &str, ensure_ascii: bool, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c if ensure_ascii && !c.is_ascii() => {
                let mut buf = [0u16; 2];
                for unit in c.encode_utf16(&mut buf) {
                    out.push_str(&format!("\\u{unit:04x}"));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Options of `json.dumps`.
#[derive(Debug, Clone)]
pub struct JsonOptions {
    /// Escape non-ASCII characters.
    pub ensure_ascii: bool,
    /// Pretty-print with this many spaces.
    pub indent: Option<usize>,
    /// (item separator, key separator).
    pub separators: Option<(String, String)>,
    /// Sort object keys.
    pub sort_keys: bool,
}

/// Python's `json.dumps` of a template value.
pub fn dumps(v: &Value, o: &JsonOptions) -> Result<String, String> {
    let (item_sep, key_sep) = match &o.separators {
        Some((a, b)) => (a.clone(), b.clone()),
        None if o.indent.is_some() => (",".to_string(), ": ".to_string()),
        None => (", ".to_string(), ": ".to_string()),
    };
    let mut out = String::new();
    write(v, o, &item_sep, &key_sep, 0, &mut out)?;
    Ok(out)
}

fn write(
    v: &Value,
    o: &JsonOptions,
    item_sep: &str,
    key_sep: &str,
    level: usize,
    out: &mut String,
) -> Result<(), String> {
    let newline = |out: &mut String, level: usize| {
        if let Some(n) = o.indent {
            out.push('\n');
            out.push_str(&" ".repeat(n * level));
        }
    };
    match v.kind() {
        ValueKind::Undefined | ValueKind::None => out.push_str("null"),
        ValueKind::Bool => out.push_str(if v.is_true() { "true" } else { "false" }),
        ValueKind::Number => {
            let s = number(v);
            out.push_str(&s);
        }
        ValueKind::String => json_string(v.as_str().unwrap_or_default(), o.ensure_ascii, out),
        ValueKind::Seq | ValueKind::Iterable => {
            let items: Vec<Value> = v.try_iter().map_err(|e| e.to_string())?.collect();
            if items.is_empty() {
                out.push_str("[]");
                return Ok(());
            }
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(item_sep);
                }
                newline(out, level + 1);
                write(item, o, item_sep, key_sep, level + 1, out)?;
            }
            newline(out, level);
            out.push(']');
        }
        ValueKind::Map => {
            let mut keys: Vec<Value> = v.try_iter().map_err(|e| e.to_string())?.collect();
            if keys.is_empty() {
                out.push_str("{}");
                return Ok(());
            }
            if o.sort_keys {
                keys.sort_by_key(|k| k.to_string());
            }
            out.push('{');
            for (i, k) in keys.iter().enumerate() {
                if i > 0 {
                    out.push_str(item_sep);
                }
                newline(out, level + 1);
                let key = match k.kind() {
                    ValueKind::String => k.as_str().unwrap_or_default().to_string(),
                    ValueKind::Number => number(k),
                    ValueKind::Bool => (if k.is_true() { "true" } else { "false" }).to_string(),
                    ValueKind::None => "null".to_string(),
                    _ => return Err(format!("keys must be str, int, float, bool or None, not {}", k.kind())),
                };
                json_string(&key, o.ensure_ascii, out);
                out.push_str(key_sep);
                let item = v.get_item(k).map_err(|e| e.to_string())?;
                write(&item, o, item_sep, key_sep, level + 1, out)?;
            }
            newline(out, level);
            out.push('}');
        }
        other => return Err(format!("Object of type {other} is not JSON serializable")),
    }
    Ok(())
}

fn repr_str(s: &str, out: &mut String) {
    // Python picks single quotes unless the string contains a single quote and no double quote.
    let quote = if s.contains('\'') && !s.contains('"') { '"' } else { '\'' };
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if (c as u32) < 0x20 || c as u32 == 0x7f => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push(quote);
}

fn repr(v: &Value, out: &mut String) {
    match v.kind() {
        ValueKind::Undefined | ValueKind::None => out.push_str("None"),
        ValueKind::Bool => out.push_str(if v.is_true() { "True" } else { "False" }),
        ValueKind::Number => out.push_str(&number(v)),
        ValueKind::String => repr_str(v.as_str().unwrap_or_default(), out),
        ValueKind::Seq | ValueKind::Iterable => {
            out.push('[');
            if let Ok(it) = v.try_iter() {
                for (i, item) in it.enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    repr(&item, out);
                }
            }
            out.push(']');
        }
        ValueKind::Map => {
            out.push('{');
            if let Ok(it) = v.try_iter() {
                for (i, k) in it.enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    repr(&k, out);
                    out.push_str(": ");
                    repr(&v.get_item(&k).unwrap_or_default(), out);
                }
            }
            out.push('}');
        }
        _ => out.push_str(&v.to_string()),
    }
}

/// What Jinja2 (Python `str()`) prints for `{{ value }}`.
pub fn display(v: &Value) -> String {
    match v.kind() {
        ValueKind::Undefined => String::new(),
        ValueKind::String => v.as_str().unwrap_or_default().to_string(),
        _ => {
            let mut out = String::new();
            repr(v, &mut out);
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dumps_matches_python() {
        let v =
            Value::from(minijinja::value::Serde(serde_json::json!({"b": [1, 2.5, true, null], "a": "é\"\n", "c": {}})));
        let o = JsonOptions { ensure_ascii: false, indent: None, separators: None, sort_keys: false };
        assert_eq!(dumps(&v, &o).unwrap(), r#"{"b": [1, 2.5, true, null], "a": "é\"\n", "c": {}}"#);
        let o = JsonOptions { indent: Some(2), sort_keys: true, ..o };
        assert_eq!(
            dumps(&v, &o).unwrap(),
            "{\n  \"a\": \"é\\\"\\n\",\n  \"b\": [\n    1,\n    2.5,\n    true,\n    null\n  ],\n  \"c\": {}\n}"
        );
        let o = JsonOptions {
            ensure_ascii: true,
            indent: None,
            separators: Some((",".into(), ":".into())),
            sort_keys: false,
        };
        assert_eq!(dumps(&Value::from("日👋"), &o).unwrap(), r#""\u65e5\ud83d\udc4b""#);
    }

    #[test]
    fn display_is_python_str() {
        assert_eq!(display(&Value::from(true)), "True");
        assert_eq!(display(&Value::from(())), "None");
        assert_eq!(display(&Value::from(21.0)), "21.0");
        assert_eq!(
            display(&Value::from(minijinja::value::Serde(serde_json::json!(["a", "it's", 1])))),
            r#"['a', "it's", 1]"#
        );
        assert_eq!(float_repr(1e-5), "1e-05");
        assert_eq!(float_repr(0.1), "0.1");
    }
}
