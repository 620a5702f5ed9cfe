//! Text generation for decoder models: batched prompts with left padding, a key/value cache,
//! greedy or sampled decoding (temperature, top-k, top-p, repetition penalty), and stopping on
//! end-of-sequence ids or stop strings. Settings default from `generation_config.json`.

use std::path::Path;

use serde_json::Value;
use tunesmith_engine::rng::Rng;
use tunesmith_engine::{Graph, Tensor};

use crate::batch::KvCache;
use crate::error::{ModelError, Result};
use crate::model::{Head, Model};

/// Decoding settings.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerationConfig {
    /// Tokens to generate at most.
    pub max_new_tokens: usize,
    /// Sample (true) or take the most likely token (false).
    pub do_sample: bool,
    /// Softmax temperature when sampling.
    pub temperature: f64,
    /// Keep only the k most likely tokens (0 = all).
    pub top_k: usize,
    /// Keep the smallest set of tokens whose probability reaches p (1 = all).
    pub top_p: f64,
    /// Penalty > 1 discourages tokens already in the sequence (CTRL-style, as transformers).
    pub repetition_penalty: f64,
    /// Generation of a row stops at any of these ids.
    pub eos_token_ids: Vec<u32>,
    /// Generation of a row stops once its text contains any of these.
    pub stop_strings: Vec<String>,
    /// Id used to pad prompts (and finished rows).
    pub pad_token_id: u32,
    /// Sampling seed.
    pub seed: u64,
}

impl Default for GenerationConfig {
    fn default() -> Self {
        GenerationConfig {
            max_new_tokens: 64,
            do_sample: false,
            temperature: 1.0,
            top_k: 0,
            top_p: 1.0,
            repetition_penalty: 1.0,
            eos_token_ids: Vec::new(),
            stop_strings: Vec::new(),
            pad_token_id: 0,
            seed: 0,
        }
    }
}

impl GenerationConfig {
    /// Defaults overridden by `dir/generation_config.json` when present, with eos/pad ids from
    /// the model config as fallback.
    pub fn for_model(model: &Model, dir: &Path) -> Result<GenerationConfig> {
        let mut g = GenerationConfig {
            eos_token_ids: model.config.eos_token_ids.clone(),
            pad_token_id: model.config.pad_token_id.or(model.config.eos_token_ids.first().copied()).unwrap_or(0),
            ..Default::default()
        };
        let path = dir.join("generation_config.json");
        if !path.exists() {
            return Ok(g);
        }
        let text = std::fs::read_to_string(&path).map_err(|e| ModelError::io(&path, e))?;
        let v: Value = serde_json::from_str(&text).map_err(|e| ModelError::Json { path: path.clone(), source: e })?;
        let f = |k: &str| v.get(k).and_then(Value::as_f64);
        if let Some(x) = v.get("max_new_tokens").and_then(Value::as_u64) {
            g.max_new_tokens = x as usize;
        }
        if let Some(x) = v.get("do_sample").and_then(Value::as_bool) {
            g.do_sample = x;
        }
        if let Some(x) = f("temperature") {
            g.temperature = x;
        }
        if let Some(x) = v.get("top_k").and_then(Value::as_u64) {
            g.top_k = x as usize;
        }
        if let Some(x) = f("top_p") {
            g.top_p = x;
        }
        if let Some(x) = f("repetition_penalty") {
            g.repetition_penalty = x;
        }
        match v.get("eos_token_id") {
            Some(Value::Number(n)) => g.eos_token_ids = n.as_u64().map(|x| vec![x as u32]).unwrap_or_default(),
            Some(Value::Array(a)) => g.eos_token_ids = a.iter().filter_map(Value::as_u64).map(|x| x as u32).collect(),
            _ => {}
        }
        if let Some(x) = v.get("pad_token_id").and_then(Value::as_u64) {
            g.pad_token_id = x as u32;
        }
        Ok(g)
    }

    /// Checks the settings are usable.
    pub fn validate(&self) -> Result<()> {
        if self.do_sample && self.temperature <= 0.0 {
            return Err(ModelError::Invalid(format!(
                "temperature must be > 0 when sampling, got {}",
                self.temperature
            )));
        }
        if !(0.0..=1.0).contains(&self.top_p) || self.top_p == 0.0 {
            return Err(ModelError::Invalid(format!("top_p must be in (0, 1], got {}", self.top_p)));
        }
        if self.repetition_penalty <= 0.0 {
            return Err(ModelError::Invalid(format!(
                "repetition_penalty must be > 0, got {}",
                self.repetition_penalty
            )));
        }
        Ok(())
    }
}

/// Why a row stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishReason {
    /// Produced an end-of-sequence id (included in the output).
    Eos,
    /// Its text contains the stop string with this index.
    StopString(usize),
    /// Reached max_new_tokens.
    Length,
}

/// Generated continuations.
#[derive(Debug, Clone)]
pub struct Generated {
    /// New tokens per prompt.
    pub tokens: Vec<Vec<u32>>,
    /// Why each row stopped.
    pub finish: Vec<FinishReason>,
}

/// Applies repetition penalty, temperature, top-k and top-p to one row of logits and picks a
/// token (argmax when not sampling; the lowest index wins ties).
pub fn choose_token(logits: &mut [f32], seen: &[u32], cfg: &GenerationConfig, rng: &mut Rng) -> u32 {
    if cfg.repetition_penalty != 1.0 {
        let p = cfg.repetition_penalty as f32;
        let mut done = std::collections::HashSet::new();
        for &t in seen {
            if (t as usize) < logits.len() && done.insert(t) {
                let l = &mut logits[t as usize];
                *l = if *l > 0.0 { *l / p } else { *l * p };
            }
        }
    }
    if !cfg.do_sample {
        let mut best = 0;
        for (i, &v) in logits.iter().enumerate() {
            if v > logits[best] {
                best = i;
            }
        }
        return best as u32;
    }
    let temp = cfg.temperature as f32;
    // Highest logit first, the lowest index first among equals.
    let before = |a: &usize, b: &usize| logits[*b].total_cmp(&logits[*a]).then(a.cmp(b));
    if cfg.top_k == 0 && cfg.top_p >= 1.0 {
        // The whole vocabulary: no order needed, one pass to sample.
        let m = logits.iter().fold(f32::NEG_INFINITY, |m, &l| m.max(l)) / temp;
        let probs: Vec<f64> = logits.iter().map(|&l| ((l / temp - m) as f64).exp()).collect();
        let u = rng.uniform() * probs.iter().sum::<f64>();
        let mut cum = 0.0;
        for (i, p) in probs.iter().enumerate() {
            cum += p;
            if u < cum {
                return i as u32;
            }
        }
        return probs.iter().rposition(|&p| p > 0.0).unwrap_or(0) as u32;
    }
    let mut order: Vec<usize> = (0..logits.len()).collect();
    let top_k_cut = cfg.top_k > 0 && cfg.top_k < order.len();
    if top_k_cut {
        order.select_nth_unstable_by(cfg.top_k - 1, before);
        order.truncate(cfg.top_k);
    } else if cfg.top_p < 1.0 {
        // Only tokens of probability ≥ (1 − p)/V can be in the nucleus: the others hold less
        // than 1 − p together, so the sorted prefix reaches p before them.
        let m = logits.iter().fold(f32::NEG_INFINITY, |m, &l| m.max(l)) / temp;
        let total: f64 = logits.iter().map(|&l| ((l / temp - m) as f64).exp()).sum();
        let floor = (1.0 - cfg.top_p) / logits.len() as f64 * total;
        order.retain(|&i| ((logits[i] / temp - m) as f64).exp() >= floor);
    }
    order.sort_unstable_by(before);
    let m = logits[order[0]] / temp;
    let mut probs: Vec<f64> = order.iter().map(|&i| ((logits[i] / temp - m) as f64).exp()).collect();
    let total: f64 = if top_k_cut {
        probs.iter().sum()
    } else {
        // The nucleus is cut from the whole distribution, not from the candidates kept above.
        logits.iter().map(|&l| ((l / temp - m) as f64).exp()).sum()
    };
    probs.iter_mut().for_each(|p| *p /= total);
    if cfg.top_p < 1.0 {
        let mut cum = 0.0;
        let mut cut = probs.len();
        for (i, p) in probs.iter().enumerate() {
            cum += p;
            if cum >= cfg.top_p {
                cut = i + 1;
                break;
            }
        }
        probs.truncate(cut);
        order.truncate(cut);
        let total: f64 = probs.iter().sum();
        probs.iter_mut().for_each(|p| *p /= total);
    }
    let u = rng.uniform();
    let mut cum = 0.0;
    for (p, &i) in probs.iter().zip(&order) {
        cum += p;
        if u < cum {
            return i as u32;
        }
    }
    order[order.len() - 1] as u32
}

/// Turns token ids into text (for stop strings).
pub type Decoder<'a> = dyn Fn(&[u32]) -> String + 'a;

/// Generates continuations of `prompts` (token ids). `decode` turns ids into text; it is needed
/// only when `cfg.stop_strings` is not empty.
pub fn generate(
    model: &Model,
    prompts: &[Vec<u32>],
    cfg: &GenerationConfig,
    decode: Option<&Decoder<'_>>,
) -> Result<Generated> {
    cfg.validate()?;
    if !matches!(model.head, Head::CausalLm { .. }) {
        return Err(ModelError::Invalid("generation needs a causal language model".into()));
    }
    if prompts.is_empty() || prompts.iter().any(Vec::is_empty) {
        return Err(ModelError::Invalid("every prompt needs at least one token".into()));
    }
    if !cfg.stop_strings.is_empty() && decode.is_none() {
        return Err(ModelError::Invalid("stop strings need a tokenizer to decode with".into()));
    }
    let b = prompts.len();
    let longest = prompts.iter().map(Vec::len).max().unwrap_or(0);
    let mut ids = Vec::with_capacity(b * longest);
    let mut mask = Vec::with_capacity(b * longest);
    let mut positions = Vec::with_capacity(b * longest);
    let mut next_pos = vec![0i64; b];
    for (r, p) in prompts.iter().enumerate() {
        let pad = longest - p.len();
        ids.extend(std::iter::repeat_n(cfg.pad_token_id as i64, pad));
        ids.extend(p.iter().map(|&t| t as i64));
        mask.extend(std::iter::repeat_n(0i64, pad));
        mask.extend(std::iter::repeat_n(1i64, p.len()));
        positions.extend(std::iter::repeat_n(1i64, pad));
        positions.extend(0..p.len() as i64);
        next_pos[r] = p.len() as i64;
    }
    let mut cache = KvCache::new(model.num_layers());
    let mut rng = Rng::new(cfg.seed);
    let mut out: Vec<Vec<u32>> = vec![Vec::new(); b];
    let mut finish: Vec<Option<FinishReason>> = vec![None; b];
    let mut step_ids = Tensor::from_vec(ids, &[b, longest])?;
    let mut step_pos = positions;
    let mut step_len = longest;
    for _ in 0..cfg.max_new_tokens {
        let key_mask = Tensor::from_vec(mask.clone(), &[b, mask.len() / b])?;
        let g = Graph::inference();
        let h = model.hidden_states_cached(&g, &step_ids, &step_pos, Some(&key_mask), &mut cache)?;
        let d = h.shape()[2];
        let last = g.reshape(&g.narrow(&h, 1, step_len - 1, 1)?, &[b, d])?;
        let (w, bias) = model.lm_head(&g)?;
        let logits = g.linear(&last, &w, bias.as_ref())?.value().to_vec_f32()?;
        let v = logits.len() / b;
        let mut next = Vec::with_capacity(b);
        for r in 0..b {
            if finish[r].is_some() {
                next.push(cfg.pad_token_id);
                continue;
            }
            let mut row = logits[r * v..(r + 1) * v].to_vec();
            let seen: Vec<u32> = prompts[r].iter().chain(&out[r]).copied().collect();
            let t = choose_token(&mut row, &seen, cfg, &mut rng);
            out[r].push(t);
            next.push(t);
            if cfg.eos_token_ids.contains(&t) {
                finish[r] = Some(FinishReason::Eos);
            } else if let Some(dec) = decode {
                if !cfg.stop_strings.is_empty() {
                    let text = dec(&out[r]);
                    if let Some(i) = cfg.stop_strings.iter().position(|s| text.contains(s.as_str())) {
                        finish[r] = Some(FinishReason::StopString(i));
                    }
                }
            }
        }
        if finish.iter().all(Option::is_some) {
            break;
        }
        // Next step: one new token per row at the following position.
        let mut new_mask = Vec::with_capacity(mask.len() + b);
        let old_len = mask.len() / b;
        for r in 0..b {
            new_mask.extend_from_slice(&mask[r * old_len..(r + 1) * old_len]);
            new_mask.push(1);
        }
        mask = new_mask;
        step_ids = Tensor::from_vec(next.iter().map(|&t| t as i64).collect::<Vec<i64>>(), &[b, 1])?;
        step_pos = next_pos.clone();
        next_pos.iter_mut().for_each(|p| *p += 1);
        step_len = 1;
    }
    Ok(Generated { tokens: out, finish: finish.into_iter().map(|f| f.unwrap_or(FinishReason::Length)).collect() })
}
