//! Property tests of packing: no example attends to another, every trained token is kept exactly
//! once, position ids restart per example, bins respect their capacity, and at most one bin is
//! half empty (best-fit-decreasing never opens a bin an item would have fit in). Padding-free
//! batches hold exactly the examples of the padded batches, with targets in member order.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use proptest::prelude::*;
use tunesmith_data::batch::HostBatch;
use tunesmith_data::batch::{Loader, LoaderOptions, Position};
use tunesmith_data::encode::{Encoded, Sequence, Target, IGNORE};
use tunesmith_data::pack::best_fit_decreasing;
use tunesmith_data::Loc;

/// Example `k` uses token id `k + 1` everywhere, so any token names its example.
fn example(k: usize, len: usize, trained: &[bool]) -> Encoded {
    let id = k as u32 + 1;
    Encoded {
        sequence: Sequence {
            input_ids: vec![id; len],
            labels: (0..len).map(|i| if trained[i % trained.len()] { id as i32 } else { IGNORE }).collect(),
            token_type_ids: Vec::new(),
        },
        rejected: None,
        others: Vec::new(),
        target: Target::None,
        truncated: false,
        loc: Loc { file: Arc::from(Path::new("p")), line: k + 1 },
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn bins_fit_and_hold_every_item_once(lengths in prop::collection::vec(1usize..=64, 1..120), cap in 64usize..=160) {
        let bins = best_fit_decreasing(&lengths, cap).unwrap();
        let mut seen = vec![0; lengths.len()];
        let mut fills = Vec::new();
        for b in &bins {
            let fill: usize = b.iter().map(|&i| lengths[i]).sum();
            prop_assert!(fill <= cap);
            fills.push(fill);
            for &i in b { seen[i] += 1; }
        }
        prop_assert!(seen.iter().all(|&n| n == 1));
        prop_assert!(fills.iter().filter(|&&f| 2 * f <= cap).count() <= 1);
    }

    #[test]
    fn packed_batches_isolate_examples(
        lengths in prop::collection::vec(1usize..=40, 1..60),
        trained in prop::collection::vec(any::<bool>(), 1..7),
        batch_size in 1usize..5,
        seed in any::<u64>(),
    ) {
        let examples: Vec<Encoded> = lengths.iter().enumerate().map(|(k, &l)| example(k, l, &trained)).collect();
        let opts = LoaderOptions { batch_size, packing: true, max_length: 64, seed, pad_id: 0, ..LoaderOptions::default() };
        let loader = Loader::new(examples.clone(), opts).unwrap();
        // Trained tokens per example, counting from its second token (the first is never predicted).
        let expected: BTreeMap<u32, usize> = examples.iter().enumerate().map(|(k, e)| {
            (k as u32 + 1, e.sequence.labels[1..].iter().filter(|&&l| l != IGNORE).count())
        }).collect();
        let mut got: BTreeMap<u32, usize> = expected.keys().map(|&k| (k, 0)).collect();
        let mut tokens_seen: BTreeMap<u32, usize> = BTreeMap::new();
        for (_, b) in loader.epoch_from(Position { epoch: 0, index: 0 }) {
            let seg = b.segment_ids.as_ref().unwrap();
            for r in 0..b.rows {
                let row = r * b.len..(r + 1) * b.len;
                let (ids, segs, pos, mask, labels) =
                    (&b.input_ids[row.clone()], &seg[row.clone()], &b.position_ids[row.clone()], &b.attention_mask[row.clone()], &b.labels[row]);
                for i in 0..b.len {
                    if mask[i] == 0 {
                        prop_assert_eq!(segs[i], -1);
                        prop_assert_eq!(labels[i], IGNORE);
                        continue;
                    }
                    *tokens_seen.entry(ids[i]).or_default() += 1;
                    // Positions restart at each example and count up inside it.
                    let starts = i == 0 || segs[i - 1] != segs[i];
                    prop_assert_eq!(pos[i] == 0, starts);
                    if !starts { prop_assert_eq!(pos[i], pos[i - 1] + 1); }
                    if starts { prop_assert_eq!(labels[i], IGNORE); }
                    // Causal block-diagonal attention: every key a query may see is its own example's.
                    for j in 0..=i {
                        if mask[j] != 0 && segs[j] == segs[i] {
                            prop_assert_eq!(ids[j], ids[i]);
                        }
                    }
                    if labels[i] != IGNORE {
                        prop_assert_eq!(labels[i], ids[i] as i32);
                        *got.get_mut(&ids[i]).unwrap() += 1;
                    }
                }
            }
        }
        prop_assert_eq!(got, expected);
        for (k, &l) in lengths.iter().enumerate() {
            prop_assert_eq!(tokens_seen.get(&(k as u32 + 1)).copied().unwrap_or(0), l);
        }
    }

    #[test]
    fn padding_free_batches_keep_each_batch_s_examples(
        lengths in prop::collection::vec(1usize..=40, 1..60),
        batch_size in 1usize..9,
        seed in any::<u64>(),
    ) {
        let trained = [true];
        let examples: Vec<Encoded> = lengths.iter().enumerate().map(|(k, &l)| {
            let mut e = example(k, l, &trained);
            e.target = Target::Class(k as u32);
            e
        }).collect();
        let padded = LoaderOptions { batch_size, max_length: 40, seed, ..LoaderOptions::default() };
        let free = LoaderOptions { padding_free: true, ..padded.clone() };
        let a = Loader::new(examples.clone(), padded).unwrap();
        let b = Loader::new(examples, free).unwrap();
        prop_assert_eq!(a.batches_per_epoch(), b.batches_per_epoch());
        for ((_, pa), (_, pb)) in a.epoch_from(Position::default()).zip(b.epoch_from(Position::default())) {
            let sorted = |h: &HostBatch| { let mut v = h.examples.clone(); v.sort(); v };
            prop_assert_eq!(sorted(&pa), sorted(&pb));
            prop_assert!(pb.rows <= pa.rows && pb.len <= 40);
            prop_assert_eq!(pb.tokens(), pa.tokens());
            // Segments appear in the order of `examples`/`targets`, each one example's tokens.
            let seg = pb.segment_ids.as_ref().unwrap();
            let mut order = Vec::new();
            for i in 0..pb.rows * pb.len {
                if pb.attention_mask[i] != 0 && (i % pb.len == 0 || seg[i - 1] != seg[i]) {
                    order.push(pb.input_ids[i] as usize - 1);
                }
            }
            prop_assert_eq!(&order, &pb.examples);
            let targets: Vec<usize> = pb.targets.iter().map(|t| match t { Target::Class(c) => *c as usize, _ => usize::MAX }).collect();
            prop_assert_eq!(targets, order);
        }
    }
}
