//! The run report in a real browser: headless Chromium renders a sample report to PNG
//! (target/report-sample/report.png, the screenshot the README shows); the test checks that
//! the charts drew and that the page made no network request.
//!
//! Requests are caught with a trap proxy: Chromium is pointed at a local TCP listener as its
//! proxy for every scheme, so any fetch the page attempted would connect to it. A control page
//! with a remote image proves the trap catches requests.

use std::io::Read;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use tunesmith_eval::report::{charts::PALETTE, render_run};

fn sample_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/report-sample")
}

/// Writes a run directory: a 300-step log with evaluations every 50 steps, a manifest, and the
/// last evaluation's predictions (SST-2 dev labels with the classifier probabilities of the
/// classification fixture, and the sentences when ../shared is present).
fn write_sample_run(dir: &Path) {
    std::fs::create_dir_all(dir.join("eval")).unwrap();
    let mut log = String::new();
    let mut seed = 7u64;
    let mut noise = || {
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((seed >> 33) as f64 / (1u64 << 31) as f64) - 0.5
    };
    for step in 1..=300u64 {
        let s = step as f64;
        let lr = if step <= 30 { 5e-5 * s / 30.0 } else { 5e-5 * (300.0 - s) / 270.0 };
        let loss = 0.69 * (-s / 90.0).exp() + 0.22 + 0.05 * noise();
        let gn = 2.0 * (-s / 150.0).exp() + 0.4 + 0.2 * noise();
        log.push_str(&format!(
            "{}\n",
            json!({"step": step, "split": "train", "epoch": s / 150.0, "loss": loss, "lr": lr, "grad_norm": gn})
        ));
        if step % 50 == 0 {
            let acc = 0.91 - 0.3 * (-s / 80.0).exp();
            log.push_str(&format!(
                "{}\n",
                json!({"step": step, "split": "eval", "loss": loss + 0.04,
                       "metrics": {"accuracy": acc, "f1_macro": acc - 0.01}})
            ));
        }
    }
    std::fs::write(dir.join("metrics.jsonl"), log).unwrap();
    let manifest = json!({
        "config": {"model": {"path": "sentence-transformers/all-MiniLM-L6-v2"}, "task": "classification",
                   "train": {"lr": 5e-5, "epochs": 2, "batch_size": 32, "seed": 42}, "method": {"kind": "full"}},
        "versions": {"tunesmith": env!("CARGO_PKG_VERSION")},
        "seed": 42, "threads": 2,
        "data": [{"path": "../shared/data/sst2/train.tsv", "sha256": "(sample)"}],
        "labels": ["0", "1"],
    });
    std::fs::write(dir.join("manifest.json"), serde_json::to_string_pretty(&manifest).unwrap()).unwrap();
    let fx: Value = serde_json::from_str(
        &std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/classification.json"))
            .unwrap(),
    )
    .unwrap();
    let case = &fx["cases"][0];
    let texts: Vec<String> =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/sst2/dev.tsv"))
            .map(|t| t.lines().skip(1).map(|l| l.split_once('\t').map_or("", |x| x.1).to_string()).collect())
            .unwrap_or_default();
    let mut preds = String::new();
    for (i, ((t, p), probs)) in case["truth"]
        .as_array()
        .unwrap()
        .iter()
        .zip(case["pred"].as_array().unwrap())
        .zip(case["probs"].as_array().unwrap())
        .enumerate()
    {
        let text = texts.get(i).cloned().unwrap_or_else(|| format!("example {i}"));
        preds.push_str(&format!(
            "{}\n",
            json!({"text": text, "label": t.to_string(), "prediction": p.to_string(), "probs": probs})
        ));
    }
    std::fs::write(dir.join("eval/predictions.jsonl"), preds).unwrap();
}

#[test]
fn report_html_is_self_contained() {
    let dir = sample_dir().join("run");
    write_sample_run(&dir);
    let written = render_run(&dir).unwrap();
    let html = std::fs::read_to_string(&written.html).unwrap();
    for forbidden in ["<script", "<link", "src=", "url(", "@import"] {
        assert!(!html.contains(forbidden), "the report must not contain {forbidden}");
    }
    // The only URL is the SVG namespace (an identifier, never fetched).
    let urls = html.matches("http://").count() + html.matches("https://").count();
    let namespaces = html.matches("http://www.w3.org/2000/svg").count();
    assert_eq!(urls, namespaces, "the report refers to something other than the SVG namespace");
    assert!(html.matches("<svg").count() >= 7, "loss, lr, grad norm, 2 metrics, confusion and reliability charts");
    let report: Value = serde_json::from_str(&std::fs::read_to_string(&written.json).unwrap()).unwrap();
    assert_eq!(report["summary"]["steps"], 300);
    assert_eq!(report["summary"]["best"]["accuracy"]["step"], 300);
    assert_eq!(report["worst_examples"].as_array().unwrap().len(), 20);
    let cm: Vec<Vec<u64>> = serde_json::from_value(report["classification"]["confusion"].clone()).unwrap();
    assert_eq!(cm.iter().flatten().sum::<u64>(), 872, "every SST-2 dev example is in the confusion matrix");
}

#[test]
fn a_running_run_with_a_partial_last_line_still_renders() {
    let dir = sample_dir().join("running");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("metrics.jsonl"),
        "{\"step\":1,\"split\":\"train\",\"loss\":2.5,\"lr\":0.001}\n{\"step\":2,\"split\":\"train\",\"lo",
    )
    .unwrap();
    let written = render_run(&dir).unwrap();
    let report: Value = serde_json::from_str(&std::fs::read_to_string(written.json).unwrap()).unwrap();
    assert_eq!(report["summary"]["skipped_partial_lines"], 1);
    assert_eq!(report["summary"]["steps"], 1);
    // A broken line in the middle is an error naming the line.
    std::fs::write(
        dir.join("metrics.jsonl"),
        "{\"step\":1,\"split\":\"train\"}\nnot json\n{\"step\":3,\"split\":\"train\"}\n",
    )
    .unwrap();
    let err = render_run(&dir).unwrap_err().to_string();
    assert!(err.contains("metrics.jsonl:2"), "{err}");
}

fn chromium() -> Option<PathBuf> {
    ["chromium", "chromium-browser", "google-chrome", "chrome"].iter().find_map(|name| {
        std::env::var_os("PATH")?.to_str()?.split(':').map(|d| Path::new(d).join(name)).find(|p| p.is_file())
    })
}

/// A local listener that records the first line of every request made through it.
fn trap_proxy() -> (u16, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let hits = Arc::new(Mutex::new(Vec::new()));
    let seen = hits.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut s = stream;
            let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
            let mut buf = [0u8; 1024];
            let n = s.read(&mut buf).unwrap_or(0);
            let first = String::from_utf8_lossy(&buf[..n]).lines().next().unwrap_or("(no request line)").to_string();
            seen.lock().unwrap().push(first);
        }
    });
    (port, hits)
}

fn screenshot(browser: &Path, page: &Path, png: &Path, proxy_port: u16, size: (u32, u32)) {
    let profile = tempfile::tempdir().unwrap();
    let out = Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--hide-scrollbars",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-default-apps",
            "--disable-sync",
            "--disable-domain-reliability",
            "--disable-client-side-phishing-detection",
            "--disable-features=OptimizationHints,MediaRouter,Translate,AutofillServerCommunication,NetworkTimeServiceQuerying,OptimizationGuideModelDownloading,InterestFeedContentSuggestions,CertificateTransparencyComponentUpdater",
            "--metrics-recording-only",
            "--no-pings",
            "--disable-breakpad",
            "--disable-field-trial-config",
            "--disable-search-engine-choice-screen",
            "--no-default-browser-check",
            &format!("--user-data-dir={}", profile.path().display()),
            &format!("--proxy-server=http://127.0.0.1:{proxy_port}"),
            "--proxy-bypass-list=<-loopback>",
            &format!("--window-size={},{}", size.0, size.1),
            &format!("--screenshot={}", png.display()),
            &format!("file://{}", page.canonicalize().unwrap().display()),
        ])
        .output()
        .expect("chromium starts");
    assert!(png.exists(), "chromium wrote no screenshot: {}", String::from_utf8_lossy(&out.stderr));
}

/// Hosts under googleapis.com that Chromium's own background services call (the component
/// updater reached update.googleapis.com in one CI run despite `--disable-component-update`).
/// Listed one by one, so that a page loading e.g. fonts.googleapis.com still fails the test.
const BROWSER_API_HOSTS: [&str; 5] = [
    "update.googleapis.com",
    "safebrowsing.googleapis.com",
    "optimizationguide-pa.googleapis.com",
    "content-autofill.googleapis.com",
    "clientservices.googleapis.com",
];

/// A request line to one of Chromium's own Google services.
fn is_browser_service(request_line: &str) -> bool {
    let target = request_line.split_whitespace().nth(1).unwrap_or("");
    let host = target.trim_start_matches("http://").trim_start_matches("https://");
    let host = host.split(['/', ':']).next().unwrap_or("");
    host == "google.com" || host.ends_with(".google.com") || BROWSER_API_HOSTS.contains(&host)
}

/// Pixels within `tol` of `c` per channel.
fn count_color(png: &Path, c: (u8, u8, u8), tol: i32) -> usize {
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(png).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    let channels = info.color_type.samples();
    buf[..info.buffer_size()]
        .chunks(channels)
        .filter(|p| {
            (i32::from(p[0]) - i32::from(c.0)).abs() <= tol
                && (i32::from(p[1]) - i32::from(c.1)).abs() <= tol
                && (i32::from(p[2]) - i32::from(c.2)).abs() <= tol
        })
        .count()
}

#[test]
fn only_chromiums_own_services_are_excused() {
    for line in [
        "CONNECT accounts.google.com:443 HTTP/1.1",
        "CONNECT update.googleapis.com:443 HTTP/1.1",
        "POST http://update.googleapis.com/service/update2/json?cup2key=x HTTP/1.1",
    ] {
        assert!(is_browser_service(line), "{line}");
    }
    for line in [
        "GET http://tunesmith.invalid/x.png HTTP/1.1",
        "CONNECT fonts.googleapis.com:443 HTTP/1.1",
        "GET http://cdn.jsdelivr.net/npm/chart.js HTTP/1.1",
        "GET http://evilgoogle.com/ HTTP/1.1",
    ] {
        assert!(!is_browser_service(line), "{line}");
    }
}

#[test]
fn chromium_renders_the_report_offline() {
    let Some(browser) = chromium() else {
        eprintln!("SKIPPED: no chromium on PATH (apt-get install chromium; .ci/run installs it)");
        return;
    };
    let dir = sample_dir().join("browser");
    write_sample_run(&dir);
    let written = render_run(&dir).unwrap();

    // Control: the trap sees a page's remote image request.
    let (port, hits) = trap_proxy();
    let control = dir.join("control.html");
    std::fs::write(&control, "<html><body><img src=\"http://tunesmith.invalid/x.png\"></body></html>").unwrap();
    screenshot(&browser, &control, &dir.join("control.png"), port, (400, 300));
    std::thread::sleep(Duration::from_millis(300));
    let control_hits = hits.lock().unwrap().clone();
    assert!(
        control_hits.iter().any(|l| l.contains("tunesmith.invalid")),
        "the trap proxy did not see the control page's request: {control_hits:?}"
    );

    let (port, hits) = trap_proxy();
    let png = sample_dir().join("report.png");
    let _ = std::fs::remove_file(&png);
    screenshot(&browser, &written.html, &png, port, (1400, 3200));
    std::thread::sleep(Duration::from_millis(300));
    // Chromium itself still calls its own services (accounts.google.com, www.google.com, at
    // times its updater) with an empty page too, whatever the flags; everything else would have
    // come from the page.
    let report_hits: Vec<String> = hits.lock().unwrap().iter().filter(|l| !is_browser_service(l)).cloned().collect();
    assert!(report_hits.is_empty(), "the report made network requests: {report_hits:?}");

    let RGBColor(r, g, b) = PALETTE[0];
    let blue = count_color(&png, (r, g, b), 10);
    let RGBColor(r, g, b) = PALETTE[1];
    let orange = count_color(&png, (r, g, b), 10);
    assert!(blue > 5_000, "train curve, lr, grad norm, metric curves and bars drew: {blue} blue pixels");
    assert!(orange > 100, "the validation curve drew: {orange} orange pixels");
    eprintln!("screenshot: {} ({blue} blue, {orange} orange pixels)", png.display());
}

use plotters::style::RGBColor;
