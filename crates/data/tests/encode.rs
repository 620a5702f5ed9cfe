//! Tokenization to training sequences with a real tokenizer and chat template (SmolLM2 from
//! ../shared/chat-templates): exactly the assistant turns are trained, each with its end-of-turn
//! token; the train_on options, message weights, and the three truncation strategies with counts.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tunesmith_data::encode::{EncodeOptions, Encoder, Target, TrainOn, Truncation, IGNORE};
use tunesmith_data::template::{self, ChatTemplate};
use tunesmith_data::tokenizer::Tokenizer;
use tunesmith_data::{Example, Loc, Message, Record, Reject, Role};

fn smollm() -> Option<(Tokenizer, ChatTemplate)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/chat-templates/smollm2-135m-instruct");
    if !dir.is_dir() {
        eprintln!("skipping: ../shared/chat-templates is absent");
        return None;
    }
    let tok = Tokenizer::from_dir(&dir).unwrap();
    let t = template::resolve(None, Some(&dir)).unwrap().unwrap();
    Some((tok, t))
}

fn record(example: Example) -> Record {
    Record {
        example,
        extra: Default::default(),
        loc: Loc { file: Arc::from(PathBuf::from("t.jsonl").as_path()), line: 1 },
    }
}

fn chat(msgs: &[(Role, &str)]) -> Record {
    record(Example::Chat { messages: msgs.iter().map(|(r, c)| Message::new(*r, *c)).collect(), tools: None })
}

/// The trained tokens as text, one string per contiguous run.
fn trained_runs(tok: &Tokenizer, ids: &[u32], labels: &[i32]) -> Vec<String> {
    let mut runs = Vec::new();
    let mut cur: Vec<u32> = Vec::new();
    for (&id, &l) in ids.iter().zip(labels) {
        if l == IGNORE {
            if !cur.is_empty() {
                runs.push(tok.decode(&cur, false).unwrap());
                cur.clear();
            }
        } else {
            assert_eq!(l, id as i32, "a trained label is the token itself");
            cur.push(id);
        }
    }
    if !cur.is_empty() {
        runs.push(tok.decode(&cur, false).unwrap());
    }
    runs
}

const CONV: &[(Role, &str)] = &[
    (Role::System, "Be brief."),
    (Role::User, "Name a prime."),
    (Role::Assistant, "7"),
    (Role::User, "Another?"),
    (Role::Assistant, "11 is prime."),
];

#[test]
fn assistant_turns_with_their_end_of_turn_token() {
    let Some((tok, t)) = smollm() else { return };
    let enc = Encoder::new(&tok, Some(&t), &[], EncodeOptions::default()).unwrap();
    let e = enc.encode(&chat(CONV)).unwrap();
    let s = &e.sequence;
    assert_eq!(s.input_ids.len(), s.labels.len());
    assert_eq!(trained_runs(&tok, &s.input_ids, &s.labels), vec!["7<|im_end|>", "11 is prime.<|im_end|>"]);
    // The whole sequence is what apply_chat_template tokenizes.
    let text = tok.decode(&s.input_ids, false).unwrap();
    assert!(text.starts_with("<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nName a prime."), "{text}");
    assert_eq!(e.target, Target::None);
}

#[test]
fn train_on_last_assistant_or_everything() {
    let Some((tok, t)) = smollm() else { return };
    let last = EncodeOptions { train_on: TrainOn::LastAssistant, ..EncodeOptions::default() };
    let e = Encoder::new(&tok, Some(&t), &[], last).unwrap().encode(&chat(CONV)).unwrap();
    assert_eq!(trained_runs(&tok, &e.sequence.input_ids, &e.sequence.labels), vec!["11 is prime.<|im_end|>"]);
    let all = EncodeOptions { train_on: TrainOn::All, ..EncodeOptions::default() };
    let e = Encoder::new(&tok, Some(&t), &[], all).unwrap().encode(&chat(CONV)).unwrap();
    assert!(e.sequence.labels.iter().zip(&e.sequence.input_ids).all(|(&l, &i)| l == i as i32));
}

#[test]
fn weight_zero_turns_are_not_trained() {
    let Some((tok, t)) = smollm() else { return };
    let mut r = chat(CONV);
    if let Example::Chat { messages, .. } = &mut r.example {
        messages[4].weight = Some(0.0);
    }
    let e = Encoder::new(&tok, Some(&t), &[], EncodeOptions::default()).unwrap().encode(&r).unwrap();
    assert_eq!(trained_runs(&tok, &e.sequence.input_ids, &e.sequence.labels), vec!["7<|im_end|>"]);
    // With every assistant turn at weight 0 nothing is left: rejected with its reason.
    if let Example::Chat { messages, .. } = &mut r.example {
        messages[2].weight = Some(0.0);
    }
    let err = Encoder::new(&tok, Some(&t), &[], EncodeOptions::default()).unwrap().encode(&r).unwrap_err();
    assert_eq!(err.kind, Reject::NoTrainedTokens);
}

#[test]
fn truncation_strategies_and_counts() {
    let Some((tok, t)) = smollm() else { return };
    let full = Encoder::new(&tok, Some(&t), &[], EncodeOptions { max_length: None, ..EncodeOptions::default() })
        .unwrap()
        .encode(&chat(CONV))
        .unwrap()
        .sequence;
    let n = full.len();
    let opts = |max, truncation| EncodeOptions { max_length: Some(max), truncation, ..EncodeOptions::default() };
    // Right: the start is kept.
    let e = Encoder::new(&tok, Some(&t), &[], opts(n - 3, Truncation::Right)).unwrap().encode(&chat(CONV)).unwrap();
    assert!(e.truncated);
    assert_eq!(e.sequence.input_ids, full.input_ids[..n - 3]);
    assert_eq!(e.sequence.labels, full.labels[..n - 3]);
    // Left: the end is kept.
    let e = Encoder::new(&tok, Some(&t), &[], opts(n - 3, Truncation::Left)).unwrap().encode(&chat(CONV)).unwrap();
    assert_eq!(e.sequence.input_ids, full.input_ids[3..]);
    // Drop: rejected, and counted.
    let enc = Encoder::new(&tok, Some(&t), &[], opts(n - 1, Truncation::Drop)).unwrap();
    let short = chat(&[(Role::User, "Hi"), (Role::Assistant, "Hello")]);
    let (kept, errors, stats) = enc.encode_all(&[chat(CONV), short.clone(), chat(CONV)]);
    assert_eq!(kept.len(), 1);
    assert_eq!(errors.len(), 2);
    assert!(errors.iter().all(|e| e.kind == Reject::TooLong && e.why.contains("max_length")));
    assert_eq!(stats.kept, 1);
    // Right truncation that cuts away every trained token rejects the example.
    let enc = Encoder::new(&tok, Some(&t), &[], opts(4, Truncation::Right)).unwrap();
    let err = enc.encode(&short).unwrap_err();
    assert_eq!(err.kind, Reject::NoTrainedTokens);
    assert!(err.why.contains("truncated away"), "{}", err.why);
}

#[test]
fn preference_pairs_share_the_prompt_and_train_completions() {
    let Some((tok, t)) = smollm() else { return };
    let r = record(Example::Preference {
        prompt: vec![Message::new(Role::User, "Capital of France?")],
        chosen: vec![Message::new(Role::Assistant, "Paris.")],
        rejected: vec![Message::new(Role::Assistant, "Lyon.")],
        tools: None,
    });
    let e = Encoder::new(&tok, Some(&t), &[], EncodeOptions::default()).unwrap().encode(&r).unwrap();
    let rej = e.rejected.unwrap();
    assert_eq!(trained_runs(&tok, &e.sequence.input_ids, &e.sequence.labels), vec!["Paris.<|im_end|>"]);
    assert_eq!(trained_runs(&tok, &rej.input_ids, &rej.labels), vec!["Lyon.<|im_end|>"]);
    let common = e.sequence.input_ids.iter().zip(&rej.input_ids).take_while(|(a, b)| a == b).count();
    assert!(common > 10 && e.sequence.labels[..common].iter().all(|&l| l == IGNORE));
}

#[test]
fn text_gets_eos_and_is_all_trained() {
    let Some((tok, t)) = smollm() else { return };
    let e = Encoder::new(&tok, Some(&t), &[], EncodeOptions::default())
        .unwrap()
        .encode(&record(Example::Text("Once upon a time".into())))
        .unwrap();
    let eos = tok.special().eos.unwrap().1;
    assert_eq!(e.sequence.input_ids.last(), Some(&eos));
    assert_eq!(e.sequence.trained(), e.sequence.len());
}

#[test]
fn classification_targets_follow_the_label_map() {
    let Some((tok, t)) = smollm() else { return };
    let labels = vec!["neg".to_string(), "pos".to_string()];
    let enc = Encoder::new(&tok, Some(&t), &labels, EncodeOptions::default()).unwrap();
    let r = record(Example::Labeled {
        text: "great".into(),
        text_pair: None,
        label: tunesmith_data::Label::Class("pos".into()),
    });
    assert_eq!(enc.encode(&r).unwrap().target, Target::Class(1));
    let r = record(Example::Labeled {
        text: "meh".into(),
        text_pair: None,
        label: tunesmith_data::Label::Class("mixed".into()),
    });
    assert!(enc.encode(&r).unwrap_err().why.contains("not in the label map"));
}

#[test]
fn conversations_without_a_template_are_rejected_clearly() {
    let Some((tok, _)) = smollm() else { return };
    let err = Encoder::new(&tok, None, &[], EncodeOptions::default()).unwrap().encode(&chat(CONV)).unwrap_err();
    assert_eq!(err.kind, Reject::Template);
    assert!(err.why.contains("chat template"));
}

#[test]
fn bert_pairs_truncate_longest_first() {
    let Some(dir) = tunesmith_testkit::fetched_minilm() else { return };
    let tok = Tokenizer::from_dir(&dir).unwrap();
    let a = "one two three four five six seven eight nine ten eleven twelve";
    let (ids, types, cut) = tok.encode_for_classification(a, Some("red green blue"), Some(10), false).unwrap();
    assert!(cut);
    assert_eq!(ids.len(), 10);
    // [CLS] + 4 of a + [SEP] + 3 of b + [SEP]: the longer text gave way.
    assert_eq!(types, vec![0, 0, 0, 0, 0, 0, 1, 1, 1, 1]);
    assert_eq!(tok.decode(&ids, false).unwrap(), "[CLS] one two three four [SEP] red green blue [SEP]");
}

#[test]
fn tagged_words_label_their_first_token_only() {
    let Some(dir) = tunesmith_testkit::fetched_minilm() else { return };
    let tok = Tokenizer::from_dir(&dir).unwrap();
    let labels: Vec<String> = ["B-LOC", "O"].iter().map(|s| s.to_string()).collect();
    let words = |w: &[&str]| w.iter().map(|s| s.to_string()).collect::<Vec<String>>();
    let ex = |tokens: &[&str], tags: &[&str]| record(Example::Tagged { tokens: words(tokens), tags: words(tags) });
    let enc =
        Encoder::new(&tok, None, &labels, EncodeOptions { max_length: Some(6), ..EncodeOptions::default() }).unwrap();
    // "Zwierzyniecka" splits into several word pieces: only the first is trained; [CLS]/[SEP] never are.
    let e = enc.encode(&ex(&["to", "Zwierzyniecka"], &["O", "B-LOC"])).unwrap();
    let pieces = tok.decode(&e.sequence.input_ids, false).unwrap();
    assert!(e.sequence.len() > 4 && pieces.starts_with("[CLS] to zw"), "{pieces}");
    let mut want = vec![IGNORE, 1, 0];
    want.resize(e.sequence.len(), IGNORE);
    assert_eq!(e.sequence.labels, want);
    // Truncation keeps [SEP] and counts the cut; words cut off are not trained.
    let e = enc.encode(&ex(&["a", "b", "c", "d", "e", "f"], &["O"; 6])).unwrap();
    assert!(e.truncated);
    assert_eq!(e.sequence.labels, vec![IGNORE, 1, 1, 1, 1, IGNORE]);
    assert_eq!(tok.decode(&e.sequence.input_ids, false).unwrap(), "[CLS] a b c d [SEP]");
    // A tag outside the label map is refused with the field.
    let err = enc.encode(&ex(&["x"], &["B-PER"])).unwrap_err();
    assert_eq!(err.field.as_deref(), Some("tags"));
}
