//! Malformed input: every bad row is rejected with its line (and field), every good row is kept,
//! the counts add up, and nothing panics: truncated JSON, wrong types, unknown roles, empty
//! messages, bytes that are not UTF-8, and a 100 MB single line.

use std::io::Write;

use tunesmith_data::schema::Schema;
use tunesmith_data::{DataError, Dataset, LoadOptions, Reject};

fn write(ext: &str, bytes: &[u8]) -> tempfile::NamedTempFile {
    let mut f = tempfile::Builder::new().suffix(ext).tempfile().unwrap();
    f.write_all(bytes).unwrap();
    f
}

fn load(f: &tempfile::NamedTempFile, schema: Option<Schema>) -> Result<Dataset, DataError> {
    Dataset::load(f.path().to_str().unwrap(), &LoadOptions { schema, ..LoadOptions::default() })
}

/// (line, field, words in the reason) of each rejected row.
fn rejections(ds: &Dataset) -> Vec<(usize, Option<String>, String)> {
    ds.rejected.iter().map(|e| (e.loc.line, e.field.clone(), e.why.clone())).collect()
}

const GOOD: &str = r#"{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}"#;

#[test]
fn truncated_jsonl_line() {
    let body = format!("{GOOD}\n{GOOD}\n{}\n", &GOOD[..40]);
    let ds = load(&write(".jsonl", body.as_bytes()), None).unwrap();
    assert_eq!((ds.records.len(), ds.rejected.len(), ds.rows_read()), (2, 1, 3));
    let r = &ds.rejected[0];
    assert_eq!((r.loc.line, r.kind), (3, Reject::Unreadable));
    assert!(r.why.contains("invalid JSON") && r.why.contains("EOF"), "{}", r.why);
    assert!(r.to_string().contains(".jsonl:3:"), "{r}");
}

#[test]
fn truncated_json_array_keeps_complete_elements() {
    let body = format!("[\n{GOOD},\n{GOOD},\n{}", &GOOD[..50]);
    let ds = load(&write(".json", body.as_bytes()), None).unwrap();
    assert_eq!(ds.records.len(), 2);
    assert_eq!(ds.rejected.len(), 1);
    assert!(ds.rejected[0].why.contains("not closed"), "{}", ds.rejected[0].why);
    // A file that is not JSON at all is a whole-file error naming the file.
    let f = write(".json", b"{\"a\": ");
    let e = load(&f, None).unwrap_err().to_string();
    assert!(e.contains(&f.path().display().to_string()), "{e}");
}

#[test]
fn wrong_types_name_the_field() {
    let rows = [
        r#"{"messages": "hello"}"#,
        r#"{"messages": [{"role": "user", "content": 5}, {"role": "assistant", "content": "x"}]}"#,
        r#"{"messages": [{"role": 1, "content": "a"}]}"#,
        r#"[1, 2]"#,
        GOOD,
        r#"{"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b", "weight": 0.5}]}"#,
    ];
    let ds = load(&write(".jsonl", rows.join("\n").as_bytes()), Some(Schema::OpenAi)).unwrap();
    let got = rejections(&ds);
    assert_eq!(ds.records.len(), 1);
    assert_eq!(got.len(), 5);
    assert_eq!(got[0].0, 1);
    assert_eq!(got[0].1.as_deref(), Some("messages"));
    assert!(got[0].2.contains("expected a list of messages, found a string"));
    assert_eq!(got[1].1.as_deref(), Some("messages[0].content"));
    assert_eq!(got[2].1.as_deref(), Some("messages[0].role"));
    assert!(got[3].2.contains("expected a JSON object, found an array"));
    assert_eq!(got[4].1.as_deref(), Some("messages[1].weight"));
    // Classification labels of the wrong type.
    let ds = load(
        &write(".jsonl", b"{\"text\": \"a\", \"label\": {\"x\": 1}}\n{\"text\": \"b\", \"label\": 1}\n"),
        Some(Schema::Classification),
    )
    .unwrap();
    assert_eq!(rejections(&ds)[0].1.as_deref(), Some("label"));
}

#[test]
fn unknown_roles_and_empty_messages() {
    let rows = [
        r#"{"messages": [{"role": "narrator", "content": "x"}, {"role": "assistant", "content": "y"}]}"#,
        r#"{"messages": [{"role": "user", "content": ""}, {"role": "assistant", "content": "y"}]}"#,
        r#"{"messages": []}"#,
        r#"{"messages": [{"role": "user", "content": "only a question"}]}"#,
        GOOD,
    ];
    let ds = load(&write(".jsonl", rows.join("\n").as_bytes()), None).unwrap();
    let got = rejections(&ds);
    assert_eq!((ds.records.len(), got.len()), (1, 4));
    assert!(got[0].2.contains("unknown role 'narrator'"), "{}", got[0].2);
    assert_eq!(got[1].1.as_deref(), Some("messages[0].content"));
    assert!(got[1].2.contains("empty"));
    assert!(got[2].2.contains("no messages"));
    assert!(got[3].2.contains("no assistant message"));
    assert!(ds.rejected.iter().all(|e| e.kind == Reject::Invalid));
    // ShareGPT: unknown `from`.
    let ds = load(
        &write(".json", br#"[{"conversations": [{"from": "alien", "value": "x"}, {"from": "gpt", "value": "y"}]}]"#),
        None,
    )
    .unwrap();
    assert!(rejections(&ds)[0].2.contains("unknown role 'alien'"));
}

#[test]
fn preference_pairs_with_an_empty_a_missing_or_an_identical_side() {
    let rows = [
        r#"{"prompt": "2+2?", "chosen": "4", "rejected": "5"}"#,
        r#"{"prompt": "2+2?", "chosen": "", "rejected": "5"}"#,
        r#"{"prompt": "2+2?", "chosen": "4", "rejected": "4"}"#,
        r#"{"prompt": "2+2?", "chosen": "4"}"#,
        r#"{"prompt": "3+3?", "chosen": "6", "rejected": "7"}"#,
    ];
    let ds = load(&write(".jsonl", rows.join("\n").as_bytes()), Some(Schema::Preference)).unwrap();
    let got = rejections(&ds);
    assert_eq!((ds.records.len(), got.len(), ds.rows_read()), (2, 3, 5));
    assert_eq!((got[0].0, got[0].1.as_deref()), (2, Some("chosen")));
    assert!(got[0].2.contains("empty"), "{}", got[0].2);
    assert_eq!((got[1].0, got[1].1.as_deref()), (3, Some("rejected")));
    assert!(got[1].2.contains("identical to chosen"), "{}", got[1].2);
    assert_eq!((got[2].0, got[2].1.as_deref()), (4, Some("rejected")));
    assert!(got[2].2.contains("missing"), "{}", got[2].2);
}

#[test]
fn bytes_that_are_not_utf8() {
    let mut body = format!("{GOOD}\n").into_bytes();
    body.extend_from_slice(b"{\"messages\": [{\"role\": \"user\", \"content\": \"caf\xe9\"}]}\n");
    body.extend_from_slice(format!("{GOOD}\n").as_bytes());
    let ds = load(&write(".jsonl", &body), None).unwrap();
    assert_eq!((ds.records.len(), ds.rejected.len()), (2, 1));
    assert_eq!(ds.rejected[0].loc.line, 2);
    assert!(ds.rejected[0].why.contains("UTF-8"));
    // CSV and plain text too.
    let ds = load(&write(".csv", b"text,label\ngood,1\nbad \xff\xfe,0\nfine,0\n"), None).unwrap();
    assert_eq!((ds.records.len(), ds.rejected.len(), ds.rejected[0].loc.line), (2, 1, 3));
    let ds = load(&write(".txt", b"line one\nline \xc3\x28 two\nline three\n"), None).unwrap();
    assert_eq!((ds.records.len(), ds.rejected.len(), ds.rejected[0].loc.line), (2, 1, 2));
}

#[test]
fn a_100_mb_single_line() {
    let mut body = format!("{GOOD}\n").into_bytes();
    body.extend_from_slice(b"{\"text\": \"");
    body.resize(body.len() + 100 * 1024 * 1024, b'a');
    body.extend_from_slice(b"\"}\n");
    body.extend_from_slice(format!("{GOOD}\n").as_bytes());
    let f = write(".jsonl", &body);
    drop(body);
    let ds = load(&f, None).unwrap();
    assert_eq!((ds.records.len(), ds.rejected.len()), (2, 1));
    let r = &ds.rejected[0];
    assert_eq!(r.loc.line, 2);
    assert!(r.why.contains("100.0 MB") && r.why.contains("max_row_bytes"), "{}", r.why);
}

#[test]
fn csv_rows_with_the_wrong_number_of_fields() {
    let ds = load(&write(".csv", b"text,label\na,1\nb,0,extra\nc\nd,1\n"), None).unwrap();
    let got = rejections(&ds);
    assert_eq!(ds.records.len(), 2);
    assert_eq!(got.iter().map(|g| g.0).collect::<Vec<_>>(), vec![3, 4]);
}

#[test]
fn an_empty_file_is_a_clear_error() {
    let f = write(".jsonl", b"\n\n");
    let e = load(&f, None).unwrap_err().to_string();
    assert!(e.contains("no usable rows") && e.contains("holds no rows"), "{e}");
}
