//! Batching: rows (single sequences or packs) grouped into batches, in an order that is a pure
//! function of (seed, epoch), so a run resumed at (epoch, index) sees exactly the batches it
//! would have seen. Padding, attention masks and position ids are made here.

use crate::encode::{Encoded, Sequence, Target, IGNORE};
use crate::error::{DataError, Result};
use crate::pack::{best_fit_decreasing, PackedRow};

/// A small, fast, seedable generator (SplitMix64) whose stream never changes between releases,
/// so data order is reproducible across versions.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator for `seed`.
    pub fn new(seed: u64) -> SplitMix64 {
        SplitMix64(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A uniform integer below `n` (`n` > 0), by Lemire's multiply-shift (bias below 2⁻³²
    /// for any realistic dataset size).
    pub fn below(&mut self, n: usize) -> usize {
        ((self.next_u64() as u128 * n as u128) >> 64) as usize
    }

    /// Fisher–Yates shuffle.
    pub fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            let j = self.below(i + 1);
            v.swap(i, j);
        }
    }
}

/// The generator of one epoch's order.
fn epoch_rng(seed: u64, epoch: u64, stream: u64) -> SplitMix64 {
    let mut g = SplitMix64::new(seed ^ 0x5EED_DA7A);
    let a = g.next_u64();
    SplitMix64::new(a ^ epoch.wrapping_mul(0xA24B_AED4_963E_E407) ^ stream.wrapping_mul(0x9FB2_1C65_1E98_DF25))
}

/// How batches are formed.
#[derive(Debug, Clone)]
pub struct LoaderOptions {
    /// Rows per batch.
    pub batch_size: usize,
    /// Pack several sequences into rows of `max_length` tokens (across the whole dataset: a
    /// batch is then `batch_size` packed rows).
    pub packing: bool,
    /// Padding-free batches: each batch holds the same `batch_size` examples as without it, but
    /// they are packed into as few rows of `max_length` as fit (best-fit-decreasing), with
    /// restarting positions and segment ids, so no compute is spent on padding. Ignored when
    /// `packing` is on.
    pub padding_free: bool,
    /// Row capacity for packing (and the longest row otherwise).
    pub max_length: usize,
    /// Group rows of similar length into the same batch (less padding).
    pub group_by_length: bool,
    /// Shuffle each epoch.
    pub shuffle: bool,
    /// Seed of the order.
    pub seed: u64,
    /// Drop the last incomplete batch.
    pub drop_last: bool,
    /// Padding token id.
    pub pad_id: u32,
    /// Pad row lengths up to a multiple of this (1 = none).
    pub pad_to_multiple_of: usize,
    /// Labels are next-token targets (causal LM): packing ignores each example's first label
    /// so that it is never predicted from the previous example. Off for per-token labels
    /// (token classification), which packing keeps as they are.
    pub causal_labels: bool,
}

impl Default for LoaderOptions {
    fn default() -> Self {
        LoaderOptions {
            batch_size: 8,
            packing: false,
            padding_free: false,
            max_length: 2048,
            group_by_length: false,
            shuffle: true,
            seed: 42,
            drop_last: false,
            pad_id: 0,
            pad_to_multiple_of: 1,
            causal_labels: true,
        }
    }
}

/// Where a run is in its data: the epoch and the number of batches of it already consumed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, serde::Serialize, serde::Deserialize)]
pub struct Position {
    /// Epoch, from 0.
    pub epoch: u64,
    /// Batches of this epoch already consumed.
    pub index: usize,
}

/// A padded batch in host memory, row-major `[rows, len]`.
#[derive(Debug, Clone, PartialEq)]
pub struct HostBatch {
    /// Rows.
    pub rows: usize,
    /// Tokens per row (padded).
    pub len: usize,
    /// Token ids (padding = the pad id).
    pub input_ids: Vec<u32>,
    /// 1 for real tokens, 0 for padding.
    pub attention_mask: Vec<u8>,
    /// Position ids (restarting per packed example).
    pub position_ids: Vec<u32>,
    /// Labels, [`IGNORE`] where not trained and on padding.
    pub labels: Vec<i32>,
    /// Segment ids of packed rows (−1 on padding); `None` when not packed.
    pub segment_ids: Option<Vec<i32>>,
    /// Token type ids for text pairs; `None` when no example has them.
    pub token_type_ids: Option<Vec<u32>>,
    /// The target of each example, in row order then within-row order.
    pub targets: Vec<Target>,
    /// Indices of the examples in the loader, in the same order.
    pub examples: Vec<usize>,
}

impl HostBatch {
    /// Real (non-padding) tokens.
    pub fn tokens(&self) -> usize {
        self.attention_mask.iter().filter(|&&m| m != 0).count()
    }

    /// Trained tokens (labels that are not ignored). With the causal-LM shift the first label of
    /// a row is never predicted; packing already ignores each example's first label.
    pub fn trained_tokens(&self) -> usize {
        self.labels.iter().filter(|&&l| l != IGNORE).count()
    }
}

/// Serves batches of encoded examples by (epoch, index).
#[derive(Debug, Clone)]
pub struct Loader {
    examples: Vec<Encoded>,
    /// Each row: the examples it holds (one, or several when packed).
    rows: Vec<Vec<usize>>,
    row_len: Vec<usize>,
    opts: LoaderOptions,
}

impl Loader {
    /// A loader over `examples` (already truncated to `max_length`).
    pub fn new(examples: Vec<Encoded>, opts: LoaderOptions) -> Result<Loader> {
        if opts.batch_size == 0 {
            return Err(DataError::Invalid("batch_size must be at least 1".into()));
        }
        if examples.is_empty() {
            return Err(DataError::Invalid("no examples to batch".into()));
        }
        if let Some(e) = examples.iter().find(|e| e.rejected.is_some()) {
            return Err(DataError::Invalid(format!(
                "{}: preference pairs are batched by the preference trainer, not as single sequences",
                e.loc
            )));
        }
        let lengths: Vec<usize> = examples.iter().map(|e| e.sequence.len()).collect();
        let rows: Vec<Vec<usize>> = if opts.packing {
            best_fit_decreasing(&lengths, opts.max_length)?
        } else {
            if let Some(i) = lengths.iter().position(|&l| l > opts.max_length) {
                return Err(DataError::Invalid(format!(
                    "{}: {} tokens, over max_length {}",
                    examples[i].loc, lengths[i], opts.max_length
                )));
            }
            (0..examples.len()).map(|i| vec![i]).collect()
        };
        let row_len = rows.iter().map(|r| r.iter().map(|&i| lengths[i]).sum()).collect();
        Ok(Loader { examples, rows, row_len, opts })
    }

    /// The examples.
    pub fn examples(&self) -> &[Encoded] {
        &self.examples
    }

    /// Rows (packs or single examples).
    pub fn num_rows(&self) -> usize {
        self.rows.len()
    }

    /// The options.
    pub fn options(&self) -> &LoaderOptions {
        &self.opts
    }

    /// Batches in each epoch.
    pub fn batches_per_epoch(&self) -> usize {
        let n = self.rows.len();
        let b = self.opts.batch_size;
        if self.opts.drop_last {
            n / b
        } else {
            n.div_ceil(b)
        }
    }

    /// The rows of each batch of `epoch`, in order: a pure function of (seed, epoch).
    pub fn epoch_plan(&self, epoch: u64) -> Vec<Vec<usize>> {
        let b = self.opts.batch_size;
        let mut order: Vec<usize> = (0..self.rows.len()).collect();
        if self.opts.shuffle {
            epoch_rng(self.opts.seed, epoch, 0).shuffle(&mut order);
        }
        let mut batches: Vec<Vec<usize>> = if self.opts.group_by_length {
            // Mega-batches of 50 batches, sorted by length inside, then cut into batches (the
            // scheme of transformers' LengthGroupedSampler); batch order shuffled after.
            let mut out = Vec::new();
            for mega in order.chunks(b * 50) {
                let mut mega = mega.to_vec();
                mega.sort_by(|&x, &y| self.row_len[y].cmp(&self.row_len[x]).then(x.cmp(&y)));
                out.extend(mega.chunks(b).map(<[usize]>::to_vec));
            }
            if self.opts.shuffle {
                epoch_rng(self.opts.seed, epoch, 1).shuffle(&mut out);
            }
            out
        } else {
            order.chunks(b).map(<[usize]>::to_vec).collect()
        };
        if self.opts.drop_last {
            batches.retain(|x| x.len() == b);
        }
        batches
    }

    /// The batch at `pos`, or `None` past the end of the epoch.
    pub fn batch(&self, pos: Position) -> Option<HostBatch> {
        let plan = self.epoch_plan(pos.epoch);
        plan.get(pos.index).map(|rows| self.collate(rows))
    }

    /// Batches from `start` to the end of its epoch, with the position after each.
    pub fn epoch_from(&self, start: Position) -> impl Iterator<Item = (Position, HostBatch)> + '_ {
        let plan = self.epoch_plan(start.epoch);
        (start.index..plan.len()).map(move |i| (Position { epoch: start.epoch, index: i + 1 }, self.collate(&plan[i])))
    }

    /// The examples of each output row of a batch made of loader `rows`: the loader's rows as
    /// they are, or (padding-free) the batch's examples packed into rows of `max_length`.
    /// Only examples that have sequence `part` take part (see [`Loader::collate_part`]).
    fn row_members(&self, rows: &[usize], part: usize) -> Vec<Vec<usize>> {
        let has = |i: &usize| self.part(*i, part).is_some();
        if !self.opts.padding_free || self.opts.packing {
            return rows
                .iter()
                .map(|&r| self.rows[r].iter().copied().filter(has).collect::<Vec<usize>>())
                .filter(|g| !g.is_empty())
                .collect();
        }
        let members: Vec<usize> = rows.iter().flat_map(|&r| self.rows[r].iter().copied()).filter(has).collect();
        let lengths: Vec<usize> = members.iter().map(|&i| self.part(i, part).map_or(0, Sequence::len)).collect();
        let capacity = lengths.iter().copied().max().unwrap_or(0).max(self.opts.max_length);
        // Lengths never exceed the capacity, so packing cannot fail; empty sequences (which the
        // packer leaves out) get a row of their own so that every example keeps its target.
        let mut bins = best_fit_decreasing(&lengths, capacity).unwrap_or_default();
        bins.extend((0..members.len()).filter(|&k| lengths[k] == 0).map(|k| vec![k]));
        bins.into_iter().map(|bin| bin.into_iter().map(|k| members[k]).collect()).collect()
    }

    /// Sequence `part` of example `i`: 0 is its sequence, k ≥ 1 its k-th other sequence.
    fn part(&self, i: usize, part: usize) -> Option<&Sequence> {
        let e = &self.examples[i];
        if part == 0 {
            Some(&e.sequence)
        } else {
            e.others.get(part - 1)
        }
    }

    /// Pads and stacks the given rows.
    pub fn collate(&self, rows: &[usize]) -> HostBatch {
        self.collate_part(rows, 0)
    }

    /// Pads and stacks sequence `part` of the examples of the given rows: 0 for their
    /// sequences, k ≥ 1 for their k-th other sequences (an embedding pair's positive, then its
    /// negative); examples without that part are left out (`examples` says which are in).
    pub fn collate_part(&self, rows: &[usize], part: usize) -> HostBatch {
        let groups = self.row_members(rows, part);
        let seq = |i: usize| self.part(i, part).expect("row_members keeps examples that have the part");
        let row_len = |g: &Vec<usize>| g.iter().map(|&i| seq(i).len()).sum::<usize>();
        let longest = groups.iter().map(row_len).max().unwrap_or(0);
        let m = self.opts.pad_to_multiple_of.max(1);
        let len = longest.div_ceil(m) * m;
        let n = groups.len() * len;
        let packed = self.opts.packing || self.opts.padding_free;
        let typed = groups.iter().flatten().any(|&i| !seq(i).token_type_ids.is_empty());
        let mut out = HostBatch {
            rows: groups.len(),
            len,
            input_ids: vec![self.opts.pad_id; n],
            attention_mask: vec![0; n],
            position_ids: vec![0; n],
            labels: vec![IGNORE; n],
            segment_ids: packed.then(|| vec![-1; n]),
            token_type_ids: typed.then(|| vec![0; n]),
            targets: Vec::new(),
            examples: Vec::new(),
        };
        for (r, group) in groups.iter().enumerate() {
            let at = r * len;
            let members: Vec<&Sequence> = group.iter().map(|&i| seq(i)).collect();
            for &i in group {
                out.targets.push(self.examples[i].target);
                out.examples.push(i);
            }
            if packed {
                let p = PackedRow::with_labels(&members, self.opts.causal_labels);
                let k = p.len();
                out.input_ids[at..at + k].copy_from_slice(&p.input_ids);
                out.labels[at..at + k].copy_from_slice(&p.labels);
                out.position_ids[at..at + k].copy_from_slice(&p.position_ids);
                if let Some(seg) = &mut out.segment_ids {
                    seg[at..at + k].copy_from_slice(&p.segment_ids);
                }
                out.attention_mask[at..at + k].fill(1);
                if let Some(tt) = &mut out.token_type_ids {
                    let mut o = at;
                    for s in &members {
                        if !s.token_type_ids.is_empty() {
                            tt[o..o + s.len()].copy_from_slice(&s.token_type_ids);
                        }
                        o += s.len();
                    }
                }
            } else {
                let s = members[0];
                let k = s.len();
                out.input_ids[at..at + k].copy_from_slice(&s.input_ids);
                out.labels[at..at + k].copy_from_slice(&s.labels);
                for (j, p) in out.position_ids[at..at + k].iter_mut().enumerate() {
                    *p = j as u32;
                }
                out.attention_mask[at..at + k].fill(1);
                if let (Some(tt), false) = (&mut out.token_type_ids, s.token_type_ids.is_empty()) {
                    tt[at..at + k].copy_from_slice(&s.token_type_ids);
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Loc;
    use std::path::Path;
    use std::sync::Arc;

    fn example(len: usize, tag: u32) -> Encoded {
        Encoded {
            sequence: Sequence { input_ids: vec![tag; len], labels: vec![tag as i32; len], token_type_ids: Vec::new() },
            rejected: None,
            others: Vec::new(),
            target: Target::None,
            truncated: false,
            loc: Loc { file: Arc::from(Path::new("x")), line: tag as usize },
        }
    }

    #[test]
    fn shuffle_is_a_stable_permutation() {
        let mut a: Vec<u32> = (0..100).collect();
        SplitMix64::new(7).shuffle(&mut a);
        let mut b: Vec<u32> = (0..100).collect();
        SplitMix64::new(7).shuffle(&mut b);
        assert_eq!(a, b);
        assert_ne!(a, (0..100).collect::<Vec<_>>());
        a.sort();
        assert_eq!(a, (0..100).collect::<Vec<_>>());
        // The stream is fixed forever: reproducibility across releases.
        assert_eq!(SplitMix64::new(0).next_u64(), 0xE220_A839_7B1D_CDAF);
    }

    #[test]
    fn plans_depend_on_seed_and_epoch_only() {
        let ex: Vec<Encoded> = (1..=37).map(|i| example(1 + i as usize % 9, i)).collect();
        let opts = LoaderOptions { batch_size: 4, max_length: 16, group_by_length: true, ..LoaderOptions::default() };
        let a = Loader::new(ex.clone(), opts.clone()).unwrap();
        let b = Loader::new(ex, opts).unwrap();
        assert_eq!(a.epoch_plan(3), b.epoch_plan(3));
        assert_ne!(a.epoch_plan(0), a.epoch_plan(1));
        let mut all: Vec<usize> = a.epoch_plan(1).concat();
        all.sort();
        assert_eq!(all, (0..37).collect::<Vec<_>>());
        assert_eq!(a.batches_per_epoch(), 10);
        // Resuming mid-epoch yields exactly the remaining batches.
        let full: Vec<HostBatch> = a.epoch_from(Position { epoch: 2, index: 0 }).map(|(_, b)| b).collect();
        let rest: Vec<HostBatch> = a.epoch_from(Position { epoch: 2, index: 6 }).map(|(_, b)| b).collect();
        assert_eq!(&full[6..], &rest[..]);
    }

    #[test]
    fn collate_pads_and_masks() {
        let ex = vec![example(3, 5), example(1, 6)];
        let opts = LoaderOptions {
            batch_size: 2,
            shuffle: false,
            pad_id: 0,
            pad_to_multiple_of: 4,
            ..LoaderOptions::default()
        };
        let l = Loader::new(ex, opts).unwrap();
        let b = l.batch(Position::default()).unwrap();
        assert_eq!((b.rows, b.len), (2, 4));
        assert_eq!(b.input_ids, vec![5, 5, 5, 0, 6, 0, 0, 0]);
        assert_eq!(b.attention_mask, vec![1, 1, 1, 0, 1, 0, 0, 0]);
        assert_eq!(b.position_ids, vec![0, 1, 2, 0, 0, 0, 0, 0]);
        assert_eq!(b.labels, vec![5, 5, 5, IGNORE, 6, IGNORE, IGNORE, IGNORE]);
        assert!(l.batch(Position { epoch: 0, index: 1 }).is_none());
    }
}
