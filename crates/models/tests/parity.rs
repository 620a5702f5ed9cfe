//! Parity with transformers: tiny random checkpoints of every family and variant (fixtures from
//! scripts/make_parity_fixtures.py) must reproduce transformers' logits (1e-4 relative), loss
//! and the gradients of named parameters (1e-3 relative) on a padded batch. No Python needed.

use std::path::{Path, PathBuf};

use tunesmith_engine::{DType, Grads, Graph, Tensor};
use tunesmith_models::weights::Checkpoint;
use tunesmith_models::{Batch, LoadOptions, LossOptions, Model, Targets, Task};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/parity")
}

/// max |a − b| / max |b|: error relative to the tensor's scale.
fn rel_err(a: &Tensor, b: &Tensor) -> f64 {
    let (a, b) = (a.to_vec_f64().unwrap(), b.to_vec_f64().unwrap());
    assert_eq!(a.len(), b.len());
    let scale = b.iter().fold(0.0f64, |m, x| m.max(x.abs())).max(1e-12);
    a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max) / scale
}

/// Keeps positions where the mask is 1 (rows of the trailing dimension).
fn masked_rows(t: &Tensor, mask: &[i64]) -> Tensor {
    let s = t.shape();
    let inner: usize = s[2..].iter().product();
    let v = t.to_vec_f64().unwrap();
    let kept: Vec<f64> = mask
        .iter()
        .enumerate()
        .filter(|(_, &m)| m == 1)
        .flat_map(|(i, _)| v[i * inner..(i + 1) * inner].to_vec())
        .collect();
    let n = kept.len() / inner.max(1);
    Tensor::from_vec(kept, &[n, inner]).unwrap()
}

fn task_of(arch: &str) -> Task {
    if arch.ends_with("ForCausalLM") || arch.ends_with("LMHeadModel") {
        Task::CausalLm
    } else if arch.ends_with("ForSequenceClassification") {
        Task::SequenceClassification
    } else if arch.ends_with("ForTokenClassification") {
        Task::TokenClassification
    } else {
        Task::Embedding
    }
}

fn check_case(dir: &Path) {
    let name = dir.file_name().unwrap().to_string_lossy().to_string();
    let golden = Checkpoint::open_files(dir, &[dir.join("golden.safetensors")]).unwrap();
    let cfg = tunesmith_models::ModelConfig::from_dir(dir).unwrap();
    let task = task_of(&cfg.architectures[0]);
    let (model, report) = Model::load(dir, &LoadOptions::new(task)).unwrap();
    assert!(report.initialized.is_empty(), "{name}: unexpected fresh params {:?}", report.initialized);
    let batch = Batch {
        input_ids: golden.take("input_ids").unwrap(),
        attention_mask: Some(golden.take("attention_mask").unwrap()),
        position_ids: None,
        token_type_ids: golden.contains("token_type_ids").then(|| golden.take("token_type_ids").unwrap()),
        segment_ids: None,
    };
    let mask: Vec<i64> = batch.mask_values().unwrap();
    let g = Graph::train(0);
    let mut grads = Grads::new();
    let want_loss = golden.take("loss").unwrap().to_vec_f64().unwrap()[0];
    let got_loss;
    if task == Task::Embedding {
        let emb = model.forward(&g, &batch, false).unwrap();
        let e = rel_err(emb.value(), &golden.take("embedding").unwrap());
        assert!(e < 1e-4, "{name}: embedding rel err {e:e}");
        let w = g.input(golden.take("projection").unwrap());
        let loss = g.sum(&g.mul(&emb, &w).unwrap()).unwrap();
        got_loss = loss.value().scalar_value().unwrap();
        g.backward(&loss, &mut grads).unwrap();
    } else {
        // Logits from an inference pass.
        let gi = Graph::inference();
        let logits = model.forward(&gi, &batch, false).unwrap();
        let want = golden.take("logits").unwrap();
        let e = if task == Task::SequenceClassification {
            rel_err(logits.value(), &want)
        } else {
            rel_err(&masked_rows(logits.value(), &mask), &masked_rows(&want, &mask))
        };
        assert!(e < 1e-4, "{name}: logits rel err {e:e}");
        let labels = golden.take("labels").unwrap();
        let targets = match (task, labels.dtype()) {
            (Task::SequenceClassification, DType::F32) => Targets::Values(labels),
            (Task::SequenceClassification, _) => Targets::Classes(labels),
            _ => Targets::Tokens(labels),
        };
        let out = model.loss(&g, &batch, &targets, &LossOptions::default(), false).unwrap();
        got_loss = out.loss.value().scalar_value().unwrap();
        g.backward(&out.loss, &mut grads).unwrap();
    }
    assert!((got_loss - want_loss).abs() / want_loss.abs().max(1e-6) < 1e-4, "{name}: loss {got_loss} vs {want_loss}");
    let mut checked = 0;
    for gname in golden.names().filter(|n| n.starts_with("grad.")).map(String::from).collect::<Vec<_>>() {
        let pname = &gname["grad.".len()..];
        let id = tunesmith_models::checkpoint_names::candidates(pname)
            .into_iter()
            .chain(["bert.", "roberta.", "model.", "transformer."].iter().map(|p| format!("{p}{pname}")))
            .find_map(|n| model.params.id(&n))
            .unwrap_or_else(|| panic!("{name}: no parameter {pname}"));
        let mut want = golden.take(&gname).unwrap();
        let got = grads.get(id).unwrap_or_else(|| panic!("{name}: no gradient for {pname}"));
        if got.shape() != want.shape() {
            // GPT-2 Conv1D weights are stored [in, out] by transformers.
            want = tunesmith_models::checkpoint_names::transposed(&want).unwrap();
        }
        let e = rel_err(got, &want);
        assert!(e < 1e-3, "{name}: grad of {pname} rel err {e:e}");
        checked += 1;
    }
    assert!(checked >= 4, "{name}: only {checked} gradients compared");
}

macro_rules! parity {
    ($($case:ident),* $(,)?) => {$(
        #[test]
        fn $case() {
            check_case(&fixtures().join(stringify!($case)));
        }
    )*};
}

parity!(
    llama_gqa,
    llama_tied_llama3_rope,
    llama_linear_rope_bias,
    mistral_sliding_window,
    qwen2_qkv_bias_tied,
    qwen3_qk_norm,
    gemma3_sliding_window,
    gpt2,
    llama_seq_cls,
    gpt2_seq_cls,
    bert_seq_cls,
    bert_regression,
    bert_token_cls,
    roberta_seq_cls,
    bert_embedding,
);

#[test]
fn every_fixture_has_a_test() {
    let mut names: Vec<String> = std::fs::read_dir(fixtures())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().to_string())
        .collect();
    names.sort();
    assert_eq!(names.len(), 15, "fixtures: {names:?}");
}
