//! Per-op wall-clock profile: with `TUNESMITH_PROFILE=1`, every op's forward and every backward
//! node is timed and [`report`] prints where a step's time went. Off by default (one relaxed
//! atomic load per op).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Mutex;
use std::time::Instant;

static STATE: AtomicU8 = AtomicU8::new(0); // 0 unknown, 1 off, 2 on
static TOTALS: Mutex<BTreeMap<String, (u64, f64)>> = Mutex::new(BTreeMap::new());

/// Whether profiling is on (`TUNESMITH_PROFILE` set to anything but 0/empty).
pub fn enabled() -> bool {
    match STATE.load(Ordering::Relaxed) {
        1 => false,
        2 => true,
        _ => {
            let on = std::env::var("TUNESMITH_PROFILE").is_ok_and(|v| !v.is_empty() && v != "0");
            STATE.store(if on { 2 } else { 1 }, Ordering::Relaxed);
            on
        }
    }
}

/// Turns profiling on or off programmatically.
pub fn set_enabled(on: bool) {
    STATE.store(if on { 2 } else { 1 }, Ordering::Relaxed);
}

/// Times a region until dropped; inert when profiling is off.
pub struct Timer {
    key: Option<(&'static str, &'static str, Instant)>,
}

/// Starts timing `phase` ("fwd"/"bwd") of `op`.
pub fn timer(phase: &'static str, op: &'static str) -> Timer {
    Timer { key: enabled().then(|| (phase, op, Instant::now())) }
}

impl Drop for Timer {
    fn drop(&mut self) {
        if let Some((phase, op, t0)) = self.key {
            let dt = t0.elapsed().as_secs_f64();
            if let Ok(mut m) = TOTALS.lock() {
                let e = m.entry(format!("{op} {phase}")).or_insert((0, 0.0));
                e.0 += 1;
                e.1 += dt;
            }
        }
    }
}

/// Clears the totals.
pub fn reset() {
    if let Ok(mut m) = TOTALS.lock() {
        m.clear();
    }
}

/// A table of op, calls, total ms and share, largest first.
pub fn report() -> String {
    let Ok(m) = TOTALS.lock() else { return String::new() };
    let total: f64 = m.values().map(|v| v.1).sum();
    let mut rows: Vec<(&String, &(u64, f64))> = m.iter().collect();
    rows.sort_by(|a, b| b.1 .1.total_cmp(&a.1 .1));
    let mut out = format!("{:<28} {:>8} {:>10} {:>6}\n", "op", "calls", "ms", "share");
    for (k, (n, s)) in rows {
        out.push_str(&format!("{k:<28} {n:>8} {:>10.1} {:>5.1}%\n", s * 1e3, 100.0 * s / total.max(1e-12)));
    }
    out.push_str(&format!("{:<28} {:>8} {:>10.1}\n", "total", "", total * 1e3));
    out
}
