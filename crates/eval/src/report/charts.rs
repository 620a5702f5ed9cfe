//! SVG charts for the report, drawn with `plotters` (line charts, the reliability diagram) or
//! directly (the confusion heatmap). Each function returns a standalone `<svg>` element.

use plotters::prelude::*;

use crate::calibration::ReliabilityBin;
use crate::error::{EvalError, Result};

/// Colours of the first series (the test that renders the report looks for them).
pub const PALETTE: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
];

/// One line of a chart.
pub struct Series<'a> {
    /// Legend label.
    pub name: &'a str,
    /// (x, y) points.
    pub points: &'a [(f64, f64)],
    /// Draw markers at the points as well (for sparse series such as evaluations).
    pub markers: bool,
}

fn err(e: impl std::fmt::Display) -> EvalError {
    EvalError::invalid("report chart", e.to_string())
}

/// An axis range widened to multiples of a 1-2-5 step (about six ticks), plus the step.
/// Ticks are then stepped explicitly: plotters' own key-point search can loop forever on narrow
/// ranges of small values (a learning rate of 1e-3 ± 1e-4, say).
fn nice_axis(lo: f64, hi: f64) -> (f64, f64, f64) {
    let (lo, hi) = if !(lo.is_finite() && hi.is_finite()) {
        (0.0, 1.0)
    } else if (hi - lo).abs() <= hi.abs().max(lo.abs()) * 1e-9 {
        let d = if lo == 0.0 { 1.0 } else { lo.abs() * 0.1 };
        (lo - d, hi + d)
    } else {
        (lo, hi)
    };
    let raw = (hi - lo) / 6.0;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0].iter().map(|m| m * mag).find(|s| *s >= raw).unwrap_or(10.0 * mag);
    ((lo / step).floor() * step, (hi / step).ceil() * step, step)
}

/// A line chart of `series` against a shared x axis.
pub fn line_chart(title: &str, x_desc: &str, y_desc: &str, series: &[Series], size: (u32, u32)) -> Result<String> {
    let all = series.iter().flat_map(|s| s.points.iter());
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for &(x, y) in all {
        x0 = x0.min(x);
        x1 = x1.max(x);
        y0 = y0.min(y);
        y1 = y1.max(y);
    }
    let (x0, x1, xs) = nice_axis(x0, x1);
    let (y0, y1, ys) = nice_axis(y0, y1);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, size).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(64)
            .build_cartesian_2d((x0..x1).step(xs), (y0..y1).step(ys))
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_label_formatter(&|v| format_tick(*v))
            .x_desc(x_desc)
            .y_desc(y_desc)
            .light_line_style(RGBColor(238, 238, 238))
            .y_label_formatter(&|v| format_tick(*v))
            .draw()
            .map_err(err)?;
        for (i, s) in series.iter().enumerate() {
            let color = PALETTE[i % PALETTE.len()];
            chart
                .draw_series(LineSeries::new(s.points.iter().copied(), color.stroke_width(2)))
                .map_err(err)?
                .label(s.name)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(3)));
            if s.markers {
                chart.draw_series(s.points.iter().map(|&p| Circle::new(p, 4, color.filled()))).map_err(err)?;
            }
        }
        if series.len() > 1 {
            chart
                .configure_series_labels()
                .background_style(WHITE.mix(0.85))
                .border_style(RGBColor(200, 200, 200))
                .draw()
                .map_err(err)?;
        }
        root.present().map_err(err)?;
    }
    Ok(svg)
}

fn format_tick(v: f64) -> String {
    let a = v.abs();
    if a < 1e-12 {
        return "0".into();
    }
    if a != 0.0 && !(1e-3..1e4).contains(&a) {
        format!("{v:.1e}")
    } else {
        let s = format!("{v:.4}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

/// The reliability diagram: accuracy per confidence bin against the diagonal of perfect
/// calibration.
pub fn reliability_diagram(bins: &[ReliabilityBin], ece: f64, size: (u32, u32)) -> Result<String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, size).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(format!("Reliability (ECE {:.2}%)", 100.0 * ece), ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(56)
            .build_cartesian_2d((0.0..1.0).step(0.1), (0.0..1.0).step(0.1))
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc("confidence")
            .y_desc("accuracy")
            .light_line_style(RGBColor(238, 238, 238))
            .draw()
            .map_err(err)?;
        let bar = PALETTE[0];
        chart
            .draw_series(
                bins.iter()
                    .filter(|b| b.count > 0)
                    .map(|b| Rectangle::new([(b.lower, 0.0), (b.upper, b.accuracy)], bar.mix(0.75).filled())),
            )
            .map_err(err)?;
        chart.draw_series(LineSeries::new([(0.0, 0.0), (1.0, 1.0)], PALETTE[3].stroke_width(2))).map_err(err)?;
        root.present().map_err(err)?;
    }
    Ok(svg)
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// The confusion matrix as a heatmap: rows are references, columns predictions; cell shade is
/// the row-normalized rate and the cell text the count.
pub fn confusion_heatmap(labels: &[String], counts: &[Vec<u64>]) -> String {
    let k = labels.len();
    let cell = if k <= 6 { 72 } else { (480 / k.max(1)).max(18) };
    let left = 140;
    let top = 90;
    let w = left + cell * k + 20;
    let h = top + cell * k + 40;
    let mut s = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif">"#
    );
    s.push_str(&format!(r#"<rect width="{w}" height="{h}" fill="white"/>"#));
    s.push_str(&format!(
        r#"<text x="{}" y="22" font-size="18" text-anchor="middle">Confusion matrix</text><text x="{}" y="{}" font-size="13" text-anchor="middle">predicted</text><text x="16" y="{}" font-size="13" transform="rotate(-90 16 {})" text-anchor="middle">reference</text>"#,
        w / 2,
        left + cell * k / 2,
        top - 36,
        top + cell * k / 2,
        top + cell * k / 2
    ));
    for (j, l) in labels.iter().enumerate() {
        s.push_str(&format!(
            r#"<text x="{}" y="{}" font-size="12" text-anchor="middle">{}</text>"#,
            left + j * cell + cell / 2,
            top - 8,
            escape(&truncate(l, 12))
        ));
    }
    for (i, row) in counts.iter().enumerate() {
        let total: u64 = row.iter().sum();
        s.push_str(&format!(
            r#"<text x="{}" y="{}" font-size="12" text-anchor="end">{}</text>"#,
            left - 8,
            top + i * cell + cell / 2 + 4,
            escape(&truncate(&labels[i], 16))
        ));
        for (j, &c) in row.iter().enumerate() {
            let rate = if total == 0 { 0.0 } else { c as f64 / total as f64 };
            // White to the palette's blue.
            let mix = |a: u8, b: u8| (f64::from(a) + (f64::from(b) - f64::from(a)) * rate).round() as u8;
            let (r, g, b) = (mix(255, 31), mix(255, 119), mix(255, 180));
            let text = if rate > 0.5 { "white" } else { "black" };
            s.push_str(&format!(
                r#"<rect x="{}" y="{}" width="{cell}" height="{cell}" fill="rgb({r},{g},{b})" stroke="rgb(221,221,221)"/><text x="{}" y="{}" font-size="13" text-anchor="middle" fill="{text}">{c}</text>"#,
                left + j * cell,
                top + i * cell,
                left + j * cell + cell / 2,
                top + i * cell + cell / 2 + 5
            ));
        }
    }
    s.push_str("</svg>");
    s
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        format!("{}…", s.chars().take(n - 1).collect::<String>())
    }
}
