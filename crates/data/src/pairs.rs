//! Batches that hold several sequences per example (a preference pair's chosen and rejected
//! completions): host batches stacked into one forward pass, and where each sequence lies.

use crate::batch::HostBatch;
use crate::encode::IGNORE;

/// Stacks host batches row-wise into one, padding every row to the longest (right padding with
/// `pad_id`). Members keep their order: the first batch's, then the second's, and so on. Packed
/// and unpacked batches do not mix.
pub fn stack(parts: &[HostBatch], pad_id: u32) -> HostBatch {
    let len = parts.iter().map(|p| p.len).max().unwrap_or(0);
    let rows: usize = parts.iter().map(|p| p.rows).sum();
    let packed = parts.iter().any(|p| p.segment_ids.is_some());
    let typed = parts.iter().any(|p| p.token_type_ids.is_some());
    let n = rows * len;
    let mut out = HostBatch {
        rows,
        len,
        input_ids: vec![pad_id; n],
        attention_mask: vec![0; n],
        position_ids: vec![0; n],
        labels: vec![IGNORE; n],
        segment_ids: packed.then(|| vec![-1; n]),
        token_type_ids: typed.then(|| vec![0; n]),
        targets: Vec::new(),
        examples: Vec::new(),
    };
    let mut row = 0;
    for p in parts {
        for r in 0..p.rows {
            let (src, dst) = (r * p.len..(r + 1) * p.len, row * len..row * len + p.len);
            out.input_ids[dst.clone()].copy_from_slice(&p.input_ids[src.clone()]);
            out.attention_mask[dst.clone()].copy_from_slice(&p.attention_mask[src.clone()]);
            out.position_ids[dst.clone()].copy_from_slice(&p.position_ids[src.clone()]);
            out.labels[dst.clone()].copy_from_slice(&p.labels[src.clone()]);
            if let (Some(o), Some(s)) = (&mut out.segment_ids, &p.segment_ids) {
                o[dst.clone()].copy_from_slice(&s[src.clone()]);
            }
            if let (Some(o), Some(s)) = (&mut out.token_type_ids, &p.token_type_ids) {
                o[dst].copy_from_slice(&s[src]);
            }
            row += 1;
        }
        out.targets.extend_from_slice(&p.targets);
        out.examples.extend_from_slice(&p.examples);
    }
    out
}

/// The flat token range `[start, end)` of each member sequence of a batch, in the order of
/// `examples`: a whole row's real tokens when unpacked, each run of one segment id when packed.
pub fn member_spans(hb: &HostBatch) -> Vec<(usize, usize)> {
    let mut spans = Vec::with_capacity(hb.examples.len());
    for r in 0..hb.rows {
        let at = r * hb.len;
        match &hb.segment_ids {
            None => {
                let real = hb.attention_mask[at..at + hb.len].iter().filter(|&&m| m != 0).count();
                spans.push((at, at + real));
            }
            Some(seg) => {
                let mut c = 0;
                while c < hb.len {
                    let s = seg[at + c];
                    let start = c;
                    while c < hb.len && seg[at + c] == s {
                        c += 1;
                    }
                    if s >= 0 {
                        spans.push((at + start, at + c));
                    }
                }
            }
        }
    }
    spans
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::{Loader, LoaderOptions};
    use crate::encode::{Encoded, Sequence, Target};
    use crate::error::Loc;
    use std::path::Path;
    use std::sync::Arc;

    fn pair(line: usize, chosen: usize, rejected: usize) -> Encoded {
        let seq = |n: usize, tag: u32| Sequence {
            input_ids: vec![tag; n],
            labels: (0..n).map(|i| if i == 0 { IGNORE } else { tag as i32 }).collect(),
            token_type_ids: Vec::new(),
        };
        Encoded {
            sequence: seq(chosen, 1),
            rejected: None,
            others: vec![seq(rejected, 2)],
            target: Target::None,
            truncated: false,
            loc: Loc { file: Arc::from(Path::new("p.jsonl")), line },
        }
    }

    fn loader(padding_free: bool) -> Loader {
        let examples = vec![pair(1, 3, 5), pair(2, 4, 2), pair(3, 2, 2)];
        let opts = LoaderOptions { batch_size: 3, padding_free, max_length: 16, pad_id: 0, ..LoaderOptions::default() };
        Loader::new(examples, opts).unwrap()
    }

    #[test]
    fn stacked_pairs_keep_every_sequence_and_its_span() {
        for padding_free in [false, true] {
            let l = loader(padding_free);
            let rows = [0, 1, 2];
            let both = stack(&[l.collate_part(&rows, 0), l.collate_part(&rows, 1)], 0);
            let spans = member_spans(&both);
            assert_eq!(spans.len(), 6, "padding_free = {padding_free}");
            assert_eq!(both.examples.len(), 6);
            for (k, &(a, b)) in spans.iter().enumerate() {
                let ex = &l.examples()[both.examples[k]];
                let seq = if k < 3 { &ex.sequence } else { &ex.others[0] };
                assert_eq!(b - a, seq.len(), "member {k}");
                let ids: Vec<u32> = both.input_ids[a..b].to_vec();
                assert_eq!(ids, seq.input_ids, "member {k}");
                assert_eq!(&both.labels[a..b], &seq.labels[..], "member {k}");
            }
            // Padding carries no labels and no attention.
            let real: usize = spans.iter().map(|(a, b)| b - a).sum();
            assert_eq!(both.tokens(), real);
        }
    }
}
