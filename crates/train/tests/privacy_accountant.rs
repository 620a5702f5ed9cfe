//! The accountants against Opacus 1.6 (fixture: scripts/make_privacy_fixture.py): ε of
//! `RDPAccountant` and `PRVAccountant` within 1e-3 relative over a grid of noise multipliers,
//! sampling rates, step counts and δ, and the noise multiplier `get_noise_multiplier` solves.

use serde_json::Value;
use tunesmith_train::privacy::{epsilon, noise_for_epsilon, AccountantKind};

fn fixture() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/privacy_accountant.json");
    serde_json::from_str(&std::fs::read_to_string(path).expect("fixture")).expect("json")
}

fn params(row: &Value) -> (f64, f64, u64, f64) {
    (
        row["noise_multiplier"].as_f64().unwrap(),
        row["sample_rate"].as_f64().unwrap(),
        row["steps"].as_u64().unwrap(),
        row["delta"].as_f64().unwrap(),
    )
}

fn check(kind: AccountantKind, key: &str) {
    let fx = fixture();
    let mut worst = 0.0_f64;
    let mut checked = 0;
    for row in fx["grid"].as_array().unwrap() {
        let Some(want) = row[key].as_f64() else { continue };
        let (sigma, q, steps, delta) = params(row);
        let got = epsilon(kind, &[(sigma, q, steps)], delta).unwrap();
        let rel = (got - want).abs() / want;
        worst = worst.max(rel);
        assert!(rel < 1e-3, "{key} sigma {sigma} q {q} steps {steps} delta {delta}: ours {got}, Opacus {want}");
        checked += 1;
    }
    assert!(checked >= 70, "only {checked} grid points checked");
    eprintln!("{key}: {checked} points, worst relative difference {worst:.2e}");
}

#[test]
fn rdp_epsilon_equals_opacus() {
    check(AccountantKind::Rdp, "rdp_epsilon");
}

#[test]
fn prv_epsilon_equals_opacus() {
    check(AccountantKind::Prv, "prv_epsilon");
}

#[test]
fn noise_multiplier_for_a_target_equals_opacus() {
    for row in fixture()["noise"].as_array().unwrap() {
        let target = row["target_epsilon"].as_f64().unwrap();
        let (q, steps, delta) =
            (row["sample_rate"].as_f64().unwrap(), row["steps"].as_u64().unwrap(), row["delta"].as_f64().unwrap());
        let want = row["noise_multiplier"].as_f64().unwrap();
        let got = noise_for_epsilon(AccountantKind::Rdp, target, delta, q, steps).unwrap();
        // Both searches stop within 0.01 ε of the target, so the multipliers agree to that slack.
        assert!((got - want).abs() / want < 1e-2, "target {target}: ours {got}, Opacus {want}");
        let spent = epsilon(AccountantKind::Rdp, &[(got, q, steps)], delta).unwrap();
        assert!(spent <= target && target - spent <= 0.01, "target {target}, spent {spent}");
    }
}
