//! `tunesmith data select` end to end on the real all-MiniLM-L6-v2: uncertainty and k-center
//! selection from a pool, and a small simulated labeling loop whose curves and chart are
//! written; bad options exit with 2.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;
use tunesmith_testkit::{fetched_minilm, refused, succeeded};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn tunesmith(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tunesmith")).args(args).current_dir(repo()).output().unwrap()
}

const LABELS: &str = "account,billing,cancellation,returns,shipping,technical_support";

#[test]
fn selection_picks_the_most_uncertain_rows_and_k_center_spreads_out() {
    let Some(model) = fetched_minilm() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let m = model.to_str().unwrap();
    for strategy in ["entropy", "margin", "kcenter"] {
        let out = tmp.path().join(strategy);
        let o = tunesmith(&[
            "data",
            "select",
            "--model",
            m,
            "--labels",
            LABELS,
            "--pool",
            "examples/intents/validation.jsonl",
            "--strategy",
            strategy,
            "--k",
            "10",
            "-o",
            out.to_str().unwrap(),
        ]);
        succeeded(&o);
        let picked: Vec<Value> = std::fs::read_to_string(out.join("selected.jsonl"))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(picked.len(), 10, "{strategy}");
        // k-center's first pick has no distance (nothing is labeled yet): its score is null.
        let skip = usize::from(strategy == "kcenter");
        assert!(skip == 0 || picked[0]["score"].is_null());
        let scores: Vec<f64> = picked[skip..].iter().map(|p| p["score"].as_f64().unwrap()).collect();
        if strategy != "kcenter" {
            assert!(scores.windows(2).all(|w| w[0] >= w[1]), "{strategy}: most uncertain first: {scores:?}");
        } else {
            // Each pick is at least as close to the chosen set as the one before it was.
            assert!(scores.windows(2).all(|w| w[0] >= w[1] - 1e-9), "{scores:?}");
        }
        let mut sources: Vec<&str> = picked.iter().map(|p| p["source"].as_str().unwrap()).collect();
        sources.dedup();
        assert_eq!(sources.len(), 10, "no row picked twice");
    }
    let o = tmp.path().to_str().unwrap();
    refused(
        &tunesmith(&[
            "data",
            "select",
            "--model",
            m,
            "--labels",
            LABELS,
            "--pool",
            "examples/intents/validation.jsonl",
            "--strategy",
            "bald",
            "-o",
            o,
        ]),
        &["bald"],
    );
    refused(
        &tunesmith(&["data", "select", "--model", m, "--pool", "examples/intents/validation.jsonl", "-o", o]),
        &["--labels"],
    );
}

#[test]
fn a_simulated_labeling_loop_writes_one_curve_per_strategy() {
    let Some(model) = fetched_minilm() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("run.toml");
    std::fs::write(
        &cfg,
        format!(
            "[model]\npath = \"{}\"\n[task]\nkind = \"classification\"\n[data]\ntrain = \"examples/intents/validation.jsonl\"\nvalidation = \"examples/intents/validation.jsonl\"\nmax_length = 32\n[method]\nkind = \"lora\"\nlora_r = 4\n[train]\nmax_steps = 3\nbatch_size = 16\nlr = 1e-3\nthreads = 2\n[eval]\nat_start = false\nbatch_size = 64\nmetric = \"accuracy\"\n[output]\ndir = \"unused\"\n",
            model.display()
        ),
    )
    .unwrap();
    let out = tmp.path().join("sim");
    let stdout = succeeded(&tunesmith(&[
        "data",
        "select",
        "--simulate",
        cfg.to_str().unwrap(),
        "--strategies",
        "random,least_confidence",
        "--seeds",
        "1",
        "--initial",
        "20",
        "--step",
        "10",
        "--budget",
        "40",
        "-o",
        out.to_str().unwrap(),
    ]));
    assert!(stdout.contains("least_confidence") && stdout.contains("40:"), "{stdout}");
    let curves: Value = serde_json::from_str(&std::fs::read_to_string(out.join("curves.json")).unwrap()).unwrap();
    let curves = curves.as_array().unwrap();
    assert_eq!(curves.len(), 2);
    for c in curves {
        let labels: Vec<u64> = c["points"].as_array().unwrap().iter().map(|p| p["labels"].as_u64().unwrap()).collect();
        assert_eq!(labels, vec![20, 30, 40], "{c}");
    }
    // Both strategies start from the same random rows.
    let first = |s: &str| std::fs::read_to_string(out.join(s).join("seed-0/labels-20/labeled.jsonl")).unwrap();
    assert_eq!(first("random"), first("least_confidence"));
    assert_ne!(
        std::fs::read_to_string(out.join("random/seed-0/labels-40/labeled.jsonl")).unwrap(),
        std::fs::read_to_string(out.join("least_confidence/seed-0/labels-40/labeled.jsonl")).unwrap()
    );
    assert!(std::fs::read_to_string(out.join("active.html")).unwrap().contains("<svg"));
}
