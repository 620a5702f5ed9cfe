#!/usr/bin/env python3
"""Regenerates crates/eval/tests/fixtures/*.json: predictions, references and the scores the
reference implementations give them (scikit-learn, scipy, sacrebleu, rouge-score, the SQuAD
v1.1 script's normalization), which the Rust eval crate must reproduce.

Text comes from ../shared/data: real model responses against references (rasbt-instruction's
eval-example-data.json), GSM8K solutions, open-QA answers; plus hand-written edge cases (empty
hypotheses, unicode, tokenizer corner cases).

  python3 scripts/make_eval_fixtures.py ../shared crates/eval/tests/fixtures
"""
import collections, json, os, random, re, string, sys

import numpy as np
import sacrebleu
import scipy.stats
import sklearn
from rouge_score import rouge_scorer
from sklearn import metrics as skm

SHARED, OUT = sys.argv[1], sys.argv[2]
os.makedirs(OUT, exist_ok=True)
rng = random.Random(20261123)


# ---------------------------------------------------------------- classification
def ece_reference(y, probs, bins=15):
    """15 equal-width bins of the top-class confidence; c in (lo, hi], 0 in the first bin."""
    probs = np.asarray(probs, dtype=np.float64)
    conf = probs.max(axis=1)
    pred = probs.argmax(axis=1)
    edges = np.linspace(0.0, 1.0, bins + 1)
    ece, table = 0.0, []
    for b in range(bins):
        lo, hi = edges[b], edges[b + 1]
        mask = (conf > lo) & (conf <= hi)
        if b == 0:
            mask |= conf == 0.0
        n = int(mask.sum())
        c = float(conf[mask].mean()) if n else 0.0
        a = float((pred[mask] == np.asarray(y)[mask]).mean()) if n else 0.0
        ece += n / len(y) * abs(a - c)
        table.append({"count": n, "confidence": c, "accuracy": a})
    return ece, table


def softmax(z):
    z = np.asarray(z, dtype=np.float64)
    e = np.exp(z - z.max())
    return (e / e.sum()).tolist()


def classification_case(name, truth, pred, probs=None):
    labels = sorted(set(truth) | set(pred))
    p, r, f, s = skm.precision_recall_fscore_support(truth, pred, labels=labels, zero_division=0)
    exp = {
        "accuracy": skm.accuracy_score(truth, pred),
        "per_class": [{"precision": a, "recall": b, "f1": c, "support": int(d)} for a, b, c, d in zip(p, r, f, s)],
        "mcc": skm.matthews_corrcoef(truth, pred),
        "confusion": skm.confusion_matrix(truth, pred, labels=labels).tolist(),
    }
    for avg in ["micro", "macro", "weighted"]:
        a, b, c, _ = skm.precision_recall_fscore_support(truth, pred, labels=labels, average=avg, zero_division=0)
        exp[avg] = {"precision": a, "recall": b, "f1": c}
    if probs is not None:
        k = len(probs[0])
        if len(set(truth)) < 2:
            exp["roc_auc"] = None
        elif k == 2:
            exp["roc_auc"] = skm.roc_auc_score(truth, [q[1] for q in probs])
        else:
            exp["roc_auc"] = skm.roc_auc_score(truth, probs, multi_class="ovr", average="macro", labels=list(range(k)))
        exp["ece"], exp["reliability"] = ece_reference(truth, probs)
        if k == 2:
            exp["brier"] = skm.brier_score_loss(truth, [q[1] for q in probs], labels=[0, 1])
        else:
            exp["brier"] = skm.brier_score_loss(truth, probs, labels=list(range(k)))
    return {"name": name, "truth": truth, "pred": pred, "probs": probs, "expected": exp}


def classification_cases():
    cases = []
    rows = [l.rstrip("\n").split("\t") for l in open(f"{SHARED}/data/sst2/dev.tsv", encoding="utf-8")][1:]
    truth = [int(r[0]) for r in rows]
    probs = []
    for t in truth:  # a noisy but informative classifier
        z = rng.gauss(1.2 if t else -1.2, 1.5)
        probs.append(softmax([0.0, z]))
    pred = [int(np.argmax(q)) for q in probs]
    cases.append(classification_case("sst2_dev_binary", truth, pred, probs))
    # Ties in ROC: probabilities rounded to one decimal.
    rounded = [[round(1 - round(q[1], 1), 10), round(q[1], 1)] for q in probs]
    cases.append(classification_case("sst2_dev_roc_ties", truth, [int(q[1] > 0.5) for q in rounded], rounded))
    # Four classes from SentEval MPQA/CR/MR/SUBJ provenance, here sst fine-grained (5 classes).
    fine = [l.split(" ", 1) for l in open(f"{SHARED}/data/senteval-sst-fine-grained/sentiment-dev", encoding="utf-8")]
    truth5 = [int(a) for a, _ in fine[:600]]
    probs5 = []
    for t in truth5:
        z = [rng.gauss(0, 1) for _ in range(5)]
        z[t] += 1.5
        probs5.append(softmax(z))
    pred5 = [int(np.argmax(q)) for q in probs5]
    cases.append(classification_case("sst_fine_5class", truth5, pred5, probs5))
    # A class never predicted, and one never present (zero_division paths).
    t = [0, 0, 1, 1, 2, 2, 2, 0, 1, 2]
    p = [0, 1, 1, 1, 1, 3, 3, 0, 0, 1]
    cases.append(classification_case("absent_classes", t, p))
    # A single class everywhere.
    cases.append(classification_case("single_class", [1] * 20, [1] * 20, [[0.3, 0.7]] * 20))
    return cases


# ---------------------------------------------------------------- regression
def regression_cases():
    fine = [l.split(" ", 1) for l in open(f"{SHARED}/data/senteval-sst-fine-grained/sentiment-dev", encoding="utf-8")]
    truth = [float(a) for a, _ in fine[:500]]
    pred = [t + rng.gauss(0, 0.9) for t in truth]
    ties = [float(round(x)) for x in pred]
    cases = []
    for name, p in [("sst_fine_scores", pred), ("rounded_with_ties", ties)]:
        cases.append({"name": name, "truth": truth, "pred": p, "expected": {
            "mse": skm.mean_squared_error(truth, p), "mae": skm.mean_absolute_error(truth, p),
            "r2": skm.r2_score(truth, p),
            "pearson": float(scipy.stats.pearsonr(truth, p)[0]), "spearman": float(scipy.stats.spearmanr(truth, p)[0]),
        }})
    return cases


# ---------------------------------------------------------------- generation
def squad_normalize(s):
    """The SQuAD v1.1 evaluation script's normalize_answer."""
    def remove_articles(text):
        return re.sub(r"\b(a|an|the)\b", " ", text)

    def white_space_fix(text):
        return " ".join(text.split())

    def remove_punc(text):
        exclude = set(string.punctuation)
        return "".join(ch for ch in text if ch not in exclude)

    return white_space_fix(remove_articles(remove_punc(s.lower())))


def squad_f1(pred, gt):
    p, g = squad_normalize(pred).split(), squad_normalize(gt).split()
    common = collections.Counter(p) & collections.Counter(g)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision, recall = same / len(p), same / len(g)
    return 2 * precision * recall / (precision + recall)


def squad_em(pred, gt):
    return float(squad_normalize(pred) == squad_normalize(gt))


NUMBER = re.compile(r"-?\d(?:\d|,(?=\d))*(?:\.\d+)?")


def gsm8k_extract(text):
    def norm(n):
        neg = n.startswith("-")
        n = n.lstrip("-").replace(",", "")
        if "." in n:
            n = n.rstrip("0").rstrip(".")
        n = n.lstrip("0")
        if n == "" or n.startswith("."):
            n = "0" + n
        return "-" + n if neg and n != "0" else n

    if "####" in text:
        found = NUMBER.findall(text[text.rfind("####") + 4:])
        if found:
            return norm(found[0])
    found = NUMBER.findall(text)
    return norm(found[-1]) if found else None


def gsm8k_correct(pred, ref):
    p, r = gsm8k_extract(pred), gsm8k_extract(ref)
    return float(p is not None and r is not None and p == r)


ROUGE_TYPES = ["rouge1", "rouge2", "rougeL", "rougeLsum"]


def generation_case(name, hyps, refs):
    """refs[i] is the list of references of hypothesis i (all the same length)."""
    k = len(refs[0])
    assert all(len(r) == k for r in refs)
    streams = [[r[j] for r in refs] for j in range(k)]
    bleu = sacrebleu.corpus_bleu(hyps, streams)
    chrf = sacrebleu.corpus_chrf(hyps, streams)
    chrfpp = sacrebleu.metrics.CHRF(word_order=2).corpus_score(hyps, streams)
    exp = {
        "bleu": bleu.score, "bleu_precisions": bleu.precisions, "bleu_bp": bleu.bp,
        "sys_len": bleu.sys_len, "ref_len": bleu.ref_len,
        "chrf": chrf.score, "chrf++": chrfpp.score,
        "exact_match": 100 * float(np.mean([max(squad_em(h, g) for g in r) for h, r in zip(hyps, refs)])),
        "f1": 100 * float(np.mean([max(squad_f1(h, g) for g in r) for h, r in zip(hyps, refs)])),
        "gsm8k_accuracy": 100 * float(np.mean([max(gsm8k_correct(h, g) for g in r) for h, r in zip(hyps, refs)])),
        "gsm8k_answers": [gsm8k_extract(h) for h in hyps],
    }
    for stem in [True, False]:
        scorer = rouge_scorer.RougeScorer(ROUGE_TYPES, use_stemmer=stem)
        scores = [scorer.score_multi(r, h) for h, r in zip(hyps, refs)]
        tag = "stem" if stem else "nostem"
        for t in ROUGE_TYPES:
            exp[f"{t}_{tag}"] = float(np.mean([s[t].fmeasure for s in scores]))
        exp[f"rougeL_per_pair_{tag}"] = [s["rougeL"].fmeasure for s in scores]
    return {"name": name, "hyps": hyps, "refs": refs, "expected": exp}


def generation_cases():
    cases = []
    ev = json.load(open(f"{SHARED}/data/rasbt-instruction/eval-example-data.json", encoding="utf-8"))
    refs = [[e["output"]] for e in ev]
    cases.append(generation_case("rasbt_model1", [e["model 1 response"] for e in ev], refs))
    cases.append(generation_case("rasbt_model2", [e["model 2 response"] for e in ev], refs))
    cases.append(generation_case("rasbt_model1_two_refs", [e["model 1 response"] for e in ev],
                                 [[e["output"], e["model 2 response"]] for e in ev]))
    gsm = [json.loads(l) for l in open(f"{SHARED}/data/gsm8k/train.jsonl", encoding="utf-8")][:200]
    hyps = []
    for i, g in enumerate(gsm):
        sol = g["answer"]
        r = rng.random()
        if r < 0.4:  # right answer, reworded ending
            hyps.append(sol.split("####")[0] + "The answer is " + sol.split("####")[1].strip() + ".")
        elif r < 0.7:  # another problem's solution
            hyps.append(gsm[(i + 7) % len(gsm)]["answer"])
        else:  # a truncated solution
            words = sol.split()
            hyps.append(" ".join(words[: max(1, len(words) // 2)]))
    cases.append(generation_case("gsm8k_solutions", hyps, [[g["answer"]] for g in gsm]))
    qa = [json.loads(l)["text"] for l in open(f"{SHARED}/data/dolly-openqa-subset/chinkara-open_qa.jsonl", encoding="utf-8")][:150]
    answers = [t.split("### Assistant:", 1)[1].strip() for t in qa if "### Assistant:" in t]
    hyps = []
    for i, a in enumerate(answers):
        words = a.split()
        r = rng.random()
        if r < 0.3:
            hyps.append(a)
        elif r < 0.6:
            rng.shuffle(words)
            hyps.append(" ".join(words[: max(1, len(words) * 2 // 3)]))
        elif r < 0.8:
            hyps.append("The answer is " + " ".join(words[:5]))
        else:
            hyps.append(answers[(i + 3) % len(answers)])
    cases.append(generation_case("openqa_answers", hyps, [[a] for a in answers]))
    edge_h = [
        "", "   ", "Hello , world .", "A b-c 1,000.5 and 3-4 &amp; &lt;tag&gt; <skipped> end-\nline.",
        "Café naïve — “quotes” ‘single’ … 日本語のテキスト 👋🏽 e\u0301", "İstanbul KELVIN \u212a ß straße",
        "tab\tand\u00a0nbsp\u2009thin\u3000ideographic\x1cFS", "The the THE a an", "running runs easily fairly sky skies dying",
        "generalization conditional hopefully relational", "12. 13, 1.5 ,7 x.y a,b", "one\n\ntwo\nthree",
    ]
    edge_r = [
        "something", "", "Hello, world!", "A b-c 1,000.5 and 3 - 4 & <tag> end-line.",
        "Cafe naive - \"quotes\" 'single' ... 日本語のテキスト 👋 é", "istanbul kelvin k ss strasse",
        "tab and nbsp thin ideographic FS", "the", "run run easy fair sky sky die",
        "general condition hope relate", "12 . 13 , 1.5, 7 x . y a , b", "one two\nthree",
    ]
    cases.append(generation_case("edge_cases", edge_h, [[r] for r in edge_r]))
    cases.append(generation_case("all_empty_hypotheses", ["", ""], [["a reference"], ["another one"]]))
    return cases


def stemmer_cases():
    """NLTK's Porter stems (the mode rouge-score uses) of every distinct word in two real texts."""
    from nltk.stem import porter
    stemmer = porter.PorterStemmer()
    words = set()
    for f in ["tinyshakespeare/input.txt", "tinystories-sample/tinystories.txt"]:
        path = f"{SHARED}/data/{f}"
        if os.path.exists(path):
            words |= set(re.findall(r"[a-z0-9]+", open(path, encoding="utf-8").read().lower()))
    return [[w, stemmer.stem(w)] for w in sorted(words) if len(w) > 3]


def main():
    out = {"versions": {"scikit-learn": sklearn.__version__, "sacrebleu": sacrebleu.__version__,
                        "scipy": scipy.__version__, "numpy": np.__version__}}
    for name, cases in [("classification", classification_cases()), ("regression", regression_cases()),
                        ("generation", generation_cases())]:
        with open(os.path.join(OUT, f"{name}.json"), "w", encoding="utf-8") as f:
            json.dump({**out, "cases": cases}, f, ensure_ascii=False)
        print(name, len(cases), "cases")
    with open(os.path.join(OUT, "porter.json"), "w", encoding="utf-8") as f:
        json.dump(stemmer_cases(), f)


if __name__ == "__main__":
    main()
