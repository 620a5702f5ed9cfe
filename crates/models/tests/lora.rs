//! LoRA: attaching by PEFT patterns, identity at init, exact merge/unmerge, and PEFT-format
//! save/load round trips.

use std::path::Path;

use tunesmith_engine::{Graph, Tensor};
use tunesmith_models::lora::{self, LoraBias, LoraConfig, TargetModules};
use tunesmith_models::weights::Checkpoint;
use tunesmith_models::{Batch, LoadOptions, Model, Task};

fn fixture(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/parity").join(name)
}

fn batch(dir: &Path) -> Batch {
    let golden = Checkpoint::open_files(dir, &[dir.join("golden.safetensors")]).unwrap();
    Batch {
        input_ids: golden.take("input_ids").unwrap(),
        attention_mask: Some(golden.take("attention_mask").unwrap()),
        position_ids: None,
        token_type_ids: None,
        segment_ids: None,
    }
}

fn logits(model: &Model, b: &Batch) -> Tensor {
    let g = Graph::inference();
    model.forward(&g, b, false).unwrap().into_value()
}

fn randomize_b(model: &mut Model, seed: u64) {
    let ids: Vec<_> = model.params.iter().filter(|(_, p)| p.name.contains("lora_B")).map(|(id, _)| id).collect();
    for (k, id) in ids.into_iter().enumerate() {
        let shape = model.params.get(id).value.shape().to_vec();
        let t =
            tunesmith_engine::gradcheck::randn(&shape, seed + k as u64).to_dtype(tunesmith_engine::DType::F32).unwrap();
        model.params.set_value(id, lora_scale(&t, 0.3)).unwrap();
    }
}

fn lora_scale(t: &Tensor, s: f32) -> Tensor {
    Tensor::from_vec(t.to_vec::<f32>().unwrap().iter().map(|x| x * s).collect::<Vec<f32>>(), t.shape()).unwrap()
}

#[test]
fn attach_matches_peft_patterns_and_starts_as_identity() {
    let dir = fixture("llama_gqa");
    let (mut model, _) = Model::load(&dir, &LoadOptions::new(Task::CausalLm)).unwrap();
    let b = batch(&dir);
    let before = logits(&model, &b);
    let cfg = LoraConfig::new(4, 8.0, TargetModules::Names(vec!["q_proj".into(), "v_proj".into()]));
    let report = lora::attach(&mut model, &cfg).unwrap();
    assert_eq!(report.adapted.len(), 4, "{:?}", report.adapted);
    assert!(report.adapted.iter().all(|m| m.ends_with("q_proj") || m.ends_with("v_proj")));
    // Only adapters train.
    for (_, p) in model.params.iter() {
        assert_eq!(p.trainable, p.name.contains(".lora_"), "{}", p.name);
    }
    assert_eq!(logits(&model, &b).max_abs_diff(&before).unwrap(), 0.0);
    let regex = LoraConfig::new(2, 4.0, TargetModules::Regex(r".*layers\.1\.mlp\.(up|down)_proj".into()));
    let (mut m2, _) = Model::load(&dir, &LoadOptions::new(Task::CausalLm)).unwrap();
    assert_eq!(
        lora::attach(&mut m2, &regex).unwrap().adapted,
        vec!["model.layers.1.mlp.up_proj", "model.layers.1.mlp.down_proj"]
    );
    let none = LoraConfig::new(2, 4.0, TargetModules::Names(vec!["c_attn".into()]));
    let err = lora::attach(&mut m2.clone(), &none).unwrap_err().to_string();
    assert!(err.contains("matched no linear layer") && err.contains("q_proj"), "{err}");
    // A rank above min(in, out) of a targeted layer is refused, naming the layer.
    let width = m2.config.hidden_size;
    let too_big = LoraConfig::new(width + 1, 4.0, TargetModules::Names(vec!["q_proj".into()]));
    let err = lora::attach(&mut m2.clone(), &too_big).unwrap_err().to_string();
    assert!(
        err.contains(&format!("r = {}", width + 1)) && err.contains("q_proj") && err.contains(&format!("r <= {width}")),
        "{err}"
    );
}

#[test]
fn merge_and_unmerge_are_exact() {
    for case in ["llama_gqa", "gpt2", "bert_seq_cls"] {
        let dir = fixture(case);
        let task = if case == "bert_seq_cls" { Task::SequenceClassification } else { Task::CausalLm };
        let (mut model, _) = Model::load(&dir, &LoadOptions::new(task)).unwrap();
        let b = batch(&dir);
        let mut cfg = LoraConfig::new(4, 16.0, TargetModules::AllLinear);
        cfg.use_rslora = true;
        cfg.bias = LoraBias::LoraOnly;
        lora::attach(&mut model, &cfg).unwrap();
        randomize_b(&mut model, 7);
        let base_weights: Vec<Tensor> = model.params.iter().map(|(_, p)| p.value.clone()).collect();
        let adapted = logits(&model, &b);
        assert!(lora::merge(&mut model).unwrap() > 0);
        let merged = logits(&model, &b);
        let scale = adapted.to_vec_f64().unwrap().iter().fold(0.0f64, |m, x| m.max(x.abs()));
        assert!(merged.max_abs_diff(&adapted).unwrap() / scale < 1e-5, "{case}: merged output differs");
        lora::unmerge(&mut model).unwrap();
        for ((_, p), w) in model.params.iter().zip(&base_weights) {
            assert_eq!(p.value.max_abs_diff(w).unwrap(), 0.0, "{case}: {} not restored exactly", p.name);
        }
        assert_eq!(logits(&model, &b).max_abs_diff(&adapted).unwrap(), 0.0);
        // merge_and_unload saves a plain checkpoint (no adapter tensors) that reloads to the
        // adapted outputs.
        lora::merge_and_unload(&mut model).unwrap();
        let out = tempfile::tempdir().unwrap();
        model.save_pretrained(out.path()).unwrap();
        let (reloaded, _) = Model::load(out.path(), &LoadOptions::new(task)).unwrap();
        assert!(reloaded.params.iter().all(|(_, p)| !p.name.contains("lora_")), "{case}: adapter tensors saved");
        let again = logits(&reloaded, &b);
        assert!(again.max_abs_diff(&adapted).unwrap() / scale < 1e-5, "{case}: merged model differs after reload");
    }
}

#[test]
fn peft_format_round_trip() {
    let dir = fixture("bert_seq_cls");
    let (mut model, _) = Model::load(&dir, &LoadOptions::new(Task::SequenceClassification)).unwrap();
    let mut cfg = LoraConfig::new(4, 8.0, TargetModules::Names(vec!["query".into(), "value".into(), "dense".into()]));
    cfg.modules_to_save = vec!["classifier".into()];
    lora::attach(&mut model, &cfg).unwrap();
    randomize_b(&mut model, 11);
    let b = batch(&dir);
    let want = logits(&model, &b);
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("adapter");
    lora::save_adapter(&model, &cfg, &out, "tests/fixtures/parity/bert_seq_cls").unwrap();
    let ck = Checkpoint::open_files(&out, &[out.join("adapter_model.safetensors")]).unwrap();
    let names: Vec<&str> = ck.names().collect();
    assert!(names.contains(&"base_model.model.bert.encoder.layer.0.attention.self.query.lora_A.weight"));
    assert!(names.contains(&"base_model.model.bert.pooler.dense.lora_B.weight"));
    assert!(names.contains(&"base_model.model.classifier.weight"));
    assert!(names.iter().all(|n| n.contains(".lora_") || n.starts_with("base_model.model.classifier.")), "{names:?}");
    let (mut fresh, _) = Model::load(&dir, &LoadOptions::new(Task::SequenceClassification)).unwrap();
    let report = lora::load_adapter(&mut fresh, &out).unwrap();
    assert!(report.ignored.is_empty());
    assert_eq!(report.loaded, names.len());
    assert_eq!(logits(&fresh, &b).max_abs_diff(&want).unwrap(), 0.0);
}
