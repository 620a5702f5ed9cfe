//! Token classification end to end: all-MiniLM-L6-v2 tags the entities of examples/slots
//! (customer-support messages in IOB2) after a short full fine-tune; the entity F1 (scored as
//! seqeval scores it) rises from chance to most entities found on validation messages whose
//! templates and slot values are partly held out from training.

use std::path::Path;
use std::process::Command;

use tunesmith_testkit::{fetched_minilm, run_log};

#[test]
fn minilm_learns_to_tag_entities() {
    let Some(model) = fetched_minilm() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let o = Command::new(env!("CARGO_BIN_EXE_tunesmith"))
        .current_dir(&repo)
        .args(["train", "examples/slots/run.toml", "--set"])
        .arg(format!("model.path={}", model.display()))
        .args(["--set", "train.threads=2", "--set", "eval.at_start=true", "--set"])
        .arg(format!("output.dir={}", tmp.path().join("run").display()))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let evals: Vec<serde_json::Value> = run_log(&tmp.path().join("run"))
        .into_iter()
        .filter(|v| v["split"] == "eval")
        .map(|v| v["metrics"].clone())
        .collect();
    let (before, after) = (&evals[0], evals.last().unwrap());
    eprintln!("before {before}\nafter  {after}");
    assert!(before["f1"].as_f64().unwrap() < 0.2, "{before}");
    assert!(after["f1"].as_f64().unwrap() > 0.8, "{after}");
    assert!(after["accuracy"].as_f64().unwrap() > 0.9, "{after}");
    // The trained model and head are written.
    assert!(tmp.path().join("run/final/model/model.safetensors").exists());
    assert!(tmp.path().join("run/final/head.safetensors").exists());
}
