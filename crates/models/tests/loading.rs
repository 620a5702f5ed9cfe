//! Loading and saving: HF-format round trips for every family, bf16/f16 checkpoints, sharded
//! folders, and clear errors for malformed configs and weights.

use std::path::{Path, PathBuf};

use safetensors::tensor::{Dtype, TensorView};
use tunesmith_engine::{Graph, Tensor};
use tunesmith_models::weights::Checkpoint;
use tunesmith_models::{Batch, LoadOptions, Model, ModelConfig, Task};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/parity").join(name)
}

fn task_of(dir: &Path) -> Task {
    let arch = ModelConfig::from_dir(dir).unwrap().architectures[0].clone();
    if arch.contains("Sequence") {
        Task::SequenceClassification
    } else if arch.contains("Token") {
        Task::TokenClassification
    } else if arch.ends_with("Model") && !arch.contains("LMHead") {
        Task::Embedding
    } else {
        Task::CausalLm
    }
}

fn run(model: &Model) -> Tensor {
    let batch = Batch::from_ids(&[vec![5, 17, 3, 40, 9], vec![7, 7, 81, 2, 64]]).unwrap();
    let g = Graph::inference();
    model.forward(&g, &batch, false).unwrap().into_value()
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

#[test]
fn save_pretrained_round_trips_every_family() {
    let tmp = tempfile::tempdir().unwrap();
    for case in [
        "llama_gqa",
        "llama_tied_llama3_rope",
        "qwen2_qkv_bias_tied",
        "qwen3_qk_norm",
        "gpt2",
        "gpt2_seq_cls",
        "bert_seq_cls",
        "bert_token_cls",
        "roberta_seq_cls",
        "bert_embedding",
    ] {
        let dir = fixture(case);
        let task = task_of(&dir);
        let (model, _) = Model::load(&dir, &LoadOptions::new(task)).unwrap();
        let out = tmp.path().join(case);
        model.save_pretrained(&out).unwrap();
        // Same tensor names and shapes as transformers wrote.
        let theirs = Checkpoint::open_dir(&dir).unwrap();
        let ours = Checkpoint::open_dir(&out).unwrap();
        let mut a: Vec<(String, Vec<usize>)> =
            theirs.names().map(|n| (n.to_string(), theirs.shape(n).unwrap().to_vec())).collect();
        let mut b: Vec<(String, Vec<usize>)> =
            ours.names().map(|n| (n.to_string(), ours.shape(n).unwrap().to_vec())).collect();
        a.retain(|(n, _)| !tunesmith_models::gpt2::is_buffer(n));
        a.sort();
        b.sort();
        assert_eq!(a, b, "{case}: saved tensors differ from transformers'");
        let cfg = ModelConfig::from_dir(&out).unwrap();
        assert_eq!(cfg.architectures, ModelConfig::from_dir(&dir).unwrap().architectures, "{case}");
        let (reloaded, _) = Model::load(&out, &LoadOptions::new(task)).unwrap();
        assert_eq!(run(&reloaded).max_abs_diff(&run(&model)).unwrap(), 0.0, "{case}");
    }
}

#[test]
fn half_precision_checkpoints_load_as_f32() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = fixture("llama_gqa");
    let ck = Checkpoint::open_dir(&dir).unwrap();
    for (dtype, conv) in [(Dtype::BF16, 0), (Dtype::F16, 1)] {
        let out = tmp.path().join(format!("{dtype:?}"));
        copy_dir(&dir, &out);
        let mut bufs: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
        for n in ck.names() {
            let t = ck.take(n).unwrap();
            let bytes: Vec<u8> = t
                .to_vec_f32()
                .unwrap()
                .iter()
                .flat_map(|&x| {
                    if conv == 0 {
                        tunesmith_engine::bf16::from_f32(x).to_le_bytes()
                    } else {
                        tunesmith_engine::f16::from_f32(x).to_le_bytes()
                    }
                })
                .collect();
            bufs.push((n.to_string(), t.shape().to_vec(), bytes));
        }
        let views: Vec<(String, TensorView<'_>)> =
            bufs.iter().map(|(n, s, b)| (n.clone(), TensorView::new(dtype, s.clone(), b).unwrap())).collect();
        std::fs::write(out.join("model.safetensors"), safetensors::serialize(views, None).unwrap()).unwrap();
        let (model, _) = Model::load(&out, &LoadOptions::new(Task::CausalLm)).unwrap();
        let (full, _) = Model::load(&dir, &LoadOptions::new(Task::CausalLm)).unwrap();
        let (a, b) = (run(&model), run(&full));
        let rel = a.max_abs_diff(&b).unwrap() / b.to_vec_f64().unwrap().iter().fold(0.0f64, |m, x| m.max(x.abs()));
        assert!(rel < 0.05, "{dtype:?}: {rel}");
        assert!(rel > 0.0, "{dtype:?} rounding should change something");
    }
}

#[test]
fn malformed_inputs_give_errors_naming_the_problem() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = fixture("llama_gqa");
    let ck = Checkpoint::open_dir(&dir).unwrap();
    let all: Vec<(String, Tensor)> = ck.names().map(|n| (n.to_string(), ck.take(n).unwrap())).collect();
    let write = |name: &str, tensors: Vec<(String, Tensor)>| -> PathBuf {
        let out = tmp.path().join(name);
        copy_dir(&dir, &out);
        tunesmith_models::weights::save_safetensors(&out.join("model.safetensors"), &tensors, None).unwrap();
        out
    };
    let load = |d: &Path| Model::load(d, &LoadOptions::new(Task::CausalLm)).unwrap_err().to_string();

    let missing = write("missing", all.iter().filter(|(n, _)| !n.contains("layers.1.mlp.up_proj")).cloned().collect());
    let e = load(&missing);
    assert!(e.contains("model.layers.1.mlp.up_proj.weight") && e.contains("missing"), "{e}");

    let mut extra = all.clone();
    extra.push(("model.layers.7.mystery.weight".into(), Tensor::from_vec(vec![0.0f32; 4], &[4]).unwrap()));
    let e = load(&write("extra", extra));
    assert!(e.contains("model.layers.7.mystery.weight") && e.contains("unexpected"), "{e}");

    let wrong: Vec<(String, Tensor)> = all
        .iter()
        .map(|(n, t)| {
            if n == "model.norm.weight" {
                (n.clone(), Tensor::from_vec(vec![1.0f32; 31], &[31]).unwrap())
            } else {
                (n.clone(), t.clone())
            }
        })
        .collect();
    let e = load(&write("wrong_shape", wrong));
    assert!(e.contains("model.norm.weight") && e.contains("[31]") && e.contains("[32]"), "{e}");

    let trunc = tmp.path().join("truncated");
    copy_dir(&dir, &trunc);
    let bytes = std::fs::read(trunc.join("model.safetensors")).unwrap();
    std::fs::write(trunc.join("model.safetensors"), &bytes[..bytes.len() / 2]).unwrap();
    let e = load(&trunc);
    assert!(e.contains("model.safetensors"), "{e}");

    let garbage = tmp.path().join("garbage");
    copy_dir(&dir, &garbage);
    std::fs::write(garbage.join("model.safetensors"), b"\xff\xff\xff\xff\xff\xff\xff\x7fnot a header").unwrap();
    let e = load(&garbage);
    assert!(e.contains("not a valid safetensors file"), "{e}");

    let cfgs = [
        ("no_model_type", r#"{"vocab_size": 10}"#, "model_type"),
        ("unknown_type", r#"{"model_type": "mamba", "vocab_size": 10}"#, "mamba"),
        ("bad_type", r#"{"model_type": "llama", "vocab_size": "ten"}"#, "vocab_size"),
        (
            "bad_gqa",
            r#"{"model_type": "llama", "vocab_size": 10, "hidden_size": 8, "num_hidden_layers": 1, "num_attention_heads": 4, "num_key_value_heads": 3, "intermediate_size": 8}"#,
            "num_key_value_heads",
        ),
        (
            "bad_rope",
            r#"{"model_type": "llama", "vocab_size": 10, "hidden_size": 8, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 8, "rope_scaling": {"rope_type": "yarn2", "factor": 2}}"#,
            "yarn2",
        ),
        ("not_json", "{model_type: llama", "invalid JSON"),
    ];
    for (name, text, needle) in cfgs {
        let d = tmp.path().join(name);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("config.json"), text).unwrap();
        let e = ModelConfig::from_dir(&d).unwrap_err().to_string();
        assert!(e.contains(needle) && e.contains("config.json"), "{name}: {e}");
    }
    let e = Model::load(&tmp.path().join("nowhere"), &LoadOptions::new(Task::CausalLm)).unwrap_err().to_string();
    assert!(e.contains("nowhere") && e.contains("config.json"), "{e}");
    let e = Model::load(&fixture("bert_seq_cls"), &LoadOptions::new(Task::CausalLm)).unwrap_err().to_string();
    assert!(e.contains("causal LM"), "{e}");
}

#[test]
fn new_heads_are_reported_and_seeded() {
    let dir = fixture("llama_gqa");
    let mut opts = LoadOptions::new(Task::SequenceClassification);
    opts.labels = Some(vec!["neg".into(), "pos".into()]);
    opts.seed = 5;
    let (a, report) = Model::load(&dir, &opts).unwrap();
    assert_eq!(report.initialized, vec!["score.weight"]);
    assert_eq!(report.unused, vec!["lm_head.weight"]);
    let (b, _) = Model::load(&dir, &opts).unwrap();
    assert_eq!(run(&a).max_abs_diff(&run(&b)).unwrap(), 0.0);
    assert_eq!(run(&a).shape(), &[2, 2]);
    assert_eq!(a.config.id2label, vec!["neg", "pos"]);
}

#[test]
fn num_layers_keeps_the_first_blocks_and_refuses_more_than_there_are() {
    let dir = fixture("llama_gqa");
    let full = Model::load(&dir, &LoadOptions::new(Task::CausalLm)).unwrap().0;
    assert!(full.num_layers() >= 2);
    let mut opts = LoadOptions::new(Task::CausalLm);
    opts.num_layers = Some(1);
    let (small, report) = Model::load(&dir, &opts).unwrap();
    assert_eq!(small.num_layers(), 1);
    assert!(report.initialized.is_empty());
    assert!(small.params.iter().all(|(_, p)| Model::layer_of(&p.name).is_none_or(|l| l == 0)));
    // The kept block is the checkpoint's first, unchanged.
    let name = "model.layers.0.self_attn.q_proj.weight";
    let (a, b) = (full.params.require(name).unwrap(), small.params.require(name).unwrap());
    assert_eq!(full.params.get(a).value.max_abs_diff(&small.params.get(b).value).unwrap(), 0.0);
    // A saved copy says it has one block.
    let tmp = tempfile::tempdir().unwrap();
    small.save_pretrained(&tmp.path().join("m")).unwrap();
    let cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(tmp.path().join("m/config.json")).unwrap()).unwrap();
    assert_eq!(cfg["num_hidden_layers"], 1);
    opts.num_layers = Some(full.num_layers() + 1);
    let e = Model::load(&dir, &opts).unwrap_err().to_string();
    assert!(e.contains("only") && e.contains("blocks"), "{e}");
}
