//! The report's HTML: one file, inline CSS and SVG, no script and a Content-Security-Policy that
//! forbids every fetch, so it opens offline and never touches the network.

use serde_json::Value;

use super::charts::{confusion_heatmap, line_chart, reliability_diagram, Series};
use crate::calibration::ReliabilityBin;
use crate::error::Result;

const STYLE: &str = "body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:24px auto;max-width:1340px;color:#222;background:#fafafa}\
h1{font-size:24px;margin:0 0 4px}h2{font-size:18px;margin:28px 0 8px;border-bottom:1px solid #ddd;padding-bottom:4px}\
.muted{color:#666;font-size:13px}.cards{display:flex;flex-wrap:wrap;gap:12px;margin:16px 0}\
.card{background:white;border:1px solid #e3e3e3;border-radius:6px;padding:10px 14px;min-width:140px}\
.card b{display:block;font-size:20px}.grid{display:flex;flex-wrap:wrap;gap:12px}\
.chart{background:white;border:1px solid #e3e3e3;border-radius:6px;padding:4px}\
table{border-collapse:collapse;background:white;font-size:13px;width:100%}\
td,th{border:1px solid #e3e3e3;padding:4px 8px;text-align:left;vertical-align:top}th{background:#f0f0f0}\
td.num{text-align:right;font-variant-numeric:tabular-nums}.empty{color:#888;font-style:italic}";

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

fn pts(v: &Value) -> Vec<(f64, f64)> {
    v.as_array()
        .map(|a| a.iter().filter_map(|p| Some((p.get(0)?.as_f64()?, p.get(1)?.as_f64()?))).collect::<Vec<_>>())
        .unwrap_or_default()
}

fn fmt(v: &Value) -> String {
    match v {
        Value::Number(n) => match n.as_f64() {
            Some(f) if f.fract() != 0.0 && f.abs() < 1e-3 => format!("{f:e}"),
            Some(f) if f.fract() != 0.0 => format!("{f:.4}"),
            _ => n.to_string(),
        },
        Value::String(s) => s.clone(),
        Value::Null => "–".into(),
        other => other.to_string(),
    }
}

/// Flattens nested JSON into dotted keys for the configuration table.
fn flatten(prefix: &str, v: &Value, out: &mut Vec<(String, String)>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                let key = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                flatten(&key, x, out);
            }
        }
        Value::Array(a) if a.iter().any(|x| x.is_object()) => {
            for (i, x) in a.iter().enumerate() {
                flatten(&format!("{prefix}[{i}]"), x, out);
            }
        }
        other => out.push((prefix.to_string(), fmt(other))),
    }
}

fn chart_or_empty(svg: Result<String>, ok: bool, what: &str) -> String {
    match (ok, svg) {
        (true, Ok(s)) => format!("<div class=\"chart\">{s}</div>"),
        (true, Err(e)) => format!("<p class=\"empty\">{}: {}</p>", esc(what), esc(&e.to_string())),
        (false, _) => format!("<p class=\"empty\">No {} logged yet.</p>", esc(what)),
    }
}

/// Renders the report JSON as HTML.
pub fn render(r: &Value) -> Result<String> {
    let mut h = String::with_capacity(64 * 1024);
    h.push_str("<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">");
    h.push_str("<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; img-src data:\">");
    h.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">");
    h.push_str(&format!(
        "<title>tunesmith report: {}</title><style>{STYLE}</style></head><body>",
        esc(&fmt(&r["run_dir"]))
    ));
    h.push_str(&format!("<h1>tunesmith run report</h1><div class=\"muted\">{}</div>", esc(&fmt(&r["run_dir"]))));

    // Summary cards.
    let s = &r["summary"];
    h.push_str("<div class=\"cards\">");
    let mut card = |label: &str, value: String| {
        h.push_str(&format!(
            "<div class=\"card\"><span class=\"muted\">{}</span><b>{}</b></div>",
            esc(label),
            esc(&value)
        ))
    };
    card("steps", fmt(&s["steps"]));
    card("final train loss", fmt(&s["final_train_loss"]));
    if let Some(last) = s["last_eval"].as_object() {
        card("last eval loss", fmt(&last["loss"]));
    }
    if let Some(best) = s["best"].as_object() {
        for (k, v) in best {
            card(&format!("best {k} (step {})", fmt(&v["step"])), fmt(&v["value"]));
        }
    }
    h.push_str("</div>");
    if s["skipped_partial_lines"].as_u64().unwrap_or(0) > 0 {
        h.push_str("<p class=\"muted\">The run is still writing its log: its last, partial line was skipped.</p>");
    }

    // Loss, lr and gradient norm.
    let c = &r["curves"];
    let (train, eval) = (pts(&c["train_loss"]), pts(&c["eval_loss"]));
    h.push_str("<h2>Loss</h2><div class=\"grid\">");
    let mut loss_series = vec![Series { name: "train", points: &train, markers: false }];
    if !eval.is_empty() {
        loss_series.push(Series { name: "validation", points: &eval, markers: true });
    }
    h.push_str(&chart_or_empty(
        line_chart("Loss", "step", "loss", &loss_series, (1300, 380)),
        !train.is_empty() || !eval.is_empty(),
        "loss",
    ));
    h.push_str("</div><div class=\"grid\">");
    let (lr, gn) = (pts(&c["lr"]), pts(&c["grad_norm"]));
    h.push_str(&chart_or_empty(
        line_chart("Learning rate", "step", "lr", &[Series { name: "lr", points: &lr, markers: false }], (646, 300)),
        !lr.is_empty(),
        "learning rate",
    ));
    h.push_str(&chart_or_empty(
        line_chart(
            "Gradient norm",
            "step",
            "‖g‖ (before clipping)",
            &[Series { name: "grad norm", points: &gn, markers: false }],
            (646, 300),
        ),
        !gn.is_empty(),
        "gradient norm",
    ));
    h.push_str("</div>");

    // Metric curves.
    h.push_str("<h2>Metrics</h2><div class=\"grid\">");
    let metrics = c["metrics"].as_object().cloned().unwrap_or_default();
    if metrics.is_empty() {
        h.push_str("<p class=\"empty\">No evaluation metrics logged yet.</p>");
    }
    for (name, v) in &metrics {
        let p = pts(v);
        h.push_str(&chart_or_empty(
            line_chart(name, "step", name, &[Series { name, points: &p, markers: true }], (430, 280)),
            !p.is_empty(),
            name,
        ));
    }
    h.push_str("</div>");

    // Classification: confusion matrix and reliability.
    if let Some(cls) = r.get("classification").filter(|v| v.is_object()) {
        h.push_str("<h2>Classification</h2><div class=\"grid\">");
        let labels: Vec<String> = serde_json::from_value(cls["labels"].clone()).unwrap_or_default();
        let counts: Vec<Vec<u64>> = serde_json::from_value(cls["confusion"].clone()).unwrap_or_default();
        h.push_str(&format!("<div class=\"chart\">{}</div>", confusion_heatmap(&labels, &counts)));
        if let Ok(bins) = serde_json::from_value::<Vec<ReliabilityBin>>(cls["reliability"].clone()) {
            let ece = cls["ece"].as_f64().unwrap_or(0.0);
            h.push_str(&chart_or_empty(reliability_diagram(&bins, ece, (520, 420)), true, "reliability"));
        }
        h.push_str("</div>");
    }

    // Worst examples.
    h.push_str("<h2>Worst examples</h2>");
    let worst = r["worst_examples"].as_array().cloned().unwrap_or_default();
    if worst.is_empty() {
        h.push_str("<p class=\"empty\">No per-example predictions saved (eval/predictions.jsonl).</p>");
    } else {
        let mut cols: Vec<String> = Vec::new();
        for w in &worst {
            for k in w.as_object().map(|m| m.keys().cloned().collect::<Vec<_>>()).unwrap_or_default() {
                if !cols.contains(&k) {
                    cols.push(k);
                }
            }
        }
        h.push_str("<table><tr>");
        for c in &cols {
            h.push_str(&format!("<th>{}</th>", esc(c)));
        }
        h.push_str("</tr>");
        for w in &worst {
            h.push_str("<tr>");
            for c in &cols {
                let v = &w[c.as_str()];
                let class = if v.is_number() { " class=\"num\"" } else { "" };
                h.push_str(&format!("<td{class}>{}</td>", esc(&fmt(v))));
            }
            h.push_str("</tr>");
        }
        h.push_str("</table>");
    }

    // Configuration and environment.
    h.push_str("<h2>Configuration and environment</h2>");
    let mut rows = Vec::new();
    flatten("", &r["manifest"], &mut rows);
    if rows.is_empty() || r["manifest"].is_null() {
        h.push_str("<p class=\"empty\">No manifest.json in the run directory.</p>");
    } else {
        h.push_str("<table><tr><th>key</th><th>value</th></tr>");
        for (k, v) in rows {
            h.push_str(&format!("<tr><td>{}</td><td>{}</td></tr>", esc(&k), esc(&v)));
        }
        h.push_str("</table>");
    }
    h.push_str("<p class=\"muted\">Generated by tunesmith. Self-contained: no script, no external resources.</p></body></html>");
    Ok(h)
}
