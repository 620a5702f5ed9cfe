"""cleanlab's confident learning on seeded noisy predictions: the fixture that
crates/data/tests/label_issues_reference.rs compares our find_label_issues with.

Run: bench/.venv/bin/python scripts/make_label_issue_fixture.py  (needs `pip install cleanlab`)
Writes crates/data/tests/fixtures/label_issues.json.
"""
import json

import numpy as np
from cleanlab.filter import find_label_issues

rng = np.random.default_rng(11)
cases = []
for case, (n, k) in enumerate([(300, 2), (400, 3), (500, 4)]):
    truth = rng.integers(0, k, n)
    logits = rng.normal(0, 1, (n, k))
    logits[np.arange(n), truth] += 1.5 + 0.5 * case
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    probs = np.round(probs, 6)
    probs = probs / probs.sum(axis=1, keepdims=True)
    labels = truth.copy()
    flip = rng.random(n) < 0.1
    labels[flip] = (labels[flip] + rng.integers(1, k, flip.sum())) % k
    issues = find_label_issues(
        labels, probs, filter_by="prune_by_noise_rate", return_indices_ranked_by="self_confidence"
    )
    cases.append({"labels": labels.tolist(), "probs": probs.tolist(), "issues": [int(i) for i in issues]})
path = "crates/data/tests/fixtures/label_issues.json"
import os

os.makedirs(os.path.dirname(path), exist_ok=True)
with open(path, "w") as f:
    json.dump({"cases": cases}, f)
    f.write("\n")
print("wrote", path, [len(c["issues"]) for c in cases])
