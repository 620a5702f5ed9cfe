//! `tunesmith metrics` and `tunesmith report` end to end: scores agree with the reference
//! fixtures (sacrebleu, scikit-learn), intervals and paired tests come out, and malformed or
//! misaligned files are refused with the file and line and exit code 2.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::{json, Value};

fn tunesmith(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tunesmith")).args(args).output().unwrap()
}

fn fixture(name: &str) -> Value {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../eval/tests/fixtures/{name}.json"));
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

fn write_jsonl(dir: &Path, name: &str, rows: impl IntoIterator<Item = Value>) -> PathBuf {
    let path = dir.join(name);
    let text: String = rows.into_iter().map(|r| format!("{r}\n")).collect();
    std::fs::write(&path, text).unwrap();
    path
}

fn json_out(o: &Output) -> Value {
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).unwrap()
}

fn case<'a>(fx: &'a Value, name: &str) -> &'a Value {
    fx["cases"].as_array().unwrap().iter().find(|c| c["name"] == name).unwrap()
}

#[test]
fn generation_scores_match_sacrebleu_with_intervals_and_a_paired_test() {
    let tmp = tempfile::tempdir().unwrap();
    let fx = fixture("generation");
    let (m1, m2) = (case(&fx, "rasbt_model1"), case(&fx, "rasbt_model2"));
    let hyps = |c: &Value| c["hyps"].as_array().unwrap().iter().map(|h| json!({"prediction": h})).collect::<Vec<_>>();
    let p1 = write_jsonl(tmp.path(), "model1.jsonl", hyps(m1));
    let p2 = write_jsonl(tmp.path(), "model2.jsonl", hyps(m2));
    let refs = write_jsonl(
        tmp.path(),
        "refs.jsonl",
        m1["refs"].as_array().unwrap().iter().map(|r| json!({"reference": r[0]})),
    );
    let p = |x: &PathBuf| x.to_str().unwrap().to_string();
    let out = json_out(&tunesmith(&[
        "metrics",
        "--task",
        "generation",
        "--pred",
        &p(&p2),
        "--ref",
        &p(&refs),
        "--ci",
        "--samples",
        "200",
        "--compare",
        &p(&p1),
    ]));
    let e2 = &m2["expected"];
    assert!((out["bleu"].as_f64().unwrap() - e2["bleu"].as_f64().unwrap()).abs() < 0.01, "{out}");
    assert!((out["chrf"].as_f64().unwrap() - e2["chrf"].as_f64().unwrap()).abs() < 0.01);
    assert!((out["rougeL"].as_f64().unwrap() - e2["rougeL_stem"].as_f64().unwrap()).abs() < 1e-4);
    let ci = &out["ci"]["bleu"];
    assert!(ci["low"].as_f64().unwrap() <= out["bleu"].as_f64().unwrap());
    assert!(ci["high"].as_f64().unwrap() >= out["bleu"].as_f64().unwrap());
    assert_eq!(ci["samples"], 200);
    let test = &out["paired_test"]["bleu"];
    let delta = e2["bleu"].as_f64().unwrap() - m1["expected"]["bleu"].as_f64().unwrap();
    assert!((test["delta"].as_f64().unwrap() - delta).abs() < 0.01, "{test}");
    let pv = test["p_value"].as_f64().unwrap();
    assert!(pv > 0.0 && pv <= 1.0, "{test}");
    // Seeded: the same command gives the same intervals.
    let again = json_out(&tunesmith(&[
        "metrics",
        "--task",
        "generation",
        "--pred",
        &p(&p2),
        "--ref",
        &p(&refs),
        "--ci",
        "--samples",
        "200",
    ]));
    assert_eq!(again["ci"]["bleu"], out["ci"]["bleu"]);

    // Two reference files = two references per segment.
    let second =
        write_jsonl(tmp.path(), "refs2.jsonl", m2["hyps"].as_array().unwrap().iter().map(|h| json!({"reference": h})));
    let m1_two = case(&fx, "rasbt_model1_two_refs");
    let out = json_out(&tunesmith(&[
        "metrics",
        "--task",
        "generation",
        "--pred",
        &p(&p1),
        "--ref",
        &p(&refs),
        "--ref",
        &p(&second),
    ]));
    assert_eq!(out["references_per_example"], 2);
    assert!((out["bleu"].as_f64().unwrap() - m1_two["expected"]["bleu"].as_f64().unwrap()).abs() < 0.01);
}

#[test]
fn classification_with_probabilities_matches_scikit_learn() {
    let tmp = tempfile::tempdir().unwrap();
    let fx = fixture("classification");
    let c = case(&fx, "sst_fine_5class");
    let pred =
        write_jsonl(tmp.path(), "pred.jsonl", c["probs"].as_array().unwrap().iter().map(|p| json!({"probs": p})));
    let refs = tmp.path().join("labels.txt");
    let labels: String = c["truth"].as_array().unwrap().iter().map(|t| format!("{t}\n")).collect();
    std::fs::write(&refs, labels).unwrap();
    let out = json_out(&tunesmith(&[
        "metrics",
        "--task",
        "classification",
        "--pred",
        pred.to_str().unwrap(),
        "--ref",
        refs.to_str().unwrap(),
    ]));
    let e = &c["expected"];
    for (ours, theirs) in [
        (&out["accuracy"], &e["accuracy"]),
        (&out["f1_macro"], &e["macro"]["f1"]),
        (&out["f1_weighted"], &e["weighted"]["f1"]),
        (&out["mcc"], &e["mcc"]),
        (&out["roc_auc"], &e["roc_auc"]),
        (&out["ece"], &e["ece"]),
        (&out["brier"], &e["brier"]),
    ] {
        assert!((ours.as_f64().unwrap() - theirs.as_f64().unwrap()).abs() < 1e-6, "{ours} vs {theirs}");
    }
    assert_eq!(out["confusion"]["matrix"], e["confusion"]);
}

#[test]
fn lm_loss_is_token_weighted_and_preference_counts_wins() {
    let tmp = tempfile::tempdir().unwrap();
    let lm = write_jsonl(
        tmp.path(),
        "lm.jsonl",
        [json!({"loss": 2.0, "tokens": 10, "correct": 5}), json!({"loss": 1.0, "tokens": 30, "correct": 20})],
    );
    let out = json_out(&tunesmith(&["metrics", "--task", "lm", "--pred", lm.to_str().unwrap()]));
    assert!((out["loss"].as_f64().unwrap() - 1.25).abs() < 1e-12, "not the mean of batch means (1.5): {out}");
    assert!((out["perplexity"].as_f64().unwrap() - 1.25f64.exp()).abs() < 1e-9);
    assert!((out["token_accuracy"].as_f64().unwrap() - 0.625).abs() < 1e-12);
    let pref = write_jsonl(
        tmp.path(),
        "pref.jsonl",
        [
            json!({"chosen": 1.0, "rejected": 0.5}),
            json!({"chosen": 0.0, "rejected": 0.5}),
            json!({"chosen": 2.0, "rejected": 2.0}),
        ],
    );
    let out = json_out(&tunesmith(&["metrics", "--task", "preference", "--pred", pref.to_str().unwrap()]));
    assert!((out["reward_accuracy"].as_f64().unwrap() - 1.0 / 3.0).abs() < 1e-12, "ties are not wins: {out}");
    assert!(out["mean_margin"].as_f64().unwrap().abs() < 1e-12);
}

#[test]
fn bad_files_are_refused_with_file_line_and_exit_code_2() {
    let tmp = tempfile::tempdir().unwrap();
    let pred = tmp.path().join("pred.txt");
    std::fs::write(&pred, "a cat\nthe dog\n").unwrap();
    let short = tmp.path().join("ref.txt");
    std::fs::write(&short, "a cat\n").unwrap();
    let o = tunesmith(&[
        "metrics",
        "--task",
        "generation",
        "--pred",
        pred.to_str().unwrap(),
        "--ref",
        short.to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("ref.txt") && err.contains("has 1 items") && err.contains("has 2"), "{err}");

    let broken = tmp.path().join("pred.jsonl");
    std::fs::write(&broken, "{\"prediction\": \"ok\"}\n{\"prediction\": \"ok\"}\n{\"prediction\": \n").unwrap();
    let refs = tmp.path().join("refs3.txt");
    std::fs::write(&refs, "a\nb\nc\n").unwrap();
    let o = tunesmith(&[
        "metrics",
        "--task",
        "generation",
        "--pred",
        broken.to_str().unwrap(),
        "--ref",
        refs.to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("pred.jsonl:3:"), "{err}");

    let wrong_field = tmp.path().join("wrong.jsonl");
    std::fs::write(&wrong_field, "{\"guess\": 1}\n").unwrap();
    let one = tmp.path().join("one.txt");
    std::fs::write(&one, "1\n").unwrap();
    let o = tunesmith(&[
        "metrics",
        "--task",
        "regression",
        "--pred",
        wrong_field.to_str().unwrap(),
        "--ref",
        one.to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("wrong.jsonl:1:") && err.contains("guess") && err.contains("--field"), "{err}");

    let o = tunesmith(&["metrics", "--task", "generation", "--pred", pred.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("needs --ref"));
}

#[test]
fn report_command_renders_a_run_directory() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(
        tmp.path().join("metrics.jsonl"),
        "{\"step\":1,\"split\":\"train\",\"loss\":2.0,\"lr\":0.001,\"grad_norm\":1.5}\n\
         {\"step\":2,\"split\":\"train\",\"loss\":1.5,\"lr\":0.001,\"grad_norm\":1.2}\n\
         {\"step\":2,\"split\":\"eval\",\"loss\":1.7,\"metrics\":{\"accuracy\":0.6}}\n",
    )
    .unwrap();
    let o = tunesmith(&["report", tmp.path().to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let html = std::fs::read_to_string(tmp.path().join("report.html")).unwrap();
    assert!(html.contains("<svg") && html.contains("accuracy"));
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(tmp.path().join("report.json")).unwrap()).unwrap();
    assert_eq!(report["summary"]["final_train_loss"], 1.5);
    let o = tunesmith(&["report", tmp.path().join("nope").to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("metrics.jsonl"));
}
