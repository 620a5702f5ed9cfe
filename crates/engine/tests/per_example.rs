//! Per-example gradients (DP-SGD) equal the gradients of batch-size-1 backward passes: a model
//! of every op with per-example support (embedding, layer_norm, lora_linear, rms_norm, linear
//! over tokens and over a pooled per-example matrix), in f64, over padded and packed rows.

use tunesmith_engine::gradcheck::randn;
use tunesmith_engine::ops::LoraSpec;
use tunesmith_engine::{ExampleRows, Grads, Graph, ParamId, ParamStore, PerExampleGrads, Tensor, Var};

const D: usize = 6;
const VOCAB: usize = 11;

struct Model {
    store: ParamStore,
    trainable: Vec<ParamId>,
    ids: Vec<ParamId>,
}

fn model(full: bool) -> Model {
    let mut store = ParamStore::new();
    let mut ids = Vec::new();
    let mut add = |store: &mut ParamStore, name: &str, t: Tensor, trainable: bool| {
        let id = store.insert(name, t, trainable).unwrap();
        ids.push(id);
        id
    };
    add(&mut store, "emb", randn(&[VOCAB, D], 1), full);
    add(&mut store, "ln.g", randn(&[D], 2), full);
    add(&mut store, "ln.b", randn(&[D], 3), full);
    add(&mut store, "w", randn(&[5, D], 4), false);
    add(&mut store, "b", randn(&[5], 5), false);
    add(&mut store, "lora.a", randn(&[2, D], 6), true);
    add(&mut store, "lora.b", randn(&[5, 2], 7), true);
    add(&mut store, "rms.g", randn(&[5], 8), full);
    add(&mut store, "head.w", randn(&[3, 5], 9), true);
    add(&mut store, "head.b", randn(&[3], 10), true);
    add(&mut store, "pool.w", randn(&[4, 5], 11), true);
    let trainable = store.trainable_ids();
    Model { store, trainable, ids }
}

/// Σ token_logits ⊙ r1 + Σ pooled_logits ⊙ r2, with `pool` `[examples, tokens]` averaging each
/// example's tokens.
fn loss<'m>(g: &Graph<'m>, m: &Model, tokens: &[i64], pool: Tensor, r1: Tensor, r2: Tensor) -> Var {
    let p = |i: usize| g.param(&m.store, m.ids[i]);
    let ids = Tensor::from_vec(tokens.to_vec(), &[tokens.len()]).unwrap();
    let h = g.embedding(&ids, &p(0)).unwrap();
    let h = g.layer_norm(&h, Some(&p(1)), Some(&p(2)), 1e-5).unwrap();
    let h = g.lora_linear(&h, &p(3), Some(&p(4)), &p(5), &p(6), LoraSpec { scale: 1.5, dropout: 0.0 }).unwrap();
    let h = g.rms_norm(&h, &p(7), 1e-6, 1.0).unwrap();
    let tok = g.linear(&h, &p(8), Some(&p(9))).unwrap();
    let pooled = g.matmul(&g.input(pool), &h, false, false).unwrap();
    let seq = g.linear(&pooled, &p(10), None).unwrap();
    let a = g.sum(&g.mul(&tok, &g.input(r1)).unwrap()).unwrap();
    let b = g.sum(&g.mul(&seq, &g.input(r2)).unwrap()).unwrap();
    g.add(&a, &b).unwrap()
}

fn check(full: bool) {
    let m = model(full);
    // Token rows: example 0 (rows 0-3), example 1 (4-5), example 2 (6-7), a padding row (8),
    // example 1 again (9: a second run), example 3 (10-11).
    let owner: Vec<Option<usize>> =
        vec![Some(0), Some(0), Some(0), Some(0), Some(1), Some(1), Some(2), Some(2), None, Some(1), Some(3), Some(3)];
    let tokens: Vec<i64> = (0..owner.len()).map(|i| ((i * 7 + 3) % VOCAB) as i64).collect();
    let examples = 4;
    let r1 = randn(&[owner.len(), 3], 20).to_vec_f64().unwrap();
    let r2 = randn(&[examples, 4], 21).to_vec_f64().unwrap();
    let pool_for = |rows: &[usize], es: &[usize]| -> Vec<f64> {
        let mut v = vec![0.0; es.len() * rows.len()];
        for (k, &e) in es.iter().enumerate() {
            let mine: Vec<usize> = (0..rows.len()).filter(|&j| owner[rows[j]] == Some(e)).collect();
            for j in &mine {
                v[k * rows.len() + j] = 1.0 / mine.len() as f64;
            }
        }
        v
    };
    let all_rows: Vec<usize> = (0..owner.len()).collect();
    // Padding contributes nothing to the loss (its r1 rows are zero), as a masked loss would.
    let mut r1_all = r1.clone();
    r1_all[8 * 3..9 * 3].fill(0.0);

    let g = Graph::train(0);
    let l = loss(
        &g,
        &m,
        &tokens,
        Tensor::from_vec(pool_for(&all_rows, &[0, 1, 2, 3]), &[examples, owner.len()]).unwrap(),
        Tensor::from_vec(r1_all, &[owner.len(), 3]).unwrap(),
        Tensor::from_vec(r2.clone(), &[examples, 4]).unwrap(),
    );
    let rows = ExampleRows::from_token_examples(&owner, examples).unwrap();
    let (mut grads, mut per) = (Grads::new(), PerExampleGrads::new());
    g.backward_per_example(&l, &rows, &mut grads, &mut per).unwrap();
    assert_eq!(per.len(), m.trainable.len());

    for e in 0..examples {
        // The batch-size-1 pass: only example e's tokens.
        let mine: Vec<usize> = all_rows.iter().copied().filter(|&r| owner[r] == Some(e)).collect();
        let toks: Vec<i64> = mine.iter().map(|&r| tokens[r]).collect();
        let r1e: Vec<f64> = mine.iter().flat_map(|&r| r1[r * 3..r * 3 + 3].to_vec()).collect();
        let g1 = Graph::train(0);
        let l1 = loss(
            &g1,
            &m,
            &toks,
            Tensor::from_vec(vec![1.0 / mine.len() as f64; mine.len()], &[1, mine.len()]).unwrap(),
            Tensor::from_vec(r1e, &[mine.len(), 3]).unwrap(),
            Tensor::from_vec(r2[e * 4..e * 4 + 4].to_vec(), &[1, 4]).unwrap(),
        );
        let mut g1s = Grads::new();
        g1.backward(&l1, &mut g1s).unwrap();
        for &id in &m.trainable {
            let want = g1s.get(id).unwrap().to_vec_f64().unwrap();
            let all = per.get(id).unwrap().to_vec_f64().unwrap();
            let got = &all[e * want.len()..(e + 1) * want.len()];
            for (a, b) in got.iter().zip(&want) {
                assert!((a - b).abs() < 1e-9, "{} example {e}: {a} vs {b}", m.store.get(id).name);
            }
        }
    }
    // Clipping: the clipped sum with a huge bound is the plain sum of per-example gradients.
    let mut clipped = Grads::new();
    let stats = per.clip_into(examples, 1e9, 1.0, &mut clipped).unwrap();
    assert_eq!(stats.clipped, 0);
    for &id in &m.trainable {
        let all = per.get(id).unwrap().to_vec_f64().unwrap();
        let n = all.len() / examples;
        let sum: Vec<f64> = (0..n).map(|i| (0..examples).map(|e| all[e * n + i]).sum()).collect();
        let got = clipped.get(id).unwrap().to_vec_f64().unwrap();
        for (a, b) in got.iter().zip(&sum) {
            assert!((a - b).abs() < 1e-12);
        }
    }
    // With a bound below every norm, each example contributes exactly the bound.
    let norms = per.norms(examples).unwrap();
    let bound = norms.iter().cloned().fold(f64::INFINITY, f64::min) / 2.0;
    let stats = per.clip_into(examples, bound, 1.0, &mut Grads::new()).unwrap();
    assert_eq!(stats.clipped, examples);
}

#[test]
fn lora_per_example_gradients_equal_batch_size_one_passes() {
    check(false);
}

#[test]
fn full_fine_tuning_per_example_gradients_equal_batch_size_one_passes() {
    check(true);
}

#[test]
fn an_op_without_per_example_support_is_named() {
    let mut store = ParamStore::new();
    let w = store.insert("w", randn(&[4, 3], 1), true).unwrap();
    let g = Graph::train(0);
    let x = g.input(randn(&[2, 4], 2));
    // matmul with a parameter operand has no per-example split.
    let y = g.matmul(&x, &g.param(&store, w), false, false).unwrap();
    let l = g.sum(&y).unwrap();
    let rows = ExampleRows::from_token_examples(&[Some(0), Some(1)], 2).unwrap();
    let err = g.backward_per_example(&l, &rows, &mut Grads::new(), &mut PerExampleGrads::new()).unwrap_err();
    assert!(err.to_string().contains("matmul cannot give per-example gradients"), "{err}");
}

#[test]
fn a_fused_cross_entropy_head_splits_its_gradient_by_example() {
    use tunesmith_engine::ops::CrossEntropySpec;
    let mut store = ParamStore::new();
    let w = store.insert("head.w", randn(&[4, D], 1), true).unwrap();
    let b = store.insert("head.b", randn(&[4], 2), true).unwrap();
    // h = rows of a frozen matrix (matmul's parameter operand has no per-example split).
    let lora_a = store.insert("x", randn(&[5, D], 3), false).unwrap();
    let spec = CrossEntropySpec { ignore_index: -100, label_smoothing: 0.1, normalizer: Some(3.0) };
    let labels = [2i64, -100, 0, 3, 1];
    let weights = [1.0f64, 1.0, 0.5, 2.0, 1.0];
    let loss_of = |g: &Graph<'_>, rows: &[usize]| {
        let x = g.param(&store, lora_a);
        let idx: Vec<f64> = rows.iter().flat_map(|&r| (0..5).map(move |j| if j == r { 1.0 } else { 0.0 })).collect();
        let h = g.matmul(&g.input(Tensor::from_vec(idx, &[rows.len(), 5]).unwrap()), &x, false, false).unwrap();
        let l = Tensor::from_vec(rows.iter().map(|&r| labels[r]).collect::<Vec<_>>(), &[rows.len()]).unwrap();
        let wt = Tensor::from_vec(rows.iter().map(|&r| weights[r]).collect::<Vec<_>>(), &[rows.len()]).unwrap();
        g.linear_cross_entropy(&h, &g.param(&store, w), Some(&g.param(&store, b)), &l, Some(&wt), spec).unwrap().loss
    };
    let g = Graph::train(0);
    let l = loss_of(&g, &[0, 1, 2, 3, 4]);
    let rows = ExampleRows::from_token_examples(&[Some(0), Some(0), Some(1), Some(2), Some(2)], 3).unwrap();
    let (mut grads, mut per) = (Grads::new(), PerExampleGrads::new());
    g.backward_per_example(&l, &rows, &mut grads, &mut per).unwrap();
    for (e, mine) in [(0usize, vec![0usize, 1]), (1, vec![2]), (2, vec![3, 4])] {
        let g1 = Graph::train(0);
        let l1 = loss_of(&g1, &mine);
        let mut g1s = Grads::new();
        g1.backward(&l1, &mut g1s).unwrap();
        for id in [w, b] {
            let want = g1s.get(id).unwrap().to_vec_f64().unwrap();
            let all = per.get(id).unwrap().to_vec_f64().unwrap();
            for (a, b) in all[e * want.len()..(e + 1) * want.len()].iter().zip(&want) {
                assert!((a - b).abs() < 1e-9, "example {e}: {a} vs {b}");
            }
        }
    }
}
