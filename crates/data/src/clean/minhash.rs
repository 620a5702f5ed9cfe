//! Near-duplicate detection with MinHash and locality-sensitive hashing (Broder, 1997): each
//! text becomes its set of character 5-gram shingles (of the normalized text), summarized by
//! 128 minimum hashes; rows that share all 4 hashes of any of 32 bands are candidates, kept as
//! duplicates when their estimated Jaccard similarity reaches the threshold. Rows are scanned in
//! order, so the first row of a group is kept and the later ones name it.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};

use crate::prep::normalize;

/// Minimum hashes per text.
pub const PERMUTATIONS: usize = 128;
/// LSH bands (rows per band = PERMUTATIONS / BANDS).
pub const BANDS: usize = 32;
/// Characters per shingle.
pub const SHINGLE: usize = 5;

fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The MinHash signature of a text.
pub fn signature(text: &str) -> Vec<u64> {
    let chars: Vec<char> = normalize(text).chars().collect();
    let mut shingles: Vec<u64> = Vec::new();
    let mut hash = |s: &[char]| {
        let mut h = std::hash::DefaultHasher::new();
        s.hash(&mut h);
        shingles.push(h.finish());
    };
    if chars.len() <= SHINGLE {
        hash(&chars);
    } else {
        for w in chars.windows(SHINGLE) {
            hash(w);
        }
    }
    (0..PERMUTATIONS as u64)
        .map(|p| {
            let seed = mix64(p.wrapping_add(0x5EED));
            shingles.iter().map(|&s| mix64(s ^ seed)).min().unwrap_or(u64::MAX)
        })
        .collect()
}

/// The share of equal minimum hashes: an unbiased estimate of the Jaccard similarity.
pub fn estimated_jaccard(a: &[u64], b: &[u64]) -> f64 {
    a.iter().zip(b).filter(|(x, y)| x == y).count() as f64 / a.len().max(1) as f64
}

/// For each text, the earlier kept text it nearly duplicates and their estimated similarity
/// (None for texts that are kept).
pub fn near_duplicates(texts: &[&str], threshold: f64) -> Vec<Option<(usize, f64)>> {
    let rows = PERMUTATIONS / BANDS;
    let sigs: Vec<Vec<u64>> = texts.iter().map(|t| signature(t)).collect();
    let mut buckets: HashMap<(usize, u64), Vec<usize>> = HashMap::new();
    let band_key = |sig: &[u64], b: usize| {
        let mut h = std::hash::DefaultHasher::new();
        sig[b * rows..(b + 1) * rows].hash(&mut h);
        h.finish()
    };
    let mut out = Vec::with_capacity(texts.len());
    for (i, sig) in sigs.iter().enumerate() {
        let mut best: Option<(usize, f64)> = None;
        for b in 0..BANDS {
            if let Some(cands) = buckets.get(&(b, band_key(sig, b))) {
                for &j in cands {
                    let s = estimated_jaccard(sig, &sigs[j]);
                    if s >= threshold && best.is_none_or(|(_, bs)| s > bs) {
                        best = Some((j, s));
                    }
                }
            }
        }
        if best.is_none() {
            for b in 0..BANDS {
                buckets.entry((b, band_key(sig, b))).or_default().push(i);
            }
        }
        out.push(best);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_estimate_tracks_jaccard_and_near_copies_are_found() {
        let a = "the film is a charming and often affecting journey through a small town";
        let b = "the film is a charming and often affecting journey through a small city";
        let c = "an entirely different sentence about the stock market and interest rates";
        assert_eq!(estimated_jaccard(&signature(a), &signature(a)), 1.0);
        assert!(estimated_jaccard(&signature(a), &signature(b)) > 0.75);
        assert!(estimated_jaccard(&signature(a), &signature(c)) < 0.2);
        let found = near_duplicates(
            &[a, c, b, "THE FILM is a charming and often affecting journey through a small town!"],
            0.7,
        );
        assert_eq!(found[0], None);
        assert_eq!(found[1], None);
        assert_eq!(found[2].map(|f| f.0), Some(0));
        assert_eq!(found[3], Some((0, 1.0)), "case and punctuation are normalized away");
    }
}
