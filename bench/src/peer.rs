//! Finding and running the Python peers. The interpreter is `$TUNESMITH_PYTHON`, else
//! `bench/.venv/bin/python`, else `python3`; it needs torch, transformers, peft and safetensors
//! (see bench/README.md).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

/// The repository root (the bench crate's parent).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("bench has a parent").to_path_buf()
}

/// The Python interpreter for peers.
pub fn python() -> PathBuf {
    if let Ok(p) = std::env::var("TUNESMITH_PYTHON") {
        return PathBuf::from(p);
    }
    let venv = repo_root().join("bench/.venv/bin/python");
    if venv.exists() {
        return venv;
    }
    PathBuf::from("python3")
}

/// Runs a Python script with arguments and returns its stdout; errors carry its stderr.
pub fn run_python(script: &Path, args: &[String]) -> Result<String> {
    let py = python();
    let out = Command::new(&py)
        .arg(script)
        .args(args)
        .output()
        .with_context(|| format!("starting {} {}", py.display(), script.display()))?;
    if !out.status.success() {
        bail!(
            "{} {} failed ({}):\n{}",
            py.display(),
            script.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8(out.stdout)?)
}

/// The last line of a peer's stdout parsed as JSON.
pub fn last_json(stdout: &str) -> Result<serde_json::Value> {
    let line = stdout.lines().rev().find(|l| l.trim_start().starts_with('{')).context("peer printed no JSON line")?;
    Ok(serde_json::from_str(line)?)
}
