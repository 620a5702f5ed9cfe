//! The bundled synonym list (`synonyms.txt`): groups of interchangeable English words, for
//! synonym-replacement perturbations and EDA augmentation.

use std::collections::HashMap;
use std::sync::OnceLock;

const LIST: &str = include_str!("synonyms.txt");

fn table() -> &'static HashMap<String, Vec<String>> {
    static TABLE: OnceLock<HashMap<String, Vec<String>>> = OnceLock::new();
    TABLE.get_or_init(|| {
        let mut t: HashMap<String, Vec<String>> = HashMap::new();
        for line in LIST.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
            let group: Vec<&str> = line.split(',').map(str::trim).filter(|w| !w.is_empty()).collect();
            for w in group.iter().filter(|w| !w.contains(' ')) {
                let entry = t.entry(w.to_string()).or_default();
                for other in group.iter().filter(|o| *o != w) {
                    if !entry.iter().any(|e| e == other) {
                        entry.push(other.to_string());
                    }
                }
            }
        }
        t
    })
}

/// The synonyms of a lowercase word (empty when the list has none).
pub fn synonyms(word: &str) -> &'static [String] {
    table().get(word).map(Vec::as_slice).unwrap_or(&[])
}

/// How many words the list has synonyms for.
pub fn vocabulary_size() -> usize {
    table().len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_are_symmetric_and_merged() {
        assert!(synonyms("film").contains(&"movie".to_string()));
        assert!(synonyms("movie").contains(&"film".to_string()));
        assert!(!synonyms("movie").contains(&"movie".to_string()));
        // "show" is in several groups: all of their words count.
        assert!(synonyms("show").contains(&"program".to_string()) && synonyms("show").contains(&"display".to_string()));
        assert!(synonyms("zyzzyva").is_empty());
        assert!(vocabulary_size() > 400, "{}", vocabulary_size());
    }
}
