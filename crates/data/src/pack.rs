//! Packing: several sequences share one row of `capacity` tokens, chosen best-fit-decreasing.
//! Each packed example keeps its own position ids (restarting at 0) and a segment id, so
//! attention is block-diagonal and no example sees another; the first label of each example is
//! ignored, so the previous example's last token is never trained to predict it.

use std::collections::BTreeSet;

use crate::encode::{Sequence, IGNORE};
use crate::error::{DataError, Result};

/// Groups sequence lengths into bins of at most `capacity` tokens, best-fit-decreasing: longest
/// first, each into the fullest bin that still has room. Returns bins of indices into `lengths`,
/// each in decreasing length order; deterministic for the same input.
pub fn best_fit_decreasing(lengths: &[usize], capacity: usize) -> Result<Vec<Vec<usize>>> {
    if let Some((i, &l)) = lengths.iter().enumerate().find(|(_, &l)| l > capacity) {
        return Err(DataError::Invalid(format!(
            "sequence {i} has {l} tokens, more than the packing capacity {capacity}; truncate first"
        )));
    }
    let mut order: Vec<usize> = (0..lengths.len()).filter(|&i| lengths[i] > 0).collect();
    order.sort_by(|&a, &b| lengths[b].cmp(&lengths[a]).then(a.cmp(&b)));
    let mut bins: Vec<Vec<usize>> = Vec::new();
    // (free room, bin id) of bins that still have room: the first entry at or above a length is
    // the fullest bin it fits in (the oldest one on ties).
    let mut open: BTreeSet<(usize, usize)> = BTreeSet::new();
    for i in order {
        let len = lengths[i];
        let (room, bin) = match open.range((len, 0)..).next().copied() {
            Some(slot) => {
                open.remove(&slot);
                bins[slot.1].push(i);
                (slot.0 - len, slot.1)
            }
            None => {
                bins.push(vec![i]);
                (capacity - len, bins.len() - 1)
            }
        };
        if room > 0 {
            open.insert((room, bin));
        }
    }
    Ok(bins)
}

/// One packed row (unpadded).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PackedRow {
    /// Token ids of all members, concatenated.
    pub input_ids: Vec<u32>,
    /// Labels, with each member's first label set to ignore.
    pub labels: Vec<i32>,
    /// Positions, restarting at 0 for each member.
    pub position_ids: Vec<u32>,
    /// Member index within the row (0, 1, 2...) for each token.
    pub segment_ids: Vec<i32>,
}

impl PackedRow {
    /// Concatenates `members` into one row (labels of a causal LM: each member's first label
    /// is ignored).
    pub fn new(members: &[&Sequence]) -> PackedRow {
        PackedRow::with_labels(members, true)
    }

    /// Concatenates `members` into one row; with `causal` labels (predicted from the tokens
    /// before them) each member's first label is ignored, otherwise labels are kept as they are
    /// (token classification).
    pub fn with_labels(members: &[&Sequence], causal: bool) -> PackedRow {
        let total: usize = members.iter().map(|s| s.len()).sum();
        let mut row = PackedRow {
            input_ids: Vec::with_capacity(total),
            labels: Vec::with_capacity(total),
            position_ids: Vec::with_capacity(total),
            segment_ids: Vec::with_capacity(total),
        };
        for (k, s) in members.iter().enumerate() {
            row.input_ids.extend_from_slice(&s.input_ids);
            let first = row.labels.len();
            row.labels.extend_from_slice(&s.labels);
            if let Some(l) = row.labels.get_mut(first).filter(|_| causal) {
                *l = IGNORE;
            }
            row.position_ids.extend(0..s.len() as u32);
            row.segment_ids.extend(std::iter::repeat_n(k as i32, s.len()));
        }
        row
    }

    /// Length in tokens.
    pub fn len(&self) -> usize {
        self.input_ids.len()
    }

    /// Whether the row is empty.
    pub fn is_empty(&self) -> bool {
        self.input_ids.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bfd_fills_the_fullest_bin_that_fits() {
        // 7 → new bin0 (room 3); 5 does not fit → new bin1 (room 5); 4 fits only bin1 (room 1);
        // 3 → bin0, the fullest that fits (room 0); 1 → bin1 (room 0).
        let bins = best_fit_decreasing(&[3, 7, 1, 5, 4], 10).unwrap();
        assert_eq!(bins, vec![vec![1, 0], vec![3, 4, 2]]);
    }

    #[test]
    fn causal_rows_ignore_each_first_label_and_tagging_rows_keep_them() {
        let s = |ids: &[u32]| Sequence {
            input_ids: ids.to_vec(),
            labels: ids.iter().map(|&i| i as i32).collect(),
            token_type_ids: Vec::new(),
        };
        let (a, b) = (s(&[1, 2]), s(&[3, 4, 5]));
        let causal = PackedRow::new(&[&a, &b]);
        assert_eq!(causal.labels, vec![IGNORE, 2, IGNORE, 4, 5]);
        assert_eq!(causal.position_ids, vec![0, 1, 0, 1, 2]);
        assert_eq!(causal.segment_ids, vec![0, 0, 1, 1, 1]);
        let tagged = PackedRow::with_labels(&[&a, &b], false);
        assert_eq!(tagged.labels, vec![1, 2, 3, 4, 5]);
    }

    #[test]
    fn too_long_is_an_error() {
        let e = best_fit_decreasing(&[3, 11], 10).unwrap_err().to_string();
        assert!(e.contains("sequence 1 has 11 tokens"), "{e}");
    }
}
