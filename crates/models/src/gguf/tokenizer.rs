//! The tokenizer a GGUF file describes (`tokenizer.ggml.*`), rebuilt as the Hugging Face
//! tokenizer transformers builds from the same file (`AutoTokenizer.from_pretrained(...,
//! gguf_file=...)`), so the token ids are the same:
//! - `gpt2`: byte-level BPE with the file's merges (SmolLM, Qwen2, Llama 3), split by the
//!   regex its `tokenizer.ggml.pre` names;
//! - `llama`: sentencepiece BPE with byte fallback, merges from the file or, when it lists
//!   none, recovered from the vocabulary ranked by the tokens' scores (Llama 2, Mistral);
//!   Gemma's files rank them by file order and spell runs of spaces with "▁".
//!
//! Control tokens become special added tokens and user-defined ones plain added tokens, so
//! they are never split.

use std::collections::HashMap;

use serde_json::{json, Value as Json};

use super::reader::{GgufFile, Value};
use crate::error::{ModelError, Result};
use tunesmith_data::tokenizer::Tokenizer;

/// `tokenizer.ggml.token_type` of a control token (`<|im_end|>`, `<bos>`).
const CONTROL: u64 = 3;
/// `tokenizer.ggml.token_type` of a user-defined token (`<think>`).
const USER_DEFINED: u64 = 4;

/// The split regex of Llama 3-style byte-level vocabularies.
const LLAMA3_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// The split regex of Qwen2's vocabulary.
const QWEN2_SPLIT: &str =
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// The split regex for a `tokenizer.ggml.pre` value, where it is not plain byte-level.
fn split_regex(pre: &str) -> Option<&'static str> {
    match pre {
        "llama3" | "llama-v3" | "llama-bpe" | "falcon3" | "smaug-bpe" | "dbrx" => Some(LLAMA3_SPLIT),
        "qwen2" | "deepseek-r1-qwen" => Some(QWEN2_SPLIT),
        _ => None,
    }
}

/// The token strings, types and scores of the file.
struct Vocab {
    tokens: Vec<String>,
    types: Vec<u64>,
    scores: Vec<f64>,
}

fn strings(f: &GgufFile, key: &str) -> Result<Vec<String>> {
    let arr = f
        .get(key)
        .ok_or_else(|| ModelError::config(f.path(), key, "missing: the GGUF file has no tokenizer"))?
        .as_array()
        .ok_or_else(|| ModelError::config(f.path(), key, "is not an array"))?;
    arr.iter()
        .map(|v| v.as_str().map(String::from).ok_or_else(|| ModelError::config(f.path(), key, "holds a non-string")))
        .collect()
}

fn vocab(f: &GgufFile) -> Result<Vocab> {
    let tokens = strings(f, "tokenizer.ggml.tokens")?;
    let n = tokens.len();
    let types = match f.get("tokenizer.ggml.token_type").and_then(Value::as_array) {
        Some(a) if a.len() == n => a.iter().map(|v| v.as_u64().unwrap_or(1)).collect(),
        Some(_) => {
            return Err(ModelError::config(f.path(), "tokenizer.ggml.token_type", "length differs from the tokens'"))
        }
        None => vec![1; n],
    };
    let scores = match f.get("tokenizer.ggml.scores").and_then(Value::as_array) {
        Some(a) if a.len() == n => a.iter().map(|v| v.as_f64().unwrap_or(0.0)).collect(),
        Some(_) => {
            return Err(ModelError::config(f.path(), "tokenizer.ggml.scores", "length differs from the tokens'"))
        }
        None => vec![0.0; n],
    };
    Ok(Vocab { tokens, types, scores })
}

/// GPT-2's byte-to-character map (printable stand-ins for every byte).
pub(crate) fn byte_alphabet() -> [char; 256] {
    let mut map = ['\0'; 256];
    let mut extra = 0u32;
    for b in 0..256u32 {
        let printable = (33..=126).contains(&b) || (161..=172).contains(&b) || (174..=255).contains(&b);
        map[b as usize] = if printable {
            char::from_u32(b).expect("latin-1")
        } else {
            extra += 1;
            char::from_u32(255 + extra).expect("BMP")
        };
    }
    map
}

fn added_token(id: usize, content: &str, special: bool) -> Json {
    json!({"id": id, "content": content, "single_word": false, "lstrip": false, "rstrip": false,
           "normalized": false, "special": special})
}

/// An insertion-ordered map with Python dict semantics: a repeated key keeps its first
/// position and takes the last value.
struct OrderedMap {
    keys: Vec<String>,
    values: HashMap<String, i64>,
}

impl OrderedMap {
    fn from_pairs(pairs: impl Iterator<Item = (String, i64)>) -> OrderedMap {
        let (mut keys, mut values) = (Vec::new(), HashMap::new());
        for (k, v) in pairs {
            if values.insert(k.clone(), v).is_none() {
                keys.push(k);
            }
        }
        OrderedMap { keys, values }
    }
}

/// Merges recovered from a vocabulary, as transformers' `generate_merges` does: every split of
/// every token into two tokens of the vocabulary, ranked by the whole token's score (highest
/// first), then by the pieces' lengths; ties keep vocabulary order.
fn merges_from_vocab(vocab: &OrderedMap, scores: &[(String, f64)]) -> Vec<(String, String)> {
    let mut merges: Vec<(String, String, f64)> = Vec::new();
    for (merge, score) in scores {
        let bounds: Vec<usize> = merge.char_indices().map(|(i, _)| i).skip(1).collect();
        let mut local: Vec<(String, String, f64)> = bounds
            .into_iter()
            .filter_map(|i| {
                let (l, r) = merge.split_at(i);
                (vocab.values.contains_key(l) && vocab.values.contains_key(r))
                    .then(|| (l.to_string(), r.to_string(), *score))
            })
            .collect();
        local.sort_by_key(|(l, r, _)| (vocab.values[l], vocab.values[r]));
        merges.extend(local);
    }
    merges.sort_by(|a, b| {
        (b.2, b.0.chars().count(), b.1.chars().count())
            .partial_cmp(&(a.2, a.0.chars().count(), a.1.chars().count()))
            .unwrap_or(std::cmp::Ordering::Equal)
    });
    merges.into_iter().map(|(l, r, _)| (l, r)).collect()
}

/// The tokenizer of a GGUF file, with its special tokens and chat template.
pub fn load(f: &GgufFile) -> Result<Tokenizer> {
    let (tokenizer, config) = hf_files(f)?;
    Tokenizer::from_json(tokenizer, config, f.path()).map_err(ModelError::from)
}

/// The `tokenizer.json` and `tokenizer_config.json` (special tokens, chat template) that
/// describe a GGUF file's tokenizer in Hugging Face's format.
pub fn hf_files(f: &GgufFile) -> Result<(Json, Json)> {
    let model = f.str("tokenizer.ggml.model")?.to_string();
    let arch = f.str("general.architecture")?.to_string();
    let v = vocab(f)?;
    let (json, add_bos) = match model.as_str() {
        "gpt2" => (byte_level(f, &v)?, false),
        "llama" => (sentencepiece(f, &v, arch.starts_with("gemma"))?, true),
        other => {
            return Err(ModelError::config(
                f.path(),
                "tokenizer.ggml.model",
                format!("tokenizer type \"{other}\" is not supported (gpt2 and llama are)"),
            ))
        }
    };
    let add_bos = f.get("tokenizer.ggml.add_bos_token").and_then(Value::as_u64).map_or(add_bos, |b| b != 0 && add_bos);
    let special = |key: &str| -> Option<String> {
        let id = f.get(key)?.as_u64()? as usize;
        v.tokens.get(id).cloned()
    };
    let bos = special("tokenizer.ggml.bos_token_id");
    let mut json = json;
    if add_bos {
        if let Some(bos) = &bos {
            let id = v.tokens.iter().position(|t| t == bos).unwrap_or(0);
            json["post_processor"] = json!({
                "type": "TemplateProcessing",
                "single": [{"SpecialToken": {"id": bos, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
                "pair": [{"SpecialToken": {"id": bos, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                         {"SpecialToken": {"id": bos, "type_id": 1}}, {"Sequence": {"id": "B", "type_id": 1}}],
                "special_tokens": {bos.as_str(): {"id": bos, "ids": [id], "tokens": [bos]}},
            });
        }
    }
    let mut cfg = serde_json::Map::new();
    for (name, key) in [
        ("bos_token", "tokenizer.ggml.bos_token_id"),
        ("eos_token", "tokenizer.ggml.eos_token_id"),
        ("pad_token", "tokenizer.ggml.padding_token_id"),
        ("unk_token", "tokenizer.ggml.unknown_token_id"),
    ] {
        if let Some(t) = special(key) {
            cfg.insert(name.into(), Json::String(t));
        }
    }
    if let Some(t) = f.get("tokenizer.chat_template").and_then(Value::as_str) {
        cfg.insert("chat_template".into(), Json::String(t.to_string()));
    }
    // Loaded as the file says, with no class-specific rewriting.
    cfg.insert("tokenizer_class".into(), Json::String("PreTrainedTokenizerFast".into()));
    Ok((json, Json::Object(cfg)))
}

/// The common tokenizer.json skeleton with the file's control tokens added as special tokens
/// (where `control_ok` accepts their spelling) and its user-defined tokens as plain added
/// tokens (where the vocabulary has them), each with its vocabulary id (`id_of`).
fn skeleton(v: &Vocab, model: Json, id_of: &dyn Fn(&str) -> Option<usize>, control_ok: &dyn Fn(&str) -> bool) -> Json {
    let mut added = Vec::new();
    for (t, &ty) in v.tokens.iter().zip(&v.types) {
        if ty == CONTROL && control_ok(t) {
            if let Some(id) = id_of(t) {
                added.push(added_token(id, t, true));
            }
        }
    }
    for (t, &ty) in v.tokens.iter().zip(&v.types) {
        if ty == USER_DEFINED {
            if let Some(id) = id_of(t) {
                added.push(added_token(id, t, false));
            }
        }
    }
    json!({"version": "1.0", "truncation": null, "padding": null, "added_tokens": added, "normalizer": null,
           "pre_tokenizer": null, "post_processor": null, "decoder": null, "model": model})
}

fn byte_level(f: &GgufFile, v: &Vocab) -> Result<Json> {
    let alphabet = byte_alphabet();
    let in_alphabet = |t: &str| t.chars().all(|c| alphabet.contains(&c));
    let mut vocab = serde_json::Map::new();
    let mut ids: HashMap<String, usize> = HashMap::new();
    for (id, t) in v.tokens.iter().enumerate() {
        let spelled: String =
            if in_alphabet(t) { t.clone() } else { t.bytes().map(|b| alphabet[b as usize]).collect() };
        ids.insert(spelled.clone(), id);
        vocab.insert(spelled, json!(id));
    }
    let merges: Vec<Json> = match f.get("tokenizer.ggml.merges") {
        Some(_) => strings(f, "tokenizer.ggml.merges")?
            .into_iter()
            .map(|m| {
                let (l, r) = m.split_once(' ').unwrap_or((m.as_str(), ""));
                json!([l, r])
            })
            .collect(),
        None => Vec::new(),
    };
    let model = json!({"type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": "",
                       "end_of_word_suffix": "", "fuse_unk": false, "byte_fallback": false,
                       "ignore_merges": false, "vocab": vocab, "merges": merges});
    let mut t = skeleton(v, model, &|tok| ids.get(tok).copied(), &in_alphabet);
    let pre = f.get("tokenizer.ggml.pre").and_then(Value::as_str).unwrap_or("default");
    t["pre_tokenizer"] = match split_regex(pre) {
        Some(re) => json!({"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": re}, "behavior": "Isolated", "invert": false},
            {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": false}]}),
        None => json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true}),
    };
    t["decoder"] = json!({"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true});
    Ok(t)
}

fn sentencepiece(f: &GgufFile, v: &Vocab, gemma: bool) -> Result<Json> {
    let tokens: Vec<String> =
        if gemma {
            // Gemma stores runs of spaces as spaces; its tokenizer looks them up as "▁"s.
            v.tokens
                .iter()
                .map(|t| {
                    if t.contains(' ') && t.trim().is_empty() {
                        "\u{2581}".repeat(t.chars().count())
                    } else {
                        t.clone()
                    }
                })
                .collect()
        } else {
            v.tokens.clone()
        };
    let vocab = OrderedMap::from_pairs(tokens.iter().enumerate().map(|(i, t)| (t.clone(), i as i64)));
    let merges: Vec<(String, String)> = if f.get("tokenizer.ggml.merges").is_some() {
        strings(f, "tokenizer.ggml.merges")?
            .into_iter()
            .map(|m| m.split_once(' ').map(|(l, r)| (l.to_string(), r.to_string())).unwrap_or((m, String::new())))
            .collect()
    } else {
        // Gemma ranks by file order; other sentencepiece vocabularies by their scores. The
        // ranking map follows Python dict semantics over the (possibly repeated) tokens.
        let ranked = if gemma {
            OrderedMap::from_pairs(tokens.iter().enumerate().map(|(i, t)| (t.clone(), -(i as i64))))
        } else {
            OrderedMap { keys: Vec::new(), values: HashMap::new() }
        };
        let scores: Vec<(String, f64)> = if gemma {
            ranked.keys.iter().map(|k| (k.clone(), ranked.values[k] as f64)).collect()
        } else {
            let mut last: HashMap<&str, f64> = HashMap::new();
            for (t, &s) in tokens.iter().zip(&v.scores) {
                last.insert(t, s);
            }
            vocab.keys.iter().map(|k| (k.clone(), last[k.as_str()])).collect()
        };
        merges_from_vocab(&vocab, &scores)
    };
    let mut vocab_json = serde_json::Map::new();
    for k in &vocab.keys {
        vocab_json.insert(k.clone(), json!(vocab.values[k]));
    }
    let unk = f
        .get("tokenizer.ggml.unknown_token_id")
        .and_then(Value::as_u64)
        .and_then(|id| tokens.get(id as usize).cloned())
        .unwrap_or_else(|| "<unk>".into());
    let model = json!({"type": "BPE", "dropout": null, "unk_token": unk, "continuing_subword_prefix": null,
                       "end_of_word_suffix": null, "fuse_unk": true, "byte_fallback": true, "ignore_merges": false,
                       "vocab": vocab_json, "merges": merges.iter().map(|(l, r)| json!([l, r])).collect::<Vec<_>>()});
    let id_of = |tok: &str| vocab.values.get(tok).map(|&i| i as usize);
    let mut t = skeleton(v, model, &id_of, &|_| true);
    if gemma {
        t["normalizer"] = json!({"type": "Replace", "pattern": {"String": " "}, "content": "\u{2581}"});
        t["pre_tokenizer"] =
            json!({"type": "Split", "pattern": {"String": " "}, "behavior": "MergedWithPrevious", "invert": false});
        t["decoder"] = json!({"type": "Sequence", "decoders": [
            {"type": "Replace", "pattern": {"String": "\u{2581}"}, "content": " "}, {"type": "ByteFallback"}, {"type": "Fuse"}]});
    } else {
        t["pre_tokenizer"] =
            json!({"type": "Metaspace", "replacement": "\u{2581}", "prepend_scheme": "first", "split": false});
        t["decoder"] = json!({"type": "Sequence", "decoders": [
            {"type": "Replace", "pattern": {"String": "\u{2581}"}, "content": " "}, {"type": "ByteFallback"}, {"type": "Fuse"},
            {"type": "Strip", "content": " ", "start": 1, "stop": 0}]});
    }
    Ok(t)
}
