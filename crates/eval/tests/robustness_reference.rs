//! The robustness suite's metrics against the reference libraries on committed fixtures
//! (`scripts/make_robustness_fixtures.py`): OOD ROC-AUC of the maximum-softmax and energy
//! scores against scikit-learn's `roc_auc_score`, and the demographic parity and equalized odds
//! differences against Fairlearn's.

use serde_json::Value;
use tunesmith_eval::fairness::fairness;
use tunesmith_eval::ood::ood_scores;

fn matrix(v: &Value) -> Vec<Vec<f64>> {
    v.as_array().unwrap().iter().map(|r| r.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect()).collect()
}

fn labels(v: &Value) -> Vec<usize> {
    v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as usize).collect()
}

#[test]
fn ood_auroc_and_fairness_differences_equal_sklearn_and_fairlearn() {
    let fixture: Value = serde_json::from_str(include_str!("fixtures/robustness.json")).unwrap();
    for (i, case) in fixture["cases"].as_array().unwrap().iter().enumerate() {
        let s = ood_scores(&matrix(&case["in_logits"]), &matrix(&case["out_logits"])).unwrap();
        for (ours, theirs) in [(s.auroc_max_softmax, "auroc_max_softmax"), (s.auroc_energy, "auroc_energy")] {
            let want = case[theirs].as_f64().unwrap();
            assert!((ours - want).abs() < 1e-12, "case {i} {theirs}: {ours} vs sklearn {want}");
        }
        let groups: Vec<String> =
            case["groups"].as_array().unwrap().iter().map(|g| g.as_str().unwrap().to_string()).collect();
        let f = fairness(&labels(&case["truth"]), &labels(&case["pred"]), &groups, 1).unwrap();
        for (ours, theirs) in [
            (f.demographic_parity_difference, "demographic_parity_difference"),
            (f.equalized_odds_difference, "equalized_odds_difference"),
        ] {
            let want = case[theirs].as_f64().unwrap();
            assert!((ours - want).abs() < 1e-12, "case {i} {theirs}: {ours} vs Fairlearn {want}");
        }
    }
}
