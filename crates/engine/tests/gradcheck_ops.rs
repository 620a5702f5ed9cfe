//! Every op's backward against central finite differences in f64, over odd shapes, masks and
//! grouped-query heads.

use tunesmith_engine::gradcheck::{check, randn, uniform, GradCheckOptions};
use tunesmith_engine::ops::{Activation, AttentionSpec, CrossEntropySpec, LoraSpec, RopeScaling, RopeTables};
use tunesmith_engine::{DType, Device, Tensor};

fn opts() -> GradCheckOptions {
    GradCheckOptions::default()
}

fn ids(v: Vec<i64>, shape: &[usize]) -> Tensor {
    Tensor::from_vec(v, shape).unwrap()
}

#[test]
fn linear_with_and_without_bias() {
    let x = randn(&[3, 5, 7], 1);
    let w = randn(&[4, 7], 2);
    let b = randn(&[4], 3);
    let r = check(&[x.clone(), w.clone(), b], opts(), |g, v| g.linear(&v[0], &v[1], Some(&v[2]))).unwrap();
    assert!(r.checked > 0);
    check(&[x, w], opts(), |g, v| g.linear(&v[0], &v[1], None)).unwrap();
}

#[test]
fn linear_frozen_weight_gets_no_gradient() {
    use tunesmith_engine::{Grads, Graph, ParamStore};
    let mut store = ParamStore::new();
    let w = store.insert("w", randn(&[4, 6], 5), false).unwrap();
    let g = Graph::train(0);
    let x = g.leaf(randn(&[2, 6], 6));
    let wv = g.param(&store, w);
    assert!(!wv.requires_grad());
    let y = g.linear(&x, &wv, None).unwrap();
    let loss = g.sum(&y).unwrap();
    let mut grads = Grads::new();
    g.backward(&loss, &mut grads).unwrap();
    assert!(grads.get(w).is_none());
    assert!(grads.of(&x).is_some());
    // Only x requires a gradient, so only dx flows: also checked numerically.
    let wt = store.get(w).value.clone();
    check(&[randn(&[2, 6], 6)], opts(), move |g, v| g.linear(&v[0], &g.input(wt.clone()), None)).unwrap();
}

#[test]
fn lora_linear_without_and_with_dropout() {
    let x = randn(&[2, 3, 5], 10);
    let w = randn(&[6, 5], 11);
    let b = randn(&[6], 12);
    let a = randn(&[3, 5], 13);
    let bm = randn(&[6, 3], 14);
    let spec = LoraSpec { scale: 2.0, dropout: 0.0 };
    check(&[x.clone(), w.clone(), b.clone(), a.clone(), bm.clone()], opts(), |g, v| {
        g.lora_linear(&v[0], &v[1], Some(&v[2]), &v[3], &v[4], spec)
    })
    .unwrap();
    let spec = LoraSpec { scale: 0.5, dropout: 0.3 };
    let o = GradCheckOptions { training: true, ..opts() };
    check(&[x, w, a, bm], o, |g, v| g.lora_linear(&v[0], &v[1], None, &v[2], &v[3], spec)).unwrap();
}

#[test]
fn batched_matmul_all_transposes() {
    for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
        let a = if ta { randn(&[2, 3, 5, 4], 20) } else { randn(&[2, 3, 4, 5], 20) };
        let b = if tb { randn(&[2, 3, 6, 5], 21) } else { randn(&[2, 3, 5, 6], 21) };
        check(&[a, b], opts(), |g, v| g.matmul(&v[0], &v[1], ta, tb)).unwrap();
    }
}

#[test]
fn embedding_with_repeated_ids() {
    let table = randn(&[7, 5], 30);
    let id = ids(vec![0, 3, 3, 6, 1, 3], &[2, 3]);
    check(&[table], opts(), |g, v| g.embedding(&id, &v[0])).unwrap();
}

#[test]
fn embedding_rejects_out_of_range_ids() {
    let g = tunesmith_engine::Graph::inference();
    let t = g.input(randn(&[4, 3], 1));
    let err = g.embedding(&ids(vec![1, 4], &[2]), &t).unwrap_err();
    assert!(err.to_string().contains("id 4"), "{err}");
}

#[test]
fn layer_norm_affine_and_plain() {
    let x = randn(&[3, 4, 9], 40);
    let gm = randn(&[9], 41);
    let bt = randn(&[9], 42);
    check(&[x.clone(), gm, bt], opts(), |g, v| g.layer_norm(&v[0], Some(&v[1]), Some(&v[2]), 1e-5)).unwrap();
    check(&[x], opts(), |g, v| g.layer_norm(&v[0], None, None, 1e-5)).unwrap();
}

#[test]
fn rms_norm_llama_and_gemma_offsets() {
    let x = randn(&[5, 11], 50);
    let gm = randn(&[11], 51);
    for offset in [0.0, 1.0] {
        check(&[x.clone(), gm.clone()], opts(), |g, v| g.rms_norm(&v[0], &v[1], 1e-6, offset)).unwrap();
    }
}

#[test]
fn rope_full_partial_and_scaled() {
    let positions: Vec<i64> = (0..2).flat_map(|_| [0i64, 1, 2, 5, 9]).collect();
    let scalings = [
        RopeScaling::None,
        RopeScaling::Linear { factor: 2.0 },
        RopeScaling::Llama3 {
            factor: 8.0,
            low_freq_factor: 1.0,
            high_freq_factor: 4.0,
            original_max_position_embeddings: 16,
        },
    ];
    for (rot, scaling) in [(8, &scalings[0]), (4, &scalings[0]), (8, &scalings[1]), (8, &scalings[2])] {
        let tables = RopeTables::new(&positions, rot, 10_000.0, scaling, DType::F64, Device::Cpu).unwrap();
        let x = randn(&[2, 5, 3, 8], 60);
        check(&[x], opts(), |g, v| g.rope(&v[0], &tables)).unwrap();
    }
}

#[allow(clippy::too_many_arguments)]
fn attention_case(
    b: usize,
    t: usize,
    s: usize,
    h: usize,
    hkv: usize,
    d: usize,
    spec: AttentionSpec,
    mask: Option<Tensor>,
    seg: Option<Tensor>,
    training: bool,
) {
    let q = randn(&[b, t, h, d], 70 + t as u64);
    let k = randn(&[b, s, hkv, d], 71 + s as u64);
    let v = randn(&[b, s, hkv, d], 72);
    let o = GradCheckOptions { training, ..opts() };
    check(&[q, k, v], o, |g, x| g.attention(&x[0], &x[1], &x[2], mask.as_ref(), seg.as_ref(), spec)).unwrap();
}

#[test]
fn attention_causal_and_bidirectional_with_gqa() {
    let causal = AttentionSpec { causal: true, ..Default::default() };
    attention_case(2, 7, 7, 4, 2, 5, causal, None, None, false);
    attention_case(1, 5, 5, 3, 3, 4, AttentionSpec::default(), None, None, false);
    attention_case(1, 5, 5, 4, 1, 4, AttentionSpec { scale: Some(0.3), ..causal }, None, None, false);
}

#[test]
fn attention_across_tile_boundaries() {
    // 70 rows: the causal tile is cut into 32-row strips that stop at the diagonal (0..32,
    // 32..64, 64..70), each updating the online softmax of its own rows.
    let causal = AttentionSpec { causal: true, ..Default::default() };
    attention_case(1, 70, 70, 2, 1, 3, causal, None, None, false);
}

#[test]
fn attention_with_padding_mask() {
    let mask = Tensor::from_vec(vec![1u32, 1, 1, 1, 0, 0, 1, 1, 1, 1, 1, 1], &[2, 6]).unwrap();
    let causal = AttentionSpec { causal: true, ..Default::default() };
    attention_case(2, 6, 6, 2, 2, 4, causal, Some(mask.clone()), None, false);
    attention_case(2, 6, 6, 2, 1, 4, AttentionSpec::default(), Some(mask), None, false);
}

#[test]
fn attention_with_packed_segments_and_window() {
    let seg = ids(vec![0, 0, 0, 1, 1, 2, 2, 2], &[1, 8]);
    let causal = AttentionSpec { causal: true, ..Default::default() };
    attention_case(1, 8, 8, 2, 1, 4, causal, None, Some(seg), false);
    attention_case(1, 9, 9, 2, 2, 4, AttentionSpec { window: Some(3), ..causal }, None, None, false);
}

#[test]
fn attention_decoding_alignment_and_dropout() {
    // Fewer queries than keys: the last query sees every key.
    let causal = AttentionSpec { causal: true, ..Default::default() };
    attention_case(1, 3, 7, 2, 1, 4, causal, None, None, false);
    attention_case(2, 6, 6, 2, 2, 4, AttentionSpec { dropout: 0.25, ..causal }, None, None, true);
}

#[test]
fn activations_and_swiglu() {
    let x = randn(&[4, 9], 80);
    for act in [Activation::GeluErf, Activation::GeluTanh, Activation::Silu, Activation::Tanh, Activation::Sigmoid] {
        check(std::slice::from_ref(&x), opts(), |g, v| g.activation(&v[0], act)).unwrap();
    }
    // ReLU away from its kink.
    let xr = uniform(&[3, 5], 0.1, 1.0, 81);
    check(&[xr], opts(), |g, v| g.activation(&v[0], Activation::Relu)).unwrap();
    check(&[x.clone(), randn(&[4, 9], 82)], opts(), |g, v| g.swiglu(&v[0], &v[1])).unwrap();
}

#[test]
fn dropout_is_seeded() {
    let o = GradCheckOptions { training: true, ..opts() };
    check(&[randn(&[6, 7], 90)], o, |g, v| g.dropout(&v[0], 0.4)).unwrap();
}

#[test]
fn cross_entropy_plain_smoothed_weighted() {
    let h = randn(&[2, 5, 6], 100);
    let w = randn(&[11, 6], 101);
    let b = randn(&[11], 102);
    let labels = ids(vec![1, 4, -100, 10, 0, 3, 3, -100, 7, 2], &[2, 5]);
    let weights = Tensor::from_vec(vec![1.0f64, 0.5, 1.0, 2.0, 1.0, 0.0, 1.0, 1.0, 3.0, 1.0], &[10]).unwrap();
    let plain = CrossEntropySpec::default();
    check(&[h.clone(), w.clone(), b.clone()], opts(), |g, v| {
        Ok(g.linear_cross_entropy(&v[0], &v[1], Some(&v[2]), &labels, None, plain)?.loss)
    })
    .unwrap();
    let smooth = CrossEntropySpec { label_smoothing: 0.1, normalizer: Some(13.0), ..plain };
    check(&[h.clone(), w.clone()], opts(), |g, v| {
        Ok(g.linear_cross_entropy(&v[0], &v[1], None, &labels, Some(&weights), smooth)?.loss)
    })
    .unwrap();
    // A loss scaled after the fact (as gradient accumulation does) still back-propagates.
    check(&[h.clone(), w.clone()], opts(), |g, v| {
        let l = g.linear_cross_entropy(&v[0], &v[1], None, &labels, None, plain)?.loss;
        g.scale(&l, 0.25)
    })
    .unwrap();
    check(&[h, w, b], opts(), |g, v| g.token_logprobs(&v[0], &v[1], Some(&v[2]), &labels, -100)).unwrap();
}

#[test]
fn cross_entropy_matches_naive_log_softmax() {
    use tunesmith_engine::Graph;
    let h = randn(&[4, 3], 110);
    let w = randn(&[5, 3], 111);
    let labels = ids(vec![0, 4, 2, -100], &[4]);
    let g = Graph::inference();
    let (hv, wv) = (g.input(h.clone()), g.input(w.clone()));
    let out = g.linear_cross_entropy(&hv, &wv, None, &labels, None, CrossEntropySpec::default()).unwrap();
    let logits = g.linear(&hv, &wv, None).unwrap();
    let lsm = g.log_softmax(&logits).unwrap().value().to_vec_f64().unwrap();
    let want = -(lsm[0] + lsm[5 + 4] + lsm[10 + 2]) / 3.0;
    assert!((out.loss.value().scalar_value().unwrap() - want).abs() < 1e-12);
    assert_eq!(out.counted, 3);
    let lp = out.token_logprobs.to_vec_f64().unwrap();
    assert!((lp[1] - lsm[9]).abs() < 1e-12 && lp[3] == 0.0);
}

#[test]
fn cross_entropy_rejects_bad_labels() {
    let g = tunesmith_engine::Graph::inference();
    let (h, w) = (g.input(randn(&[2, 3], 1)), g.input(randn(&[4, 3], 2)));
    let err =
        g.linear_cross_entropy(&h, &w, None, &ids(vec![1, 9], &[2]), None, CrossEntropySpec::default()).unwrap_err();
    assert!(err.to_string().contains("label 9"), "{err}");
}

#[test]
fn arithmetic_with_broadcast() {
    let a = randn(&[3, 4, 5], 120);
    let b = randn(&[4, 5], 121);
    check(&[a.clone(), b.clone()], opts(), |g, v| g.add(&v[0], &v[1])).unwrap();
    check(&[a.clone(), b.clone()], opts(), |g, v| g.sub(&v[0], &v[1])).unwrap();
    check(&[a.clone(), b], opts(), |g, v| g.mul(&v[0], &v[1])).unwrap();
    check(&[a.clone(), randn(&[3, 4, 5], 122)], opts(), |g, v| g.mul(&v[0], &v[1])).unwrap();
    check(std::slice::from_ref(&a), opts(), |g, v| g.scale(&v[0], -1.7)).unwrap();
    check(std::slice::from_ref(&a), opts(), |g, v| g.mean(&v[0])).unwrap();
    check(&[a.clone(), randn(&[3, 4, 5], 123)], opts(), |g, v| g.mse(&v[0], &v[1])).unwrap();
    // x·x uses one input twice.
    check(&[a], opts(), |g, v| g.mul(&v[0], &v[0])).unwrap();
}

#[test]
fn shape_ops() {
    let x = randn(&[2, 3, 4], 130);
    check(std::slice::from_ref(&x), opts(), |g, v| g.permute(&v[0], &[2, 0, 1])).unwrap();
    check(std::slice::from_ref(&x), opts(), |g, v| g.transpose(&v[0], 1, 2)).unwrap();
    check(std::slice::from_ref(&x), opts(), |g, v| g.narrow(&v[0], 1, 1, 2)).unwrap();
    check(std::slice::from_ref(&x), opts(), |g, v| g.reshape(&v[0], &[6, 4])).unwrap();
    check(&[x.clone(), randn(&[2, 5, 4], 131)], opts(), |g, v| g.concat(&[&v[0], &v[1]], 1)).unwrap();
    check(&[x], opts(), |g, v| {
        let parts = g.split(&v[0], 2, &[1, 3])?;
        let a = g.scale(&parts[0], 2.0)?;
        let b = g.sum(&parts[1])?;
        let s = g.sum(&a)?;
        g.add(&s, &b)
    })
    .unwrap();
}

#[test]
fn pooling_softmax_and_normalize() {
    let x = randn(&[2, 5, 3], 140);
    let mask = Tensor::from_vec(vec![1i64, 1, 1, 0, 0, 1, 1, 1, 1, 1], &[2, 5]).unwrap();
    check(std::slice::from_ref(&x), opts(), |g, v| g.mean_pool(&v[0], &mask)).unwrap();
    check(std::slice::from_ref(&x), opts(), |g, v| g.cls_pool(&v[0])).unwrap();
    check(std::slice::from_ref(&x), opts(), |g, v| g.softmax(&v[0])).unwrap();
    check(std::slice::from_ref(&x), opts(), |g, v| g.log_softmax(&v[0])).unwrap();
    check(&[x], opts(), |g, v| g.l2_normalize(&v[0], 1e-12)).unwrap();
}

#[test]
fn checkpointed_scope_matches_plain_backward() {
    use tunesmith_engine::{Grads, Graph, ParamStore};
    let mut store = ParamStore::new();
    let w1 = store.insert("w1", randn(&[8, 6], 150), true).unwrap();
    let w2 = store.insert("w2", randn(&[6, 8], 151), true).unwrap();
    let x = randn(&[3, 6], 152);
    let run = |ckpt: bool| -> (Grads, f64) {
        let g = Graph::train(9);
        let xv = g.leaf(x.clone());
        let block =
            |g: &Graph<'_>, ins: &[tunesmith_engine::Var]| -> tunesmith_engine::Result<Vec<tunesmith_engine::Var>> {
                let h = g.linear(&ins[0], &g.param(&store, w1), None)?;
                let h = g.dropout(&g.gelu(&h)?, 0.2)?;
                Ok(vec![g.linear(&h, &g.param(&store, w2), None)?])
            };
        let y = if ckpt {
            g.checkpoint(&[&xv], block).unwrap().remove(0)
        } else {
            block(&g, std::slice::from_ref(&xv)).unwrap().remove(0)
        };
        let loss = g.sum(&g.mul(&y, &y).unwrap()).unwrap();
        let mut grads = Grads::new();
        g.backward(&loss, &mut grads).unwrap();
        let dx = grads.of(&xv).unwrap().to_vec_f64().unwrap().iter().sum::<f64>();
        (grads, dx)
    };
    let (plain, dx_plain) = run(false);
    let (ck, dx_ck) = run(true);
    for id in [w1, w2] {
        assert_eq!(plain.get(id).unwrap().max_abs_diff(ck.get(id).unwrap()).unwrap(), 0.0);
    }
    assert_eq!(dx_plain, dx_ck);
    // And numerically, through the checkpoint.
    let wt1 = store.get(w1).value.clone();
    check(&[x], GradCheckOptions { training: true, ..opts() }, move |g, v| {
        let wt1 = wt1.clone();
        let out = g.checkpoint(&[&v[0]], move |g, ins| {
            let h = g.linear(&ins[0], &g.input(wt1.clone()), None)?;
            Ok(vec![g.dropout(&g.silu(&h)?, 0.3)?])
        })?;
        Ok(out[0].clone())
    })
    .unwrap();
}
