//! `tunesmith data clean` end to end: exact and near duplicates, a language filter and label
//! issues from a predictions file are removed, each listed with its reason and counted; the kept
//! rows are written in the input's format; bad options exit with 2.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::{json, Value};
use tunesmith_testkit::{refused, succeeded};

fn tunesmith(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tunesmith")).args(args).output().unwrap()
}

fn write_jsonl(path: &Path, rows: &[Value]) -> PathBuf {
    std::fs::write(path, rows.iter().map(|r| r.to_string() + "\n").collect::<String>()).unwrap();
    path.to_path_buf()
}

#[test]
fn every_removed_row_is_counted_with_its_reason() {
    let tmp = tempfile::tempdir().unwrap();
    let base = [
        ("the delivery came two days early and the box was in perfect shape", "positive"),
        ("my order arrived broken and nobody answered the support line", "negative"),
        ("great value for the price and the battery lasts all week", "positive"),
        ("the screen cracked after a week and the refund took a month", "negative"),
        ("friendly staff, fast checkout and a clean store every time", "positive"),
        ("the app crashes whenever I open the settings page on my phone", "negative"),
    ];
    let mut rows: Vec<Value> = base.iter().map(|(t, l)| json!({"text": t, "label": l})).collect();
    rows.push(json!({"text": base[0].0, "label": base[0].1})); // line 7: exact copy of line 1
    rows.push(
        json!({"text": "the delivery came two days early and the box was in perfect shape too", "label": "positive"}),
    ); // line 8
    rows.push(
        json!({"text": "la livraison est arrivée deux jours en avance et le colis était parfait", "label": "positive"}),
    ); // line 9
    rows.push(json!({"text": "terrible quality, it stopped working on the first day I used it", "label": "positive"})); // line 10: wrong label
    let data = write_jsonl(&tmp.path().join("reviews.jsonl"), &rows);
    // Out-of-sample probabilities [negative, positive]: confident and right, except line 10's.
    let preds: Vec<Value> = rows
        .iter()
        .map(|r| {
            let neg = r["text"].as_str().unwrap().contains("terrible") || r["label"] == "negative";
            json!({"text": r["text"], "probs": if neg { [0.93, 0.07] } else { [0.08, 0.92] }})
        })
        .collect();
    let pred_file = write_jsonl(&tmp.path().join("predictions.jsonl"), &preds);
    let out = tmp.path().join("out");
    let o = tunesmith(&[
        "data",
        "clean",
        data.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--language",
        "en",
        "--pred-probs",
        pred_file.to_str().unwrap(),
        "--labels",
        "negative,positive",
    ]);
    let stdout = succeeded(&o);
    assert!(stdout.contains("4 removed"), "{stdout}");
    let removed: Vec<Value> = std::fs::read_to_string(out.join("removed.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let got: Vec<(String, String)> = removed
        .iter()
        .map(|r| {
            (
                r["loc"].as_str().unwrap().rsplit(':').next().unwrap().to_string(),
                r["reason"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let want: Vec<(String, String)> =
        [("7", "duplicate"), ("8", "near_duplicate"), ("9", "language"), ("10", "label_issue")]
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
    assert_eq!(got, want, "{removed:?}");
    let manifest: Value = serde_json::from_str(&std::fs::read_to_string(out.join("clean.json")).unwrap()).unwrap();
    assert_eq!(manifest["kept"], 6);
    assert_eq!(manifest["removed"]["near_duplicate"], 1);
    assert_eq!(std::fs::read_to_string(out.join("clean.jsonl")).unwrap().lines().count(), 6);

    let o = out.to_str().unwrap();
    let d = data.to_str().unwrap();
    refused(&tunesmith(&["data", "clean", d, "-o", o, "--language", "klingon"]), &["--language klingon"]);
    refused(&tunesmith(&["data", "clean", d, "-o", o, "--near-duplicates", "1.5"]), &["--near-duplicates"]);
    refused(&tunesmith(&["data", "clean", d, "-o", o, "--pred-probs", pred_file.to_str().unwrap()]), &["--labels"]);
    refused(
        &tunesmith(&["data", "clean", d, "-o", o, "--pred-probs", tmp.path().to_str().unwrap()]),
        &["--pred-probs"],
    );
}

#[test]
fn augmentation_adds_counted_copies_with_their_labels() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("aug");
    let stdout = succeeded(&tunesmith(&[
        "data",
        "augment",
        concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/intents/validation.jsonl"),
        "-o",
        out.to_str().unwrap(),
        "--per-row",
        "2",
        "--seed",
        "3",
    ]));
    let manifest: Value = serde_json::from_str(&std::fs::read_to_string(out.join("augment.json")).unwrap()).unwrap();
    let added: u64 = manifest["added"].as_object().unwrap().values().map(|v| v.as_u64().unwrap()).sum();
    let rows = manifest["rows"].as_u64().unwrap();
    assert_eq!(added + manifest["unchanged_attempts"].as_u64().unwrap(), 2 * rows, "every attempt is counted");
    assert!(added > rows, "{stdout}");
    let lines: Vec<Value> = std::fs::read_to_string(out.join("augmented.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len() as u64, rows + added);
    assert!(lines.iter().all(|l| l["label"].is_string()));
    // Seeded: the same run gives the same file.
    let again = tmp.path().join("again");
    succeeded(&tunesmith(&[
        "data",
        "augment",
        concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/intents/validation.jsonl"),
        "-o",
        again.to_str().unwrap(),
        "--per-row",
        "2",
        "--seed",
        "3",
    ]));
    assert_eq!(
        std::fs::read(out.join("augmented.jsonl")).unwrap(),
        std::fs::read(again.join("augmented.jsonl")).unwrap()
    );
    refused(&tunesmith(&["data", "augment", "x.jsonl", "-o", out.to_str().unwrap(), "--ops", "zz"]), &["--ops zz"]);
}
