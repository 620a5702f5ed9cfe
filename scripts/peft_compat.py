#!/usr/bin/env python3
"""LoRA adapters between tunesmith and Python PEFT, both directions, on all-MiniLM-L6-v2 with a
6-intent classification head.

  python3 scripts/peft_compat.py MINILM_DIR OUT_DIR           # regenerate the fixtures
  python3 scripts/peft_compat.py MINILM_DIR OUT_DIR --check   # check live against the binary

1. tunesmith -> PEFT: `tunesmith train` (target/release/tunesmith) makes a LoRA adapter; PEFT
   loads it onto the same base and computes logits on fixed texts.
2. PEFT -> tunesmith: PEFT makes an adapter (random A and B, so it is far from identity) and
   computes logits.
Fixtures: OUT_DIR/{ours,peft}/adapter + OUT_DIR/{ours,peft}/logits.json (texts, input ids,
logits). crates/cli/tests/peft_compat.rs loads each adapter in tunesmith and matches the logits
to 1e-4. With --check, the script also runs `tunesmith eval` on both adapters and compares its
probabilities with PEFT's live.
"""
import json, os, shutil, subprocess, sys, tempfile

import torch
from peft import LoraConfig, PeftModel, TaskType, get_peft_model
from transformers import AutoModelForSequenceClassification, AutoTokenizer

MINILM, OUT = sys.argv[1], sys.argv[2]
CHECK = "--check" in sys.argv
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LABELS = ["account", "billing", "cancellation", "returns", "shipping", "technical_support"]
TEXTS = [
    "I was charged twice for my order, please refund one",
    "where is my package? tracking has not moved in a week",
    "the app crashes when I open it on my iPhone",
    "Please cancel my Pro subscription before it renews.",
    "Can I return the headphones if the box is opened?",
    "I forgot my password and the reset link expired",
]


def base_model():
    torch.manual_seed(0)
    return AutoModelForSequenceClassification.from_pretrained(
        MINILM, num_labels=len(LABELS), id2label=dict(enumerate(LABELS)), label2id={l: i for i, l in enumerate(LABELS)})


def logits_of(model, tok):
    model.eval()
    out = []
    ids = []
    with torch.no_grad():
        for t in TEXTS:
            enc = tok(t, return_tensors="pt")
            ids.append(enc["input_ids"][0].tolist())
            out.append(model(**enc).logits[0].tolist())
    return ids, out


def tunesmith_adapter(dest):
    run = tempfile.mkdtemp()
    cfg = os.path.join(run, "run.toml")
    with open(cfg, "w") as f:
        f.write(f'''[model]
path = "{MINILM}"
[task]
kind = "classification"
labels = {json.dumps(LABELS)}
[data]
train = "{ROOT}/examples/intents/train.jsonl"
validation_split = 0.0
max_length = 48
max_train_rows = 96
[method]
kind = "lora"
lora_r = 4
lora_alpha = 8
lora_targets = ["query", "key", "value", "dense"]
lora_bias = "lora_only"
[train]
max_steps = 12
batch_size = 8
lr = 5e-3
seed = 11
[output]
dir = "{run}/out"
save_checkpoints = false
''')
    subprocess.run([os.path.join(ROOT, "target/release/tunesmith"), "train", cfg], check=True,
                   stdout=subprocess.DEVNULL)
    shutil.rmtree(dest, ignore_errors=True)
    shutil.copytree(os.path.join(run, "out/final/adapter"), dest)


def peft_adapter(dest, tok):
    torch.manual_seed(5)
    cfg = LoraConfig(task_type=TaskType.SEQ_CLS, r=4, lora_alpha=8, target_modules=["query", "value"],
                     init_lora_weights=False)
    model = get_peft_model(base_model(), cfg)
    shutil.rmtree(dest, ignore_errors=True)
    model.save_pretrained(dest)


def peft_logits(adapter, tok):
    model = PeftModel.from_pretrained(base_model(), adapter)
    return logits_of(model, tok)


def main():
    tok = AutoTokenizer.from_pretrained(MINILM)
    for name, make in [("ours", lambda d: tunesmith_adapter(d)), ("peft", lambda d: peft_adapter(d, tok))]:
        d = os.path.join(OUT, name)
        os.makedirs(d, exist_ok=True)
        adapter = os.path.join(d, "adapter")
        if not CHECK:
            make(adapter)
        ids, logits = peft_logits(adapter, tok)
        fixture = {"labels": LABELS, "texts": TEXTS, "input_ids": ids, "logits": logits}
        if CHECK:
            data = os.path.join(tempfile.mkdtemp(), "texts.jsonl")
            with open(data, "w") as f:
                for t in TEXTS:
                    f.write(json.dumps({"text": t, "label": LABELS[0]}) + "\n")
            out = tempfile.mkdtemp()
            subprocess.run([os.path.join(ROOT, "target/release/tunesmith"), "eval", "--model", MINILM, "--adapter", adapter,
                            "--data", data, "--labels", ",".join(LABELS), "--out", out], check=True, stdout=subprocess.DEVNULL)
            ours = [json.loads(l)["probs"] for l in open(os.path.join(out, "eval/predictions.jsonl"))]
            theirs = torch.softmax(torch.tensor(logits), -1).tolist()
            diff = max(abs(a - b) for x, y in zip(ours, theirs) for a, b in zip(x, y))
            print(f"{name}: max |p_tunesmith - p_peft| = {diff:.2e}")
            assert diff < 1e-4, name
        else:
            with open(os.path.join(d, "logits.json"), "w") as f:
                json.dump(fixture, f)
            print(name, "fixture written")


if __name__ == "__main__":
    main()
