//! Input perturbations for robustness checks, each at a stated rate and seeded: keyboard typos,
//! adjacent-character swaps, case flips, whitespace noise, synonym replacement (from the bundled
//! list) and truncation. The rate is the chance that each unit (a letter for typos, a word
//! otherwise, the share of words cut for truncation) is perturbed.

use crate::batch::SplitMix64;

use super::synonyms::synonyms;

/// A kind of perturbation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PerturbKind {
    /// A letter becomes a neighbouring key of a QWERTY keyboard.
    Typo,
    /// Two adjacent letters inside a word trade places.
    Swap,
    /// A word's case flips (lower ↔ upper).
    Case,
    /// A space between words disappears, or a word is split by one.
    Whitespace,
    /// A word with synonyms in the bundled list becomes one of them.
    Synonym,
    /// The last share of the words is cut.
    Truncate,
}

impl PerturbKind {
    /// Every kind, in report order.
    pub const ALL: [PerturbKind; 6] = [
        PerturbKind::Typo,
        PerturbKind::Swap,
        PerturbKind::Case,
        PerturbKind::Whitespace,
        PerturbKind::Synonym,
        PerturbKind::Truncate,
    ];

    /// The kind's name.
    pub fn name(self) -> &'static str {
        match self {
            PerturbKind::Typo => "typo",
            PerturbKind::Swap => "swap",
            PerturbKind::Case => "case",
            PerturbKind::Whitespace => "whitespace",
            PerturbKind::Synonym => "synonym",
            PerturbKind::Truncate => "truncate",
        }
    }

    /// The kind named `name`.
    pub fn parse(name: &str) -> Option<PerturbKind> {
        PerturbKind::ALL.into_iter().find(|k| k.name() == name)
    }
}

const ROWS: [&str; 3] = ["qwertyuiop", "asdfghjkl", "zxcvbnm"];

/// A letter next to `c` on a QWERTY keyboard (same row or the rows beside it), keeping case.
fn neighbour(c: char, rng: &mut SplitMix64) -> char {
    let lower = c.to_ascii_lowercase();
    let Some((r, i)) = ROWS.iter().enumerate().find_map(|(r, row)| row.find(lower).map(|i| (r, i))) else { return c };
    let mut near: Vec<char> = Vec::new();
    for (dr, row) in ROWS.iter().enumerate() {
        if (dr as i64 - r as i64).abs() > 1 {
            continue;
        }
        for (j, k) in row.chars().enumerate() {
            if (j as i64 - i as i64).abs() <= 1 && k != lower {
                near.push(k);
            }
        }
    }
    let k = near[rng.below(near.len())];
    if c.is_ascii_uppercase() {
        k.to_ascii_uppercase()
    } else {
        k
    }
}

fn chance(rng: &mut SplitMix64, rate: f64) -> bool {
    (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64 <= rate && rate > 0.0
}

/// Replaces a word's letters (keeping punctuation around it) by a synonym, matching the case of
/// its first letter.
fn replace_synonym(word: &str, rng: &mut SplitMix64) -> Option<String> {
    let start = word.find(|c: char| c.is_alphanumeric())?;
    let end = word.rfind(|c: char| c.is_alphanumeric())? + 1;
    let core = &word[start..end];
    let options = synonyms(&core.to_lowercase());
    if options.is_empty() {
        return None;
    }
    let mut pick = options[rng.below(options.len())].clone();
    if core.chars().next().is_some_and(char::is_uppercase) {
        let mut c = pick.chars();
        pick = c.next().map(|f| f.to_uppercase().collect::<String>() + c.as_str()).unwrap_or_default();
    }
    Some(format!("{}{pick}{}", &word[..start], &word[end..]))
}

/// `text` with `kind` applied at `rate` (0..=1), from `seed`.
pub fn perturb(text: &str, kind: PerturbKind, rate: f64, seed: u64) -> String {
    let mut rng = SplitMix64::new(seed ^ 0x9E37_79B9_7F4A_7C15);
    let words: Vec<&str> = text.split_whitespace().collect();
    match kind {
        PerturbKind::Typo => text
            .chars()
            .map(|c| if c.is_ascii_alphabetic() && chance(&mut rng, rate) { neighbour(c, &mut rng) } else { c })
            .collect(),
        PerturbKind::Swap => words
            .iter()
            .map(|w| {
                let mut c: Vec<char> = w.chars().collect();
                let letters: Vec<usize> = (0..c.len().saturating_sub(1))
                    .filter(|&i| c[i].is_alphabetic() && c[i + 1].is_alphabetic())
                    .collect();
                if !letters.is_empty() && chance(&mut rng, rate) {
                    let i = letters[rng.below(letters.len())];
                    c.swap(i, i + 1);
                }
                c.into_iter().collect::<String>()
            })
            .collect::<Vec<_>>()
            .join(" "),
        PerturbKind::Case => words
            .iter()
            .map(|w| {
                if !chance(&mut rng, rate) {
                    return w.to_string();
                }
                if w.chars().any(char::is_lowercase) {
                    w.to_uppercase()
                } else {
                    w.to_lowercase()
                }
            })
            .collect::<Vec<_>>()
            .join(" "),
        PerturbKind::Whitespace => {
            let mut out = String::new();
            for (i, w) in words.iter().enumerate() {
                let hit = chance(&mut rng, rate);
                let split_inside = rng.next_u64() & 1 == 1;
                // A hit either merges this word into the previous one or splits it.
                let merge = hit && !split_inside;
                if i > 0 && !merge {
                    out.push(' ');
                }
                let chars: Vec<char> = w.chars().collect();
                if hit && split_inside && chars.len() >= 2 {
                    let at = 1 + rng.below(chars.len() - 1);
                    out.extend(&chars[..at]);
                    out.push(' ');
                    out.extend(&chars[at..]);
                } else {
                    out.push_str(w);
                }
            }
            out
        }
        PerturbKind::Synonym => words
            .iter()
            .map(|w| {
                if chance(&mut rng, rate) {
                    replace_synonym(w, &mut rng).unwrap_or_else(|| w.to_string())
                } else {
                    w.to_string()
                }
            })
            .collect::<Vec<_>>()
            .join(" "),
        PerturbKind::Truncate => {
            let keep = ((words.len() as f64) * (1.0 - rate.clamp(0.0, 1.0))).ceil().max(1.0) as usize;
            words[..keep.min(words.len())].join(" ")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "The movie was a great story about a brave friend, told quickly.";

    #[test]
    fn rate_zero_changes_nothing_and_each_kind_changes_something_at_rate_one() {
        for kind in PerturbKind::ALL {
            let same = perturb(TEXT, kind, 0.0, 1);
            assert_eq!(
                same.split_whitespace().collect::<Vec<_>>(),
                TEXT.split_whitespace().collect::<Vec<_>>(),
                "{kind:?}"
            );
            let changed = perturb(TEXT, kind, if kind == PerturbKind::Truncate { 0.5 } else { 1.0 }, 1);
            assert_ne!(changed, TEXT, "{kind:?}");
            assert_eq!(
                changed,
                perturb(TEXT, kind, if kind == PerturbKind::Truncate { 0.5 } else { 1.0 }, 1),
                "seeded"
            );
        }
    }

    #[test]
    fn each_kind_does_what_it_says() {
        assert_eq!(perturb("a b c d", PerturbKind::Truncate, 0.5, 0), "a b");
        assert_eq!(perturb("Hello world", PerturbKind::Case, 1.0, 0), "HELLO WORLD");
        let syn = perturb("Movie, film.", PerturbKind::Synonym, 1.0, 3);
        assert!(syn.starts_with(|c: char| c.is_uppercase()) && syn.ends_with('.') && syn.contains(','), "{syn}");
        assert!(!syn.to_lowercase().starts_with("movie,"), "{syn}");
        let typo = perturb("aaaa", PerturbKind::Typo, 1.0, 0);
        assert!(typo.chars().all(|c| "qwszx".contains(c)), "{typo}");
        let swapped = perturb("abcd", PerturbKind::Swap, 1.0, 0);
        let mut s: Vec<char> = swapped.chars().collect();
        s.sort();
        assert_eq!(s, vec!['a', 'b', 'c', 'd']);
        assert_ne!(swapped, "abcd");
        let ws = perturb("one two three four", PerturbKind::Whitespace, 1.0, 0);
        assert_ne!(ws.split(' ').count(), 4, "{ws}");
        assert_eq!(ws.replace(' ', ""), "onetwothreefour");
        assert_eq!(PerturbKind::parse("typo"), Some(PerturbKind::Typo));
    }

    #[test]
    fn typo_rate_is_the_share_of_letters_changed() {
        let text = "the quick brown fox jumps over the lazy dog ".repeat(50);
        let out = perturb(&text, PerturbKind::Typo, 0.1, 9);
        let letters = text.chars().filter(char::is_ascii_alphabetic).count() as f64;
        let changed = text.chars().zip(out.chars()).filter(|(a, b)| a != b).count() as f64;
        assert!((changed / letters - 0.1).abs() < 0.02, "{}", changed / letters);
    }
}
