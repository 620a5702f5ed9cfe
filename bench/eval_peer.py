#!/usr/bin/env python3
"""sacrebleu and rouge-score over a JSONL file of {"hypothesis", "reference"} pairs, timed: what
`bench -- eval` compares against. Corpus BLEU with sacrebleu's defaults; ROUGE-1/2/L/Lsum with
the Porter stemmer, one `score` per pair, mean F-measure. Prints one JSON line.

  python bench/eval_peer.py --input pairs.jsonl
"""
import argparse, json, time

import sacrebleu
from rouge_score import rouge_scorer


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--input", required=True)
    a = ap.parse_args()
    with open(a.input, encoding="utf-8") as f:
        rows = [json.loads(line) for line in f]
    hyps = [r["hypothesis"] for r in rows]
    refs = [r["reference"] for r in rows]

    t = time.perf_counter()
    bleu = sacrebleu.corpus_bleu(hyps, [refs])
    bleu_s = time.perf_counter() - t

    t = time.perf_counter()
    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL", "rougeLsum"], use_stemmer=True)
    sums = {k: 0.0 for k in ["rouge1", "rouge2", "rougeL", "rougeLsum"]}
    for h, r in zip(hyps, refs):
        s = scorer.score(r, h)
        for k in sums:
            sums[k] += s[k].fmeasure
    rouge_s = time.perf_counter() - t
    print(json.dumps({
        "pairs": len(rows), "bleu": bleu.score, "bleu_s": bleu_s,
        "rouge": {k: v / len(rows) for k, v in sums.items()}, "rouge_s": rouge_s,
        "sacrebleu": sacrebleu.__version__,
    }))


if __name__ == "__main__":
    main()
