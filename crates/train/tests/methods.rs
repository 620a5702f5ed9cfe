//! Fine-tuning methods on a real BERT checkpoint layout (the models crate's parity fixture):
//! which parameters train, gradual unfreezing stages, layer-wise lr decay, LoRA+ learning rates
//! and weight-decay groups.

use std::path::Path;

use tunesmith_models::{LoadOptions, Model, Task};
use tunesmith_train::config::{MethodKind, MethodSection};
use tunesmith_train::methods::{apply, is_head, layer_lr_factor, param_groups, unfreeze_stage};

fn bert() -> Model {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/tests/fixtures/parity/bert_seq_cls");
    Model::load(&dir, &LoadOptions::new(Task::SequenceClassification)).unwrap().0
}

fn trainable(m: &Model) -> Vec<String> {
    m.params.iter().filter(|(_, p)| p.trainable).map(|(_, p)| p.name.clone()).collect()
}

fn method(kind: MethodKind) -> MethodSection {
    MethodSection { kind, ..MethodSection::default() }
}

#[test]
fn feature_extraction_trains_only_the_head() {
    let mut m = bert();
    apply(&mut m, &method(MethodKind::FeatureExtraction), 0).unwrap();
    let t = trainable(&m);
    assert!(!t.is_empty() && t.iter().all(|n| is_head(n)), "{t:?}");
}

#[test]
fn partial_freezes_the_named_blocks_and_patterns() {
    let mut m = bert();
    let n = m.num_layers();
    assert!(n >= 2);
    let mut s = method(MethodKind::Partial);
    s.freeze_layers = Some("0-0".into());
    s.freeze_patterns = vec!["embeddings".into()];
    apply(&mut m, &s, 0).unwrap();
    for (_, p) in m.params.iter() {
        let frozen = p.name.contains("embeddings") || Model::layer_of(&p.name) == Some(0);
        assert_eq!(p.trainable, !frozen, "{}", p.name);
    }
    let mut s = method(MethodKind::Partial);
    s.freeze_layers = Some(format!("0-{n}"));
    let err = apply(&mut bert(), &s, 0).unwrap_err().to_string();
    assert!(err.contains("blocks"), "{err}");
}

#[test]
fn gradual_unfreezing_opens_blocks_top_down() {
    let mut m = bert();
    let n = m.num_layers();
    apply(&mut m, &method(MethodKind::GradualUnfreeze), 0).unwrap();
    assert!(trainable(&m).iter().all(|name| is_head(name)));
    unfreeze_stage(&mut m, 1);
    let top: Vec<String> = trainable(&m).into_iter().filter(|name| !is_head(name)).collect();
    assert!(!top.is_empty() && top.iter().all(|name| Model::layer_of(name) == Some(n - 1)), "{top:?}");
    unfreeze_stage(&mut m, n + 1);
    assert!(m.params.iter().all(|(_, p)| p.trainable), "everything trains at the last stage");
    // The optimizer holds every parameter from the start (frozen ones just get no gradient).
    let mut m = bert();
    apply(&mut m, &method(MethodKind::GradualUnfreeze), 0).unwrap();
    let groups = param_groups(&m, &method(MethodKind::GradualUnfreeze), 1e-3, 0.01);
    let in_groups: usize = groups.iter().map(|g| g.params.len()).sum();
    assert_eq!(in_groups, m.params.iter().filter(|(_, p)| p.value.dtype().is_compute_float()).count());
}

#[test]
fn layer_wise_decay_and_no_decay_groups() {
    assert_eq!(layer_lr_factor("classifier.weight", 4, 0.5), 1.0);
    assert_eq!(layer_lr_factor("bert.encoder.layer.3.output.dense.weight", 4, 0.5), 0.5);
    assert_eq!(layer_lr_factor("bert.encoder.layer.0.output.dense.weight", 4, 0.5), 0.0625);
    assert_eq!(layer_lr_factor("bert.embeddings.word_embeddings.weight", 4, 0.5), 0.03125);
    let mut m = bert();
    let mut s = method(MethodKind::Full);
    s.layer_lr_decay = 0.8;
    apply(&mut m, &s, 0).unwrap();
    let groups = param_groups(&m, &s, 1e-3, 0.01);
    for g in &groups {
        for &id in &g.params {
            let name = &m.params.get(id).name;
            let expect_lr = 1e-3 * layer_lr_factor(name, m.num_layers(), 0.8);
            assert!((g.lr - expect_lr).abs() < 1e-15, "{name}: lr {} vs {expect_lr}", g.lr);
            let no_decay = name.ends_with(".bias") || name.to_lowercase().contains("norm");
            assert_eq!(g.weight_decay == 0.0, no_decay, "{name}: weight decay {}", g.weight_decay);
        }
    }
}

#[test]
fn loraplus_trains_b_matrices_at_ratio_times_lr() {
    let mut m = bert();
    let mut s = method(MethodKind::Lora);
    s.loraplus_lr_ratio = 16.0;
    apply(&mut m, &s, 0).unwrap();
    let groups = param_groups(&m, &s, 1e-4, 0.01);
    let (mut a, mut b) = (0, 0);
    for g in &groups {
        for &id in &g.params {
            let name = &m.params.get(id).name;
            let want = if name.contains(".lora_B.") { 16e-4 } else { 1e-4 };
            assert!((g.lr - want).abs() < 1e-15, "{name}: lr {} vs {want}", g.lr);
            a += name.contains(".lora_A.") as usize;
            b += name.contains(".lora_B.") as usize;
        }
    }
    assert!(a > 0 && a == b, "{a} A and {b} B matrices in the groups");
    // Ratio 1 is plain LoRA: one learning rate for every trainable parameter.
    s.loraplus_lr_ratio = 1.0;
    assert!(param_groups(&m, &s, 1e-4, 0.01).iter().all(|g| g.lr == 1e-4));
}
