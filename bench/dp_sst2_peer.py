#!/usr/bin/env python3
"""Opacus + transformers + PEFT DP fine-tuning of all-MiniLM-L6-v2 for SST-2: what
`bench -- dp-sst2` compares tunesmith's DP-SGD against, on the same rows and recipe. LoRA r=8
(alpha 16, query/value, no LoRA dropout) with the classifier trained, or (--method
feature_extraction) the classifier alone; AdamW at a constant lr;
Poisson batches of expected size --batch-size; per-sample clipping to 1.0; the noise multiplier
Opacus solves (RDP accountant) for --epsilon at delta = 1/n over --epochs. Prints one JSON line:
dev accuracy, the epsilon spent, the noise multiplier and the seconds taken.

  python bench/dp_sst2_peer.py --model DIR --train train.tsv --dev dev.tsv --epsilon 8 \
      [--epochs 4 --batch-size 1000 --max-length 32 --lr 5e-3 --threads 2]
"""
import argparse, json, time, warnings

warnings.simplefilter("ignore")
t_start = time.perf_counter()
import torch
import transformers
import peft
from opacus import PrivacyEngine


def read_tsv(path):
    with open(path, encoding="utf-8") as f:
        next(f)
        return [(t, int(l)) for l, t in (line.rstrip("\n").split("\t", 1) for line in f)]


def tensors(tok, rows, max_length):
    enc = tok([t for t, _ in rows], truncation=True, max_length=max_length, padding="max_length", return_tensors="pt")
    return enc["input_ids"], enc["attention_mask"], torch.tensor([l for _, l in rows])


def main():
    ap = argparse.ArgumentParser()
    for k in ["--model", "--train", "--dev"]:
        ap.add_argument(k, required=True)
    ap.add_argument("--epsilon", type=float, required=True)
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--batch-size", type=int, default=1000)
    ap.add_argument("--lr", type=float, default=5e-3)
    ap.add_argument("--max-length", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--method", choices=["lora", "feature_extraction"], default="lora")
    a = ap.parse_args()
    torch.manual_seed(a.seed)
    torch.set_num_threads(a.threads)
    tok = transformers.AutoTokenizer.from_pretrained(a.model)
    train, dev = read_tsv(a.train), read_tsv(a.dev)
    ids, mask, labels = tensors(tok, train, a.max_length)
    model = transformers.AutoModelForSequenceClassification.from_pretrained(a.model, num_labels=2)
    if a.method == "lora":
        model = peft.get_peft_model(model, peft.LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0,
                                                           target_modules=["query", "value"], modules_to_save=["classifier"]))
    else:
        for name, p in model.named_parameters():
            p.requires_grad = name.startswith("classifier.")
    model.train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=a.lr, weight_decay=0.01)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(ids, mask, labels), batch_size=a.batch_size)
    delta = 1.0 / len(train)
    engine = PrivacyEngine(accountant="rdp")
    model, opt, loader = engine.make_private_with_epsilon(module=model, optimizer=opt, data_loader=loader,
                                                          target_epsilon=a.epsilon, target_delta=delta, epochs=a.epochs,
                                                          max_grad_norm=1.0)
    t0 = time.perf_counter()
    for _ in range(a.epochs):
        for b_ids, b_mask, b_labels in loader:
            if len(b_labels) == 0:
                continue
            pos = torch.arange(b_ids.shape[1]).expand(b_ids.shape[0], -1)
            out = model(input_ids=b_ids, attention_mask=b_mask, position_ids=pos,
                        token_type_ids=torch.zeros_like(b_ids), labels=b_labels)
            out.loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
    train_s = time.perf_counter() - t0
    model.eval()
    d_ids, d_mask, d_labels = tensors(tok, dev, a.max_length)
    correct = 0
    with torch.no_grad():
        for i in range(0, len(dev), 128):
            logits = model(input_ids=d_ids[i:i + 128], attention_mask=d_mask[i:i + 128]).logits
            correct += (logits.argmax(-1) == d_labels[i:i + 128]).sum().item()
    print(json.dumps({"accuracy": correct / len(dev), "epsilon": engine.get_epsilon(delta), "delta": delta,
                      "noise_multiplier": opt.noise_multiplier, "train_s": train_s,
                      "total_s": time.perf_counter() - t_start}))


if __name__ == "__main__":
    main()
