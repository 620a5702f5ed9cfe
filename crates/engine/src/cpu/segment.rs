//! Per-example reductions over runs of rows, for per-example gradients (DP-SGD): each example
//! owns one or more runs `[start, end)` of a `[n, ·]` matrix's rows, and gets its own sum.

use rayon::prelude::*;

use super::gemm::{matmul_serial, MatMut, MatRef};
use crate::dtype::Real;

/// Rows `[start, end)` belong to example `example`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Run {
    /// First row.
    pub start: usize,
    /// One past the last row.
    pub end: usize,
    /// The example's index.
    pub example: usize,
}

fn runs_by_example(runs: &[Run], examples: usize) -> Vec<Vec<Run>> {
    let mut by = vec![Vec::new(); examples];
    for r in runs {
        by[r.example].push(*r);
    }
    by
}

/// `out[e] = alpha · Σ_{runs of e} a[run]ᵀ · b[run]`: `[examples, p, q]` from `a` `[n, p]` and
/// `b` `[n, q]` (a linear layer's per-example weight gradient from dY and X).
pub fn outer<T: Real>(a: &[T], b: &[T], p: usize, q: usize, runs: &[Run], examples: usize, alpha: T) -> Vec<T> {
    let by = runs_by_example(runs, examples);
    let mut out = vec![T::ZERO; examples * p * q];
    if p * q == 0 {
        return out;
    }
    out.par_chunks_mut(p * q).zip(by.par_iter()).for_each(|(dst, runs)| {
        for (i, r) in runs.iter().enumerate() {
            let len = r.end - r.start;
            let av = MatRef::row_major(&a[r.start * p..r.end * p], len, p).t();
            let bv = MatRef::row_major(&b[r.start * q..r.end * q], len, q);
            matmul_serial(MatMut::row_major(dst, p, q), av, bv, alpha, i > 0);
        }
    });
    out
}

/// `out[e] = Σ_{runs of e} Σ_rows a[row]`: `[examples, p]` from `a` `[n, p]`.
pub fn sum<T: Real>(a: &[T], p: usize, runs: &[Run], examples: usize) -> Vec<T> {
    let mut out = vec![T::ZERO; examples * p];
    for r in runs {
        let dst = &mut out[r.example * p..(r.example + 1) * p];
        for row in r.start..r.end {
            for (d, &v) in dst.iter_mut().zip(&a[row * p..(row + 1) * p]) {
                *d += v;
            }
        }
    }
    out
}

/// `out[e][ids[row]] += a[row]` for every row of each example's runs: `[examples, vocab, p]`
/// (per-example embedding gradients). An id outside the vocabulary is an error.
pub fn scatter_rows<T: Real>(
    a: &[T],
    ids: &[i64],
    p: usize,
    vocab: usize,
    runs: &[Run],
    examples: usize,
) -> crate::error::Result<Vec<T>> {
    let mut out = vec![T::ZERO; examples * vocab * p];
    for r in runs {
        for row in r.start..r.end {
            let id = ids[row];
            if id < 0 || id as usize >= vocab {
                return Err(crate::error::EngineError::invalid(
                    "embedding_backward",
                    format!("id {id} outside vocabulary {vocab}"),
                ));
            }
            let dst = &mut out[(r.example * vocab + id as usize) * p..][..p];
            for (d, &v) in dst.iter_mut().zip(&a[row * p..(row + 1) * p]) {
                *d += v;
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outer_and_sum_equal_per_example_loops() {
        let (n, p, q) = (7, 3, 2);
        let a: Vec<f64> = (0..n * p).map(|i| (i as f64 * 0.37).sin()).collect();
        let b: Vec<f64> = (0..n * q).map(|i| (i as f64 * 0.11).cos()).collect();
        // Example 1 owns two runs; row 3 belongs to nobody (padding).
        let runs = [
            Run { start: 0, end: 2, example: 1 },
            Run { start: 2, end: 3, example: 0 },
            Run { start: 4, end: 7, example: 1 },
        ];
        let got = outer(&a, &b, p, q, &runs, 2, 0.5);
        let sums = sum(&a, p, &runs, 2);
        for (e, rows) in [(0usize, vec![2usize]), (1, vec![0, 1, 4, 5, 6])] {
            for i in 0..p {
                let s: f64 = rows.iter().map(|&r| a[r * p + i]).sum();
                assert!((sums[e * p + i] - s).abs() < 1e-12);
                for j in 0..q {
                    let want: f64 = rows.iter().map(|&r| 0.5 * a[r * p + i] * b[r * q + j]).sum();
                    assert!((got[(e * p + i) * q + j] - want).abs() < 1e-12);
                }
            }
        }
    }
}
