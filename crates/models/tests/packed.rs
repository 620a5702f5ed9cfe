//! Padding-free (packed) batches compute exactly what padded batches do: the parity fixtures'
//! padded examples, laid end to end in packed rows with segment ids and restarting positions,
//! give the same logits, loss and gradients (classification pools each packed example's first
//! or last token; token classification keeps every token).

use std::path::{Path, PathBuf};

use tunesmith_engine::{Grads, Graph, Tensor};
use tunesmith_models::weights::Checkpoint;
use tunesmith_models::{Batch, LoadOptions, LossOptions, Model, Targets, Task};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/parity").join(name)
}

fn max_rel(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    let scale = b.iter().fold(0.0f64, |m, x| m.max(x.abs())).max(1e-12);
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max) / scale
}

fn ints(t: &Tensor) -> Vec<i64> {
    t.to_vec_f64().unwrap().into_iter().map(|x| x as i64).collect()
}

/// The padded batch of the fixture, and the same examples packed into rows of `capacity`
/// tokens (first-fit in order), padded at the tail.
fn batches(dir: &Path, model: &Model, capacity: usize) -> (Batch, Batch, Vec<Vec<usize>>) {
    let golden = Checkpoint::open_files(dir, &[dir.join("golden.safetensors")]).unwrap();
    let ids_t = golden.take("input_ids").unwrap();
    let mask_t = golden.take("attention_mask").unwrap();
    let types_t = golden.contains("token_type_ids").then(|| golden.take("token_type_ids").unwrap());
    let (b, t) = (ids_t.shape()[0], ids_t.shape()[1]);
    let (ids, mask) = (ints(&ids_t), ints(&mask_t));
    let types = types_t.as_ref().map(ints);
    // Each example: flat indices of its real tokens.
    let examples: Vec<Vec<usize>> = (0..b).map(|r| (r * t..(r + 1) * t).filter(|&i| mask[i] == 1).collect()).collect();
    let mut rows: Vec<Vec<usize>> = Vec::new();
    for (k, e) in examples.iter().enumerate() {
        match rows.iter_mut().find(|row| row.iter().map(|&j| examples[j].len()).sum::<usize>() + e.len() <= capacity) {
            Some(row) => row.push(k),
            None => rows.push(vec![k]),
        }
    }
    let n = rows.len() * capacity;
    let offset = model.config.position_offset as i64;
    let (mut p_ids, mut p_mask, mut p_pos, mut p_seg, mut p_types) =
        (vec![0i64; n], vec![0i64; n], vec![0i64; n], vec![-1i64; n], vec![0i64; n]);
    for (r, row) in rows.iter().enumerate() {
        let mut at = r * capacity;
        for (s, &k) in row.iter().enumerate() {
            for (j, &i) in examples[k].iter().enumerate() {
                p_ids[at] = ids[i];
                p_mask[at] = 1;
                p_pos[at] = j as i64 + offset;
                p_seg[at] = s as i64;
                p_types[at] = types.as_ref().map_or(0, |tt| tt[i]);
                at += 1;
            }
        }
    }
    let shape = [rows.len(), capacity];
    let padded = Batch {
        input_ids: ids_t,
        attention_mask: Some(mask_t),
        position_ids: None,
        token_type_ids: types_t,
        segment_ids: None,
    };
    let packed = Batch {
        input_ids: Tensor::from_vec(p_ids, &shape).unwrap(),
        attention_mask: Some(Tensor::from_vec(p_mask, &shape).unwrap()),
        position_ids: Some(Tensor::from_vec(p_pos, &shape).unwrap()),
        token_type_ids: types.map(|_| Tensor::from_vec(p_types, &shape).unwrap()),
        segment_ids: Some(Tensor::from_vec(p_seg, &shape).unwrap()),
    };
    let order: Vec<Vec<usize>> = rows.iter().flatten().map(|&k| examples[k].clone()).collect();
    (padded, packed, order)
}

fn check(name: &str, task: Task) {
    let dir = fixture(name);
    let (model, _) = Model::load(&dir, &LoadOptions::new(task)).unwrap();
    let (padded, packed, order) = batches(&dir, &model, 24);
    assert!(packed.dims().0 < padded.dims().0, "{name}: packing must save rows");
    let logits =
        |batch: &Batch| model.forward(&Graph::inference(), batch, false).unwrap().value().to_vec_f64().unwrap();
    let (lp, lk) = (logits(&padded), logits(&packed));
    let k = *model.forward(&Graph::inference(), &padded, false).unwrap().shape().last().unwrap();
    // Padded logits rearranged into the packed order (per example, or per real token).
    let want: Vec<f64> = match task {
        Task::TokenClassification => order.iter().flatten().flat_map(|&i| lp[i * k..(i + 1) * k].to_vec()).collect(),
        _ => {
            let t = padded.dims().1;
            order.iter().flat_map(|e| lp[(e[0] / t) * k..(e[0] / t + 1) * k].to_vec()).collect()
        }
    };
    let got: Vec<f64> = match task {
        Task::TokenClassification => {
            let mask = ints(packed.attention_mask.as_ref().unwrap());
            (0..mask.len()).filter(|&i| mask[i] == 1).flat_map(|i| lk[i * k..(i + 1) * k].to_vec()).collect()
        }
        _ => lk,
    };
    let e = max_rel(&got, &want);
    assert!(e < 1e-5, "{name}: packed logits differ by {e:e}");

    // Loss and gradients: the same examples, the same targets, in packed order.
    let (pt, kt) = match task {
        Task::TokenClassification => {
            let lab = |b: &Batch| {
                let ids = ints(&b.input_ids);
                let mask = ints(b.attention_mask.as_ref().unwrap());
                let v: Vec<i64> = ids.iter().zip(&mask).map(|(&x, &m)| if m == 1 { x % 3 } else { -100 }).collect();
                Targets::Tokens(Tensor::from_vec(v, b.input_ids.shape()).unwrap())
            };
            (lab(&padded), lab(&packed))
        }
        _ => {
            let n = padded.dims().0;
            let t = padded.dims().1;
            let classes: Vec<i64> = (0..n as i64).map(|c| c % 2).collect();
            let packed_classes: Vec<i64> = order.iter().map(|e| classes[e[0] / t]).collect();
            (
                Targets::Classes(Tensor::from_vec(classes, &[n]).unwrap()),
                Targets::Classes(Tensor::from_vec(packed_classes, &[order.len()]).unwrap()),
            )
        }
    };
    let run = |batch: &Batch, targets: &Targets| {
        let g = Graph::train(0);
        let out = model.loss(&g, batch, targets, &LossOptions::default(), false).unwrap();
        let mut grads = Grads::new();
        g.backward(&out.loss, &mut grads).unwrap();
        (out.loss.value().scalar_value().unwrap(), grads)
    };
    let ((l1, g1), (l2, g2)) = (run(&padded, &pt), run(&packed, &kt));
    assert!((l1 - l2).abs() < 1e-5 * l1.abs().max(1.0), "{name}: loss {l2} vs {l1}");
    // Errors are relative to the largest gradient of the model: some gradients are zero in
    // exact arithmetic (a key bias shifts every score of a query equally), leaving only noise.
    let largest = model
        .params
        .iter()
        .filter_map(|(id, _)| g1.get(id))
        .flat_map(|t| t.to_vec_f64().unwrap())
        .fold(0.0f64, |m, x| m.max(x.abs()));
    let mut compared = 0;
    for (id, param) in model.params.iter() {
        if let (Some(a), Some(b)) = (g1.get(id), g2.get(id)) {
            let (a, b) = (a.to_vec_f64().unwrap(), b.to_vec_f64().unwrap());
            let e = a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max) / largest;
            assert!(e < 1e-5, "{name}: gradient of {} differs by {e:e} of the largest", param.name);
            compared += 1;
        }
    }
    assert!(compared > 10, "{name}: only {compared} gradients compared");
}

#[test]
fn bert_sequence_classification() {
    check("bert_seq_cls", Task::SequenceClassification);
}

#[test]
fn roberta_sequence_classification_with_offset_positions() {
    check("roberta_seq_cls", Task::SequenceClassification);
}

#[test]
fn gpt2_sequence_classification_pools_the_last_token() {
    check("gpt2_seq_cls", Task::SequenceClassification);
}

#[test]
fn llama_sequence_classification_pools_the_last_token() {
    check("llama_seq_cls", Task::SequenceClassification);
}

#[test]
fn bert_sentence_embeddings_pool_each_packed_example() {
    let dir = fixture("bert_embedding");
    let (model, _) = Model::load(&dir, &LoadOptions::new(Task::Embedding)).unwrap();
    let (padded, packed, order) = batches(&dir, &model, 24);
    let t = padded.dims().1;
    let a = model.forward(&Graph::inference(), &padded, false).unwrap().value().to_vec_f64().unwrap();
    let b = model.forward(&Graph::inference(), &packed, false).unwrap().value().to_vec_f64().unwrap();
    let d = a.len() / padded.dims().0;
    let want: Vec<f64> = order.iter().flat_map(|e| a[(e[0] / t) * d..(e[0] / t + 1) * d].to_vec()).collect();
    let e = max_rel(&b, &want);
    assert!(e < 1e-5, "packed embeddings differ by {e:e}");
}

#[test]
fn bert_token_classification() {
    check("bert_token_cls", Task::TokenClassification);
}

/// First-token classifiers of unpacked rows skip the last block's work on the other tokens;
/// the logits equal those computed from the full hidden states.
#[test]
fn first_token_classifiers_skip_the_last_block_s_other_tokens_exactly() {
    for name in ["bert_seq_cls", "roberta_seq_cls"] {
        let dir = fixture(name);
        let (model, _) = Model::load(&dir, &LoadOptions::new(Task::SequenceClassification)).unwrap();
        let (padded, _, _) = batches(&dir, &model, 24);
        let g = Graph::inference();
        let pruned = model.forward(&g, &padded, false).unwrap().value().to_vec_f64().unwrap();
        let full = model.hidden_states(&g, &padded, false).unwrap();
        assert_eq!(full.shape()[1], padded.dims().1);
        let from_full = model.head_forward(&g, &full, &padded).unwrap().value().to_vec_f64().unwrap();
        let e = max_rel(&pruned, &from_full);
        assert!(e < 1e-6, "{name}: {e:e}");
    }
}
