"""Reference values for the robustness suite's metrics: scikit-learn's roc_auc_score of the
maximum-softmax and energy OOD scores, and Fairlearn's demographic parity and equalized odds
differences, on seeded random data.

Run: bench/.venv/bin/python scripts/make_robustness_fixtures.py  (needs scikit-learn, fairlearn)
Writes crates/eval/tests/fixtures/robustness.json.
"""
import json

import numpy as np
from fairlearn.metrics import demographic_parity_difference, equalized_odds_difference
from scipy.special import logsumexp, softmax
from sklearn.metrics import roc_auc_score

rng = np.random.default_rng(7)
cases = []
for case in range(4):
    k = 2 + case % 3
    n_in, n_out = 150 + 20 * case, 90
    in_logits = rng.normal(0, 1, (n_in, k))
    in_logits[np.arange(n_in), rng.integers(0, k, n_in)] += 2.0 + case
    out_logits = rng.normal(0, 1.2, (n_out, k))
    if case == 3:
        in_logits = np.round(in_logits, 1)  # ties
        out_logits = np.round(out_logits, 1)
    logits = np.vstack([in_logits, out_logits])
    is_in = np.array([1] * n_in + [0] * n_out)
    msp = softmax(logits, axis=1).max(axis=1)
    energy = logsumexp(logits, axis=1)
    n = 400
    truth = rng.integers(0, 2, n)
    groups = rng.choice(["a", "b", "c"], n, p=[0.5, 0.3, 0.2])
    bias = np.where(groups == "a", 0.15, np.where(groups == "b", -0.1, 0.0))
    pred = (rng.random(n) < 0.5 + bias + 0.3 * (truth - 0.5)).astype(int)
    cases.append(
        {
            "in_logits": in_logits.tolist(),
            "out_logits": out_logits.tolist(),
            "auroc_max_softmax": roc_auc_score(is_in, msp),
            "auroc_energy": roc_auc_score(is_in, energy),
            "truth": truth.tolist(),
            "pred": pred.tolist(),
            "groups": groups.tolist(),
            "demographic_parity_difference": demographic_parity_difference(truth, pred, sensitive_features=groups),
            "equalized_odds_difference": equalized_odds_difference(truth, pred, sensitive_features=groups),
        }
    )
path = "crates/eval/tests/fixtures/robustness.json"
with open(path, "w") as f:
    json.dump({"cases": cases}, f)
    f.write("\n")
print("wrote", path)
