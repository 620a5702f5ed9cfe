//! Generation: the KV cache reproduces full recomputation, left-padded batches decode exactly
//! like single prompts, sampling is seeded, and stopping rules hold.

use std::path::Path;

use tunesmith_engine::rng::Rng;
use tunesmith_engine::{Graph, Tensor};
use tunesmith_models::generate::{choose_token, FinishReason};
use tunesmith_models::{generate, Batch, GenerationConfig, KvCache, LoadOptions, Model, Task};

fn model(case: &str) -> Model {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/parity").join(case);
    Model::load(&dir, &LoadOptions::new(Task::CausalLm)).unwrap().0
}

#[test]
fn cached_decoding_matches_full_recomputation() {
    for case in ["llama_gqa", "gpt2", "mistral_sliding_window", "qwen3_qk_norm"] {
        let m = model(case);
        let ids: Vec<i64> = vec![5, 9, 33, 2, 71, 12, 40, 8];
        // Full pass over all tokens.
        let g = Graph::inference();
        let full = m.forward(&g, &Batch::from_ids(std::slice::from_ref(&ids)).unwrap(), false).unwrap().into_value();
        let v = full.shape()[2];
        let full = full.to_vec_f32().unwrap();
        // Prefill 5 tokens, then one token at a time through the cache.
        let mut cache = KvCache::new(m.num_layers());
        for (start, len) in [(0usize, 5usize), (5, 1), (6, 1), (7, 1)] {
            let g = Graph::inference();
            let step = Tensor::from_vec(ids[start..start + len].to_vec(), &[1, len]).unwrap();
            let pos: Vec<i64> = (start as i64..(start + len) as i64).collect();
            let h = m.hidden_states_cached(&g, &step, &pos, None, &mut cache).unwrap();
            let (w, b) = m.lm_head(&g).unwrap();
            let logits = g.linear(&h, &w, b.as_ref()).unwrap().value().to_vec_f32().unwrap();
            for t in 0..len {
                let got = &logits[t * v..(t + 1) * v];
                let want = &full[(start + t) * v..(start + t + 1) * v];
                let err = got.iter().zip(want).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
                assert!(err < 1e-4, "{case}: position {} differs by {err}", start + t);
            }
        }
        assert_eq!(cache.len(), 8);
    }
}

#[test]
fn left_padded_batches_decode_like_single_prompts() {
    let m = model("llama_gqa");
    let prompts = vec![vec![5u32, 9, 33], vec![71, 12, 40, 8, 17, 3], vec![44]];
    let cfg = GenerationConfig { max_new_tokens: 6, pad_token_id: 0, ..Default::default() };
    let batched = generate(&m, &prompts, &cfg, None).unwrap();
    for (i, p) in prompts.iter().enumerate() {
        let single = generate(&m, std::slice::from_ref(p), &cfg, None).unwrap();
        assert_eq!(batched.tokens[i], single.tokens[0], "prompt {i}");
    }
    assert!(batched.finish.iter().all(|f| *f == FinishReason::Length));
}

#[test]
fn sampling_is_seeded_and_filters_apply() {
    let m = model("gpt2");
    let cfg = GenerationConfig {
        max_new_tokens: 8,
        do_sample: true,
        temperature: 1.3,
        top_p: 0.9,
        seed: 42,
        ..Default::default()
    };
    let a = generate(&m, &[vec![3, 4]], &cfg, None).unwrap();
    let b = generate(&m, &[vec![3, 4]], &cfg, None).unwrap();
    assert_eq!(a.tokens, b.tokens);
    let c = generate(&m, &[vec![3, 4]], &GenerationConfig { seed: 43, ..cfg.clone() }, None).unwrap();
    assert_ne!(a.tokens, c.tokens, "a different seed should change a 8-token sample");
    // top_k = 1 is greedy.
    let greedy =
        generate(&m, &[vec![3, 4]], &GenerationConfig { max_new_tokens: 8, ..Default::default() }, None).unwrap();
    let k1 = generate(&m, &[vec![3, 4]], &GenerationConfig { top_k: 1, ..cfg }, None).unwrap();
    assert_eq!(greedy.tokens, k1.tokens);
}

#[test]
fn choose_token_applies_penalty_top_k_and_top_p() {
    let mut rng = Rng::new(0);
    let logits = vec![2.0f32, 1.9, -1.0, 0.5];
    let greedy = GenerationConfig::default();
    assert_eq!(choose_token(&mut logits.clone(), &[], &greedy, &mut rng), 0);
    // A penalty on token 0 hands the argmax to token 1.
    let pen = GenerationConfig { repetition_penalty: 1.2, ..Default::default() };
    assert_eq!(choose_token(&mut logits.clone(), &[0], &pen, &mut rng), 1);
    // top_k = 2 only ever samples tokens 0 and 1; top_p tiny keeps only the best.
    let k2 = GenerationConfig { do_sample: true, top_k: 2, ..Default::default() };
    for _ in 0..200 {
        assert!(choose_token(&mut logits.clone(), &[], &k2, &mut rng) < 2);
    }
    let p = GenerationConfig { do_sample: true, top_p: 0.01, ..Default::default() };
    for _ in 0..50 {
        assert_eq!(choose_token(&mut logits.clone(), &[], &p, &mut rng), 0);
    }
    let bad = GenerationConfig { do_sample: true, temperature: 0.0, ..Default::default() };
    assert!(bad.validate().is_err());
}

/// Top-k / top-p sampling as first written: the whole vocabulary sorted, then cut.
fn choose_by_full_sort(logits: &[f32], cfg: &GenerationConfig, rng: &mut Rng) -> u32 {
    let temp = cfg.temperature as f32;
    let mut order: Vec<usize> = (0..logits.len()).collect();
    order.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]).then(a.cmp(&b)));
    order.truncate(if cfg.top_k > 0 { cfg.top_k.min(order.len()) } else { order.len() });
    let m = logits[order[0]] / temp;
    let mut probs: Vec<f64> = order.iter().map(|&i| ((logits[i] / temp - m) as f64).exp()).collect();
    let total: f64 = probs.iter().sum();
    probs.iter_mut().for_each(|p| *p /= total);
    if cfg.top_p < 1.0 {
        let mut cum = 0.0;
        let cut = probs.iter().position(|p| {
            cum += p;
            cum >= cfg.top_p
        });
        let cut = cut.map_or(probs.len(), |i| i + 1);
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

/// Sampling sorts only what it must (the top k, or the tokens that can be in the nucleus) and
/// picks the same token as a full sort of the vocabulary would, for the same random draw.
#[test]
fn truncated_sampling_matches_a_full_sort() {
    let mut gen = Rng::new(7);
    for (top_k, top_p, temperature) in [(0, 0.9, 1.0), (0, 0.5, 0.7), (0, 0.99, 1.3), (40, 1.0, 1.0), (40, 0.8, 1.0)] {
        let cfg = GenerationConfig { do_sample: true, top_k, top_p, temperature, ..Default::default() };
        for round in 0..20 {
            let logits: Vec<f32> = (0..5000).map(|_| (gen.normal() * 3.0) as f32).collect();
            let (mut a, mut b) = (Rng::new(round), Rng::new(round));
            for _ in 0..10 {
                let fast = choose_token(&mut logits.clone(), &[], &cfg, &mut a);
                assert_eq!(fast, choose_by_full_sort(&logits, &cfg, &mut b), "top_k {top_k} top_p {top_p}");
            }
        }
    }
}

/// Plain sampling (no top-k, no top-p) draws from the softmax of logits / temperature.
#[test]
fn plain_sampling_follows_the_softmax() {
    let logits = [1.0f32, 0.0, 2.0, -1.0];
    let cfg = GenerationConfig { do_sample: true, temperature: 0.8, ..Default::default() };
    let mut rng = Rng::new(11);
    let n = 40_000;
    let mut counts = [0usize; 4];
    for _ in 0..n {
        counts[choose_token(&mut logits.to_vec(), &[], &cfg, &mut rng) as usize] += 1;
    }
    let e: Vec<f64> = logits.iter().map(|&l| (f64::from(l) / 0.8).exp()).collect();
    let z: f64 = e.iter().sum();
    for i in 0..4 {
        let (got, want) = (counts[i] as f64 / n as f64, e[i] / z);
        assert!((got - want).abs() < 0.01, "token {i}: {got} vs {want}");
    }
}

#[test]
fn eos_and_stop_strings_end_rows() {
    let m = model("llama_gqa");
    let free =
        generate(&m, &[vec![5, 9]], &GenerationConfig { max_new_tokens: 5, ..Default::default() }, None).unwrap();
    let first = free.tokens[0][0];
    let eos = generate(
        &m,
        &[vec![5, 9]],
        &GenerationConfig { max_new_tokens: 5, eos_token_ids: vec![first], ..Default::default() },
        None,
    )
    .unwrap();
    assert_eq!(eos.tokens[0], vec![first]);
    assert_eq!(eos.finish[0], FinishReason::Eos);
    let decode = |ids: &[u32]| ids.iter().map(|i| format!("<{i}>")).collect::<String>();
    let stop = format!("<{}>", free.tokens[0][1]);
    let cfg = GenerationConfig { max_new_tokens: 5, stop_strings: vec![stop], ..Default::default() };
    let s = generate(&m, &[vec![5, 9]], &cfg, Some(&decode)).unwrap();
    assert_eq!(s.tokens[0], free.tokens[0][..2].to_vec());
    assert_eq!(s.finish[0], FinishReason::StopString(0));
}
