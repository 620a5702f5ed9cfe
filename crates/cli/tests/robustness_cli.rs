//! `tunesmith eval --suite robustness` end to end on the real all-MiniLM-L6-v2 and the intents
//! in examples/ (with a group column added): every check runs and writes its report; the ECE
//! equals the eval crate's on the same predictions, and the subgroup numbers equal the fairness
//! metrics of the plain evaluation's predictions; bad options exit with 2.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;
use tunesmith_eval::calibration::{calibration, ECE_BINS};
use tunesmith_eval::fairness::fairness;
use tunesmith_testkit::{fetched_minilm, refused, succeeded};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn tunesmith(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tunesmith")).args(args).current_dir(repo()).output().unwrap()
}

fn lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn the_robustness_suite_reports_every_check_consistently_with_the_evaluation() {
    let Some(model) = fetched_minilm() else { return };
    let tmp = tempfile::tempdir().unwrap();
    // The intents' validation rows with a group column (three groups).
    let rows = lines(&repo().join("examples/intents/validation.jsonl"));
    let data = tmp.path().join("grouped.jsonl");
    let text: String = rows
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let mut r = r.clone();
            r["region"] = Value::from(["north", "south", "west"][i % 3]);
            r.to_string() + "\n"
        })
        .collect();
    std::fs::write(&data, text).unwrap();
    let ood = tmp.path().join("ood.jsonl");
    let ood_text: String =
        ["the weather is cold in the mountains today", "a recipe for bread with rye flour", "the train leaves at noon"]
            .iter()
            .map(|t| serde_json::json!({ "text": t }).to_string() + "\n")
            .collect();
    std::fs::write(&ood, ood_text).unwrap();
    let (m, d) = (model.to_str().unwrap(), data.to_str().unwrap());
    let out = tmp.path().join("suite");
    let positive = rows[0]["label"].as_str().unwrap().to_string();
    let o = tunesmith(&[
        "eval",
        "--model",
        m,
        "--data",
        d,
        "--max-length",
        "48",
        "--suite",
        "robustness",
        "--ood",
        ood.to_str().unwrap(),
        "--group-column",
        "region",
        "--positive",
        &positive,
        "--perturb",
        "typo=0.1,synonym=0.5,truncate=0.5",
        "--out",
        out.to_str().unwrap(),
    ]);
    let stdout = succeeded(&o);
    assert!(stdout.contains("OOD AUROC") && stdout.contains("subgroups (3)"), "{stdout}");
    let r: Value = serde_json::from_str(&std::fs::read_to_string(out.join("robustness.json")).unwrap()).unwrap();
    assert_eq!(r["rows"], rows.len());
    let kinds: Vec<&str> = r["perturbations"].as_array().unwrap().iter().map(|p| p["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["typo", "synonym", "truncate"]);
    for p in r["perturbations"].as_array().unwrap() {
        assert!(p["changed_rows"].as_u64().unwrap() > 0, "{p}");
        let drop = r["accuracy"].as_f64().unwrap() - p["accuracy"].as_f64().unwrap();
        assert!((drop - p["accuracy_drop"].as_f64().unwrap()).abs() < 1e-12);
    }
    assert_eq!(r["ood"]["out_of_distribution"], 3);
    let html = std::fs::read_to_string(out.join("robustness.html")).unwrap();
    assert!(html.contains("Reliability") && html.contains("Subgroups"), "the report lacks a section");

    // The plain evaluation of the same model and data: its predictions give the same ECE and
    // the same subgroup metrics.
    let plain = tmp.path().join("plain");
    succeeded(&tunesmith(&["eval", "--model", m, "--data", d, "--max-length", "48", "--out", plain.to_str().unwrap()]));
    let preds = lines(&plain.join("eval/predictions.jsonl"));
    let labels: Vec<String> = r["labels"].as_array().unwrap().iter().map(|l| l.as_str().unwrap().to_string()).collect();
    let id = |v: &Value| labels.iter().position(|l| l == v.as_str().unwrap()).unwrap();
    let truth: Vec<usize> = preds.iter().map(|p| id(&p["label"])).collect();
    let pred: Vec<usize> = preds.iter().map(|p| id(&p["prediction"])).collect();
    let probs: Vec<Vec<f64>> =
        preds.iter().map(|p| p["probs"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect()).collect();
    let ece = calibration(&truth, &probs, ECE_BINS).unwrap().ece;
    let suite_ece = r["calibration"]["evaluation_ece_before"].as_f64().unwrap();
    assert!((ece - suite_ece).abs() < 1e-9, "suite ECE {suite_ece} vs eval crate {ece}");
    // Predictions come in file order; the group of row i is its region.
    let by_text = |t: &str| rows.iter().position(|r| r["text"] == t).unwrap();
    let groups: Vec<String> = preds
        .iter()
        .map(|p| ["north", "south", "west"][by_text(p["text"].as_str().unwrap()) % 3].to_string())
        .collect();
    let f = fairness(&truth, &pred, &groups, labels.iter().position(|l| *l == positive).unwrap()).unwrap();
    let dp = r["fairness"]["demographic_parity_difference"].as_f64().unwrap();
    let eo = r["fairness"]["equalized_odds_difference"].as_f64().unwrap();
    assert!((f.demographic_parity_difference - dp).abs() < 1e-12 && (f.equalized_odds_difference - eo).abs() < 1e-12);

    refused(
        &tunesmith(&["eval", "--model", m, "--data", d, "--suite", "robustness", "--perturb", "typo=2"]),
        &["--perturb typo=2"],
    );
    refused(&tunesmith(&["eval", "--model", m, "--data", d, "--ood", d]), &["--suite robustness"]);
    refused(
        &tunesmith(&["eval", "--model", m, "--data", d, "--suite", "robustness", "--group-column", "nope"]),
        &["nope"],
    );
}
