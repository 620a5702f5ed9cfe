//! GSM8K answer extraction and accuracy. The answer is the number after the last "####" when
//! there is one (the dataset's own format), otherwise the last number in the text (the
//! "flexible" extraction used by evaluation harnesses). Numbers are compared after removing
//! thousands separators, a leading "$" and a trailing ".0…".

/// Extracts the final numeric answer from a solution or a model's output.
pub fn extract_answer(text: &str) -> Option<String> {
    if let Some(pos) = text.rfind("####") {
        if let Some(n) = numbers(&text[pos + 4..]).into_iter().next() {
            return Some(n);
        }
    }
    numbers(text).pop()
}

/// The numbers in `text`, normalized, in order of appearance.
fn numbers(text: &str) -> Vec<String> {
    let b = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i].is_ascii_digit() {
            let start = i;
            let negative = start > 0 && b[start - 1] == b'-';
            let followed_by_digit = |k: usize| k + 1 < b.len() && b[k + 1].is_ascii_digit();
            // Integer part with thousands commas, then an optional fraction.
            let mut end = i;
            while end < b.len() && (b[end].is_ascii_digit() || (b[end] == b',' && followed_by_digit(end))) {
                end += 1;
            }
            if end < b.len() && b[end] == b'.' && followed_by_digit(end) {
                end += 1;
                while end < b.len() && b[end].is_ascii_digit() {
                    end += 1;
                }
            }
            out.push(normalize_number(&text[start..end], negative));
            i = end;
        } else {
            i += 1;
        }
    }
    out
}

fn normalize_number(s: &str, negative: bool) -> String {
    let mut n: String = s.chars().filter(|&c| c != ',').collect();
    if n.contains('.') {
        while n.ends_with('0') {
            n.pop();
        }
        if n.ends_with('.') {
            n.pop();
        }
    }
    let trimmed = n.trim_start_matches('0');
    let n = if trimmed.is_empty() || trimmed.starts_with('.') { format!("0{trimmed}") } else { trimmed.to_string() };
    if negative && n != "0" {
        format!("-{n}")
    } else {
        n
    }
}

/// 1.0 when the prediction's extracted answer equals the reference's.
pub fn gsm8k_correct(pred: &str, reference: &str) -> f64 {
    match (extract_answer(pred), extract_answer(reference)) {
        (Some(p), Some(r)) => f64::from(u8::from(p == r)),
        _ => 0.0,
    }
}
