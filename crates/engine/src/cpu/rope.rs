//! Rotary position embedding in Hugging Face's "rotate half" layout: for i < r/2,
//! y[i] = x[i]·cos − x[i+r/2]·sin and y[i+r/2] = x[i+r/2]·cos + x[i]·sin, applied to the first
//! `rot_dim` features of every head (the rest pass through). The backward is the same rotation
//! by −θ, so one kernel serves both directions.

use rayon::prelude::*;

use crate::dtype::Real;

/// Rotates `x [tokens, heads, head_dim]` with per-token tables `cos, sin [tokens, rot_dim/2]`.
/// `inverse` rotates by −θ (the backward).
#[allow(clippy::too_many_arguments)]
pub fn apply<T: Real>(
    x: &[T],
    cos: &[T],
    sin: &[T],
    tokens: usize,
    heads: usize,
    head_dim: usize,
    rot_dim: usize,
    inverse: bool,
) -> Vec<T> {
    let half = rot_dim / 2;
    let mut y = vec![T::ZERO; x.len()];
    let row = heads * head_dim;
    y.par_chunks_mut(row.max(1)).zip(x.par_chunks(row.max(1))).enumerate().for_each(|(t, (yt, xt))| {
        let c = &cos[t * half..(t + 1) * half];
        let s = &sin[t * half..(t + 1) * half];
        for h in 0..heads {
            let xh = &xt[h * head_dim..(h + 1) * head_dim];
            let yh = &mut yt[h * head_dim..(h + 1) * head_dim];
            let (y1, rest) = yh.split_at_mut(half);
            let (y2, ypass) = rest.split_at_mut(half);
            let (x1, xrest) = xh.split_at(half);
            let (x2, xpass) = xrest.split_at(half);
            if inverse {
                for i in 0..half {
                    y1[i] = x1[i] * c[i] + x2[i] * s[i];
                    y2[i] = x2[i] * c[i] - x1[i] * s[i];
                }
            } else {
                for i in 0..half {
                    y1[i] = x1[i] * c[i] - x2[i] * s[i];
                    y2[i] = x2[i] * c[i] + x1[i] * s[i];
                }
            }
            ypass.copy_from_slice(xpass);
        }
    });
    let _ = tokens;
    y
}
