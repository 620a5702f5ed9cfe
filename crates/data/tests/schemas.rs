//! Every schema, detected from its fields and converted to the internal form: classification
//! (with label maps), regression, text, prompt/completion (strings and message lists), OpenAI chat
//! with weights and tools, Alpaca with history, ShareGPT with function calls, TRL preference with
//! an explicit and an implicit prompt, OpenAI DPO, and KTO.

use std::io::Write;

use serde_json::json;
use tunesmith_data::schema::Schema;
use tunesmith_data::{Dataset, Example, Label, LoadOptions, Message, Role};

fn load(ext: &str, body: &str) -> Dataset {
    let mut f = tempfile::Builder::new().suffix(ext).tempfile().unwrap();
    f.write_all(body.as_bytes()).unwrap();
    Dataset::load(f.path().to_str().unwrap(), &LoadOptions::default()).unwrap()
}

fn jsonl(rows: &[serde_json::Value]) -> String {
    rows.iter().map(|r| r.to_string() + "\n").collect()
}

fn msg(role: Role, content: &str) -> Message {
    Message::new(role, content)
}

#[test]
fn classification_with_label_map_and_text_pairs() {
    let ds = load(".csv", "sentence1,sentence2,label\nA man sleeps,Someone rests,entailment\nA dog,A cat,contradiction\n\"Quoted, comma\",x,neutral\n");
    assert_eq!(ds.schema, Schema::Classification);
    assert_eq!(ds.labels, vec!["contradiction", "entailment", "neutral"]);
    assert_eq!(
        ds.records[2].example,
        Example::Labeled {
            text: "Quoted, comma".into(),
            text_pair: Some("x".into()),
            label: Label::Class("neutral".into())
        }
    );
    assert_eq!(ds.class_id(&ds.records[0]), Some(1));
    // Integer labels map in numeric order.
    let ds = load(
        ".jsonl",
        &jsonl(&[
            json!({"text": "a", "label": 10}),
            json!({"text": "b", "label": 2}),
            json!({"text": "c", "label": 2}),
        ]),
    );
    assert_eq!(ds.labels, vec!["2", "10"]);
}

#[test]
fn regression_labels_are_numbers() {
    let ds = load(".jsonl", &jsonl(&[json!({"text": "a", "label": 0.5}), json!({"text": "b", "label": "3.25"})]));
    assert_eq!(ds.schema, Schema::Regression);
    assert_eq!(
        ds.records[1].example,
        Example::Labeled { text: "b".into(), text_pair: None, label: Label::Value(3.25) }
    );
}

#[test]
fn prompt_completion_strings_and_messages() {
    let ds = load(
        ".jsonl",
        &jsonl(&[
            json!({"prompt": "2+2?", "completion": "4"}),
            json!({"prompt": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
                   "completion": [{"role": "assistant", "content": "Hello"}], "id": 7}),
        ]),
    );
    assert_eq!(ds.schema, Schema::PromptCompletion);
    assert_eq!(
        ds.records[0].example,
        Example::Chat { messages: vec![msg(Role::User, "2+2?"), msg(Role::Assistant, "4")], tools: None }
    );
    match &ds.records[1].example {
        Example::Chat { messages, .. } => assert_eq!(messages.len(), 3),
        e => panic!("{e:?}"),
    }
    assert_eq!(ds.records[1].extra.get("id"), Some(&json!(7)), "unused fields are kept");
}

#[test]
fn openai_chat_with_weights_and_tools() {
    let tools = json!([{"type": "function", "function": {"name": "f", "parameters": {}}}]);
    let ds = load(
        ".jsonl",
        &jsonl(&[json!({"messages": [
            {"role": "user", "content": "call f"},
            {"role": "assistant", "content": "", "tool_calls": [{"type": "function", "function": {"name": "f", "arguments": "{}"}}]},
            {"role": "tool", "content": "42", "tool_call_id": "c1"},
            {"role": "assistant", "content": "draft", "weight": 0},
            {"role": "user", "content": "again"},
            {"role": "assistant", "content": [{"type": "text", "text": "final"}], "weight": 1}
        ], "tools": tools})]),
    );
    assert_eq!(ds.schema, Schema::OpenAi);
    let Example::Chat { messages, tools: t } = &ds.records[0].example else { panic!() };
    assert_eq!(t.as_ref(), Some(&tools));
    assert_eq!(messages[1].tool_calls.as_ref().unwrap()[0]["function"]["name"], "f");
    assert_eq!(messages[2].tool_call_id.as_deref(), Some("c1"));
    assert_eq!(messages[3].weight, Some(0.0));
    assert_eq!(messages[5].content, "final");
}

#[test]
fn alpaca_with_system_history_and_input() {
    let ds = load(
        ".json",
        &json!([{"instruction": "Translate", "input": "chat", "output": "cat", "system": "You translate.",
                 "history": [["Hi", "Hello"]]}])
        .to_string(),
    );
    assert_eq!(ds.schema, Schema::Alpaca);
    let Example::Chat { messages, .. } = &ds.records[0].example else { panic!() };
    let got: Vec<(Role, &str)> = messages.iter().map(|m| (m.role, m.content.as_str())).collect();
    assert_eq!(
        got,
        vec![
            (Role::System, "You translate."),
            (Role::User, "Hi"),
            (Role::Assistant, "Hello"),
            (Role::User, "Translate\nchat"),
            (Role::Assistant, "cat")
        ]
    );
}

#[test]
fn sharegpt_roles_and_function_calls() {
    let ds = load(
        ".json",
        &json!([{"conversations": [
            {"from": "system", "value": "S"},
            {"from": "human", "value": "weather?"},
            {"from": "function_call", "value": "{\"name\": \"w\", \"arguments\": {\"c\": \"P\"}}"},
            {"from": "observation", "value": "sunny"},
            {"from": "gpt", "value": "Sunny."}
        ]}])
        .to_string(),
    );
    assert_eq!(ds.schema, Schema::ShareGpt);
    let Example::Chat { messages, .. } = &ds.records[0].example else { panic!() };
    let roles: Vec<Role> = messages.iter().map(|m| m.role).collect();
    assert_eq!(roles, vec![Role::System, Role::User, Role::Assistant, Role::Tool, Role::Assistant]);
    assert_eq!(messages[2].tool_calls.as_ref().unwrap()[0]["function"]["arguments"]["c"], "P");
}

#[test]
fn preference_explicit_and_implicit_prompt() {
    let ds = load(
        ".jsonl",
        &jsonl(&[
            json!({"prompt": "Q", "chosen": "good", "rejected": "bad"}),
            json!({"chosen": [{"role": "user", "content": "Q2"}, {"role": "assistant", "content": "yes"}],
                   "rejected": [{"role": "user", "content": "Q2"}, {"role": "assistant", "content": "no"}]}),
        ]),
    );
    assert_eq!(ds.schema, Schema::Preference);
    assert_eq!(
        ds.records[1].example,
        Example::Preference {
            prompt: vec![msg(Role::User, "Q2")],
            chosen: vec![msg(Role::Assistant, "yes")],
            rejected: vec![msg(Role::Assistant, "no")],
            tools: None
        }
    );
}

#[test]
fn openai_dpo_layout() {
    let ds = load(
        ".jsonl",
        &jsonl(&[json!({"input": {"messages": [{"role": "user", "content": "Q"}]},
                        "preferred_output": [{"role": "assistant", "content": "A"}],
                        "non_preferred_output": [{"role": "assistant", "content": "B"}]})]),
    );
    assert_eq!(ds.schema, Schema::OpenAiDpo);
    assert!(matches!(&ds.records[0].example, Example::Preference { chosen, .. } if chosen[0].content == "A"));
}

#[test]
fn kto_unpaired_preference() {
    let ds = load(
        ".jsonl",
        &jsonl(&[
            json!({"prompt": "Q", "completion": "A", "label": true}),
            json!({"messages": [{"role": "user", "content": "Q"}, {"role": "assistant", "content": "B"}], "label": false}),
        ]),
    );
    assert_eq!(ds.schema, Schema::Kto);
    assert!(matches!(ds.records[0].example, Example::Unpaired { desirable: true, .. }));
    assert!(
        matches!(&ds.records[1].example, Example::Unpaired { desirable: false, completion, .. } if completion[0].content == "B")
    );
}

#[test]
fn plain_text_by_paragraph_or_line() {
    let ds = load(".txt", "first paragraph\nstill first\n\nsecond\n");
    assert_eq!(ds.schema, Schema::Text);
    assert_eq!(ds.records.len(), 2);
    assert_eq!(ds.records[0].example, Example::Text("first paragraph\nstill first".into()));
    assert_eq!(ds.records[1].loc.line, 4);
    let ds = load(".txt", "one\ntwo\nthree\n");
    assert_eq!(ds.records.len(), 3, "no blank lines: one example per line");
}

#[test]
fn field_mapping_and_explicit_schema() {
    let mut f = tempfile::Builder::new().suffix(".jsonl").tempfile().unwrap();
    writeln!(f, "{}", json!({"q": "Why?", "a": "Because."})).unwrap();
    let opts = LoadOptions {
        schema: Some(Schema::PromptCompletion),
        fields: tunesmith_data::schema::FieldMap::parse(&["prompt=q".into(), "completion=a".into()]).unwrap(),
        ..LoadOptions::default()
    };
    let ds = Dataset::load(f.path().to_str().unwrap(), &opts).unwrap();
    assert!(!ds.detected);
    assert!(matches!(&ds.records[0].example, Example::Chat { messages, .. } if messages[1].content == "Because."));
}

#[test]
fn embedding_pairs_with_optional_hard_negatives() {
    let ds = load(
        ".jsonl",
        &jsonl(&[
            json!({"anchor": "A man sleeps", "positive": "Someone rests", "negative": "A man runs"}),
            json!({"query": "capital of France", "positive": "Paris is the capital of France.", "negative": null}),
            json!({"anchor": "no positive"}),
            json!({"anchor": "x", "positive": ""}),
            json!({"anchor": "x", "positive": 3}),
        ]),
    );
    assert_eq!(ds.schema, Schema::Pairs);
    assert_eq!(
        ds.records[0].example,
        Example::Pair {
            anchor: "A man sleeps".into(),
            positive: "Someone rests".into(),
            negative: Some("A man runs".into())
        }
    );
    assert_eq!(
        ds.records[1].example,
        Example::Pair {
            anchor: "capital of France".into(),
            positive: "Paris is the capital of France.".into(),
            negative: None
        }
    );
    // Bad rows are rejected with their line and field.
    let why: Vec<(usize, Option<String>, String)> =
        ds.rejected.iter().map(|e| (e.loc.line, e.field.clone(), e.why.clone())).collect();
    assert_eq!(why.len(), 3, "{why:?}");
    assert_eq!((why[0].0, why[0].1.as_deref()), (3, Some("positive")));
    assert!(why[1].2.contains("empty") && why[2].2.contains("expected a string"), "{why:?}");
    // Written back as JSON Lines, pairs read back the same.
    let back: String = ds
        .records
        .iter()
        .map(|r| {
            tunesmith_data::write::to_format(r, tunesmith_data::write::OutputFormat::Jsonl).unwrap().to_string() + "\n"
        })
        .collect();
    let again = load(".jsonl", &back);
    assert_eq!(
        again.records.iter().map(|r| &r.example).collect::<Vec<_>>(),
        ds.records.iter().map(|r| &r.example).collect::<Vec<_>>()
    );
}

#[test]
fn tagged_words_with_names_or_integer_ids() {
    let ds = load(
        ".jsonl",
        &jsonl(&[
            json!({"tokens": ["Maria", "lives", "in", "Lyon"], "ner_tags": ["B-PER", "O", "O", "B-LOC"]}),
            json!({"tokens": ["Oslo"], "tags": ["B-LOC"]}),
            json!({"tokens": ["a", "b"], "tags": ["O"]}),
            json!({"tokens": [], "tags": []}),
            json!({"tokens": ["a"], "tags": [true]}),
        ]),
    );
    assert_eq!(ds.schema, Schema::TokenClassification);
    assert_eq!(
        ds.records[0].example,
        Example::Tagged {
            tokens: vec!["Maria".into(), "lives".into(), "in".into(), "Lyon".into()],
            tags: vec!["B-PER".into(), "O".into(), "O".into(), "B-LOC".into()]
        }
    );
    assert_eq!(ds.labels, vec!["B-LOC", "B-PER", "O"]);
    let why: Vec<String> = ds.rejected.iter().map(|e| format!("{}:{:?}:{}", e.loc.line, e.field, e.why)).collect();
    assert_eq!(why.len(), 3, "{why:?}");
    assert!(why[0].starts_with("3:Some(\"tags\")") && why[0].contains("1 tags for 2 tokens"), "{why:?}");
    assert!(why[1].contains("empty") && why[2].contains("item 0"), "{why:?}");
    // HF datasets store tags as class ids: they map in numeric order.
    let ds = load(".jsonl", &jsonl(&[json!({"tokens": ["x", "y", "z"], "ner_tags": [0, 10, 2]})]));
    assert_eq!(ds.labels, vec!["0", "2", "10"]);
}
