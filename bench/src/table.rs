//! Plain-text tables for benchmark output (also valid Markdown, for bench/RESULTS.md).

/// Renders rows under a header as a Markdown table with aligned columns.
pub fn markdown(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(c.len());
        }
    }
    let line = |cells: Vec<String>| -> String {
        let parts: Vec<String> = cells.iter().enumerate().map(|(i, c)| format!("{c:<w$}", w = widths[i])).collect();
        format!("| {} |", parts.join(" | "))
    };
    let mut out = vec![line(header.iter().map(|s| s.to_string()).collect())];
    out.push(format!("|{}|", widths.iter().map(|w| "-".repeat(w + 2)).collect::<Vec<_>>().join("|")));
    for r in rows {
        out.push(line(r.clone()));
    }
    out.join("\n")
}
