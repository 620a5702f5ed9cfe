//! The `tunesmith data` commands end to end, on the real example datasets in ../shared/data:
//! output, files written, conversions that round-trip, and exit codes (0 ok, 1 rows rejected,
//! 2 bad input).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn shared() -> Option<PathBuf> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared");
    p.join("data").is_dir().then_some(p)
}

fn tunesmith(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tunesmith")).args(args).env("NO_COLOR", "1").output().unwrap()
}

fn text(o: &Output) -> (String, String) {
    (String::from_utf8_lossy(&o.stdout).into_owned(), String::from_utf8_lossy(&o.stderr).into_owned())
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

#[test]
fn inspect_shows_schema_counts_and_marked_examples() {
    let Some(s) = shared() else { return eprintln!("skipping: ../shared is absent") };
    let file = s.join("data/llamafactory-demo/alpaca_en_demo.json");
    let o = tunesmith(&["data", "inspect", p(&file)]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    assert!(out.contains("schema    alpaca (detected)"), "{out}");
    assert!(out.contains("999 read: 999 usable, 0 rejected"), "{out}");
    assert_eq!(out.matches("── ").count(), 3, "three examples by default");
    assert!(out.contains("<|im_start|>assistant\n  ⟦"), "{out}");
    // With a real tokenizer: the model's own template, and token counts.
    let o = tunesmith(&[
        "data",
        "inspect",
        p(&s.join("data/sharegpt-dummy-fastchat/dummy_conversation.json")),
        "--tokenizer",
        p(&s.join("chat-templates/smollm2-135m-instruct")),
        "-n",
        "1",
    ]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    assert!(out.contains("the model's own") && out.contains("trained)"), "{out}");
    assert!(out.contains("<|im_end|>⟧"), "the end-of-turn token is trained: {out}");
}

#[test]
fn validate_lists_bad_rows_and_exits_1() {
    let tmp = tempfile::tempdir().unwrap();
    let f = tmp.path().join("bad.jsonl");
    std::fs::write(
        &f,
        "{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}, {\"role\": \"assistant\", \"content\": \"yo\"}]}\n{\"messages\": [{\"role\": \"robot\", \"content\": \"x\"}]}\n{\"messages\": [\n",
    )
    .unwrap();
    let o = tunesmith(&["data", "validate", p(&f)]);
    let (out, _) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(out.contains("bad.jsonl:2: field 'messages[0].role': unknown role 'robot'"), "{out}");
    assert!(out.contains("bad.jsonl:3: invalid JSON"), "{out}");
    assert!(out.contains("3 rows, 1 valid, 2 rejected (1 unreadable, 1 invalid for the schema)"), "{out}");
    // A file that does not exist is bad input: exit 2, naming it.
    let o = tunesmith(&["data", "validate", "/nonexistent/data.jsonl"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).0.contains("/nonexistent/data.jsonl"));
}

#[test]
fn validate_passes_the_shared_examples() {
    let Some(s) = shared() else { return eprintln!("skipping: ../shared is absent") };
    let files: Vec<PathBuf> = [
        "llamafactory-demo/alpaca_en_demo.json",
        "llamafactory-demo/dpo_en_demo.json",
        "llamafactory-demo/kto_en_demo.json",
        "sharegpt-dummy-fastchat/dummy_conversation.json",
        "rasbt-instruction/instruction-data.json",
        "sst2/dev.tsv",
        "sms-spam/SMSSpamCollection",
        "gsm8k/train.jsonl",
    ]
    .iter()
    .map(|f| s.join("data").join(f))
    .collect();
    let mut args = vec!["data", "validate", "--quiet", "--tokenizer"];
    let tok = s.join("chat-templates/smollm2-135m-instruct");
    args.push(p(&tok));
    args.extend(files.iter().map(|f| p(f)));
    let o = tunesmith(&args);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}{err}");
    assert_eq!(out.matches("0 rejected (none)").count(), files.len(), "{out}");
    // rasbt's preference set has 6 pairs with the same chosen and rejected text: each is named
    // with its line, and the command exits 1 (it ran and found problems).
    let dpo = s.join("data/rasbt-dpo-preference/instruction-data-with-preference.json");
    let o = tunesmith(&["data", "validate", p(&dpo)]);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}{err}");
    assert!(out.contains("1100 rows, 1094 valid, 6 rejected"), "{out}");
    assert!(out.contains(":856: field 'rejected': is identical to chosen"), "{out}");
}

#[test]
fn convert_and_back_is_a_round_trip() {
    let Some(s) = shared() else { return eprintln!("skipping: ../shared is absent") };
    let tmp = tempfile::tempdir().unwrap();
    for (file, natural, via) in [
        ("llamafactory-demo/alpaca_en_demo.json", "alpaca", ["openai", "sharegpt", "jsonl"]),
        ("sharegpt-dummy-fastchat/dummy_conversation.json", "sharegpt", ["openai", "jsonl", "alpaca"]),
        ("llamafactory-demo/dpo_en_demo.json", "openai", ["jsonl", "sharegpt", "openai"]),
    ] {
        let src = s.join("data").join(file);
        let direct = tmp.path().join("direct.jsonl");
        let o = tunesmith(&["data", "convert", p(&src), "--to", natural, "-o", p(&direct)]);
        assert!(o.status.success(), "{}", text(&o).1);
        for fmt in via {
            let mid = tmp.path().join(format!("mid-{fmt}.jsonl"));
            let back = tmp.path().join(format!("back-{fmt}.jsonl"));
            let o = tunesmith(&["data", "convert", p(&src), "--to", fmt, "-o", p(&mid)]);
            let (_, err) = text(&o);
            if o.status.code() == Some(1) {
                // Some rows have no form in this format: they are listed and counted, not lost silently.
                assert!(err.contains("do not fit the format"), "{err}");
                continue;
            }
            assert!(o.status.success(), "{err}");
            let o = tunesmith(&["data", "convert", p(&mid), "--to", natural, "-o", p(&back)]);
            assert!(o.status.success(), "{}", text(&o).1);
            assert_eq!(std::fs::read(&direct).unwrap(), std::fs::read(&back).unwrap(), "{file} via {fmt}");
        }
    }
}

#[test]
fn split_is_seeded_and_stratified() {
    let Some(s) = shared() else { return eprintln!("skipping: ../shared is absent") };
    let tmp = tempfile::tempdir().unwrap();
    let src = s.join("data/sms-spam/SMSSpamCollection");
    let out = tmp.path().join("split");
    let args = [
        "data",
        "split",
        p(&src),
        "-o",
        p(&out),
        "--validation",
        "0.1",
        "--test",
        "0.1",
        "--seed",
        "3",
        "--dedup",
        "exact",
    ];
    let o = tunesmith(&args);
    let (stdout, err) = text(&o);
    assert!(o.status.success(), "{err}");
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("split.json")).unwrap()).unwrap();
    let rows = &manifest["rows"];
    let (tr, va, te) =
        (rows["train"].as_u64().unwrap(), rows["validation"].as_u64().unwrap(), rows["test"].as_u64().unwrap());
    let dups = manifest["removed_by_filters"]["duplicate"].as_u64().unwrap();
    assert_eq!(tr + va + te + dups, 5574, "{stdout}");
    assert!(dups > 300, "the SMS collection has repeated messages");
    assert_eq!(manifest["stratified"], true);
    // The spam share is the same in every part (to within one row of rounding).
    let spam_share = |name: &str| {
        let t = std::fs::read_to_string(out.join(format!("{name}.jsonl"))).unwrap();
        let n = t.lines().count() as f64;
        t.lines().filter(|l| l.contains("\"label\":\"spam\"")).count() as f64 / n
    };
    let (a, b, c) = (spam_share("train"), spam_share("validation"), spam_share("test"));
    assert!((a - b).abs() < 0.01 && (a - c).abs() < 0.01, "{a} {b} {c}");
    // The same seed gives the same files.
    let again = tmp.path().join("again");
    let mut args2 = args.to_vec();
    args2[4] = p(&again);
    assert!(tunesmith(&args2).status.success());
    assert_eq!(std::fs::read(out.join("test.jsonl")).unwrap(), std::fs::read(again.join("test.jsonl")).unwrap());
}

#[test]
fn stats_reports_token_lengths() {
    let Some(s) = shared() else { return eprintln!("skipping: ../shared is absent") };
    let o = tunesmith(&[
        "data",
        "stats",
        p(&s.join("data/rasbt-instruction/instruction-data.json")),
        "--tokenizer",
        p(&s.join("chat-templates/smollm2-135m-instruct")),
        "--max-length",
        "64",
        "--json",
    ]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let st = &v["stats"];
    assert_eq!(st["tokens"]["count"], 1100);
    let (min, p50, p95, max) = (
        st["tokens"]["min"].as_u64().unwrap(),
        st["tokens"]["p50"].as_u64().unwrap(),
        st["tokens"]["p95"].as_u64().unwrap(),
        st["tokens"]["max"].as_u64().unwrap(),
    );
    assert!(min <= p50 && p50 <= p95 && p95 <= max && min > 10, "{st}");
    assert!(st["over_max_length"].as_u64().unwrap() > 0);
    // Without a tokenizer: an error that says what is missing.
    let o = tunesmith(&["data", "stats", p(&s.join("data/sst2/dev.tsv"))]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).1.contains("--tokenizer"));
}
