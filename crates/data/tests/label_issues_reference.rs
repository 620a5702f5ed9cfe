//! Confident learning against cleanlab: on seeded noisy predictions
//! (`scripts/make_label_issue_fixture.py`), `find_label_issues` flags the same rows as cleanlab's
//! `find_label_issues(filter_by="prune_by_noise_rate")`, ranked the same way (self-confidence).

use serde_json::Value;
use tunesmith_data::clean::label_issues::find_label_issues;

#[test]
fn flagged_rows_equal_cleanlabs() {
    let fixture: Value = serde_json::from_str(include_str!("fixtures/label_issues.json")).unwrap();
    for (c, case) in fixture["cases"].as_array().unwrap().iter().enumerate() {
        let labels: Vec<usize> =
            case["labels"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as usize).collect();
        let probs: Vec<Vec<f64>> = case["probs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r.as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect())
            .collect();
        let want: Vec<usize> =
            case["issues"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as usize).collect();
        let got: Vec<usize> = find_label_issues(&labels, &probs).iter().map(|i| i.index).collect();
        assert_eq!(got, want, "case {c}");
    }
}
