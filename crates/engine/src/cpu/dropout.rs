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
    let threshold = rng::keep_threshold(p);
    x.par_chunks_mut(CHUNK).enumerate().for_each(|(c, chunk)| {
        // Scalars copied into locals: read through the closure's captures they would be
        // reloaded every element (the compiler cannot rule out aliasing) and block vectorizing.
        let (scale, threshold) = (scale, threshold);
        let base = (c * CHUNK) as u64;
        // CHUNK divides 2^32, so a chunk never straddles a change of the upper index bits.
        let (k1, k2) = rng::block_keys(seed, base);
        let lo = base as u32;
        for (i, v) in chunk.iter_mut().enumerate() {
            let keep = rng::bits24_keyed(k1, k2, lo.wrapping_add(i as u32)) >= threshold;
            let m = if keep { scale } else { T::ZERO };
            *v *= m;
        }
    });
}
