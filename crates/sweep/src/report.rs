//! A study's results: `results.jsonl` (a row per trial), `importance.json`, and
//! `results.html` (the best trial, the best value by trial, a parallel-coordinates plot, the
//! importances and the trials table), rewritten after every trial. One file, inline SVG, no
//! script.

use std::fmt::Write as _;
use std::path::Path;

use serde_json::{json, Value as Json};
use tunesmith_eval::report::charts::{line_chart, Series};

use crate::error::{Result, SweepError};
use crate::importance::{importances, Importance};
use crate::journal::{Direction, EndState, StudyState, Trial, TrialState};
use crate::space::Space;

fn state_name(t: &Trial) -> &'static str {
    match t.state {
        TrialState::Running => "running",
        TrialState::Queued => "queued",
        TrialState::Ended(EndState::Complete) => "complete",
        TrialState::Ended(EndState::Pruned) => "pruned",
        TrialState::Ended(EndState::Failed) => "failed",
    }
}

/// Seconds a pruned trial did not run: its time scaled to its planned steps, minus its time.
pub fn seconds_saved(t: &Trial) -> f64 {
    if t.state != TrialState::Ended(EndState::Pruned) || t.steps == 0 || t.total_steps <= t.steps {
        return 0.0;
    }
    t.seconds * (t.total_steps as f64 / t.steps as f64 - 1.0)
}

/// One results row.
pub fn row(t: &Trial) -> Json {
    json!({
        "trial": t.number,
        "state": state_name(t),
        "value": t.value,
        "params": t.params,
        "steps": t.steps,
        "total_steps": t.total_steps,
        "seconds": t.seconds,
        "seconds_saved": seconds_saved(t),
        "starts": t.starts,
        "metrics": t.metrics,
        "error": t.error,
    })
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

fn fmt_value(v: &Json) -> String {
    match v {
        Json::Number(n) => match n.as_f64() {
            Some(f) if f.fract() != 0.0 && f.abs() < 1e-2 => format!("{f:.3e}"),
            Some(f) if f.fract() != 0.0 => format!("{f:.4}"),
            _ => n.to_string(),
        },
        Json::String(s) => s.clone(),
        Json::Null => "–".into(),
        other => other.to_string(),
    }
}

/// A parallel-coordinates plot: one axis per parameter and one for the objective; a line per
/// complete trial, darker for better values.
fn parallel_coordinates(space: &Space, state: &StudyState, metric: &str, direction: Direction) -> String {
    let done: Vec<(&Trial, Vec<f64>, f64)> = state
        .trials
        .iter()
        .filter(|t| t.state == TrialState::Ended(EndState::Complete))
        .filter_map(|t| Some((t, space.from_json(&t.params).ok()?, t.value.filter(|v| v.is_finite())?)))
        .collect();
    if done.is_empty() {
        return "<p class=\"empty\">No complete trial yet.</p>".into();
    }
    let axes = space.params.len() + 1;
    let (w, h, top, bottom, left) = (160.0 * axes as f64 + 40.0, 340.0, 30.0, 40.0, 60.0);
    let x_of = |i: usize| left + 160.0 * i as f64;
    let (vmin, vmax) = done.iter().fold((f64::MAX, f64::MIN), |(a, b), d| (a.min(d.2), b.max(d.2)));
    let unit = |x: f64, lo: f64, hi: f64| if hi > lo { (x - lo) / (hi - lo) } else { 0.5 };
    let y_of = |u: f64| top + (1.0 - u) * (h - top - bottom);
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-size=\"11\" font-family=\"sans-serif\">"
    );
    // Worse trials first, so the best lines are drawn on top.
    let mut order: Vec<usize> = (0..done.len()).collect();
    order.sort_by(|&a, &b| direction.loss(done[b].2).total_cmp(&direction.loss(done[a].2)));
    for &i in &order {
        let (_, xs, v) = &done[i];
        let quality = match direction {
            Direction::Maximize => unit(*v, vmin, vmax),
            Direction::Minimize => 1.0 - unit(*v, vmin, vmax),
        };
        let mut pts = String::new();
        for (j, p) in space.params.iter().enumerate() {
            let (lo, hi) = p.bounds();
            let _ = write!(pts, "{:.1},{:.1} ", x_of(j), y_of(unit(xs[j], lo, hi)));
        }
        let _ = write!(pts, "{:.1},{:.1}", x_of(axes - 1), y_of(unit(*v, vmin, vmax)));
        let shade = (200.0 - 170.0 * quality) as u8;
        let _ = write!(
            svg,
            "<polyline points=\"{pts}\" fill=\"none\" stroke=\"rgb({shade},{shade},255)\" stroke-width=\"1.5\"><title>trial {}: {}</title></polyline>",
            done[i].0.number,
            fmt_value(&json!(v))
        );
    }
    let mut axis = |i: usize, name: &str, lo: String, hi: String| {
        let x = x_of(i);
        let _ = write!(
            svg,
            "<line x1=\"{x}\" y1=\"{top}\" x2=\"{x}\" y2=\"{}\" stroke=\"#333\"/><text x=\"{x}\" y=\"{}\" text-anchor=\"middle\">{}</text><text x=\"{}\" y=\"{}\" >{}</text><text x=\"{}\" y=\"{}\">{}</text>",
            h - bottom,
            h - bottom + 28.0,
            esc(name),
            x + 4.0,
            top + 4.0,
            esc(&hi),
            x + 4.0,
            h - bottom,
            esc(&lo)
        );
    };
    for (j, p) in space.params.iter().enumerate() {
        let (lo, hi) = p.bounds();
        axis(j, &p.key, fmt_value(&p.to_json(lo)), fmt_value(&p.to_json(hi)));
    }
    axis(axes - 1, metric, fmt_value(&json!(vmin)), fmt_value(&json!(vmax)));
    svg.push_str("</svg>");
    svg
}

/// The best value found after each complete trial.
fn best_so_far(state: &StudyState, direction: Direction) -> Vec<(f64, f64)> {
    let mut best: Option<f64> = None;
    let mut pts = Vec::new();
    for t in state.trials.iter().filter(|t| t.state == TrialState::Ended(EndState::Complete)) {
        if let Some(v) = t.value.filter(|v| v.is_finite()) {
            best = Some(best.map_or(v, |b| if direction.loss(v) < direction.loss(b) { v } else { b }));
            pts.push((t.number as f64, best.unwrap_or(v)));
        }
    }
    pts
}

/// The HTML page of a study.
pub fn html(space: &Space, state: &StudyState, metric: &str, direction: Direction, imp: &[Importance]) -> String {
    let mut s = String::from(
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; img-src data:\"><title>tunesmith sweep</title><style>body{font-family:system-ui,sans-serif;margin:24px auto;max-width:1340px;color:#222}table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ddd;padding:3px 8px;text-align:left}td.num{text-align:right;font-variant-numeric:tabular-nums}.empty{color:#888;font-style:italic}.bar{background:#4a78c2;height:10px;display:inline-block}</style></head><body><h1>Sweep</h1>",
    );
    let saved: f64 = state.trials.iter().map(seconds_saved).sum();
    let _ = write!(
        s,
        "<p>{} trials: {} complete, {} pruned ({:.0} s of training saved), {} failed, {} running. Objective: {} ({}).</p>",
        state.trials.len(),
        state.count(EndState::Complete),
        state.count(EndState::Pruned),
        saved,
        state.count(EndState::Failed),
        state.trials.iter().filter(|t| t.state == TrialState::Running).count(),
        esc(metric),
        if direction == Direction::Maximize { "maximize" } else { "minimize" }
    );
    if let Some(b) = state.best(direction) {
        let _ =
            write!(s, "<h2>Best: trial {} with {} = {}</h2><ul>", b.number, esc(metric), fmt_value(&json!(b.value)));
        for (k, v) in &b.params {
            let _ = write!(s, "<li><code>{}</code> = {}</li>", esc(k), esc(&fmt_value(v)));
        }
        s.push_str("</ul>");
    }
    s.push_str("<h2>Best value by trial</h2>");
    let pts = best_so_far(state, direction);
    match (
        pts.is_empty(),
        line_chart("", "trial", metric, &[Series { name: "best so far", points: &pts, markers: true }], (640, 300)),
    ) {
        (false, Ok(svg)) => s.push_str(&svg),
        _ => s.push_str("<p class=\"empty\">No complete trial yet.</p>"),
    }
    s.push_str("<h2>Parallel coordinates</h2>");
    s.push_str(&parallel_coordinates(space, state, metric, direction));
    s.push_str("<h2>Importance</h2>");
    if imp.is_empty() {
        s.push_str("<p class=\"empty\">Needs four complete trials.</p>");
    } else {
        s.push_str("<p>Share of the objective's variance each parameter explains alone (η² over quantile bins).</p><table><tr><th>key</th><th>η²</th><th>share</th></tr>");
        for i in imp {
            let _ = write!(
                s,
                "<tr><td><code>{}</code></td><td class=\"num\">{:.3}</td><td><span class=\"bar\" style=\"width:{:.0}px\"></span> {:.0}%</td></tr>",
                esc(&i.key),
                i.eta_squared,
                200.0 * i.share,
                100.0 * i.share
            );
        }
        s.push_str("</table>");
    }
    s.push_str("<h2>Trials</h2><table><tr><th>trial</th><th>state</th>");
    let _ = write!(s, "<th>{}</th>", esc(metric));
    for p in &space.params {
        let _ = write!(s, "<th>{}</th>", esc(&p.key));
    }
    s.push_str("<th>steps</th><th>seconds</th><th>note</th></tr>");
    for t in &state.trials {
        let _ = write!(
            s,
            "<tr><td class=\"num\">{}</td><td>{}</td><td class=\"num\">{}</td>",
            t.number,
            state_name(t),
            fmt_value(&json!(t.value))
        );
        for p in &space.params {
            let _ =
                write!(s, "<td class=\"num\">{}</td>", esc(&fmt_value(t.params.get(&p.key).unwrap_or(&Json::Null))));
        }
        let note = match (&t.error, t.starts) {
            (Some(e), _) => e.clone(),
            (None, n) if n > 1 => format!("rerun after its worker died ({n} starts)"),
            _ => String::new(),
        };
        let _ = write!(
            s,
            "<td class=\"num\">{}/{}</td><td class=\"num\">{:.1}</td><td>{}</td></tr>",
            t.steps,
            t.total_steps,
            t.seconds,
            esc(&note)
        );
    }
    s.push_str("</table></body></html>\n");
    s
}

/// Writes `results.jsonl`, `importance.json` and `results.html` into the study folder.
pub fn write(dir: &Path, space: &Space, state: &StudyState, metric: &str, direction: Direction) -> Result<()> {
    let atomic = |name: &str, bytes: &[u8]| {
        tunesmith_eval::report::write_atomic(&dir.join(name), bytes)
            .map_err(|e| SweepError::io(dir.join(name), std::io::Error::other(e.to_string())))
    };
    let rows: String = state.trials.iter().map(|t| row(t).to_string() + "\n").collect();
    atomic("results.jsonl", rows.as_bytes())?;
    let imp = importances(space, state);
    atomic("importance.json", serde_json::to_string_pretty(&imp).unwrap_or_default().as_bytes())?;
    atomic("results.html", html(space, state, metric, direction, &imp).as_bytes())
}
