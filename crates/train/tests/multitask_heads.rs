//! The multi-head objective of `[multitask]` and `[continual]` on a real BERT checkpoint layout
//! (the models crate's parity fixture): each example is scored by its own task's head, the loss
//! is the sum of the heads' cross-entropies over the step's examples, LwF against an unchanged
//! model is zero, and EWC's Fisher diagonal is a mean of squared gradients.

use std::path::Path;

use tunesmith_data::batch::{Loader, LoaderOptions, Position};
use tunesmith_data::encode::{Encoded, Sequence, Target};
use tunesmith_engine::{Grads, Graph};
use tunesmith_models::{LoadOptions, Model, Task};
use tunesmith_train::continual::fisher::diagonal_fisher;
use tunesmith_train::multitask::heads::{add_head, Lwf, MultiHead};
use tunesmith_train::objective::Objective;

fn bert() -> Model {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/tests/fixtures/parity/bert_seq_cls");
    Model::load(&dir, &LoadOptions::new(Task::SequenceClassification)).unwrap().0
}

fn example(ids: &[u32], class: u32, line: usize) -> Encoded {
    Encoded {
        sequence: Sequence { input_ids: ids.to_vec(), labels: vec![-100; ids.len()], token_type_ids: Vec::new() },
        rejected: None,
        others: Vec::new(),
        target: Target::Class(class),
        truncated: false,
        loc: tunesmith_data::Loc { file: Path::new("t.jsonl").into(), line },
    }
}

fn examples() -> Vec<Encoded> {
    vec![
        example(&[2, 17, 33, 3], 1, 1),
        example(&[2, 40, 3], 0, 2),
        example(&[2, 5, 6, 7, 8, 3], 2, 3),
        example(&[2, 60, 61, 3], 1, 4),
    ]
}

fn opts() -> LoaderOptions {
    LoaderOptions {
        batch_size: 4,
        shuffle: false,
        padding_free: false,
        causal_labels: false,
        ..LoaderOptions::default()
    }
}

fn labels(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("c{i}")).collect()
}

#[test]
fn each_example_is_scored_by_its_own_head() {
    let mut model = bert();
    let a = add_head(&mut model, "a", &labels(2), 1).unwrap();
    let b = add_head(&mut model, "b", &labels(3), 2).unwrap();
    // Examples 0, 1 and 3 belong to task a, example 2 (class 2) to task b.
    let head_of = vec![0, 0, 1, 0];
    let objective = MultiHead::new(vec![a.clone(), b.clone()], head_of.clone(), Vec::new(), 0);
    let loader = Loader::new(examples(), opts()).unwrap();
    let hb = loader.batch(Position::default()).unwrap();
    let prepared = objective.prepare(&mut model, &loader, &hb, 0).unwrap();
    let g = Graph::with_mode(true, false, 0);
    let step = objective.step(&model, &g, &prepared, 4.0, false).unwrap();
    // By hand: each example's −log softmax under its own head, summed, over 4.
    let batch = tunesmith_train::trainer::to_batch(&hb, false, 0).unwrap();
    let x = model.classifier_input(&Graph::inference(), &batch, false).unwrap().value().to_vec_f64().unwrap();
    let d = model.config.hidden_size;
    let mut want = 0.0;
    for (k, &ex) in hb.examples.iter().enumerate() {
        let head = if head_of[ex] == 0 { &a } else { &b };
        let w = model.params.get(head.weight).value.to_vec_f64().unwrap();
        let bias = model.params.get(head.bias).value.to_vec_f64().unwrap();
        let logits: Vec<f64> = (0..head.labels.len())
            .map(|c| bias[c] + (0..d).map(|i| w[c * d + i] * x[k * d + i]).sum::<f64>())
            .collect();
        let m = logits.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let lse = m + logits.iter().map(|l| (l - m).exp()).sum::<f64>().ln();
        let Target::Class(c) = hb.targets[k] else { panic!() };
        want += lse - logits[c as usize];
    }
    let got = step.loss.value().scalar_value().unwrap();
    assert!((got - want / 4.0).abs() < 1e-5, "{got} vs {}", want / 4.0);
    // Gradients reach both heads and the encoder.
    let mut grads = Grads::new();
    g.backward(&step.loss, &mut grads).unwrap();
    assert!(grads.get(a.weight).is_some() && grads.get(b.weight).is_some());
    let word = model.params.require("bert.embeddings.word_embeddings.weight").unwrap();
    assert!(grads.get(word).is_some());
}

#[test]
fn lwf_against_the_same_model_is_zero_and_fisher_is_a_mean_of_squares() {
    let mut model = bert();
    let a = add_head(&mut model, "a", &labels(3), 1).unwrap();
    let b = add_head(&mut model, "b", &labels(2), 2).unwrap();
    let mut old = model.clone();
    for (id, p) in model.params.iter() {
        old.params.get_mut(id).value = p.value.deep_clone().unwrap();
    }
    let objective = MultiHead::new(vec![a.clone(), b], vec![1; 4], Vec::new(), 0).with_lwf(Lwf {
        old,
        old_heads: vec![0],
        alpha: 1.0,
        temperature: 2.0,
    });
    let loader = Loader::new(
        examples()
            .into_iter()
            .map(|mut e| {
                e.target = Target::Class(0);
                e
            })
            .collect(),
        opts(),
    )
    .unwrap();
    let hb = loader.batch(Position::default()).unwrap();
    let prepared = objective.prepare(&mut model, &loader, &hb, 0).unwrap();
    let kl = {
        let g = Graph::with_mode(true, false, 0);
        let step = objective.step(&model, &g, &prepared, 4.0, false).unwrap();
        step.metrics.values()["lwf_kl"].as_f64().unwrap()
    };
    assert!(kl.abs() < 1e-6, "{kl}");

    // One example: the Fisher diagonal is its squared gradient.
    let ids = vec![model.params.require("bert.pooler.dense.weight").unwrap()];
    let one = vec![example(&[2, 9, 10, 3], 1, 1)];
    let f = diagonal_fisher(&mut model, &a, &one, &ids, 8, &opts()).unwrap();
    let single = MultiHead::new(vec![a], vec![0], Vec::new(), 0);
    let l1 = Loader::new(one, opts()).unwrap();
    let hb = l1.batch(Position::default()).unwrap();
    let p = single.prepare(&mut model, &l1, &hb, 0).unwrap();
    let mut grads = Grads::new();
    let g = Graph::with_mode(true, false, 0);
    let step = single.step(&model, &g, &p, 1.0, false).unwrap();
    g.backward(&step.loss, &mut grads).unwrap();
    let want: Vec<f64> = grads.get(ids[0]).unwrap().to_vec_f64().unwrap().iter().map(|v| v * v).collect();
    let got: Vec<f64> = f[0].iter().map(|&v| f64::from(v)).collect();
    assert!(want.iter().any(|&v| v > 0.0));
    let worst = got.iter().zip(&want).map(|(a, b)| (a - b).abs() / b.abs().max(1e-12)).fold(0.0, f64::max);
    assert!(worst < 1e-4, "{worst}");
}
