//! Printing examples with their trained spans marked: ⟦trained⟧, also highlighted on terminals.

use std::io::IsTerminal;

/// Text with the byte ranges in `trained` marked.
pub fn mark(text: &str, trained: &[(usize, usize)]) -> String {
    let color = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let (open, close) = if color { ("\x1b[32;4m⟦", "⟧\x1b[0m") } else { ("⟦", "⟧") };
    let mut out = String::with_capacity(text.len() + trained.len() * 8);
    let mut at = 0;
    for &(s, e) in trained {
        let (s, e) = (floor(text, s.max(at)), floor(text, e.min(text.len())));
        if s >= e {
            continue;
        }
        out.push_str(&text[at..s]);
        out.push_str(open);
        out.push_str(&text[s..e]);
        out.push_str(close);
        at = e;
    }
    out.push_str(&text[at..]);
    out
}

fn floor(s: &str, mut i: usize) -> usize {
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// Indents every line of `s` by two spaces.
pub fn indent(s: &str) -> String {
    s.lines().map(|l| format!("  {l}")).collect::<Vec<_>>().join("\n")
}
