//! Quantized frozen bases (QLoRA): a LoRA model whose base linears are replaced by their
//! quantized form gives the f32 model's logits and adapter gradients (exactly, up to summation
//! order, when a GGUF file's own blocks are kept; within the quantization error for NF4 and
//! Q8_0, printed), merges back to an f32 model with the same logits, and refuses `keep`
//! without a GGUF.

use std::path::Path;

use tunesmith_engine::{Grads, Graph, Tensor};
use tunesmith_models::gguf::testing::tiny_llama;
use tunesmith_models::gguf::{self, GgufFile};
use tunesmith_models::lora::{self, LoraConfig, TargetModules};
use tunesmith_models::quantize::{quantize_frozen, BaseQuant};
use tunesmith_models::{Batch, LoadOptions, LossOptions, Model, Targets, Task};
use tunesmith_testkit::{fetched_gguf, max_rel_diff as rel};

/// The GGUF's model with LoRA on every projection and non-zero B (as after training).
fn lora_model(f: &GgufFile) -> Model {
    let (mut model, _) = gguf::load::load_file(f, &LoadOptions::new(Task::CausalLm)).unwrap();
    let targets = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"];
    lora::attach(
        &mut model,
        &LoraConfig::new(4, 8.0, TargetModules::Names(targets.iter().map(|s| s.to_string()).collect())),
    )
    .unwrap();
    let ids: Vec<_> = model.params.iter().filter(|(_, p)| p.name.contains("lora_B")).map(|(id, _)| id).collect();
    for (k, id) in ids.into_iter().enumerate() {
        let shape = model.params.get(id).value.shape().to_vec();
        let v: Vec<f32> =
            (0..shape.iter().product()).map(|i: usize| ((i + 17 * k) as f32 * 0.29).sin() * 0.02).collect();
        model.params.set_value(id, Tensor::from_vec(v, &shape).unwrap()).unwrap();
    }
    model
}

/// Logits and the gradient of every LoRA A matrix (concatenated) for one batch.
fn run(model: &Model, ids: &[i64]) -> (Vec<f64>, Vec<f64>) {
    let batch = Batch::from_ids(&[ids.to_vec()]).unwrap();
    let g = Graph::train(0);
    let logits = model.forward(&g, &batch, false).unwrap().value().to_vec_f64().unwrap();
    let targets = Targets::Tokens(Tensor::from_vec(ids.to_vec(), &[1, ids.len()]).unwrap());
    let g = Graph::train(0);
    let out = model.loss(&g, &batch, &targets, &LossOptions::default(), false).unwrap();
    let mut grads = Grads::new();
    g.backward(&out.loss, &mut grads).unwrap();
    let mut da = Vec::new();
    for (id, p) in model.params.iter() {
        // After merge_and_unload the adapters are detached and get no gradient.
        if let Some(g) = grads.get(id).filter(|_| p.name.contains("lora_A")) {
            da.extend(g.to_vec_f64().unwrap());
        }
    }
    (logits, da)
}

fn check(path: &Path, ids: &[i64], tolerances: &[(BaseQuant, f64, f64)]) {
    let f = GgufFile::open(path).unwrap();
    let (want_logits, want_grads) = run(&lora_model(&f), ids);
    for &(mode, tol, grad_tol) in tolerances {
        let mut model = lora_model(&f);
        let report = quantize_frozen(&mut model, mode, Some(&f)).unwrap();
        assert_eq!(report.layers, 7 * model.num_layers(), "{mode:?}");
        assert!(report.quantized_bytes <= report.f32_bytes, "{mode:?}: {report:?}");
        if mode != BaseQuant::Keep {
            assert!(report.quantized_bytes * 3 < report.f32_bytes, "{mode:?}: {report:?}");
        }
        let (logits, grads) = run(&model, ids);
        let (el, eg) = (rel(&logits, &want_logits), rel(&grads, &want_grads));
        eprintln!("{}: {mode:?} base: logits {el:.1e}, LoRA gradients {eg:.1e}, {report:?}", path.display());
        assert!(
            el < tol && eg < grad_tol,
            "{mode:?}: logits {el:e}, gradients {eg:e} (tolerances {tol:e}, {grad_tol:e})"
        );
        // Merging dequantizes the base and adds the adapters: the same function, in f32.
        lora::merge_and_unload(&mut model).unwrap();
        let merged = run(&model, ids).0;
        assert!(rel(&merged, &logits) < 1e-4, "{mode:?}: merged logits {:e}", rel(&merged, &logits));
        assert!(model.linears().iter().all(|l| l.quantized.is_none()));
    }
}

#[test]
fn a_tiny_gguf_base_quantizes_to_nf4_q8_0_and_keeps_its_blocks() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tiny.gguf");
    tiny_llama("llama").write(&path).unwrap();
    let modes = [(BaseQuant::Keep, 1e-5, 1e-5), (BaseQuant::Q8_0, 2e-3, 5e-2), (BaseQuant::Nf4, 0.1, 0.6)];
    check(&path, &[5, 70, 101, 33, 200, 7, 12, 90], &modes);
}

#[test]
fn smollm2_keeps_its_q4_1_blocks() {
    let Some(path) = fetched_gguf("smollm2") else { return };
    // NF4 re-quantizes weights that Q4_1 already rounded: both errors compound over 30 blocks.
    let modes = [(BaseQuant::Keep, 1e-5, 1e-5), (BaseQuant::Nf4, 0.4, 0.7)];
    check(&path, &[1, 4093, 198, 19161, 253, 421, 30614, 563], &modes);
}

#[test]
fn keep_needs_a_gguf_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tiny.gguf");
    tiny_llama("llama").write(&path).unwrap();
    let mut model = lora_model(&GgufFile::open(&path).unwrap());
    let e = quantize_frozen(&mut model, BaseQuant::Keep, None).unwrap_err().to_string();
    assert!(e.contains("keep") && e.contains("GGUF"), "{e}");
    assert_eq!(quantize_frozen(&mut model, BaseQuant::None, None).unwrap().layers, 0);
}

/// A GGUF base loaded with its projections quantized at load time (one tensor at a time) gives
/// the same model as loading in f32 and quantizing afterwards.
#[test]
fn quantizing_at_load_equals_quantizing_after() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tiny.gguf");
    tiny_llama("llama").write(&path).unwrap();
    let f = GgufFile::open(&path).unwrap();
    let ids = [5, 70, 101, 33, 200, 7];
    for mode in [BaseQuant::Keep, BaseQuant::Q8_0, BaseQuant::Nf4] {
        let (mut at_load, _) = gguf::load::load_file_quantized(&f, &LoadOptions::new(Task::CausalLm), mode).unwrap();
        let (mut after, _) = gguf::load::load_file(&f, &LoadOptions::new(Task::CausalLm)).unwrap();
        let layers = at_load.linears().iter().filter(|l| l.quantized.is_some()).count();
        assert_eq!(layers, 7, "{mode:?}");
        assert_eq!(after.linears().iter().filter(|l| l.quantized.is_some()).count(), 0);
        let cfg = LoraConfig::new(4, 8.0, TargetModules::Names(vec!["q_proj".into(), "down_proj".into()]));
        lora::attach(&mut at_load, &cfg).unwrap();
        lora::attach(&mut after, &cfg).unwrap();
        let report = quantize_frozen(&mut after, mode, Some(&f)).unwrap();
        assert_eq!(quantize_frozen(&mut at_load, mode, Some(&f)).unwrap(), report, "{mode:?}");
        let (a, b) = (run(&at_load, &ids).0, run(&after, &ids).0);
        assert!(rel(&a, &b) < 1e-6, "{mode:?}: {:e}", rel(&a, &b));
    }
}
