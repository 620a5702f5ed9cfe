//! The robustness report as one HTML page: tables of each check and the reliability diagrams
//! before and after temperature scaling (inline SVG, no script).

use std::fmt::Write as _;

use tunesmith_eval::report::charts::reliability_diagram;

use super::RobustnessReport;

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

fn pct(x: f64) -> String {
    format!("{:.2}", 100.0 * x)
}

/// Renders the report.
pub fn render(r: &RobustnessReport) -> String {
    let mut s = String::from(
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\"><title>tunesmith robustness</title><style>body{font-family:system-ui,sans-serif;margin:24px auto;max-width:1100px;color:#222}table{border-collapse:collapse;font-size:13px;margin:8px 0}td,th{border:1px solid #ddd;padding:3px 8px;text-align:left}td.num{text-align:right;font-variant-numeric:tabular-nums}.charts{display:flex;gap:12px;flex-wrap:wrap}</style></head><body><h1>Robustness</h1>",
    );
    let _ = write!(s, "<p>{} rows, clean accuracy {}%.</p>", r.rows, pct(r.accuracy));
    s.push_str("<h2>Perturbations</h2><table><tr><th>kind</th><th>rate</th><th>accuracy %</th><th>drop (points)</th><th>flip rate %</th><th>rows changed</th></tr>");
    for p in &r.perturbations {
        let _ = write!(
            s,
            "<tr><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
            esc(&p.kind),
            p.rate,
            pct(p.accuracy),
            pct(p.accuracy_drop),
            pct(p.flip_rate),
            p.changed_rows
        );
    }
    s.push_str("</table>");
    if let Some(o) = &r.ood {
        let _ = write!(
            s,
            "<h2>Out-of-distribution detection</h2><table><tr><th>score</th><th>ROC-AUC</th></tr><tr><td>maximum softmax probability</td><td class=\"num\">{:.4}</td></tr><tr><td>negative energy (T = 1)</td><td class=\"num\">{:.4}</td></tr></table><p>{} in-distribution and {} out-of-distribution rows; in-distribution is the positive class.</p>",
            o.auroc_max_softmax, o.auroc_energy, o.in_distribution, o.out_of_distribution
        );
    }
    if let Some(f) = &r.fairness {
        let _ = write!(
            s,
            "<h2>Subgroups</h2><p>Favourable class: {}. Accuracy gap (best − worst group) {} points; demographic parity difference {:.4}; equalized odds difference {:.4}{}.</p><table><tr><th>group</th><th>rows</th><th>accuracy %</th><th>selection rate</th><th>TPR</th><th>FPR</th></tr>",
            esc(r.positive.as_deref().unwrap_or("")),
            pct(f.accuracy_gap),
            f.demographic_parity_difference,
            f.equalized_odds_difference,
            if r.rows_without_group > 0 { format!("; {} rows without a group left out", r.rows_without_group) } else { String::new() }
        );
        for g in &f.groups {
            let _ = write!(
                s,
                "<tr><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{:.4}</td><td class=\"num\">{:.4}</td><td class=\"num\">{:.4}</td></tr>",
                esc(&g.group),
                g.count,
                pct(g.accuracy),
                g.selection_rate,
                g.true_positive_rate,
                g.false_positive_rate
            );
        }
        s.push_str("</table>");
    }
    let c = &r.calibration;
    let _ = write!(
        s,
        "<h2>Calibration</h2><p>Temperature {:.4}, fitted on the {} rows (NLL {:.4} → {:.4}). Validation ECE {}% → {}%; evaluated rows' ECE {}% → {}% ({} bins).</p><div class=\"charts\">",
        c.temperature.temperature,
        esc(&c.fitted_on),
        c.temperature.nll_before,
        c.temperature.nll_after,
        pct(c.validation_before.ece),
        pct(c.validation_after.ece),
        pct(c.evaluation_ece_before),
        pct(c.evaluation_ece_after),
        tunesmith_eval::calibration::ECE_BINS
    );
    for cal in [&c.validation_before, &c.validation_after] {
        if let Ok(svg) = reliability_diagram(&cal.bins, cal.ece, (420, 360)) {
            s.push_str(&svg);
        }
    }
    s.push_str("</div></body></html>\n");
    s
}
