//! Chat-template parity with transformers' `apply_chat_template`: every template in
//! ../shared/chat-templates renders every fixture conversation byte for byte as transformers
//! does (fixtures from scripts/make_template_fixtures.py), templates that refuse a case give our
//! clear error, and where a tokenizer.json is present the token ids and assistant masks match.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};
use tunesmith_data::template::{self, ChatTemplate, SpecialTokenVars};
use tunesmith_data::tokenizer::Tokenizer;

fn shared() -> Option<PathBuf> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared");
    p.join("chat-templates").is_dir().then_some(p)
}

fn fixtures() -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/templates.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// The template a fixture entry was rendered with, loaded the way a user's model folder is.
fn load(folder: &Path, entry: &Value) -> ChatTemplate {
    let source = entry["source"].as_str().unwrap();
    let special: SpecialTokenVars = entry["special_tokens"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
        .collect();
    if source == "tokenizer_config.json" {
        let (src, vars) = template::load_from_dir(folder).unwrap().expect("tokenizer_config.json has a chat_template");
        // Our reading of the special tokens agrees with transformers'.
        for (k, v) in &special {
            assert_eq!(vars.get(k), Some(v), "{}: {k}", folder.display());
        }
        ChatTemplate::new(&src, vars).unwrap()
    } else {
        let src = std::fs::read_to_string(folder.join(source)).unwrap();
        ChatTemplate::new(&src, special).unwrap()
    }
}

fn conversation(fx: &Value, name: &str) -> (Vec<Value>, Option<Value>) {
    let msgs = fx["conversations"][name].as_array().unwrap().clone();
    let tools = (name == "tools").then(|| fx["tools"].clone());
    (msgs, tools)
}

fn extra(fx: &Value) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("date_string".into(), fx["date_string"].clone());
    m
}

#[test]
fn renders_match_transformers_byte_for_byte() {
    let Some(shared) = shared() else {
        eprintln!("skipping: ../shared/chat-templates is absent");
        return;
    };
    let fx = fixtures();
    let templates = fx["templates"].as_object().unwrap();
    assert_eq!(templates.len(), 15, "every shared template has fixtures");
    let (mut texts, mut errors) = (0, 0);
    for (name, entry) in templates {
        let tmpl = load(&shared.join("chat-templates").join(name), entry);
        for (case, expected) in entry["renders"].as_object().unwrap() {
            let (conv, agp) = case.split_once('/').unwrap();
            let (msgs, tools) = conversation(&fx, conv);
            let got = tmpl.render(&msgs, tools.as_ref(), agp == "gen", &extra(&fx));
            match (expected.get("text"), got) {
                (Some(want), Ok(r)) => {
                    assert_eq!(r.text, want.as_str().unwrap(), "{name} {case}");
                    texts += 1;
                }
                (None, Err(e)) => {
                    // transformers' message is "TemplateError: <the template's words>"; ours
                    // carries the same words.
                    let want = expected["error"].as_str().unwrap();
                    let words = want.split_once(": ").map(|x| x.1).unwrap_or(want);
                    let e = e.to_string();
                    assert!(e.starts_with("chat template: "), "{name} {case}: {e}");
                    assert!(e.contains(words) || !want.starts_with("TemplateError"), "{name} {case}: {e} vs {want}");
                    errors += 1;
                }
                (Some(_), Err(e)) => panic!("{name} {case}: transformers renders it, we fail: {e}"),
                (None, Ok(r)) => {
                    panic!("{name} {case}: transformers fails ({}), we render {:?}", expected["error"], r.text)
                }
            }
        }
    }
    eprintln!("{texts} renders identical, {errors} refusals agree");
    assert!(texts >= 150 && errors >= 1);
}

#[test]
fn system_refusal_is_a_clear_error() {
    let Some(shared) = shared() else {
        eprintln!("skipping: ../shared/chat-templates is absent");
        return;
    };
    let fx = fixtures();
    let entry = &fx["templates"]["gemma-2-it"];
    let tmpl = load(&shared.join("chat-templates/gemma-2-it"), entry);
    let (msgs, _) = conversation(&fx, "system_multi");
    let e = tmpl.render(&msgs, None, false, &Map::new()).unwrap_err().to_string();
    assert!(e.contains("System role not supported"), "{e}");
}

#[test]
fn tokens_and_assistant_masks_match() {
    let Some(shared) = shared() else {
        eprintln!("skipping: ../shared/chat-templates is absent");
        return;
    };
    let fx = fixtures();
    let mut checked = 0;
    for (name, entry) in fx["templates"].as_object().unwrap() {
        let Some(tokens) = entry.get("tokens").and_then(Value::as_object) else {
            continue;
        };
        let folder = shared.join("chat-templates").join(name);
        let tmpl = load(&folder, entry);
        let tok = Tokenizer::from_dir(&folder).unwrap();
        for (conv, want) in tokens {
            let (msgs, tools) = conversation(&fx, conv);
            let text = tmpl.render(&msgs, tools.as_ref(), false, &extra(&fx)).unwrap().text;
            let (ids, offsets) = tok.encode_with_offsets(&text).unwrap();
            let want_ids: Vec<u32> =
                want["ids"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect();
            assert_eq!(ids, want_ids, "{name} {conv}");
            if let Some(mask) = want["assistant_mask"].as_array() {
                let spans = tmpl.assistant_spans(&msgs, tools.as_ref(), &extra(&fx)).unwrap();
                let got: Vec<u64> =
                    offsets.iter().map(|&(s, e)| u64::from(spans.iter().any(|t| s < t.end && t.start < e))).collect();
                let want: Vec<u64> = mask.iter().map(|v| v.as_u64().unwrap()).collect();
                assert_eq!(got, want, "{name} {conv}");
            }
            checked += 1;
        }
    }
    assert!(checked >= 12, "{checked}");
}

#[test]
fn generation_blocks_give_transformers_assistant_masks() {
    let Some(shared) = shared() else {
        eprintln!("skipping: ../shared/chat-templates is absent");
        return;
    };
    let fx = fixtures();
    let g = &fx["generation_blocks"];
    let tmpl = ChatTemplate::new(g["template"].as_str().unwrap(), SpecialTokenVars::new()).unwrap();
    assert!(tmpl.has_generation_blocks);
    let tok = Tokenizer::from_dir(&shared.join("chat-templates").join(g["tokenizer"].as_str().unwrap())).unwrap();
    let cases = g["cases"].as_object().unwrap();
    assert!(cases.len() >= 4);
    for (conv, want) in cases {
        let (msgs, _) = conversation(&fx, conv);
        let text = tmpl.render(&msgs, None, false, &Map::new()).unwrap().text;
        let (ids, offsets) = tok.encode_with_offsets(&text).unwrap();
        let want_ids: Vec<u32> = want["ids"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect();
        assert_eq!(ids, want_ids, "{conv}");
        let spans = tmpl.assistant_spans(&msgs, None, &Map::new()).unwrap();
        let got: Vec<u64> =
            offsets.iter().map(|&(s, e)| u64::from(spans.iter().any(|t| s < t.end && t.start < e))).collect();
        let want: Vec<u64> = want["assistant_mask"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).collect();
        assert_eq!(got, want, "{conv}");
    }
}
