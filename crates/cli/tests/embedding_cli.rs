//! Training sentence embeddings: all-MiniLM-L6-v2 fine-tuned on SNLI triplets from
//! ../shared (premise, an entailed hypothesis as the positive, a contradicted one as the hard
//! negative) with in-batch negatives. Validation ranks every validation positive for each
//! premise; the trained model is saved in HF format and `tunesmith embed` loads it.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use tunesmith_testkit::{fetched_minilm, minilm_dir, run_log};

fn snli() -> Option<PathBuf> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/snli-devtest");
    p.join("s1.dev").is_file().then_some(p)
}

fn tunesmith(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tunesmith"))
        .args(args)
        .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("../.."))
        .output()
        .unwrap()
}

/// Writes up to `max` pairs of an SNLI split as JSONL: one per premise with an entailed
/// hypothesis, plus a contradicted one as the negative where the premise has one.
fn write_pairs(dir: &Path, split: &str, max: usize, out: &Path) -> usize {
    let read = |name: &str| -> Vec<String> {
        std::fs::read_to_string(dir.join(format!("{name}.{split}")))
            .unwrap()
            .lines()
            .map(|l| l.trim().to_string())
            .collect()
    };
    let (s1, s2, labels) = (read("s1"), read("s2"), read("labels"));
    let mut f = std::fs::File::create(out).unwrap();
    let mut written = 0;
    let mut i = 0;
    while i < s1.len() && written < max {
        // The rows of one premise are consecutive.
        let mut j = i;
        while j < s1.len() && s1[j] == s1[i] {
            j += 1;
        }
        let find = |want: &str| (i..j).find(|&k| labels[k] == want).map(|k| s2[k].clone());
        if let Some(positive) = find("entailment") {
            let row = match find("contradiction") {
                Some(neg) => serde_json::json!({"anchor": s1[i], "positive": positive, "negative": neg}),
                None => serde_json::json!({"anchor": s1[i], "positive": positive}),
            };
            writeln!(f, "{row}").unwrap();
            written += 1;
        }
        i = j;
    }
    written
}

fn eval_metrics(run: &Path) -> Vec<serde_json::Value> {
    run_log(run).into_iter().filter(|v| v["split"] == "eval").map(|v| v["metrics"].clone()).collect()
}

#[test]
fn snli_triplets_train_minilm_embeddings_with_in_batch_negatives() {
    let Some(snli) = snli() else { return eprintln!("SKIPPED: ../shared is absent") };
    let Some(model) = fetched_minilm() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let (train, val) = (tmp.path().join("train.jsonl"), tmp.path().join("val.jsonl"));
    assert_eq!(write_pairs(&snli, "dev", 256, &train), 256);
    assert_eq!(write_pairs(&snli, "test", 256, &val), 256);
    let cfg = tmp.path().join("run.toml");
    std::fs::write(
        &cfg,
        format!(
            r#"[model]
path = "{model}"
[task]
kind = "embedding"
[data]
train = "{train}"
validation = "{val}"
max_length = 48
[method]
kind = "full"
[train]
epochs = 2
batch_size = 32
lr = 5e-5
warmup_ratio = 0.1
threads = 2
seed = 3
[eval]
at_start = true
[output]
dir = "{out}"
save_checkpoints = false
"#,
            model = model.display(),
            train = train.display(),
            val = val.display(),
            out = tmp.path().join("run").display()
        ),
    )
    .unwrap();
    let o = tunesmith(&["train", cfg.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let run = tmp.path().join("run");
    let evals = eval_metrics(&run);
    assert_eq!(evals.len(), 3, "an evaluation at the start and after each epoch: {evals:?}");
    let (before, after) = (&evals[0], &evals[2]);
    eprintln!("before {before}\nafter  {after}");
    for m in [before, after] {
        for k in ["accuracy_at_1", "accuracy_at_5", "mrr_at_10"] {
            let v = m[k].as_f64().unwrap();
            assert!((0.0..=1.0).contains(&v), "{k} = {v}");
        }
        assert!(m["accuracy_at_5"].as_f64() >= m["accuracy_at_1"].as_f64());
    }
    // A pretrained embedder ranks most positives first already, and stays so (no collapse).
    assert!(before["accuracy_at_1"].as_f64().unwrap() > 0.7, "{before}");
    assert!(after["accuracy_at_1"].as_f64().unwrap() > 0.7, "{after}");
    // The optimizer works on the contrastive loss: the second pass over the same triplets
    // has a clearly lower training loss than the first.
    let train: Vec<(f64, f64)> = run_log(&run)
        .into_iter()
        .filter(|v| v["split"] == "train")
        .map(|v| (v["epoch"].as_f64().unwrap(), v["loss"].as_f64().unwrap()))
        .collect();
    assert_eq!(train.len(), 16);
    let mean = |e: &[(f64, f64)]| e.iter().map(|x| x.1).sum::<f64>() / e.len() as f64;
    let (first, second) = (mean(&train[..8]), mean(&train[8..]));
    eprintln!("train loss: epoch 1 {first:.4}, epoch 2 {second:.4}");
    assert!(second < 0.9 * first, "epoch 1 {first}, epoch 2 {second}");

    // The trained model is an HF folder that `embed` loads.
    let out = tmp.path().join("emb.jsonl");
    let model_out = run.join("final/model");
    let o = tunesmith(&[
        "embed",
        "--model",
        model_out.to_str().unwrap(),
        "--input",
        val.to_str().unwrap(),
        "--field",
        "anchor",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(std::fs::read_to_string(&out).unwrap().lines().count(), 256);
}

#[test]
fn pairs_with_the_wrong_task_or_packing_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("pairs.jsonl");
    std::fs::write(&data, "{\"anchor\": \"a cat\", \"positive\": \"a kitten\"}\n").unwrap();
    let cfg = tmp.path().join("run.toml");
    let write = |kind: &str, extra: &str| {
        std::fs::write(
            &cfg,
            format!(
                "[model]\npath = \"{}\"\n[task]\nkind = \"{kind}\"\n[data]\ntrain = \"{}\"\nvalidation_split = 0.0\n{extra}",
                minilm_dir().display(),
                data.display()
            ),
        )
        .unwrap();
    };
    write("embedding", "packing = true\n");
    let o = tunesmith(&["train", cfg.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("data.packing"), "{}", String::from_utf8_lossy(&o.stderr));
    if minilm_dir().join("model.safetensors").exists() {
        write("classification", "");
        let o = tunesmith(&["train", cfg.to_str().unwrap()]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{err}");
        assert!(err.contains("pair row does not fit task.kind = \"classification\""), "{err}");
    }
}
