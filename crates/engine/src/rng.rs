//! Deterministic randomness. Dropout masks come from a counter-based hash of
//! (seed, element index), so a backward pass or a recomputed checkpoint regenerates the exact
//! mask without storing it, on any number of threads. [`Rng`] is a seeded stream for weight
//! initialisation and shuffling.

/// The SplitMix64 finaliser: a bijective 64-bit mix with good avalanche.
#[inline(always)]
pub fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A 32-bit bijective mix (Wellons' "lowbias32"); built from 32-bit multiplies, so loops over
/// it vectorize.
#[inline(always)]
pub fn mix32(mut x: u32) -> u32 {
    x ^= x >> 16;
    x = x.wrapping_mul(0x7feb_352d);
    x ^= x >> 15;
    x = x.wrapping_mul(0x846c_a68b);
    x ^ (x >> 16)
}

/// The two 32-bit keys that, with an element index, determine a mask bit for `seed`.
#[inline(always)]
fn keys(seed: u64, index_hi: u32) -> (u32, u32) {
    let k = mix64(seed ^ (index_hi as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    (k as u32, (k >> 32) as u32)
}

/// A uniform number in [0, 1) determined by `(seed, index)`.
#[inline(always)]
pub fn uniform(seed: u64, index: u64) -> f32 {
    let (k1, k2) = keys(seed, (index >> 32) as u32);
    uniform_keyed(k1, k2, index as u32)
}

/// 24 random bits for an element, with precomputed keys (indices sharing their upper 32 bits).
#[inline(always)]
pub fn bits24_keyed(k1: u32, k2: u32, index_lo: u32) -> u32 {
    mix32(mix32(index_lo ^ k1) ^ k2) >> 8
}

/// [`uniform`] with precomputed keys.
#[inline(always)]
pub fn uniform_keyed(k1: u32, k2: u32, index_lo: u32) -> f32 {
    bits24_keyed(k1, k2, index_lo) as f32 * (1.0 / (1u32 << 24) as f32)
}

/// The 24-bit threshold at or above which an element survives dropout with probability `p`
/// (`keep ⇔ bits24 ≥ threshold`, the same decision as `uniform ≥ p`).
pub fn keep_threshold(p: f32) -> u32 {
    (p as f64 * (1u32 << 24) as f64).ceil() as u32
}

/// Keys for [`uniform_keyed`] covering indices whose upper 32 bits are `index >> 32`.
pub fn block_keys(seed: u64, index: u64) -> (u32, u32) {
    keys(seed, (index >> 32) as u32)
}

/// Whether dropout with probability `p` keeps element `index` under `seed`.
#[inline(always)]
pub fn keep(seed: u64, index: u64, p: f32) -> bool {
    uniform(seed, index) >= p
}

/// Derives an independent seed for a sub-stream (a layer, an op call) from a parent seed.
pub fn derive_seed(seed: u64, stream: u64) -> u64 {
    mix64(seed ^ mix64(stream ^ 0xd1b5_4a32_d192_ed03))
}

/// A seeded pseudo-random stream (SplitMix64).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rng {
    state: u64,
}

impl Rng {
    /// A stream for `seed`.
    pub fn new(seed: u64) -> Self {
        Rng { state: seed }
    }

    /// The current state (to checkpoint and restore the stream exactly).
    pub fn state(&self) -> u64 {
        self.state
    }

    /// Restores a state returned by [`Rng::state`].
    pub fn from_state(state: u64) -> Self {
        Rng { state }
    }

    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        mix64(self.state)
    }

    /// Uniform in [0, 1).
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform integer in [0, n) (n > 0), without modulo bias worth caring about for n ≪ 2^64.
    pub fn below(&mut self, n: usize) -> usize {
        ((self.next_u64() as u128 * n as u128) >> 64) as usize
    }

    /// Standard normal (Box–Muller).
    pub fn normal(&mut self) -> f64 {
        let u1 = self.uniform().max(f64::MIN_POSITIVE);
        let u2 = self.uniform();
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }

    /// Shuffles a slice in place (Fisher–Yates).
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i + 1);
            items.swap(i, j);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keep_rate_matches_p() {
        let p = 0.3;
        let kept = (0..100_000u64).filter(|&i| keep(42, i, p)).count();
        let rate = kept as f64 / 100_000.0;
        assert!((rate - 0.7).abs() < 0.01, "keep rate {rate}");
    }

    #[test]
    fn streams_are_reproducible() {
        let mut a = Rng::new(7);
        let mut b = Rng::new(7);
        let xs: Vec<u64> = (0..10).map(|_| a.next_u64()).collect();
        let ys: Vec<u64> = (0..10).map(|_| b.next_u64()).collect();
        assert_eq!(xs, ys);
        let mut c = Rng::from_state(a.state());
        assert_eq!(a.next_u64(), c.next_u64());
    }

    #[test]
    fn normal_has_unit_variance() {
        let mut r = Rng::new(1);
        let xs: Vec<f64> = (0..50_000).map(|_| r.normal()).collect();
        let mean = xs.iter().sum::<f64>() / xs.len() as f64;
        let var = xs.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / xs.len() as f64;
        assert!(mean.abs() < 0.02 && (var - 1.0).abs() < 0.03, "mean {mean} var {var}");
    }
}
