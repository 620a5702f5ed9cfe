//! bf16 mixed precision through the ops, in a process of its own (the precision is
//! process-wide): with `TUNESMITH_BF16_KERNEL=fallback` forcing the portable kernel, as on a
//! CPU without AMX or AVX512-BF16, and then on the best kernel this CPU has.
//!
//! - The f32 ops' values and gradients agree with the f64 ops to bf16's rounding.
//! - f64 products (gradient checks) are never rounded.
//! - Setting fp32 back gives the fp32 results bit for bit.

use tunesmith_engine::gradcheck::{self, randn, GradCheckOptions};
use tunesmith_engine::ops::{AttentionSpec, CrossEntropySpec};
use tunesmith_engine::precision::{self, Bf16Kernel, Precision};
use tunesmith_engine::{DType, Grads, Graph, Result, Tensor, Var};

type OpFn = dyn Fn(&Graph<'_>, &[Var]) -> Result<Var>;

fn run(inputs: &[Tensor], dtype: DType, f: &OpFn) -> Vec<Vec<f64>> {
    let g = Graph::train(3);
    let leaves: Vec<Var> = inputs.iter().map(|t| g.leaf(t.to_dtype(dtype).unwrap())).collect();
    let out = f(&g, &leaves).unwrap();
    let w = g.input(randn(out.shape(), 9).to_dtype(dtype).unwrap());
    let loss = if out.value().numel() == 1 { out.clone() } else { g.sum(&g.mul(&out, &w).unwrap()).unwrap() };
    let mut grads = Grads::new();
    g.backward(&loss, &mut grads).unwrap();
    let mut all = vec![out.value().to_vec_f64().unwrap()];
    all.extend(leaves.iter().map(|l| grads.of(l).map(|t| t.to_vec_f64().unwrap()).unwrap_or_default()));
    all
}

/// The largest error relative to the largest magnitude of the reference.
fn worst(a: &[f64], b: &[f64]) -> f64 {
    let scale = b.iter().fold(0.0f64, |m, x| m.max(x.abs())).max(1e-9);
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0f64, f64::max) / scale
}

struct Case {
    name: &'static str,
    inputs: Vec<Tensor>,
    f: Box<OpFn>,
}

fn cases() -> Vec<Case> {
    let labels = Tensor::from_vec((0..48).map(|i| (i * 7) % 200).collect::<Vec<i64>>(), &[48]).unwrap();
    vec![
        Case {
            name: "linear",
            inputs: vec![randn(&[64, 96], 1), randn(&[80, 96], 2), randn(&[80], 3)],
            f: Box::new(|g, v| g.linear(&v[0], &v[1], Some(&v[2]))),
        },
        Case {
            name: "attention",
            inputs: vec![randn(&[2, 40, 4, 32], 4), randn(&[2, 40, 2, 32], 5), randn(&[2, 40, 2, 32], 6)],
            f: Box::new(|g, v| {
                g.attention(&v[0], &v[1], &v[2], None, None, AttentionSpec { causal: true, ..Default::default() })
            }),
        },
        Case {
            name: "linear_cross_entropy",
            inputs: vec![randn(&[48, 64], 7), randn(&[200, 64], 8)],
            f: Box::new(move |g, v| {
                Ok(g.linear_cross_entropy(&v[0], &v[1], None, &labels, None, CrossEntropySpec::default())?.loss)
            }),
        },
    ]
}

/// One test, so that nothing else in this process runs while the precision is bf16.
#[test]
fn bf16_products_through_the_ops() {
    // SAFETY: set before any thread of this test binary reads the environment (this is its
    // only test, and the kernel choice is read once, below).
    unsafe { std::env::set_var(precision::BF16_KERNEL_ENV, "fallback") };
    assert_eq!(precision::bf16_kernel(), Bf16Kernel::Fallback, "the env var forces the portable kernel");
    check_all_cases(Bf16Kernel::Fallback);

    // The f64 ops stay exact: a gradient check passes with bf16 set.
    precision::set(Precision::Bf16);
    let report = gradcheck::check(&[randn(&[6, 10], 11), randn(&[7, 10], 12)], GradCheckOptions::default(), |g, v| {
        g.linear(&v[0], &v[1], None)
    })
    .unwrap();
    assert!(report.max_rel_err < 1e-6, "f64 linear under bf16: {report:?}");
    precision::set(Precision::Fp32);
}

fn check_all_cases(kernel: Bf16Kernel) {
    for case in cases() {
        precision::set(Precision::Fp32);
        let fp32 = run(&case.inputs, DType::F32, &*case.f);
        let f64s = run(&case.inputs, DType::F64, &*case.f);
        precision::set(Precision::Bf16);
        let bf16 = run(&case.inputs, DType::F32, &*case.f);
        precision::set(Precision::Fp32);
        let again = run(&case.inputs, DType::F32, &*case.f);
        assert_eq!(again, fp32, "{}: fp32 after bf16 must be bit-identical", case.name);
        for (i, ((b, r), s)) in bf16.iter().zip(&f64s).zip(&fp32).enumerate() {
            let err = worst(b, r);
            assert!(err < 2e-2, "{} ({}) output {i}: bf16 vs f64 relative error {err:e}", case.name, kernel.name());
            // The rounding must actually happen: the op's value differs from fp32's (some
            // gradients, such as a bias's, involve no product and may not).
            if i == 0 {
                assert!(worst(b, s) > 1e-6, "{} output {i}: bf16 equals fp32, products were not rounded", case.name);
            }
        }
    }
}
