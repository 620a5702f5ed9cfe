//! quant_linear (a frozen, quantized W) equals the dense linear op run on W's dequantized
//! values, forward and backward (dx, db), for NF4 and Q8_0 weights, with several row panels;
//! quant_lora_linear equals lora_linear on the dequantized weight (y, dx, db, dA, dB), with and
//! without bias and dropout.

use std::sync::Arc;

use tunesmith_engine::gradcheck::randn;
use tunesmith_engine::ops::LoraSpec;
use tunesmith_engine::quant::QuantMatrix;
use tunesmith_engine::{DType, Grads, Graph, Tensor};

fn f32s(shape: &[usize], seed: u64) -> Tensor {
    randn(shape, seed).to_dtype(DType::F32).unwrap()
}

fn rel(a: &Tensor, b: &Tensor) -> f64 {
    let (a, b) = (a.to_vec_f64().unwrap(), b.to_vec_f64().unwrap());
    let scale = b.iter().fold(0f64, |m, x| m.max(x.abs())).max(1e-9);
    a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0f64, f64::max) / scale
}

#[test]
fn quantized_linear_matches_dense_linear_on_the_dequantized_weight() {
    // 300 rows of 4096: panels of 128 rows, the last one partial.
    let (n, inp, out) = (37, 4096, 300);
    let w = f32s(&[out, inp], 2).to_vec::<f32>().unwrap();
    for q in [QuantMatrix::nf4(&w, out, inp).unwrap(), QuantMatrix::q8_0(&w, out, inp).unwrap()] {
        let name = q.format().name();
        let dense = Tensor::from_vec(q.dequantize(), &[out, inp]).unwrap();
        let q = Arc::new(q);
        let (x, b, seed) = (f32s(&[n, inp], 1), f32s(&[out], 3), f32s(&[n, out], 4));
        let run = |quantized: bool| {
            let g = Graph::train(0);
            let (xv, bv) = (g.leaf(x.clone()), g.leaf(b.clone()));
            let y = if quantized {
                g.quant_linear(&xv, &q, Some(&bv)).unwrap()
            } else {
                g.linear(&xv, &g.input(dense.clone()), Some(&bv)).unwrap()
            };
            let mut grads = Grads::new();
            g.backward_with(&[(&y, seed.clone())], &mut grads).unwrap();
            (y.value().clone(), grads.of(&xv).unwrap().clone(), grads.of(&bv).unwrap().clone())
        };
        let (yq, dxq, dbq) = run(true);
        let (yd, dxd, dbd) = run(false);
        assert!(rel(&yq, &yd) < 1e-5, "{name} y: {:e}", rel(&yq, &yd));
        assert!(rel(&dxq, &dxd) < 1e-5, "{name} dx: {:e}", rel(&dxq, &dxd));
        assert!(rel(&dbq, &dbd) < 1e-6, "{name} db: {:e}", rel(&dbq, &dbd));
        // And the quantization itself stays close to the original weights.
        let orig = Tensor::from_vec(w.clone(), &[out, inp]).unwrap();
        assert!(rel(&dense, &orig) < 0.2, "{name}: dequantized W is far from W");
    }
}

#[test]
fn quantized_lora_matches_dense_lora_on_the_dequantized_weight() {
    // 600 rows of 1024: two panels; r = 8.
    let (n, inp, out, r) = (29, 1024, 600, 8);
    let w = f32s(&[out, inp], 12).to_vec::<f32>().unwrap();
    let q = QuantMatrix::q8_0(&w, out, inp).unwrap();
    let dense = Tensor::from_vec(q.dequantize(), &[out, inp]).unwrap();
    let q = Arc::new(q);
    let (x, b, seed) = (f32s(&[2, n, inp], 11), f32s(&[out], 13), f32s(&[2, n, out], 14));
    let small = |shape: &[usize], seed| {
        let v: Vec<f32> = f32s(shape, seed).to_vec::<f32>().unwrap().iter().map(|x| 0.1 * x).collect();
        Tensor::from_vec(v, shape).unwrap()
    };
    let (a, bm) = (small(&[r, inp], 15), small(&[out, r], 16));
    for (with_bias, dropout) in [(true, 0.0f32), (false, 0.0), (true, 0.25)] {
        let spec = LoraSpec { scale: 2.0, dropout };
        let run = |quantized: bool| {
            // Same graph seed on both sides, so the dropout masks are the same.
            let g = Graph::train(7);
            let (xv, bv, av, bmv) = (g.leaf(x.clone()), g.leaf(b.clone()), g.leaf(a.clone()), g.leaf(bm.clone()));
            let bias = with_bias.then_some(&bv);
            let y = if quantized {
                g.quant_lora_linear(&xv, &q, bias, &av, &bmv, spec).unwrap()
            } else {
                g.lora_linear(&xv, &g.input(dense.clone()), bias, &av, &bmv, spec).unwrap()
            };
            let mut grads = Grads::new();
            g.backward_with(&[(&y, seed.clone())], &mut grads).unwrap();
            let db = grads.of(&bv).cloned();
            (
                y.value().clone(),
                grads.of(&xv).unwrap().clone(),
                db,
                grads.of(&av).unwrap().clone(),
                grads.of(&bmv).unwrap().clone(),
            )
        };
        let (yq, dxq, dbq, daq, dbmq) = run(true);
        let (yd, dxd, dbd, dad, dbmd) = run(false);
        let case = format!("bias {with_bias}, dropout {dropout}");
        assert_eq!(yq.shape(), &[2, n, out]);
        assert!(rel(&yq, &yd) < 1e-5, "{case} y: {:e}", rel(&yq, &yd));
        assert!(rel(&dxq, &dxd) < 1e-5, "{case} dx: {:e}", rel(&dxq, &dxd));
        assert!(rel(&daq, &dad) < 1e-5, "{case} dA: {:e}", rel(&daq, &dad));
        assert!(rel(&dbmq, &dbmd) < 1e-5, "{case} dB: {:e}", rel(&dbmq, &dbmd));
        assert_eq!(dbq.is_some(), with_bias, "{case}: bias gradient present iff the layer has a bias");
        if let (Some(dbq), Some(dbd)) = (dbq, dbd) {
            assert!(rel(&dbq, &dbd) < 1e-6, "{case} db: {:e}", rel(&dbq, &dbd));
        }
    }
    // A mis-shaped B is an error naming the op.
    let g = Graph::train(0);
    let xv = g.leaf(Tensor::from_vec(vec![1f32; 3 * inp], &[3, inp]).unwrap());
    let (av, bad) = (g.leaf(a.clone()), g.leaf(f32s(&[out, r + 1], 1)));
    let err = g.quant_lora_linear(&xv, &q, None, &av, &bad, LoraSpec { scale: 1.0, dropout: 0.0 }).unwrap_err();
    assert!(err.to_string().contains("quant_lora_linear"), "{err}");
}

#[test]
fn bad_shapes_are_errors() {
    let q = Arc::new(QuantMatrix::q8_0(&vec![0.5f32; 4 * 64], 4, 64).unwrap());
    let g = Graph::train(0);
    let x = g.leaf(Tensor::from_vec(vec![1f32; 3 * 32], &[3, 32]).unwrap());
    assert!(g.quant_linear(&x, &q, None).unwrap_err().to_string().contains("quant_linear"));
    let x = g.leaf(Tensor::from_vec(vec![1f32; 3 * 64], &[3, 64]).unwrap());
    let b = g.leaf(Tensor::from_vec(vec![1f32; 5], &[5]).unwrap());
    assert!(g.quant_linear(&x, &q, Some(&b)).is_err());
    assert_eq!(g.quant_linear(&x, &q, None).unwrap().shape(), &[3, 4]);
}
