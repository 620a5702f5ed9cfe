#!/usr/bin/env python3
"""The Hugging Face Trainer (+PEFT for LoRA) fine-tuning all-MiniLM-L6-v2 for SST-2 sentiment:
what `bench -- sst2` compares tunesmith against, with the same data, hyperparameters and thread
count. Prints one JSON line with accuracy on the dev set and wall-clock.

  python bench/sst2_peer.py --model DIR --train train.tsv --dev dev.tsv --rows 4000 \
      --method full|lora|feature_extraction --epochs 2 --batch-size 32 --lr 5e-5 --threads 2
"""
import argparse, json, random, time

t_start = time.perf_counter()
import numpy as np
import torch
from transformers import (AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding, Trainer,
                          TrainingArguments)


def read_tsv(path):
    rows = []
    with open(path, encoding="utf-8") as f:
        next(f)
        for line in f:
            label, text = line.rstrip("\n").split("\t", 1)
            rows.append((text, int(label)))
    return rows


class Rows(torch.utils.data.Dataset):
    def __init__(self, enc, labels):
        self.enc, self.labels = enc, labels

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        item = {k: v[i] for k, v in self.enc.items()}
        item["labels"] = self.labels[i]
        return item


def main():
    ap = argparse.ArgumentParser()
    for k, d in [("--model", None), ("--train", None), ("--dev", None), ("--method", "full")]:
        ap.add_argument(k, default=d, required=d is None)
    ap.add_argument("--rows", type=int, default=0, help="a seeded sample of this many rows (0 = the whole file)")
    ap.add_argument("--epochs", type=float, default=2)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--lr", type=float, default=5e-5)
    ap.add_argument("--max-length", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=42)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    t0 = time.perf_counter()
    train = read_tsv(a.train)
    if a.rows:
        random.Random(a.seed).shuffle(train)
        train = train[: a.rows]
    dev = read_tsv(a.dev)
    tok = AutoTokenizer.from_pretrained(a.model)
    model = AutoModelForSequenceClassification.from_pretrained(a.model, num_labels=2)
    if a.method == "lora":
        from peft import LoraConfig, TaskType, get_peft_model
        model = get_peft_model(model, LoraConfig(task_type=TaskType.SEQ_CLS, r=8, lora_alpha=16, lora_dropout=0.0,
                                                 target_modules=["query", "value"]))
    elif a.method == "feature_extraction":
        for p in model.bert.parameters():
            p.requires_grad_(False)
    enc = lambda rows: tok([t for t, _ in rows], truncation=True, max_length=a.max_length)
    train_ds = Rows(enc(train), [l for _, l in train])
    dev_ds = Rows(enc(dev), [l for _, l in dev])
    args = TrainingArguments(output_dir="/tmp/tunesmith-sst2-peer", per_device_train_batch_size=a.batch_size,
                             per_device_eval_batch_size=64, num_train_epochs=a.epochs, learning_rate=a.lr,
                             weight_decay=0.01, warmup_steps=0.1, lr_scheduler_type="linear", max_grad_norm=1.0,
                             seed=a.seed, use_cpu=True, report_to=[], save_strategy="no", eval_strategy="no",
                             logging_strategy="no", dataloader_num_workers=0, disable_tqdm=True)
    trainer = Trainer(model=model, args=args, train_dataset=train_ds, data_collator=DataCollatorWithPadding(tok),
                      compute_metrics=lambda p: {"accuracy": float((np.argmax(p.predictions, -1) == p.label_ids).mean())})
    setup_s = time.perf_counter() - t0
    t1 = time.perf_counter()
    trainer.train()
    train_s = time.perf_counter() - t1
    t2 = time.perf_counter()
    acc = trainer.evaluate(dev_ds)["eval_accuracy"]
    eval_s = time.perf_counter() - t2
    print(json.dumps({"method": a.method, "accuracy": acc, "setup_s": setup_s, "train_s": train_s, "eval_s": eval_s,
                      "total_s": setup_s + train_s + eval_s, "import_s": t0 - t_start,
                      "torch": torch.__version__}))


if __name__ == "__main__":
    main()
