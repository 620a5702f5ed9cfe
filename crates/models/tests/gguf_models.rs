//! The real GGUF models (SmolLM2-135M-Instruct Q4_1, Gemma 3 270M Q4_K_M) against transformers
//! loading the same files (fixtures from scripts/make_gguf_fixtures.py): the tokenizers built
//! from the GGUF metadata give transformers' token ids on every chat-template render and on
//! plain texts, and the models' f32 logits match within 1e-4. Skips, saying why, where the
//! files have not been fetched (scripts/fetch-test-models.sh smollm2|gemma3).

use std::path::Path;

use serde_json::Value;
use tunesmith_engine::Graph;
use tunesmith_models::gguf::{self, GgufFile};
use tunesmith_models::{Batch, LoadOptions, Task};
use tunesmith_testkit::fetched_gguf;

fn fixture(file: &str) -> Value {
    let text = include_str!("fixtures/gguf_transformers.json");
    let all: Value = serde_json::from_str(text).unwrap();
    all["models"].as_array().unwrap().iter().find(|m| m["file"] == file).unwrap().clone()
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect()
}

fn check_tokens(path: &Path) {
    let file = path.file_name().unwrap().to_str().unwrap();
    let fx = fixture(file);
    let f = GgufFile::open(path).unwrap();
    let tok = gguf::tokenizer::load(&f).unwrap();
    let mut checked = 0;
    for case in fx["tokens"].as_array().unwrap() {
        let text = case["text"].as_str().unwrap();
        let special = case["special"].as_bool().unwrap();
        let got = tok.encode(text, special).unwrap();
        assert_eq!(got, ids(&case["ids"]), "{file}: {} ({special}): {text:?}", case["label"]);
        checked += 1;
    }
    assert!(checked >= 10, "{file}: only {checked} cases");
}

fn check_logits(path: &Path) {
    let file = path.file_name().unwrap().to_str().unwrap();
    let fx = fixture(file);
    let (model, report) = gguf::load::load(path, &LoadOptions::new(Task::CausalLm)).unwrap();
    assert!(report.initialized.is_empty(), "{file}: fresh parameters {:?}", report.initialized);
    for case in fx["logits"].as_array().unwrap() {
        let input: Vec<i64> = ids(&case["ids"]).into_iter().map(i64::from).collect();
        let g = Graph::inference();
        let batch = Batch::from_ids(std::slice::from_ref(&input)).unwrap();
        let logits = model.forward(&g, &batch, false).unwrap().value().to_vec_f64().unwrap();
        let vocab = logits.len() / input.len();
        let columns: Vec<usize> =
            case["columns"].as_array().unwrap().iter().map(|c| c.as_u64().unwrap() as usize).collect();
        let want = case["values"].as_array().unwrap();
        let (mut worst, mut scale) = (0f64, 0f64);
        for (pos, row) in want.iter().enumerate() {
            for (c, w) in columns.iter().zip(row.as_array().unwrap()) {
                let w = w.as_f64().unwrap();
                worst = worst.max((logits[pos * vocab + c] - w).abs());
                scale = scale.max(w.abs());
            }
        }
        assert!(worst / scale <= 1e-4, "{file} {:?}: logits differ by {worst:e} (scale {scale:.2})", case["prompt"]);
        let last = &logits[(input.len() - 1) * vocab..];
        let top = (0..vocab).max_by(|&a, &b| last[a].total_cmp(&last[b])).unwrap();
        assert_eq!(top as u64, case["top8"][0].as_u64().unwrap(), "{file}: greedy next token");
    }
}

#[test]
fn smollm2_tokenizer_matches_transformers() {
    let Some(path) = fetched_gguf("smollm2") else { return };
    check_tokens(&path);
}

#[test]
fn smollm2_logits_match_transformers() {
    let Some(path) = fetched_gguf("smollm2") else { return };
    check_logits(&path);
}

#[test]
fn smollm2_tokenizer_equals_its_hf_tokenizer_json() {
    let Some(path) = fetched_gguf("smollm2") else { return };
    let hf_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/chat-templates/smollm2-135m-instruct");
    if !hf_dir.join("tokenizer.json").exists() {
        eprintln!("SKIPPED: no {} (../shared is absent)", hf_dir.display());
        return;
    }
    let hf = tunesmith_models::Tokenizer::from_dir(&hf_dir).unwrap();
    let ours = gguf::tokenizer::load(&GgufFile::open(&path).unwrap()).unwrap();
    for case in fixture("SmolLM2-135M-Instruct.Q4_1.gguf")["tokens"].as_array().unwrap() {
        let text = case["text"].as_str().unwrap();
        assert_eq!(ours.encode(text, false).unwrap(), hf.encode(text, false).unwrap(), "{text:?}");
    }
    assert_eq!(ours.special().eos.map(|t| t.0), Some("<|im_end|>".to_string()));
    assert!(ours.chat_template().is_some_and(|t| t.contains("<|im_start|>")));
}

#[test]
fn gemma3_tokenizer_matches_transformers() {
    let Some(path) = fetched_gguf("gemma3") else { return };
    check_tokens(&path);
}
#[test]
fn gemma3_logits_match_transformers() {
    let Some(path) = fetched_gguf("gemma3") else { return };
    check_logits(&path);
}
