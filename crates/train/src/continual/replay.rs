//! The replay buffer: a reservoir sample (Vitter's algorithm R) of every training example seen
//! in earlier tasks, of fixed capacity, so each past example is equally likely to be kept
//! whatever the order and size of the tasks.

use tunesmith_data::batch::SplitMix64;
use tunesmith_data::encode::Encoded;

/// A past example and the head that scores it.
#[derive(Debug, Clone)]
pub struct Replayed {
    /// The example.
    pub example: Encoded,
    /// Its task's head (an index into the run's heads).
    pub head: usize,
}

/// A fixed-capacity uniform sample of a stream of examples.
pub struct Reservoir {
    capacity: usize,
    seen: u64,
    items: Vec<Replayed>,
    rng: SplitMix64,
}

impl Reservoir {
    /// An empty buffer of `capacity` examples.
    pub fn new(capacity: usize, seed: u64) -> Reservoir {
        Reservoir { capacity, seen: 0, items: Vec::with_capacity(capacity), rng: SplitMix64::new(seed ^ 0x7e5e_7701) }
    }

    /// Offers one example: kept while the buffer fills, then with probability capacity / seen.
    pub fn offer(&mut self, item: Replayed) {
        self.seen += 1;
        if self.items.len() < self.capacity {
            self.items.push(item);
            return;
        }
        let slot = (self.rng.next_u64() % self.seen) as usize;
        if slot < self.capacity {
            self.items[slot] = item;
        }
    }

    /// Examples kept.
    pub fn items(&self) -> &[Replayed] {
        &self.items
    }

    /// Examples offered so far.
    pub fn seen(&self) -> u64 {
        self.seen
    }

    /// `count` examples to mix into a task: seeded passes over the buffer (every kept example
    /// once before any twice).
    pub fn draw(&self, count: usize, seed: u64) -> Vec<Replayed> {
        crate::multitask::sampling::draw(self.items.len(), count, seed)
            .into_iter()
            .map(|i| self.items[i].clone())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tunesmith_data::encode::Target;

    fn item(i: usize) -> Replayed {
        let example = Encoded {
            sequence: Default::default(),
            rejected: None,
            others: Vec::new(),
            target: Target::Class(i as u32),
            truncated: false,
            loc: tunesmith_data::Loc { file: std::path::Path::new("t.jsonl").into(), line: i + 1 },
        };
        Replayed { example, head: i / 1000 }
    }

    #[test]
    fn fills_then_keeps_capacity() {
        let mut r = Reservoir::new(10, 1);
        for i in 0..5 {
            r.offer(item(i));
        }
        assert_eq!(r.items().len(), 5);
        for i in 5..1000 {
            r.offer(item(i));
        }
        assert_eq!(r.items().len(), 10);
        assert_eq!(r.seen(), 1000);
    }

    #[test]
    fn every_task_is_represented_in_proportion() {
        // Two tasks of 2,000 examples into 400 slots: about 200 each (binomial sd ≈ 8).
        let mut r = Reservoir::new(400, 3);
        for i in 0..4000 {
            r.offer(item(i / 2000 * 1000 + i % 1000));
        }
        let first = r.items().iter().filter(|x| x.head == 0).count();
        assert!((160..=240).contains(&first), "{first} of 400 from the first task");
    }

    #[test]
    fn draws_repeat_only_after_a_full_pass() {
        let mut r = Reservoir::new(4, 0);
        for i in 0..4 {
            r.offer(item(i));
        }
        let d = r.draw(6, 9);
        assert_eq!(d.len(), 6);
        let mut first: Vec<u32> =
            d[..4].iter().map(|x| if let Target::Class(c) = x.example.target { c } else { 99 }).collect();
        first.sort_unstable();
        assert_eq!(first, vec![0, 1, 2, 3]);
    }
}
