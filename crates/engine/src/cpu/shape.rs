//! Data movement: permute (transpose), narrow (slice) and concat. Each backward is another
//! movement: the inverse permutation, a zero-padded scatter, and narrows.

use rayon::prelude::*;

use crate::tensor::numel;

/// Row-major strides of a shape.
pub fn strides(shape: &[usize]) -> Vec<usize> {
    let mut s = vec![1; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1] * shape[i + 1];
    }
    s
}

/// Output dimension `i` is input dimension `perm[i]`.
pub fn permute<T: Copy + Send + Sync + Default>(x: &[T], shape: &[usize], perm: &[usize]) -> Vec<T> {
    let out_shape: Vec<usize> = perm.iter().map(|&p| shape[p]).collect();
    let in_strides = strides(shape);
    let src_strides: Vec<usize> = perm.iter().map(|&p| in_strides[p]).collect();
    let n = numel(shape);
    let mut y = vec![T::default(); n];
    if n == 0 {
        return y;
    }
    let rank = out_shape.len();
    let inner = out_shape[rank - 1];
    let inner_stride = src_strides[rank - 1];
    y.par_chunks_mut(inner.max(1)).enumerate().for_each(|(row, out)| {
        // Decompose the row index over the leading output dimensions.
        let mut rem = row;
        let mut base = 0;
        for d in (0..rank - 1).rev() {
            let idx = rem % out_shape[d];
            rem /= out_shape[d];
            base += idx * src_strides[d];
        }
        if inner_stride == 1 {
            out.copy_from_slice(&x[base..base + inner]);
        } else {
            for (j, o) in out.iter_mut().enumerate() {
                *o = x[base + j * inner_stride];
            }
        }
    });
    y
}

/// The inverse of a permutation.
pub fn inverse_perm(perm: &[usize]) -> Vec<usize> {
    let mut inv = vec![0; perm.len()];
    for (i, &p) in perm.iter().enumerate() {
        inv[p] = i;
    }
    inv
}

/// Elements `[start, start+len)` along `dim`.
pub fn narrow<T: Copy + Send + Sync + Default>(
    x: &[T],
    shape: &[usize],
    dim: usize,
    start: usize,
    len: usize,
) -> Vec<T> {
    let outer: usize = shape[..dim].iter().product();
    let inner: usize = shape[dim + 1..].iter().product();
    let full = shape[dim];
    let mut y = vec![T::default(); outer * len * inner];
    if y.is_empty() {
        return y;
    }
    y.par_chunks_mut(len * inner).enumerate().for_each(|(o, out)| {
        let src = &x[(o * full + start) * inner..(o * full + start + len) * inner];
        out.copy_from_slice(src);
    });
    y
}

/// Backward of narrow: `dy` placed at `[start, start+len)` along `dim` of a zero tensor of `shape`.
pub fn narrow_backward<T: Copy + Send + Sync + Default>(
    dy: &[T],
    shape: &[usize],
    dim: usize,
    start: usize,
    len: usize,
) -> Vec<T> {
    let outer: usize = shape[..dim].iter().product();
    let inner: usize = shape[dim + 1..].iter().product();
    let full = shape[dim];
    let mut dx = vec![T::default(); numel(shape)];
    if dx.is_empty() {
        return dx;
    }
    dx.par_chunks_mut(full * inner).enumerate().for_each(|(o, out)| {
        out[start * inner..(start + len) * inner].copy_from_slice(&dy[o * len * inner..(o + 1) * len * inner]);
    });
    let _ = outer;
    dx
}

/// Concatenates along `dim`; all parts share the other dimensions.
pub fn concat<T: Copy + Send + Sync + Default>(parts: &[(&[T], &[usize])], dim: usize) -> Vec<T> {
    let shape0 = parts[0].1;
    let outer: usize = shape0[..dim].iter().product();
    let inner: usize = shape0[dim + 1..].iter().product();
    let total: usize = parts.iter().map(|(_, s)| s[dim]).sum();
    let mut y = vec![T::default(); outer * total * inner];
    if y.is_empty() {
        return y;
    }
    y.par_chunks_mut(total * inner).enumerate().for_each(|(o, out)| {
        let mut at = 0;
        for (data, s) in parts {
            let l = s[dim] * inner;
            out[at..at + l].copy_from_slice(&data[o * l..(o + 1) * l]);
            at += l;
        }
    });
    y
}

/// Edge of the square tiles the transposes copy through a local buffer.
const TILE: usize = 16;

/// Writes the transpose of the `rows × cols` matrix whose row `r` starts at
/// `src[offset + r·src_stride]` into `dst`, row `c` of which starts at `dst[c·dst_stride]`.
/// Works in 16×16 tiles copied through a local buffer, so each source and destination cache
/// line is touched once even when a stride is a large power of two (a 2 KB row stride maps a
/// naive column walk onto a couple of cache sets).
pub fn transpose_into<T: Copy + Default>(
    src: &[T],
    offset: usize,
    rows: usize,
    cols: usize,
    src_stride: usize,
    dst: &mut [std::mem::MaybeUninit<T>],
    dst_stride: usize,
) {
    let mut tile = [[T::default(); TILE]; TILE];
    for c0 in (0..cols).step_by(TILE) {
        let nc = TILE.min(cols - c0);
        for r0 in (0..rows).step_by(TILE) {
            let nr = TILE.min(rows - r0);
            for (i, t) in tile.iter_mut().enumerate().take(nr) {
                let start = offset + (r0 + i) * src_stride + c0;
                for (d, s) in t[..nc].iter_mut().zip(&src[start..start + nc]) {
                    *d = *s;
                }
            }
            for j in 0..nc {
                let row = &mut dst[(c0 + j) * dst_stride + r0..(c0 + j) * dst_stride + r0 + nr];
                for (i, d) in row.iter_mut().enumerate() {
                    d.write(tile[i][j]);
                }
            }
        }
    }
}

/// The transpose of a row-major `rows × cols` matrix, as a row-major `cols × rows` vector;
/// blocks of output rows run in parallel (see [`transpose_into`]).
pub fn transpose_2d<T: Copy + Send + Sync + Default>(x: &[T], rows: usize, cols: usize) -> Vec<T> {
    assert_eq!(x.len(), rows * cols, "transpose_2d: {} elements for a {rows}×{cols} matrix", x.len());
    if rows == 0 || cols == 0 {
        return Vec::new();
    }
    // Each piece is TILE output rows (= TILE source columns, starting at column start / rows).
    // SAFETY: transpose_into writes every element of those output rows: each of its source
    // columns over all source rows.
    unsafe {
        super::elementwise::par_new(rows * cols, TILE * rows, |start, out| {
            transpose_into(x, start / rows, rows, out.len() / rows, cols, out, rows);
        })
    }
}
