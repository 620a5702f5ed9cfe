"""Writes crates/eval/tests/fixtures/ner.json: entity-level scores from seqeval (default mode,
the conlleval chunking) for seeded tag sequences, including ill-formed ones (I- after O, type
changes inside a chunk, bare B/I, IOBES tags), which tunesmith's NER metrics must reproduce.

Usage: python scripts/make_ner_fixture.py   (needs `pip install seqeval`)
"""
import json
import os
import random

from seqeval.metrics import f1_score, precision_score, recall_score
from seqeval.metrics.sequence_labeling import get_entities

TAGS = ["O", "O", "O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-ORG", "I-ORG", "E-LOC", "S-PER", "B", "I"]


def main():
    rng = random.Random(7)
    cases = []
    for n in range(40):
        sents = rng.randint(1, 6)
        truth, pred = [], []
        for _ in range(sents):
            length = rng.randint(1, 12)
            t = [rng.choice(TAGS) for _ in range(length)]
            # Predictions: the truth with some tags changed.
            p = [x if rng.random() < 0.7 else rng.choice(TAGS) for x in t]
            truth.append(t)
            pred.append(p)
        cases.append({
            "truth": truth,
            "pred": pred,
            "entities": [[list(e) for e in get_entities(s)] for s in truth],
            "precision": precision_score(truth, pred),
            "recall": recall_score(truth, pred),
            "f1": f1_score(truth, pred),
        })
    out = os.path.join(os.path.dirname(__file__), "..", "crates", "eval", "tests", "fixtures", "ner.json")
    with open(out, "w") as f:
        json.dump({"source": "seqeval (default mode)", "cases": cases}, f, indent=None)
        f.write("\n")


if __name__ == "__main__":
    main()
