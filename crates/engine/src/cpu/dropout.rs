//! dropout: y = x·mask/(1-p). The mask is a pure function of (seed, index), so the backward
//! regenerates it instead of storing it.

use rayon::prelude::*;

use crate::dtype::Real;
use crate::rng;

const CHUNK: usize = 4096;

/// Applies the mask for `(seed, p)` to `x` (used by both directions: the backward of dropout
/// is the same masking of the incoming gradient).
pub fn apply<T: Real>(x: &[T], p: f32, seed: u64) -> Vec<T> {
    let mut y = x.to_vec();
    apply_in_place(&mut y, p, seed);
    y
}

/// In-place variant of [`apply`].
pub fn apply_in_place<T: Real>(x: &mut [T], p: f32, seed: u64) {
    if p <= 0.0 {
        return;
    }
    let scale = T::from_f64(1.0 / (1.0 - p as f64));
    x.par_chunks_mut(CHUNK).enumerate().for_each(|(c, chunk)| {
        let base = (c * CHUNK) as u64;
        for (i, v) in chunk.iter_mut().enumerate() {
            *v = if rng::keep(seed, base + i as u64, p) { *v * scale } else { T::ZERO };
        }
    });
}
