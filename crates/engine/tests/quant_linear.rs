//! quant_linear (a frozen, quantized W) equals the dense linear op run on W's dequantized
//! values, forward and backward (dx, db), for NF4 and Q8_0 weights, with several row panels.

use std::sync::Arc;

use tunesmith_engine::gradcheck::randn;
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
