//! The f32 kernels (fast vectorized exp/erf/tanh, f32 accumulation) agree with the f64 kernels
//! that the gradient checks validate, on realistic sizes: forward values and every gradient.
//! Also: runs are bit-identical for a seed, and bad shapes give errors naming op and shapes.

use tunesmith_engine::gradcheck::randn;
use tunesmith_engine::ops::{Activation, AttentionSpec, CrossEntropySpec, LoraSpec, RopeScaling, RopeTables};
use tunesmith_engine::{DType, Device, Grads, Graph, Result, Tensor, Var};

type OpFn = dyn Fn(&Graph<'_>, &[Var], DType) -> Result<Var>;

fn run(inputs: &[Tensor], dtype: DType, f: &OpFn) -> (Vec<f64>, Vec<Vec<f64>>) {
    let g = Graph::train(3);
    let leaves: Vec<Var> = inputs.iter().map(|t| g.leaf(t.to_dtype(dtype).unwrap())).collect();
    let out = f(&g, &leaves, dtype).unwrap();
    let w = g.input(randn(out.shape(), 9).to_dtype(dtype).unwrap());
    let loss = if out.value().numel() == 1 { out.clone() } else { g.sum(&g.mul(&out, &w).unwrap()).unwrap() };
    let mut grads = Grads::new();
    g.backward(&loss, &mut grads).unwrap();
    let gs = leaves.iter().map(|l| grads.of(l).map(|t| t.to_vec_f64().unwrap()).unwrap_or_default()).collect();
    (out.value().to_vec_f64().unwrap(), gs)
}

fn close(name: &str, a: &[f64], b: &[f64], tol: f64) {
    assert_eq!(a.len(), b.len(), "{name}: lengths");
    let scale = b.iter().fold(0.0f64, |m, x| m.max(x.abs())).max(1e-6);
    let worst = a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0f64, f64::max) / scale;
    assert!(worst < tol, "{name}: f32 vs f64 max error {worst:e} (relative to max |value| {scale:e})");
}

fn compare(name: &str, inputs: &[Tensor], f: &OpFn) {
    let (o32, g32) = run(inputs, DType::F32, f);
    let (o64, g64) = run(inputs, DType::F64, f);
    close(&format!("{name} output"), &o32, &o64, 2e-5);
    for (i, (a, b)) in g32.iter().zip(&g64).enumerate() {
        close(&format!("{name} grad {i}"), a, b, 1e-4);
    }
}

#[test]
fn linear_lora_and_matmul() {
    compare("linear", &[randn(&[64, 96], 1), randn(&[80, 96], 2), randn(&[80], 3)], &|g, v, _| {
        g.linear(&v[0], &v[1], Some(&v[2]))
    });
    compare("lora", &[randn(&[50, 40], 4), randn(&[30, 40], 5), randn(&[8, 40], 6), randn(&[30, 8], 7)], &|g, v, _| {
        g.lora_linear(&v[0], &v[1], None, &v[2], &v[3], LoraSpec { scale: 2.0, dropout: 0.1 })
    });
    compare("bmm", &[randn(&[3, 33, 17], 8), randn(&[3, 21, 17], 9)], &|g, v, _| g.matmul(&v[0], &v[1], false, true));
}

#[test]
fn norms_activations_and_rope() {
    compare("layer_norm", &[randn(&[37, 384], 10), randn(&[384], 11), randn(&[384], 12)], &|g, v, _| {
        g.layer_norm(&v[0], Some(&v[1]), Some(&v[2]), 1e-12)
    });
    compare("rms_norm", &[randn(&[37, 512], 13), randn(&[512], 14)], &|g, v, _| g.rms_norm(&v[0], &v[1], 1e-6, 0.0));
    for act in [Activation::GeluErf, Activation::GeluTanh, Activation::Silu, Activation::Tanh] {
        compare("activation", &[randn(&[4000], 15)], &move |g, v, _| g.activation(&v[0], act));
    }
    compare("swiglu", &[randn(&[3000], 16), randn(&[3000], 17)], &|g, v, _| g.swiglu(&v[0], &v[1]));
    let pos: Vec<i64> = (0..2).flat_map(|_| 0..130i64).collect();
    compare("rope", &[randn(&[2, 130, 4, 64], 18)], &move |g, v, dt| {
        let t = RopeTables::new(&pos, 64, 500_000.0, &RopeScaling::None, dt, Device::Cpu)?;
        g.rope(&v[0], &t)
    });
}

#[test]
fn attention_at_training_sizes() {
    let spec = AttentionSpec { causal: true, ..Default::default() };
    compare(
        "attention causal gqa",
        &[randn(&[2, 130, 4, 32], 20), randn(&[2, 130, 2, 32], 21), randn(&[2, 130, 2, 32], 22)],
        &move |g, v, _| g.attention(&v[0], &v[1], &v[2], None, None, spec),
    );
    let mask =
        Tensor::from_vec((0..2 * 100).map(|i| u32::from(i % 100 < 80 || i < 100)).collect::<Vec<u32>>(), &[2, 100])
            .unwrap();
    compare(
        "attention padded",
        &[randn(&[2, 100, 3, 16], 23), randn(&[2, 100, 3, 16], 24), randn(&[2, 100, 3, 16], 25)],
        &move |g, v, _| {
            g.attention(&v[0], &v[1], &v[2], Some(&mask), None, AttentionSpec { dropout: 0.1, ..Default::default() })
        },
    );
}

#[test]
fn fused_cross_entropy_large_vocab() {
    let labels: Vec<i64> = (0..150).map(|i| if i % 7 == 0 { -100 } else { (i * 37 % 5000) as i64 }).collect();
    let labels = Tensor::from_vec(labels, &[150]).unwrap();
    let l2 = labels.clone();
    compare("cross_entropy", &[randn(&[150, 48], 30), randn(&[5000, 48], 31)], &move |g, v, _| {
        let spec = CrossEntropySpec { label_smoothing: 0.1, ..Default::default() };
        Ok(g.linear_cross_entropy(&v[0], &v[1], None, &labels, None, spec)?.loss)
    });
    compare("token_logprobs", &[randn(&[150, 48], 32), randn(&[5000, 48], 33)], &move |g, v, _| {
        g.token_logprobs(&v[0], &v[1], None, &l2, -100)
    });
}

#[test]
fn runs_are_bit_identical_for_a_seed() {
    let inputs = [randn(&[2, 70, 4, 16], 40), randn(&[2, 70, 2, 16], 41), randn(&[2, 70, 2, 16], 42)];
    let f: &OpFn = &|g, v, _| {
        let o = g.attention(
            &v[0],
            &v[1],
            &v[2],
            None,
            None,
            AttentionSpec { causal: true, dropout: 0.2, ..Default::default() },
        )?;
        let o = g.reshape(&o, &[140, 64])?;
        let o = g.dropout(&o, 0.3)?;
        g.gelu(&o)
    };
    let a = run(&inputs, DType::F32, f);
    let b = run(&inputs, DType::F32, f);
    assert_eq!(a.0, b.0);
    assert_eq!(a.1, b.1);
}

#[test]
fn shape_errors_name_the_op_and_both_shapes() {
    let g = Graph::inference();
    let x = g.input(Tensor::zeros(&[2, 5], DType::F32, Device::Cpu).unwrap());
    let w = g.input(Tensor::zeros(&[3, 4], DType::F32, Device::Cpu).unwrap());
    let msg = g.linear(&x, &w, None).unwrap_err().to_string();
    assert!(msg.contains("linear") && msg.contains("[2, 5]") && msg.contains("[3, 4]"), "{msg}");
    let q = g.input(Tensor::zeros(&[1, 4, 3, 8], DType::F32, Device::Cpu).unwrap());
    let k = g.input(Tensor::zeros(&[1, 4, 2, 8], DType::F32, Device::Cpu).unwrap());
    let msg = g.attention(&q, &k, &k, None, None, AttentionSpec::default()).unwrap_err().to_string();
    assert!(msg.contains("attention") && msg.contains("multiple"), "{msg}");
    let i = g.input(Tensor::zeros(&[2, 5], DType::I64, Device::Cpu).unwrap());
    let msg = g.gelu(&i).unwrap_err().to_string();
    assert!(msg.contains("activation") && msg.contains("I64"), "{msg}");
    let c = Tensor::zeros(&[2], DType::F32, Device::Cuda(0)).unwrap_err().to_string();
    assert!(c.contains("cuda:0") || c.contains("Cuda"), "{c}");
}
