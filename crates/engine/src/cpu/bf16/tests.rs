//! The bf16 kernels against f64 references. Kernels this CPU lacks are reported and skipped;
//! the fallback runs everywhere.

use super::*;
use crate::cpu::gemm::{MatMut, MatRef};

fn values(len: usize, seed: f32) -> Vec<f32> {
    (0..len).map(|i| ((i as f32 * 0.7311 + seed).sin() * 1.7) + 0.05 * (i % 13) as f32).collect()
}

/// The kernels this machine runs, announcing the ones it skips.
fn runnable_kernels() -> Vec<Bf16Kernel> {
    [Bf16Kernel::Amx, Bf16Kernel::Avx512Bf16, Bf16Kernel::Fallback]
        .into_iter()
        .filter(|&k| {
            let ok = supports(k);
            if !ok {
                eprintln!("skipping the {} bf16 kernel: this CPU (or OS) lacks it", k.name());
            }
            ok
        })
        .collect()
}

#[test]
fn rounding_is_to_nearest_even_and_keeps_specials() {
    // 1 + 2^-8 is halfway between bf16 1.0 and 1 + 2^-7: ties to even (1.0).
    assert_eq!(round_to_bf16(1.0 + 2f32.powi(-8)), 1.0);
    // 1 + 3·2^-8 is halfway between 1 + 2^-7 (odd) and 1 + 2^-6 (even).
    assert_eq!(round_to_bf16(1.0 + 3.0 * 2f32.powi(-8)), 1.0 + 2f32.powi(-6));
    assert_eq!(round_to_bf16(1.0 + 2f32.powi(-8) + 2f32.powi(-20)), 1.0 + 2f32.powi(-7));
    assert_eq!(round_to_bf16(-2.5), -2.5);
    assert_eq!(round_to_bf16(f32::INFINITY), f32::INFINITY);
    assert_eq!(round_to_bf16(f32::NEG_INFINITY), f32::NEG_INFINITY);
    assert!(round_to_bf16(f32::NAN).is_nan());
    // A NaN whose payload sits in the low bits only must not round to infinity.
    assert!(round_to_bf16(f32::from_bits(0x7F80_0001)).is_nan());
    assert_eq!(round_to_bf16(f32::MAX), f32::INFINITY, "f32::MAX rounds past bf16's largest finite");
    for x in values(1000, 0.3) {
        let r = round_to_bf16(x);
        assert_eq!(r.to_bits() & 0xFFFF, 0);
        assert!((r - x).abs() <= x.abs() * 2f32.powi(-8), "{x} -> {r}");
    }
}

#[test]
fn packed_layouts_hold_the_rounded_operands() {
    let (m, n, k) = (37, 45, 50);
    let a = values(m * k, 0.1);
    let b = values(k * n, 0.9);
    let kp = k.next_multiple_of(BLOCK);
    let ap = pack::pack_a(MatRef::row_major(&a, m, k), 2 * BLOCK, kp, true);
    let bp = pack::pack_b(MatRef::row_major(&b, k, n), 2 * BLOCK, kp, false);
    for mb in 0..2 {
        for nb in 0..2 {
            let mut acc = [0f32; BLOCK * BLOCK];
            pack::reference_block(&ap[mb * BLOCK * kp..], &bp[nb * BLOCK * kp..], kp, &mut acc);
            for i in 0..BLOCK {
                for j in 0..BLOCK {
                    let (gi, gj) = (mb * BLOCK + i, nb * BLOCK + j);
                    let want = if gi < m && gj < n {
                        (0..k)
                            .map(|p| round_to_bf16(a[gi * k + p]) as f64 * round_to_bf16(b[p * n + gj]) as f64)
                            .sum::<f64>()
                    } else {
                        0.0
                    };
                    assert!((acc[i * BLOCK + j] as f64 - want).abs() <= 1e-5 * (1.0 + want.abs()), "({gi},{gj})");
                }
            }
        }
    }
}

/// Each vector block kernel equals the scalar definition over the same packed operands.
#[test]
fn block_kernels_match_the_reference_block() {
    let kp = 4 * BLOCK;
    let a: Vec<u16> = values(BLOCK * kp, 0.2).into_iter().map(to_bf16_bits).collect();
    let b: Vec<u16> = values(BLOCK * kp, 0.6).into_iter().map(to_bf16_bits).collect();
    let mut want = [0f32; BLOCK * BLOCK];
    pack::reference_block(&a, &b, kp, &mut want);
    for kernel in runnable_kernels() {
        let mut got = [f32::NAN; BLOCK * BLOCK];
        match kernel {
            Bf16Kernel::Amx => amx::block(&a, &b, kp, &mut got),
            Bf16Kernel::Avx512Bf16 => avx512::block(&a, &b, kp, &mut got),
            Bf16Kernel::Fallback => continue,
        }
        for (idx, (&g, &w)) in got.iter().zip(&want).enumerate() {
            assert!((g - w).abs() <= 1e-4 * (1.0 + w.abs()), "{} at {idx}: {g} vs {w}", kernel.name());
        }
    }
}

/// Every runnable kernel, on shapes that are and are not multiples of the block, transposed
/// and strided views, with and without accumulation: within f32 summation error of the f64
/// product of the bf16-rounded inputs, and within bf16's rounding (1e-2 relative to Σ|a·b|)
/// of the exact product, inner dimension up to 4096.
#[test]
fn matmul_matches_f64_references_on_every_kernel() {
    let shapes = [(16, 16, 16), (33, 47, 65), (64, 96, 128), (70, 40, 4096), (5, 300, 77), (128, 3, 64)];
    for kernel in runnable_kernels() {
        for &(m, n, k) in &shapes {
            for (transpose_b, accumulate) in [(false, false), (true, true)] {
                let a = values(m * k, 0.4);
                let b = values(k * n, 1.3);
                let bt: Vec<f32> = (0..n * k).map(|i| b[(i % k) * n + i / k]).collect();
                let b_view = if transpose_b { MatRef::row_major(&bt, n, k).t() } else { MatRef::row_major(&b, k, n) };
                let start = values(m * n, 2.0);
                let mut out = if accumulate { start.clone() } else { vec![f32::NAN; m * n] };
                let alpha = 0.75;
                matmul(
                    MatMut::row_major(&mut out, m, n),
                    MatRef::row_major(&a, m, k),
                    b_view,
                    alpha,
                    accumulate,
                    kernel,
                    true,
                );
                for i in 0..m {
                    for j in 0..n {
                        let (mut rounded, mut exact, mut scale) = (0f64, 0f64, 0f64);
                        for p in 0..k {
                            let (x, y) = (a[i * k + p], b[p * n + j]);
                            rounded += round_to_bf16(x) as f64 * round_to_bf16(y) as f64;
                            exact += x as f64 * y as f64;
                            scale += (x as f64 * y as f64).abs();
                        }
                        let base = if accumulate { start[i * n + j] as f64 } else { 0.0 };
                        let alpha = alpha as f64;
                        let got = out[i * n + j] as f64;
                        let name = kernel.name();
                        let err = (got - base - alpha * rounded).abs();
                        assert!(
                            err <= 1e-5 * (1.0 + alpha * scale),
                            "{name} {m}x{n}x{k} ({i},{j}): {got} vs rounded {err}"
                        );
                        let err = (got - base - alpha * exact).abs();
                        assert!(
                            err <= 1e-2 * alpha * scale + 1e-6,
                            "{name} {m}x{n}x{k} ({i},{j}): {got} vs exact {err}"
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn the_best_kernel_is_supported() {
    assert!(supports(best_kernel()));
    assert!(supports(Bf16Kernel::Fallback));
}
