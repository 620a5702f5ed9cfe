//! Forwards that read a weight's transposed copy (`cpu::linear::Weight::wt`) or its padded-row
//! copy (`Weight::padded`) compute what the plain `[out, in]` weight gives, in f64 to rounding;
//! the transposed copy is built once per weight, shared by clones, and rebuilt after the weight
//! is written.

use tunesmith_engine::cpu::cross_entropy::{self, CeOptions};
use tunesmith_engine::cpu::linear::{self, Weight};
use tunesmith_engine::cpu::lora::{self, LoraDims};
use tunesmith_engine::cpu::shape::transpose_2d;
use tunesmith_engine::gradcheck::randn;
use tunesmith_engine::{Graph, Tensor};

fn values(shape: &[usize], seed: u64) -> Vec<f64> {
    randn(shape, seed).to_vec_f64().unwrap()
}

fn assert_close(name: &str, a: &[f64], b: &[f64]) {
    assert_eq!(a.len(), b.len(), "{name}: lengths");
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert!((x - y).abs() <= 1e-12 * (1.0 + y.abs()), "{name}[{i}]: {x} vs {y}");
    }
}

#[test]
fn transpose_2d_matches_the_definition_on_odd_and_empty_shapes() {
    for (rows, cols) in [(1, 1), (1, 40), (40, 1), (17, 33), (33, 17), (64, 48), (0, 5), (5, 0)] {
        let x: Vec<u32> = (0..(rows * cols) as u32).collect();
        let y = transpose_2d(&x, rows, cols);
        assert_eq!(y.len(), rows * cols);
        for i in 0..rows {
            for j in 0..cols {
                assert_eq!(y[j * rows + i], x[i * cols + j], "{rows}x{cols} at ({i},{j})");
            }
        }
    }
}

#[test]
fn pad_rows_copies_each_row_and_zeroes_its_padding() {
    for (rows, cols) in [(1, 1), (3, 40), (40, 3), (17, 512), (2000, 5), (0, 5), (5, 0)] {
        let x: Vec<f32> = (0..rows * cols).map(|i| i as f32 + 1.0).collect();
        let p = linear::pad_rows(&x, rows, cols);
        let stride = cols + linear::ROW_PAD;
        assert_eq!(p.len(), rows * stride, "{rows}x{cols}");
        for i in 0..rows {
            assert_eq!(&p[i * stride..i * stride + cols], &x[i * cols..(i + 1) * cols], "{rows}x{cols} row {i}");
            assert!(p[i * stride + cols..(i + 1) * stride].iter().all(|&v| v == 0.0), "{rows}x{cols} row {i} padding");
        }
    }
}

#[test]
fn padded_copies_apply_to_large_weights_with_aliasing_rows() {
    assert!(linear::padded_applies::<f32>(1024, 512, 512), "2 KB rows alias");
    assert!(linear::padded_applies::<f32>(1024, 384, 1536), "6 KB rows alias");
    assert!(linear::padded_applies::<f64>(64, 130, 256), "256 f64 are 2 KB");
    assert!(!linear::padded_applies::<f32>(1024, 1152, 384), "1.5 KB rows do not");
    assert!(!linear::padded_applies::<f32>(1024, 512, 1408), "5.5 KB rows do not");
    assert!(!linear::padded_applies::<f32>(63, 512, 512), "too few rows to repay the copy");
    assert!(!linear::padded_applies::<f32>(1024, 8, 512), "too small a weight");
}

/// The plain weight, then each copy a forward may read instead.
fn layouts(w: &[f64], out: usize, inp: usize) -> [(&'static str, Vec<f64>); 2] {
    [("transposed", transpose_2d(w, out, inp)), ("padded", linear::pad_rows(w, out, inp))]
}

fn with_copy<'a>(name: &str, w: &'a [f64], copy: &'a [f64]) -> Weight<'a, f64> {
    if name == "transposed" {
        Weight::with_transposed(w, copy)
    } else {
        Weight::with_padded(w, copy)
    }
}

#[test]
fn linear_and_lora_forwards_agree_with_and_without_the_copy() {
    let (n, inp, out, r) = (70, 37, 45, 4);
    let x = values(&[n, inp], 1);
    let w = values(&[out, inp], 2);
    let b = values(&[out], 3);
    for (name, copy) in layouts(&w, out, inp) {
        let with = with_copy(name, &w, &copy);
        for bias in [None, Some(&b[..])] {
            let plain = linear::forward(&x, Weight::plain(&w), bias, n, inp, out);
            assert_close(&format!("{name} linear"), &linear::forward(&x, with, bias, n, inp, out), &plain);
        }
        let a = values(&[r, inp], 4);
        let bm = values(&[out, r], 5);
        let d = LoraDims { n, inp, out, r, scale: 2.0, dropout: 0.25, seed: 7 };
        let (y0, xa0) = lora::forward(&x, Weight::plain(&w), Some(&b), &a, &bm, d);
        let (y1, xa1) = lora::forward(&x, with, Some(&b), &a, &bm, d);
        assert_close(&format!("{name} lora y"), &y1, &y0);
        assert_close(&format!("{name} lora xa"), &xa1, &xa0);
    }
}

#[test]
fn cross_entropy_forwards_agree_with_and_without_the_copy() {
    let (n, d, v) = (90, 24, 300);
    let w = values(&[v, d], 7);
    for (name, copy) in layouts(&w, v, d) {
        cross_entropy_agrees(name, &w, with_copy(name, &w, &copy), n, d, v);
    }
}

fn cross_entropy_agrees(name: &str, w: &[f64], with: Weight<'_, f64>, n: usize, d: usize, v: usize) {
    let h = values(&[n, d], 6);
    let b = values(&[v], 8);
    println!("layout: {name}");
    let labels: Vec<i64> = (0..n as i64).map(|i| if i % 11 == 0 { -100 } else { (i * 37) % v as i64 }).collect();
    let opts = CeOptions { ignore_index: -100, label_smoothing: 0.1, normalizer: None };
    let plain =
        cross_entropy::forward(&h, Weight::plain(w), Some(&b), &labels, None, n, d, v, opts, true, true, true).unwrap();
    let copy = cross_entropy::forward(&h, with, Some(&b), &labels, None, n, d, v, opts, true, true, true).unwrap();
    assert!((plain.loss - copy.loss).abs() <= 1e-12 * plain.loss.abs(), "loss {} vs {}", copy.loss, plain.loss);
    assert_close("token logprobs", &copy.token_logprobs, &plain.token_logprobs);
    assert_close("dh", copy.dh.as_ref().unwrap(), plain.dh.as_ref().unwrap());
    assert_close("dW", copy.dw.as_ref().unwrap(), plain.dw.as_ref().unwrap());
    assert_close("db", copy.db.as_ref().unwrap(), plain.db.as_ref().unwrap());

    let (lp0, lse0) = cross_entropy::logprobs_forward(&h, Weight::plain(w), Some(&b), &labels, n, d, v, -100).unwrap();
    let (lp1, lse1) = cross_entropy::logprobs_forward(&h, with, Some(&b), &labels, n, d, v, -100).unwrap();
    assert_close("logprobs", &lp1, &lp0);
    assert_close("lse", &lse1, &lse0);
    let up = values(&[n], 9);
    let need = (true, true, true);
    let g0 = cross_entropy::logprobs_backward(&up, &h, Weight::plain(w), Some(&b), &labels, &lse0, n, d, v, -100, need);
    let g1 = cross_entropy::logprobs_backward(&up, &h, with, Some(&b), &labels, &lse0, n, d, v, -100, need);
    assert_close("logprobs dh", g1.0.as_ref().unwrap(), g0.0.as_ref().unwrap());
    assert_close("logprobs dW", g1.1.as_ref().unwrap(), g0.1.as_ref().unwrap());
    assert_close("logprobs db", g1.2.as_ref().unwrap(), g0.2.as_ref().unwrap());
}

#[test]
fn the_cached_copy_is_shared_by_clones_and_rebuilt_after_a_write() {
    let mut w = Tensor::from_vec((0..6).map(|i| i as f32).collect::<Vec<f32>>(), &[2, 3]).unwrap();
    assert!(!w.has_cached_transpose());
    let t = w.transposed_cached().unwrap();
    assert_eq!(t.shape(), &[3, 2]);
    assert_eq!(t.to_vec::<f32>().unwrap(), vec![0.0, 3.0, 1.0, 4.0, 2.0, 5.0]);
    let clone = w.clone();
    assert!(clone.has_cached_transpose(), "clones share the data, so they share its copy");
    assert!(!w.reshape(&[3, 2]).unwrap().has_cached_transpose(), "another shape has another transpose");

    w.as_mut_slice::<f32>().unwrap()[1] = 10.0;
    assert!(!w.has_cached_transpose(), "a write drops the copy");
    assert_eq!(w.transposed_cached().unwrap().to_vec::<f32>().unwrap(), vec![0.0, 3.0, 10.0, 4.0, 2.0, 5.0]);
    assert_eq!(
        clone.transposed_cached().unwrap().to_vec::<f32>().unwrap(),
        vec![0.0, 3.0, 1.0, 4.0, 2.0, 5.0],
        "the clone kept the old data and its copy"
    );
    assert!(Tensor::from_vec(vec![1.0f32; 4], &[4]).unwrap().transposed_cached().is_err(), "rank 1 has no transpose");
}

fn plain_product(x: &Tensor, w: &Tensor) -> Vec<f64> {
    let (n, inp, out) = (x.shape()[0], x.shape()[1], w.shape()[0]);
    let (xv, wv) = (x.to_vec_f64().unwrap(), w.to_vec_f64().unwrap());
    (0..n)
        .flat_map(|i| {
            let (xv, wv) = (&xv, &wv);
            (0..out).map(move |o| (0..inp).map(|k| xv[i * inp + k] * wv[o * inp + k]).sum())
        })
        .collect()
}

/// Through the op: a weight gets its copy on its second forward with unchanged data, loses it
/// when written, never gets one when small, and the outputs are the plain product.
#[test]
fn linear_op_builds_the_copy_when_it_pays() {
    let enabled = std::env::var(linear::TRANSPOSED_WEIGHTS_ENV).map_or(true, |v| v.trim() != "0");
    let g = Graph::inference();
    let x = randn(&[64, 128], 10);
    let w = randn(&[130, 128], 11);
    for read in 0..3 {
        let y = g.linear(&g.input(x.clone()), &g.input(w.clone()), None).unwrap();
        assert_close("linear op", &y.value().to_vec_f64().unwrap(), &plain_product(&x, &w));
        assert_eq!(w.has_cached_transpose(), enabled && read > 0, "after read {read} of a 128-wide f64 weight");
    }

    // An optimizer's write: the next forward reads the new data, plainly, without a copy.
    let mut w = w;
    w.as_mut_slice::<f64>().unwrap()[5] += 1.0;
    let y = g.linear(&g.input(x.clone()), &g.input(w.clone()), None).unwrap();
    assert!(!w.has_cached_transpose(), "the first read after a write builds no copy");
    assert_close("linear op after a write", &y.value().to_vec_f64().unwrap(), &plain_product(&x, &w));

    // A weight whose rows alias: its first forward reads a padded copy, later ones the
    // transposed copy; every output is the plain product.
    let aliasing = randn(&[130, 256], 12);
    let x256 = randn(&[64, 256], 13);
    for read in 0..2 {
        let y = g.linear(&g.input(x256.clone()), &g.input(aliasing.clone()), None).unwrap();
        assert_close(
            &format!("linear op, aliasing rows, read {read}"),
            &y.value().to_vec_f64().unwrap(),
            &plain_product(&x256, &aliasing),
        );
    }

    let small = randn(&[8, 8], 14);
    for _ in 0..2 {
        g.linear(&g.input(randn(&[64, 8], 15)), &g.input(small.clone()), None).unwrap();
    }
    assert!(!small.has_cached_transpose(), "a 64-element weight is not worth a copy");
}
