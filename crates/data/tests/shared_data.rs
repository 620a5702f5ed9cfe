//! The example datasets in ../shared/data: each loads with the expected schema and row count and
//! no rejected row, and converts to every format that can hold it and back without loss (at the
//! level of internal records: messages, roles, weights, tool calls, labels and extra fields).

use std::path::{Path, PathBuf};

use tunesmith_data::schema::Schema;
use tunesmith_data::write::{self, OutputFormat};
use tunesmith_data::{Dataset, LoadOptions, Record};

fn shared() -> Option<PathBuf> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data");
    p.is_dir().then_some(p)
}

/// (file under ../shared/data, schema, rows, formats that must hold every row)
const FILES: &[(&str, Schema, usize, &[&str])] = &[
    ("llamafactory-demo/alpaca_en_demo.json", Schema::Alpaca, 999, &["alpaca", "openai", "sharegpt", "jsonl"]),
    ("llamafactory-demo/identity.json", Schema::Alpaca, 91, &["alpaca", "openai", "sharegpt", "jsonl"]),
    ("llamafactory-demo/dpo_en_demo.json", Schema::Preference, 300, &["openai", "sharegpt", "jsonl"]),
    ("llamafactory-demo/kto_en_demo.json", Schema::Kto, 300, &["openai", "jsonl"]),
    ("llamafactory-demo/glaive_toolcall_en_demo.json", Schema::ShareGpt, 300, &["sharegpt", "openai", "jsonl"]),
    ("llamafactory-demo/c4_demo.jsonl", Schema::Text, 300, &["openai", "jsonl"]),
    ("llamafactory-demo/wiki_demo.txt", Schema::Text, 30, &["jsonl"]),
    ("sharegpt-dummy-fastchat/dummy_conversation.json", Schema::ShareGpt, 500, &["sharegpt", "openai", "jsonl"]),
    ("rasbt-instruction/instruction-data.json", Schema::Alpaca, 1100, &["alpaca", "openai", "sharegpt", "jsonl"]),
    (
        "rasbt-dpo-preference/instruction-data-with-preference.json",
        Schema::Preference,
        1094,
        &["alpaca", "openai", "jsonl"],
    ),
    ("torchtune-fixtures/alpaca_tiny.json", Schema::Alpaca, 100, &["alpaca", "openai", "jsonl"]),
    ("torchtune-fixtures/chat_tiny.json", Schema::ShareGpt, 1, &["sharegpt", "openai", "alpaca", "jsonl"]),
    ("torchtune-fixtures/stack_exchange_paired_tiny.json", Schema::Preference, 25, &["openai", "jsonl"]),
    ("sst2/train.tsv", Schema::Classification, 67349, &["jsonl"]),
    ("sst2/dev.tsv", Schema::Classification, 872, &["jsonl"]),
    ("sms-spam/SMSSpamCollection", Schema::Classification, 5574, &["jsonl"]),
    ("uci-sentiment-sentences/imdb_labelled.txt", Schema::Classification, 1000, &["jsonl"]),
    ("gsm8k/train.jsonl", Schema::PromptCompletion, 7473, &["alpaca", "openai", "sharegpt", "jsonl"]),
    ("dolly-openqa-subset/chinkara-open_qa.jsonl", Schema::Text, 3742, &["jsonl"]),
    ("tinystories-sample/tinystories.txt", Schema::Text, 1230, &["jsonl"]),
    ("tinyshakespeare/input.txt", Schema::Text, 7222, &["jsonl"]),
    ("senteval-mr/rt-polarity.pos", Schema::Text, 5331, &["jsonl"]),
];

fn content(r: &Record) -> (&tunesmith_data::Example, &serde_json::Map<String, serde_json::Value>) {
    (&r.example, &r.extra)
}

fn convert_and_reload(records: &[Record], format: OutputFormat, dir: &Path, name: &str) -> (Vec<Record>, Vec<Record>) {
    let path = dir.join(format!("{name}.jsonl"));
    let unfit = write::write_jsonl(&path, records, format).unwrap();
    let unfit: std::collections::HashSet<_> = unfit.into_iter().map(|e| e.loc).collect();
    let fit: Vec<Record> = records.iter().filter(|r| !unfit.contains(&r.loc)).cloned().collect();
    if fit.is_empty() {
        return (fit, Vec::new());
    }
    let back = Dataset::load(path.to_str().unwrap(), &LoadOptions::default()).unwrap();
    assert!(back.rejected.is_empty(), "{name}: {:?}", &back.rejected[..back.rejected.len().min(3)]);
    (fit, back.records)
}

#[test]
fn shared_datasets_load_and_round_trip() {
    let Some(root) = shared() else {
        eprintln!("skipping: ../shared/data is absent");
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    for &(file, schema, rows, must) in FILES {
        let ds = Dataset::load(root.join(file).to_str().unwrap(), &LoadOptions::default()).unwrap();
        assert_eq!(ds.schema, schema, "{file}");
        // rasbt's preference set holds 6 pairs whose chosen and rejected are the same text: they
        // state no preference and are left out, each with its line.
        let identical = if file.starts_with("rasbt-dpo-preference") { 6 } else { 0 };
        assert_eq!(ds.rejected.len(), identical, "{file}: {:?}", ds.rejected.first().map(ToString::to_string));
        assert!(ds.rejected.iter().all(|e| e.why.contains("identical to chosen")), "{file}");
        assert_eq!(ds.records.len(), rows, "{file}");
        for fmt_name in ["openai", "alpaca", "sharegpt", "jsonl"] {
            let format = OutputFormat::parse(fmt_name).unwrap();
            let tag = format!("{}-{fmt_name}", file.replace('/', "_"));
            let (fit, back) = convert_and_reload(&ds.records, format, tmp.path(), &tag);
            if must.contains(&fmt_name) {
                assert_eq!(fit.len(), rows, "{file} → {fmt_name}: rows do not fit");
            }
            assert_eq!(back.len(), fit.len(), "{file} → {fmt_name}");
            for (a, b) in fit.iter().zip(&back) {
                assert_eq!(content(a), content(b), "{file} → {fmt_name} → back, row {}", a.loc);
            }
            // And back again to the first format: the same rows as converting directly.
            if !fit.is_empty() {
                let natural = must[0];
                let nf = OutputFormat::parse(natural).unwrap();
                for (a, b) in fit.iter().zip(&back) {
                    assert_eq!(
                        write::to_format(a, nf).ok(),
                        write::to_format(b, nf).ok(),
                        "{file} {fmt_name}→{natural}"
                    );
                }
            }
        }
    }
}
