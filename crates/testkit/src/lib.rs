//! Test support shared by tunesmith's crates.

pub mod fake_hub;

use std::path::PathBuf;

/// The all-MiniLM-L6-v2 folder the tests load: `$TUNESMITH_MINILM`, else the cache that
/// scripts/fetch-test-models.sh fills (`$TUNESMITH_CACHE`, default ~/.cache/tunesmith).
pub fn minilm_dir() -> PathBuf {
    if let Some(p) = std::env::var_os("TUNESMITH_MINILM") {
        return PathBuf::from(p);
    }
    let cache = std::env::var_os("TUNESMITH_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/tunesmith"));
    cache.join("models/all-MiniLM-L6-v2")
}

/// The all-MiniLM-L6-v2 folder when it has been fetched (weights and tokenizer); otherwise
/// prints why the calling test is skipped and returns None.
pub fn fetched_minilm() -> Option<PathBuf> {
    let dir = minilm_dir();
    if dir.join("model.safetensors").exists() && dir.join("tokenizer.json").exists() {
        Some(dir)
    } else {
        eprintln!("SKIPPED: no MiniLM at {} (run scripts/fetch-test-models.sh)", dir.display());
        None
    }
}

/// Every record of a run's `metrics.jsonl` (training steps, evaluations), in order.
pub fn run_log(run_dir: &std::path::Path) -> Vec<serde_json::Value> {
    let path = run_dir.join("metrics.jsonl");
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{}: {e}: {l}", path.display())))
        .collect()
}

/// A real GGUF model the tests use, when fetched: `smollm2` (SmolLM2-135M-Instruct Q4_1) or
/// `gemma3` (Gemma 3 270M Q4_K_M), from `$TUNESMITH_SMOLLM2_GGUF` / `$TUNESMITH_GEMMA3_GGUF` or
/// the cache that `scripts/fetch-test-models.sh NAME` fills; otherwise prints why the calling
/// test is skipped and returns None.
pub fn fetched_gguf(name: &str) -> Option<PathBuf> {
    let (var, file) = match name {
        "smollm2" => ("TUNESMITH_SMOLLM2_GGUF", "SmolLM2-135M-Instruct.Q4_1.gguf"),
        "gemma3" => ("TUNESMITH_GEMMA3_GGUF", "gemma-3-270m-q4_k_m.gguf"),
        other => panic!("no test model named {other}"),
    };
    let path = std::env::var_os(var).map(PathBuf::from).unwrap_or_else(|| {
        let cache = std::env::var_os("TUNESMITH_CACHE")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/tunesmith"));
        cache.join("models").join(file)
    });
    if path.is_file() {
        Some(path)
    } else {
        eprintln!("SKIPPED: no {file} at {} (run scripts/fetch-test-models.sh {name})", path.display());
        None
    }
}

/// The largest absolute difference of `a` from `b`, relative to the largest magnitude in `b`
/// (`max |a − b| / max |b|`): how far logits moved, on the scale of the logits.
pub fn max_rel_diff(a: &[f64], b: &[f64]) -> f64 {
    let scale = b.iter().fold(0f64, |m, x| m.max(x.abs())).max(1e-9);
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0f64, f64::max) / scale
}

/// The stdout of a command that must have succeeded (its stderr in the panic otherwise).
#[track_caller]
pub fn succeeded(o: &std::process::Output) -> String {
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Asserts a command was refused as bad input: exit code 2 and an `error:` line holding every
/// one of `needles`.
#[track_caller]
pub fn refused(o: &std::process::Output, needles: &[&str]) {
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "expected exit code 2: {err}");
    let line = err.lines().find(|l| l.starts_with("error:")).unwrap_or_else(|| panic!("no error line: {err}"));
    for n in needles {
        assert!(line.contains(n), "error line lacks {n:?}: {line}");
    }
}
