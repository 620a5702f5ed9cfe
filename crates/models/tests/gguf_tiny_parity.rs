//! Tiny Qwen2 (q/k/v biases, tied head, NEOX rotary) and Llama (untied head, interleaved rotary
//! rows in the file) GGUF files written by gguf-py, against transformers loading the same files:
//! f32 logits within 1e-4 at every position. No real Qwen2 GGUF is available offline; llama.cpp
//! writes Mistral models as `llama` files. Fixtures: scripts/make_tiny_gguf_fixtures.py.

use std::path::Path;

use serde_json::Value;
use tunesmith_engine::Graph;
use tunesmith_models::gguf::{self, GgufFile};
use tunesmith_models::{Batch, LoadOptions, Task};

#[test]
fn tiny_qwen2_and_llama_files_match_transformers() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/gguf_tiny");
    let fixture: Value = serde_json::from_str(&std::fs::read_to_string(dir.join("logits.json")).unwrap()).unwrap();
    let ids: Vec<Vec<i64>> = fixture["ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_array().unwrap().iter().map(|v| v.as_i64().unwrap()).collect())
        .collect();
    for arch in ["qwen2", "llama"] {
        let file = GgufFile::open(&dir.join(format!("{arch}.gguf"))).unwrap();
        let (model, _) = gguf::load::load_file(&file, &LoadOptions::new(Task::CausalLm)).unwrap();
        if arch == "qwen2" {
            let biases = model.params.iter().filter(|(_, p)| p.name.ends_with("q_proj.bias")).count();
            assert_eq!(biases, 2, "qwen2's q biases were not picked up");
        }
        for (seq, want) in ids.iter().zip(fixture["models"][arch].as_array().unwrap()) {
            let g = Graph::inference();
            let batch = Batch::from_ids(std::slice::from_ref(seq)).unwrap();
            let got = model.forward(&g, &batch, false).unwrap().value().to_vec_f64().unwrap();
            let want: Vec<f64> = want
                .as_array()
                .unwrap()
                .iter()
                .flat_map(|row| row.as_array().unwrap().iter().map(|v| v.as_f64().unwrap()))
                .collect();
            assert_eq!(got.len(), want.len(), "{arch}: logits shape");
            let worst = got.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0f64, f64::max);
            assert!(worst < 1e-4, "{arch}: logits differ from transformers by {worst:e}");
        }
    }
}
