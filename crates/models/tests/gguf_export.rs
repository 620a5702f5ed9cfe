//! GGUF export round trips on a tiny Llama GGUF (and, when fetched, the real SmolLM2 Q4_1):
//! a model with trained-looking LoRA adapters, written as a llama.cpp LoRA GGUF and loaded back
//! onto the base, gives the same logits; merged and written as an F32 / F16 / Q8_0 GGUF and
//! loaded back, it gives the merged model's logits within each encoding's error (F32 1e-5,
//! F16 5e-3, Q8_0 5e-2, Q4_K_M 0.15 of the largest logit, with the same greedy token
//! everywhere, or for Q4_K_M at all but one position in eight). A Q4_K_M export of Gemma 3
//! picks, tensor by tensor, the types of the published Q4_K_M file.

use std::path::Path;

use tunesmith_engine::{Graph, Tensor};
use tunesmith_models::gguf::export::{self, ExportQuant};
use tunesmith_models::gguf::testing::tiny_llama;
use tunesmith_models::gguf::{self, GgufFile};
use tunesmith_models::lora::{self, LoraConfig, TargetModules};
use tunesmith_models::{Batch, LoadOptions, Model, Task};
use tunesmith_testkit::{fetched_gguf, max_rel_diff as rel};

fn logits(model: &Model, ids: &[i64]) -> Vec<f64> {
    let g = Graph::inference();
    let batch = Batch::from_ids(&[ids.to_vec()]).unwrap();
    model.forward(&g, &batch, false).unwrap().value().to_vec_f64().unwrap()
}

/// Attaches LoRA (r = 4, α = 8) to every projection and fills B with non-zero values, as
/// after training.
fn adapted(source: &GgufFile) -> Model {
    let (mut model, _) = gguf::load::load_file(source, &LoadOptions::new(Task::CausalLm)).unwrap();
    let targets = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"];
    let cfg = LoraConfig::new(4, 8.0, TargetModules::Names(targets.iter().map(|s| s.to_string()).collect()));
    lora::attach(&mut model, &cfg).unwrap();
    let ids: Vec<_> = model.params.iter().filter(|(_, p)| p.name.contains("lora_B")).map(|(id, _)| id).collect();
    for (k, id) in ids.into_iter().enumerate() {
        let shape = model.params.get(id).value.shape().to_vec();
        let n: usize = shape.iter().product();
        let v: Vec<f32> = (0..n).map(|i| ((i + 31 * k) as f32 * 0.37).sin() * 0.05).collect();
        model.params.set_value(id, Tensor::from_vec(v, &shape).unwrap()).unwrap();
    }
    model
}

fn round_trip(path: &Path, ids: &[i64], q8_tol: f64, q4_tol: f64) {
    let dir = tempfile::tempdir().unwrap();
    let source = GgufFile::open(path).unwrap();
    let mut model = adapted(&source);
    let with_adapters = logits(&model, ids);
    let base = logits(&gguf::load::load_file(&source, &LoadOptions::new(Task::CausalLm)).unwrap().0, ids);
    assert!(rel(&with_adapters, &base) > 1e-4, "the adapters change nothing; the test would prove nothing");

    let lora_file = dir.path().join("adapter.gguf");
    export::write_lora(&source, &model, &lora_file).unwrap();
    let written = GgufFile::open(&lora_file).unwrap();
    assert_eq!(written.str("general.type").unwrap(), "adapter");
    assert_eq!(written.f64_opt("adapter.lora.alpha"), Some(8.0));
    let (mut again, _) = gguf::load::load_file(&source, &LoadOptions::new(Task::CausalLm)).unwrap();
    let adapted_layers = export::load_lora(&mut again, &source, &lora_file).unwrap();
    assert_eq!(adapted_layers, 7 * model.num_layers());
    let e = rel(&logits(&again, ids), &with_adapters);
    assert!(e < 1e-5, "LoRA GGUF round trip: {e:e}");

    lora::merge_and_unload(&mut model).unwrap();
    let merged = logits(&model, ids);
    assert!(rel(&merged, &with_adapters) < 1e-4);
    for (quant, tol) in
        [(ExportQuant::F32, 1e-5), (ExportQuant::F16, 5e-3), (ExportQuant::Q8_0, q8_tol), (ExportQuant::Q4KM, q4_tol)]
    {
        let out = dir.path().join("model.gguf");
        export::write_model(&source, &model, quant, &out).unwrap();
        let f = GgufFile::open(&out).unwrap();
        assert_eq!(f.tensors.len(), source.tensors.len());
        assert_eq!(f.get("tokenizer.ggml.tokens"), source.get("tokenizer.ggml.tokens"));
        let (back, _) = gguf::load::load_file(&f, &LoadOptions::new(Task::CausalLm)).unwrap();
        let got = logits(&back, ids);
        let e = rel(&got, &merged);
        assert!(e < tol, "{quant:?} export: logits differ by {e:e} (tolerance {tol:e})");
        eprintln!("{}: {quant:?} export, logits within {e:.2e} of the merged model", path.display());
        // Re-quantizing every matrix moves logits by a few percent at most; the greedy
        // choice at every position must survive it.
        let vocab = merged.len() / ids.len();
        let argmax = |v: &[f64], pos: usize| {
            (0..vocab).max_by(|&a, &b| v[pos * vocab + a].total_cmp(&v[pos * vocab + b])).unwrap()
        };
        let same = (0..ids.len()).filter(|&pos| argmax(&got, pos) == argmax(&merged, pos)).count();
        // Q4_K_M (4–5 bits a weight) may flip a near tie; at most one position in eight.
        let allowed = if quant == ExportQuant::Q4KM { ids.len() / 8 } else { 0 };
        assert!(
            same + allowed >= ids.len(),
            "{quant:?} export: greedy token differs at {} of {} positions",
            ids.len() - same,
            ids.len()
        );
    }
}

#[test]
fn tiny_llama_exports_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tiny.gguf");
    tiny_llama("llama").write(&path).unwrap();
    round_trip(&path, &[5, 70, 101, 33, 200, 7, 12], 2e-2, 3e-2);
}

#[test]
fn q4_k_m_export_of_gemma3_picks_the_types_of_the_published_file() {
    let Some(path) = fetched_gguf("gemma3") else { return };
    let source = GgufFile::open(&path).unwrap();
    let (model, _) = gguf::load::load_file(&source, &LoadOptions::new(Task::CausalLm)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("gemma-q4_k_m.gguf");
    export::write_model(&source, &model, ExportQuant::Q4KM, &out).unwrap();
    let written = GgufFile::open(&out).unwrap();
    assert_eq!(written.tensors.len(), source.tensors.len());
    for (ours, theirs) in written.tensors.iter().zip(&source.tensors) {
        assert_eq!(ours.name, theirs.name);
        assert_eq!(ours.ty, theirs.ty, "{}", ours.name);
    }
}

#[test]
fn smollm2_exports_round_trip() {
    let Some(path) = fetched_gguf("smollm2") else { return };
    round_trip(&path, &[1, 4093, 198, 19161, 253, 421, 30614, 563], 5e-2, 0.15);
}
