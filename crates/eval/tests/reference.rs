//! Agreement with the reference implementations: the fixtures hold inputs and the scores that
//! scikit-learn, scipy, sacrebleu, rouge-score, the SQuAD script and seqeval give them
//! (scripts/make_eval_fixtures.py and scripts/make_ner_fixture.py regenerate them).

use serde_json::Value;
use tunesmith_eval::calibration::{brier, calibration, ECE_BINS};
use tunesmith_eval::chrf::{corpus_chrf, ChrfVariant};
use tunesmith_eval::classification::{accuracy, matthews_corrcoef, precision_recall_f1, Confusion};
use tunesmith_eval::{bleu, gsm8k, regression, roc, rouge, squad};

fn fixture(name: &str) -> Value {
    let path = format!("{}/tests/fixtures/{name}.json", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(path).expect("fixture exists")).expect("fixture is JSON")
}

#[track_caller]
fn close(case: &str, what: &str, ours: f64, want: &Value, tol: f64) {
    let want = want.as_f64().unwrap_or_else(|| panic!("{case} {what}: expected value {want}"));
    assert!((ours - want).abs() <= tol, "{case} {what}: ours {ours} vs reference {want} (tolerance {tol})");
}

fn usizes(v: &Value) -> Vec<usize> {
    v.as_array().expect("list").iter().map(|x| x.as_u64().expect("class id") as usize).collect()
}

fn f64s(v: &Value) -> Vec<f64> {
    v.as_array().expect("list").iter().map(|x| x.as_f64().expect("number")).collect()
}

#[test]
fn classification_matches_scikit_learn() {
    let fx = fixture("classification");
    for case in fx["cases"].as_array().expect("cases") {
        let name = case["name"].as_str().expect("name");
        let (t, p) = (usizes(&case["truth"]), usizes(&case["pred"]));
        let e = &case["expected"];
        let tol = 1e-6;
        close(name, "accuracy", accuracy(&t, &p).unwrap(), &e["accuracy"], tol);
        close(name, "mcc", matthews_corrcoef(&t, &p).unwrap(), &e["mcc"], tol);
        let r = precision_recall_f1(&t, &p).unwrap();
        for (avg, ours) in [("micro", r.micro), ("macro", r.macro_avg), ("weighted", r.weighted)] {
            close(name, &format!("{avg} precision"), ours.precision, &e[avg]["precision"], tol);
            close(name, &format!("{avg} recall"), ours.recall, &e[avg]["recall"], tol);
            close(name, &format!("{avg} f1"), ours.f1, &e[avg]["f1"], tol);
        }
        let per = e["per_class"].as_array().unwrap();
        assert_eq!(per.len(), r.per_class.len(), "{name}: classes");
        for (k, (ours, want)) in r.per_class.iter().zip(per).enumerate() {
            close(name, &format!("class {k} f1"), ours.f1, &want["f1"], tol);
            close(name, &format!("class {k} precision"), ours.precision, &want["precision"], tol);
            assert_eq!(ours.support, want["support"].as_u64().unwrap(), "{name} class {k} support");
        }
        let cm = Confusion::new(&t, &p).unwrap();
        let want_cm: Vec<Vec<u64>> = serde_json::from_value(e["confusion"].clone()).unwrap();
        assert_eq!(cm.counts, want_cm, "{name}: confusion matrix");
        if case["probs"].is_null() {
            continue;
        }
        let probs: Vec<Vec<f64>> = serde_json::from_value(case["probs"].clone()).unwrap();
        match roc::roc_auc_ovr(&t, &probs) {
            Ok(auc) => close(name, "roc_auc", auc, &e["roc_auc"], tol),
            Err(err) => assert!(e["roc_auc"].is_null(), "{name}: ROC-AUC failed ({err}) but sklearn gives one"),
        }
        let cal = calibration(&t, &probs, ECE_BINS).unwrap();
        close(name, "ece", cal.ece, &e["ece"], tol);
        for (b, want) in cal.bins.iter().zip(e["reliability"].as_array().unwrap()) {
            assert_eq!(b.count, want["count"].as_u64().unwrap(), "{name}: reliability bin count");
            close(name, "bin confidence", b.confidence, &want["confidence"], tol);
        }
        close(name, "brier", brier(&t, &probs).unwrap(), &e["brier"], tol);
    }
}

#[test]
fn roc_auc_of_a_single_class_is_an_error_not_a_number() {
    let err = roc::roc_auc_binary(&[true, true], &[0.2, 0.9]).unwrap_err().to_string();
    assert!(err.contains("only one class"), "{err}");
}

#[test]
fn regression_matches_scikit_learn_and_scipy() {
    let fx = fixture("regression");
    for case in fx["cases"].as_array().expect("cases") {
        let name = case["name"].as_str().unwrap();
        let s = regression::regression(&f64s(&case["truth"]), &f64s(&case["pred"])).unwrap();
        let e = &case["expected"];
        for (k, v) in [("mse", s.mse), ("mae", s.mae), ("r2", s.r2), ("pearson", s.pearson), ("spearman", s.spearman)] {
            close(name, k, v, &e[k], 1e-9);
        }
    }
}

#[test]
fn generation_matches_sacrebleu_rouge_score_and_squad() {
    let fx = fixture("generation");
    for case in fx["cases"].as_array().expect("cases") {
        let name = case["name"].as_str().unwrap();
        let hyps: Vec<String> = serde_json::from_value(case["hyps"].clone()).unwrap();
        let refs: Vec<Vec<String>> = serde_json::from_value(case["refs"].clone()).unwrap();
        let e = &case["expected"];
        let b = bleu::corpus_bleu(&hyps, &refs).unwrap();
        close(name, "bleu", b.score, &e["bleu"], 0.01);
        assert_eq!(b.sys_len, e["sys_len"].as_u64().unwrap(), "{name}: BLEU sys_len");
        assert_eq!(b.ref_len, e["ref_len"].as_u64().unwrap(), "{name}: BLEU ref_len");
        for (n, want) in e["bleu_precisions"].as_array().unwrap().iter().enumerate() {
            close(name, &format!("bleu precision {}", n + 1), b.precisions[n], want, 1e-6);
        }
        close(name, "chrf", corpus_chrf(&hyps, &refs, ChrfVariant::Chrf).unwrap(), &e["chrf"], 0.01);
        close(name, "chrf++", corpus_chrf(&hyps, &refs, ChrfVariant::ChrfPlusPlus).unwrap(), &e["chrf++"], 0.01);
        for (stem, tag) in [(true, "stem"), (false, "nostem")] {
            let scores = rouge::corpus_scores(&hyps, &refs, stem).unwrap();
            let means = rouge::mean_f(&scores, 0..scores.len());
            for (k, t) in ["rouge1", "rouge2", "rougeL", "rougeLsum"].iter().enumerate() {
                close(name, &format!("{t} {tag}"), means[k], &e[format!("{t}_{tag}")], 1e-4);
            }
            for (i, (s, want)) in scores.iter().zip(e[format!("rougeL_per_pair_{tag}")].as_array().unwrap()).enumerate()
            {
                close(name, &format!("rougeL {tag} pair {i} ({:?})", hyps[i]), s.rouge_l.fmeasure, want, 1e-9);
            }
        }
        let mean = |f: &dyn Fn(&str, &[String]) -> f64| {
            100.0 * hyps.iter().zip(&refs).map(|(h, r)| f(h, r)).sum::<f64>() / hyps.len() as f64
        };
        close(name, "exact_match", mean(&|h, r| squad::best_over(squad::exact_match, h, r)), &e["exact_match"], 1e-6);
        close(name, "f1", mean(&|h, r| squad::best_over(squad::token_f1, h, r)), &e["f1"], 1e-6);
        close(name, "gsm8k", mean(&|h, r| squad::best_over(gsm8k::gsm8k_correct, h, r)), &e["gsm8k_accuracy"], 1e-6);
        for (h, want) in hyps.iter().zip(e["gsm8k_answers"].as_array().unwrap()) {
            assert_eq!(gsm8k::extract_answer(h).as_deref(), want.as_str(), "{name}: GSM8K answer of {h:?}");
        }
    }
}

#[test]
fn porter_stemmer_matches_nltk_on_every_word_of_real_text() {
    let pairs: Vec<(String, String)> = serde_json::from_value(fixture("porter")).unwrap();
    assert!(pairs.len() > 5000, "{} words", pairs.len());
    let wrong: Vec<_> = pairs.iter().filter(|(w, s)| tunesmith_eval::porter::stem(w) != *s).take(10).collect();
    assert!(wrong.is_empty(), "stems differ from NLTK's: {wrong:?}");
}

#[test]
fn porter_stemmer_matches_nltk_on_known_words() {
    // NLTK's PorterStemmer() (NLTK_EXTENSIONS mode) outputs.
    for (w, s) in [
        ("caresses", "caress"),
        ("ponies", "poni"),
        ("ties", "tie"),
        ("running", "run"),
        ("hopping", "hop"),
        ("filing", "file"),
        ("happy", "happi"),
        ("relational", "relat"),
        ("generalization", "gener"),
        ("skies", "sky"),
        ("dying", "die"),
        ("agreed", "agre"),
        ("controlling", "control"),
        ("fairly", "fairli"),
        ("analogies", "analog"),
    ] {
        assert_eq!(tunesmith_eval::porter::stem(w), s, "stem of {w}");
    }
}

#[test]
fn entity_scores_match_seqeval() {
    let fx = fixture("ner");
    let cases = fx["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 40);
    for (i, c) in cases.iter().enumerate() {
        let truth: Vec<Vec<String>> = serde_json::from_value(c["truth"].clone()).unwrap();
        let pred: Vec<Vec<String>> = serde_json::from_value(c["pred"].clone()).unwrap();
        let want: Vec<Vec<(String, usize, usize)>> = serde_json::from_value(c["entities"].clone()).unwrap();
        for (s, w) in truth.iter().zip(&want) {
            let got: Vec<(String, usize, usize)> =
                tunesmith_eval::ner::entities(s).into_iter().map(|e| (e.kind, e.start, e.end)).collect();
            assert_eq!(&got, w, "case {i}: {s:?}");
        }
        let s = tunesmith_eval::ner::entity_scores(&truth, &pred).unwrap();
        let case = format!("ner case {i}");
        close(&case, "precision", s.precision, &c["precision"], 1e-12);
        close(&case, "recall", s.recall, &c["recall"], 1e-12);
        close(&case, "f1", s.f1, &c["f1"], 1e-12);
    }
}
