//! Tokenizers: Hugging Face `tokenizer.json` through the `tokenizers` crate (special tokens from
//! `tokenizer_config.json`), and llama2.c's `tokenizer.bin` format (sentencepiece-style BPE by
//! merge scores, with byte fallback).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::error::{DataError, Result};

/// Byte ranges of tokens in the text they were encoded from.
pub type Offsets = Vec<(usize, usize)>;

/// The special tokens a model uses.
#[derive(Debug, Clone, Default)]
pub struct SpecialTokens {
    /// Beginning of sequence.
    pub bos: Option<(String, u32)>,
    /// End of sequence / end of turn.
    pub eos: Option<(String, u32)>,
    /// Padding.
    pub pad: Option<(String, u32)>,
    /// Unknown.
    pub unk: Option<(String, u32)>,
}

/// A tokenizer of either supported format.
#[derive(Clone)]
pub enum Tokenizer {
    /// A Hugging Face tokenizer.
    Hf {
        /// The tokenizers-crate tokenizer.
        inner: Box<tokenizers::Tokenizer>,
        /// Special tokens from tokenizer_config.json.
        special: SpecialTokens,
        /// The `chat_template`, if tokenizer_config.json has one.
        chat_template: Option<String>,
        /// Where it was loaded from.
        path: PathBuf,
    },
    /// A llama2.c tokenizer.
    Llama2c(Llama2cTokenizer),
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Tokenizer::Hf { path, .. } => write!(f, "Tokenizer::Hf({})", path.display()),
            Tokenizer::Llama2c(t) => write!(f, "Tokenizer::Llama2c({} tokens)", t.vocab.len()),
        }
    }
}

fn token_content(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Object(m) => m.get("content").and_then(|c| c.as_str()).map(String::from),
        _ => None,
    }
}

/// The regex transformers' `Qwen2Tokenizer` splits with before byte-level encoding.
const QWEN2_SPLIT: &str =
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// Applies what transformers (v5) does on top of tokenizer.json: a tokenizer class with its own
/// constructor keeps the file's vocabulary, merges and post-processor but rebuilds the
/// normalizer and pre-tokenizer itself.
/// - `LlamaTokenizer` (Llama 2, Mistral, Phi-3, TinyLlama...) drops the normalizer and splits
///   with a Metaspace pre-tokenizer that adds the "▁" word prefix only before the first piece
///   (`prepend_scheme="first"`, or `"always"` with `legacy: true`; never with
///   `add_prefix_space: false`), so no prefix is added after special tokens such as `<|user|>`.
/// - `GPT2Tokenizer` (SmolLM, GPT-2...) drops the normalizer and any extra pre-tokenizer (such as
///   SmolLM2's digit splitter) and keeps only byte-level splitting, so "\n\n1" is three tokens.
/// - `Qwen2Tokenizer` normalizes to NFC and splits with its own regex before byte-level encoding.
fn apply_tokenizer_class(inner: &mut tokenizers::Tokenizer, cfg: &Value) -> std::result::Result<(), String> {
    if !matches!(inner.get_model(), tokenizers::ModelWrapper::BPE(_)) {
        return Ok(());
    }
    let class = cfg.get("tokenizer_class").and_then(Value::as_str).unwrap_or("");
    let class = class.strip_suffix("Fast").unwrap_or(class);
    match class {
        "LlamaTokenizer" => apply_llama_class(inner, cfg),
        "GPT2Tokenizer" | "Qwen2Tokenizer" => {
            use tokenizers::normalizers::unicode::NFC;
            use tokenizers::pre_tokenizers::byte_level::ByteLevel;
            use tokenizers::pre_tokenizers::sequence::Sequence;
            use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
            use tokenizers::{NormalizerWrapper, PreTokenizerWrapper, SplitDelimiterBehavior};
            let add_prefix_space = cfg.get("add_prefix_space").and_then(Value::as_bool).unwrap_or(false);
            if class == "GPT2Tokenizer" {
                inner.with_normalizer(None::<NormalizerWrapper>).map_err(|e| e.to_string())?;
                inner.with_pre_tokenizer(Some(ByteLevel::new(add_prefix_space, true, true)));
            } else {
                inner.with_normalizer(Some(NFC)).map_err(|e| e.to_string())?;
                let split =
                    Split::new(SplitPattern::Regex(QWEN2_SPLIT.into()), SplitDelimiterBehavior::Isolated, false)
                        .map_err(|e| e.to_string())?;
                inner.with_pre_tokenizer(Some(Sequence::new(vec![
                    PreTokenizerWrapper::Split(split),
                    PreTokenizerWrapper::ByteLevel(ByteLevel::new(add_prefix_space, true, false)),
                ])));
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// The `LlamaTokenizer` part of [`apply_tokenizer_class`].
fn apply_llama_class(inner: &mut tokenizers::Tokenizer, cfg: &Value) -> std::result::Result<(), String> {
    use tokenizers::pre_tokenizers::metaspace::{Metaspace, PrependScheme};
    let legacy = cfg.get("legacy").and_then(Value::as_bool).unwrap_or(false);
    let add_prefix_space = cfg.get("add_prefix_space").and_then(Value::as_bool).unwrap_or(true);
    let scheme = match (add_prefix_space, legacy) {
        (false, _) => PrependScheme::Never,
        (true, true) => PrependScheme::Always,
        (true, false) => PrependScheme::First,
    };
    inner.with_normalizer(None::<tokenizers::NormalizerWrapper>).map_err(|e| e.to_string())?;
    inner.with_pre_tokenizer(Some(Metaspace::new('\u{2581}', scheme, false)));
    Ok(())
}

impl Tokenizer {
    /// Loads `tokenizer.json` (+ `tokenizer_config.json` when present) from a model folder.
    pub fn from_dir(dir: &Path) -> Result<Tokenizer> {
        let path = dir.join("tokenizer.json");
        let inner = tokenizers::Tokenizer::from_file(&path)
            .map_err(|e| DataError::Tokenizer { path: path.clone(), why: e.to_string() })?;
        let cfg_path = dir.join("tokenizer_config.json");
        let cfg: Value = if cfg_path.exists() {
            let text = std::fs::read_to_string(&cfg_path).map_err(|e| DataError::io(&cfg_path, e))?;
            serde_json::from_str(&text).map_err(|e| DataError::format(&cfg_path, format!("invalid JSON: {e}")))?
        } else {
            Value::Null
        };
        let jinja = dir.join("chat_template.jinja");
        let jinja = jinja.exists().then(|| std::fs::read_to_string(&jinja).ok()).flatten();
        Self::from_parts(inner, &cfg, jinja, path)
    }

    /// A tokenizer from the contents of a `tokenizer.json` and a `tokenizer_config.json`
    /// (special tokens, `chat_template`) built in memory, as for a GGUF file's tokenizer;
    /// `source` names it in errors.
    pub fn from_json(tokenizer: Value, config: Value, source: &Path) -> Result<Tokenizer> {
        let path = source.to_path_buf();
        let inner: tokenizers::Tokenizer = tokenizer
            .to_string()
            .parse()
            .map_err(|e: tokenizers::Error| DataError::Tokenizer { path: path.clone(), why: e.to_string() })?;
        Self::from_parts(inner, &config, None, path)
    }

    fn from_parts(
        mut inner: tokenizers::Tokenizer,
        cfg: &Value,
        jinja: Option<String>,
        path: PathBuf,
    ) -> Result<Tokenizer> {
        // Padding and truncation saved in tokenizer.json are call-time choices in transformers
        // (its fast tokenizers reset them on every call); here the data pipeline makes them.
        inner.with_padding(None);
        inner.with_truncation(None).map_err(|e| DataError::Tokenizer { path: path.clone(), why: e.to_string() })?;
        apply_tokenizer_class(&mut inner, cfg).map_err(|why| DataError::Tokenizer { path: path.clone(), why })?;
        let lookup = |key: &str| -> Option<(String, u32)> {
            let s = token_content(cfg.get(key)?)?;
            let id = inner.token_to_id(&s)?;
            Some((s, id))
        };
        let special = SpecialTokens {
            bos: lookup("bos_token"),
            eos: lookup("eos_token"),
            pad: lookup("pad_token"),
            unk: lookup("unk_token"),
        };
        let chat_template = match cfg.get("chat_template") {
            Some(Value::String(s)) => Some(s.clone()),
            Some(Value::Array(list)) => list
                .iter()
                .find(|t| t.get("name").and_then(|n| n.as_str()) == Some("default"))
                .and_then(|t| t.get("template").and_then(|s| s.as_str()).map(String::from)),
            _ => jinja,
        };
        Ok(Tokenizer::Hf { inner: Box::new(inner), special, chat_template, path })
    }

    /// Loads a llama2.c tokenizer file (`tokenizer.bin`, `tok512.bin`) with `vocab_size` tokens.
    pub fn from_llama2c(path: &Path, vocab_size: usize) -> Result<Tokenizer> {
        Ok(Tokenizer::Llama2c(Llama2cTokenizer::load(path, vocab_size)?))
    }

    /// Token ids of `text`; `add_special` adds what the tokenizer's post-processor (or BOS for
    /// llama2.c) adds.
    pub fn encode(&self, text: &str, add_special: bool) -> Result<Vec<u32>> {
        match self {
            Tokenizer::Hf { inner, path, .. } => inner
                .encode(text, add_special)
                .map(|e| e.get_ids().to_vec())
                .map_err(|e| DataError::Tokenizer { path: path.clone(), why: e.to_string() }),
            Tokenizer::Llama2c(t) => Ok(t.encode(text, add_special, false)),
        }
    }

    /// Token ids of `text` without special tokens, with each token's byte range in `text` (how
    /// a rendered chat is tokenized, as `apply_chat_template` does).
    pub fn encode_with_offsets(&self, text: &str) -> Result<(Vec<u32>, Offsets)> {
        match self {
            Tokenizer::Hf { inner, path, .. } => {
                let enc = inner
                    .encode(text, false)
                    .map_err(|e| DataError::Tokenizer { path: path.clone(), why: e.to_string() })?;
                Ok((enc.get_ids().to_vec(), enc.get_offsets().to_vec()))
            }
            Tokenizer::Llama2c(t) => {
                let ids = t.encode(text, false, false);
                let offsets = t.offsets(&ids, text.len());
                Ok((ids, offsets))
            }
        }
    }

    /// Ids and token type ids of a classification input (a text or a text pair) with the
    /// tokenizer's special tokens, truncated to `max_len` tokens longest-first (as transformers'
    /// `truncation=True`), from the end or (`from_left`) the start. The flag says whether anything
    /// was cut.
    pub fn encode_for_classification(
        &self,
        a: &str,
        b: Option<&str>,
        max_len: Option<usize>,
        from_left: bool,
    ) -> Result<(Vec<u32>, Vec<u32>, bool)> {
        use tokenizers::utils::truncation::{truncate_encodings, TruncationDirection, TruncationParams};
        use tokenizers::PostProcessor;
        match self {
            Tokenizer::Hf { inner, path, .. } => {
                let err = |e: tokenizers::Error| DataError::Tokenizer { path: path.clone(), why: e.to_string() };
                let ea = inner.encode(a, false).map_err(err)?;
                let eb = b.map(|b| inner.encode(b, false)).transpose().map_err(err)?;
                let before = ea.len() + eb.as_ref().map_or(0, |e| e.len());
                let added = inner.get_post_processor().map_or(0, |p| p.added_tokens(eb.is_some()));
                let (ea, eb) = match max_len {
                    Some(max) => {
                        let params = TruncationParams {
                            max_length: max.saturating_sub(added),
                            direction: if from_left { TruncationDirection::Left } else { TruncationDirection::Right },
                            ..TruncationParams::default()
                        };
                        truncate_encodings(ea, eb, &params).map_err(err)?
                    }
                    None => (ea, eb),
                };
                let after = ea.len() + eb.as_ref().map_or(0, |e| e.len());
                let enc = inner.post_process(ea, eb, true).map_err(err)?;
                Ok((enc.get_ids().to_vec(), enc.get_type_ids().to_vec(), after < before))
            }
            Tokenizer::Llama2c(t) => {
                let mut ids = t.encode(a, true, false);
                let n = ids.len();
                if let Some(b) = b {
                    ids.extend(t.encode(b, false, false));
                }
                let mut types: Vec<u32> = (0..ids.len()).map(|i| u32::from(i >= n)).collect();
                let cut = max_len.is_some_and(|m| ids.len() > m);
                if let Some(m) = max_len.filter(|_| cut) {
                    if from_left {
                        ids.drain(1..ids.len() - m + 1);
                        types.drain(1..types.len() - m + 1);
                    } else {
                        ids.truncate(m);
                        types.truncate(m);
                    }
                }
                Ok((ids, types, cut))
            }
        }
    }

    /// Ids of pre-split `words` with the tokenizer's special tokens, and for each token the
    /// index of the word it came from (None for special tokens), truncated to `max_len` tokens
    /// from the end. The flag says whether anything was cut. Hugging Face tokenizers only.
    pub fn encode_words(&self, words: &[String], max_len: Option<usize>) -> Result<(Vec<u32>, Vec<Option<u32>>, bool)> {
        use tokenizers::utils::truncation::{truncate_encodings, TruncationParams};
        use tokenizers::PostProcessor;
        match self {
            Tokenizer::Hf { inner, path, .. } => {
                let err = |e: tokenizers::Error| DataError::Tokenizer { path: path.clone(), why: e.to_string() };
                let enc = inner.encode(words, false).map_err(err)?;
                let before = enc.len();
                let enc = match max_len {
                    Some(max) => {
                        let added = inner.get_post_processor().map_or(0, |p| p.added_tokens(false));
                        let params =
                            TruncationParams { max_length: max.saturating_sub(added), ..TruncationParams::default() };
                        truncate_encodings(enc, None, &params).map_err(err)?.0
                    }
                    None => enc,
                };
                let cut = enc.len() < before;
                let enc = inner.post_process(enc, None, true).map_err(err)?;
                Ok((enc.get_ids().to_vec(), enc.get_word_ids().to_vec(), cut))
            }
            Tokenizer::Llama2c(_) => Err(DataError::Invalid(
                "token classification needs a Hugging Face tokenizer (tokenizer.json) to map words to tokens".into(),
            )),
        }
    }

    /// Ids and token type ids of a text pair (BERT-style `[CLS] a [SEP] b [SEP]`).
    pub fn encode_pair(&self, a: &str, b: &str) -> Result<(Vec<u32>, Vec<u32>)> {
        match self {
            Tokenizer::Hf { inner, path, .. } => inner
                .encode((a, b), true)
                .map(|e| (e.get_ids().to_vec(), e.get_type_ids().to_vec()))
                .map_err(|e| DataError::Tokenizer { path: path.clone(), why: e.to_string() }),
            Tokenizer::Llama2c(t) => {
                let mut ids = t.encode(a, true, false);
                let n = ids.len();
                ids.extend(t.encode(b, false, false));
                let types = (0..ids.len()).map(|i| u32::from(i >= n)).collect();
                Ok((ids, types))
            }
        }
    }

    /// Text of `ids`.
    pub fn decode(&self, ids: &[u32], skip_special: bool) -> Result<String> {
        match self {
            Tokenizer::Hf { inner, path, .. } => inner
                .decode(ids, skip_special)
                .map_err(|e| DataError::Tokenizer { path: path.clone(), why: e.to_string() }),
            Tokenizer::Llama2c(t) => Ok(t.decode(ids)),
        }
    }

    /// Number of tokens (including added ones).
    pub fn vocab_size(&self) -> usize {
        match self {
            Tokenizer::Hf { inner, .. } => inner.get_vocab_size(true),
            Tokenizer::Llama2c(t) => t.vocab.len(),
        }
    }

    /// The id of a token string.
    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        match self {
            Tokenizer::Hf { inner, .. } => inner.token_to_id(token),
            Tokenizer::Llama2c(t) => t.lookup.get(token.as_bytes()).copied(),
        }
    }

    /// The string of a token id.
    pub fn id_to_token(&self, id: u32) -> Option<String> {
        match self {
            Tokenizer::Hf { inner, .. } => inner.id_to_token(id),
            Tokenizer::Llama2c(t) => t.vocab.get(id as usize).map(|b| String::from_utf8_lossy(b).into_owned()),
        }
    }

    /// Special tokens.
    pub fn special(&self) -> SpecialTokens {
        match self {
            Tokenizer::Hf { special, .. } => special.clone(),
            Tokenizer::Llama2c(_) => SpecialTokens {
                bos: Some(("<s>".into(), 1)),
                eos: Some(("</s>".into(), 2)),
                pad: None,
                unk: Some(("<unk>".into(), 0)),
            },
        }
    }

    /// The chat template from tokenizer_config.json, if any.
    pub fn chat_template(&self) -> Option<&str> {
        match self {
            Tokenizer::Hf { chat_template, .. } => chat_template.as_deref(),
            Tokenizer::Llama2c(_) => None,
        }
    }

    /// The wrapped Hugging Face tokenizer, if this is one.
    pub fn hf(&self) -> Option<&tokenizers::Tokenizer> {
        match self {
            Tokenizer::Hf { inner, .. } => Some(inner),
            Tokenizer::Llama2c(_) => None,
        }
    }
}

/// llama2.c's tokenizer: byte strings with merge scores.
#[derive(Debug, Clone)]
pub struct Llama2cTokenizer {
    /// Token byte strings by id.
    pub vocab: Vec<Vec<u8>>,
    /// Merge score by id.
    pub scores: Vec<f32>,
    lookup: HashMap<Vec<u8>, u32>,
}

impl Llama2cTokenizer {
    /// Reads `path` holding `vocab_size` entries.
    pub fn load(path: &Path, vocab_size: usize) -> Result<Llama2cTokenizer> {
        let bytes = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
        let bad = |why: &str| DataError::Tokenizer { path: path.into(), why: why.into() };
        let mut at = 4usize; // max_token_length
        let mut vocab = Vec::with_capacity(vocab_size);
        let mut scores = Vec::with_capacity(vocab_size);
        for i in 0..vocab_size {
            let hdr =
                bytes.get(at..at + 8).ok_or_else(|| bad(&format!("file ends before token {i} of {vocab_size}")))?;
            let score = f32::from_le_bytes(hdr[0..4].try_into().expect("4 bytes"));
            let len = i32::from_le_bytes(hdr[4..8].try_into().expect("4 bytes"));
            if len < 0 {
                return Err(bad(&format!("token {i} has negative length")));
            }
            at += 8;
            let s = bytes
                .get(at..at + len as usize)
                .ok_or_else(|| bad(&format!("token {i} runs past the end of the file")))?;
            vocab.push(s.to_vec());
            scores.push(score);
            at += len as usize;
        }
        let lookup = vocab.iter().enumerate().map(|(i, s)| (s.clone(), i as u32)).collect();
        Ok(Llama2cTokenizer { vocab, scores, lookup })
    }

    /// Encodes like llama2.c: optional BOS (1), a dummy-prefix space, code points (bytes + 3 when
    /// unknown), then greedy best-score merges; optional EOS (2).
    pub fn encode(&self, text: &str, bos: bool, eos: bool) -> Vec<u32> {
        let mut tokens: Vec<u32> = Vec::new();
        if bos {
            tokens.push(1);
        }
        if !text.is_empty() {
            if let Some(&id) = self.lookup.get(b" ".as_slice()) {
                tokens.push(id);
            }
        }
        for ch in text.chars() {
            let mut buf = [0u8; 4];
            let s = ch.encode_utf8(&mut buf).as_bytes();
            match self.lookup.get(s) {
                Some(&id) => tokens.push(id),
                None => tokens.extend(s.iter().map(|&b| b as u32 + 3)),
            }
        }
        let start = usize::from(bos);
        loop {
            let mut best: Option<(f32, usize, u32)> = None;
            for i in start..tokens.len().saturating_sub(1) {
                let mut merged = self.vocab[tokens[i] as usize].clone();
                merged.extend_from_slice(&self.vocab[tokens[i + 1] as usize]);
                if let Some(&id) = self.lookup.get(&merged) {
                    let sc = self.scores[id as usize];
                    if best.is_none_or(|(b, _, _)| sc > b) {
                        best = Some((sc, i, id));
                    }
                }
            }
            match best {
                Some((_, i, id)) => {
                    tokens[i] = id;
                    tokens.remove(i + 1);
                }
                None => break,
            }
        }
        if eos {
            tokens.push(2);
        }
        tokens
    }

    /// Byte ranges of `ids` (an encoding of a `text_len`-byte text without BOS) in that text: the
    /// dummy-prefix space occupies no text, byte-fallback pieces one byte each.
    fn offsets(&self, ids: &[u32], text_len: usize) -> Vec<(usize, usize)> {
        let mut at = 0usize;
        let mut out = Vec::with_capacity(ids.len());
        for (i, &id) in ids.iter().enumerate() {
            let piece = &self.vocab[id as usize];
            let mut len = if (3..259).contains(&id) { 1 } else { piece.len() };
            if i == 0 && piece.first() == Some(&b' ') {
                len -= 1;
            }
            let end = (at + len).min(text_len);
            out.push((at, end));
            at = end;
        }
        out
    }

    /// Decodes ids to text: `<0xNN>` pieces become bytes; the space after BOS is dropped.
    pub fn decode(&self, ids: &[u32]) -> String {
        let mut out: Vec<u8> = Vec::new();
        let mut prev = None;
        for &id in ids {
            if id == 1 || id == 2 {
                prev = Some(id);
                continue;
            }
            let Some(piece) = self.vocab.get(id as usize) else {
                continue;
            };
            let mut piece: &[u8] = piece;
            if (prev == Some(1) || prev.is_none() && out.is_empty()) && piece.first() == Some(&b' ') {
                piece = &piece[1..];
            }
            if piece.len() == 6 && piece.starts_with(b"<0x") && piece.ends_with(b">") {
                if let Ok(b) = u8::from_str_radix(&String::from_utf8_lossy(&piece[3..5]), 16) {
                    out.push(b);
                    prev = Some(id);
                    continue;
                }
            }
            out.extend_from_slice(piece);
            prev = Some(id);
        }
        String::from_utf8_lossy(&out).into_owned()
    }
}
