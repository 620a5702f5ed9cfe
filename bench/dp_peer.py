#!/usr/bin/env python3
"""Opacus' DP-SGD step on one of ../shared/bench/peer.py's prepared BERT workloads: what
`bench -- dp` compares tunesmith's DP step against, on the same model, adapter, batch and thread
count. Times non-private AdamW steps on the plain model (transformers + PEFT), then DP steps with
Opacus' PrivacyEngine (per-sample gradients by hooks, clipping to 1.0, noise multiplier 1.0, the
fixed batch as the expected batch size). Prints one JSON line.

  python bench/dp_peer.py DIR [--threads 2] [--steps 8]

Requires: torch, transformers, peft, safetensors, opacus.
"""
import argparse, json, resource, time, warnings

warnings.simplefilter("ignore")
import torch
import transformers
from safetensors.torch import load_file


def median_after_warmup(times):
    t = sorted(times[2:] if len(times) > 2 else times)
    return t[len(t) // 2]


def load(d, w):
    model = transformers.BertForSequenceClassification.from_pretrained(d)
    if w["method"] == "lora":
        import peft
        model = peft.PeftModel.from_pretrained(model, f"{d}/adapter", is_trainable=True)
    model.train()
    return model


def steps(model, opt, ids, labels, n):
    # Position and token-type ids with the batch dimension: BERT's default [1, seq] buffers give
    # Opacus' embedding grad sampler a batch of 1 (it then fails to stack per-sample norms).
    pos = torch.arange(ids.shape[1]).expand(ids.shape[0], -1)
    types = torch.zeros_like(ids)
    times, losses = [], []
    for _ in range(n):
        t0 = time.perf_counter()
        out = model(input_ids=ids, position_ids=pos, token_type_ids=types, labels=labels)
        out.loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - t0)
        losses.append(out.loss.item())
    return median_after_warmup(times), losses


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dir")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=8)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    w = json.load(open(f"{a.dir}/workload.json"))
    batch = load_file(f"{a.dir}/batch.safetensors")
    ids, labels = batch["input_ids"], batch["labels"]

    model = load(a.dir, w)
    params = [p for p in model.parameters() if p.requires_grad]
    plain_s, plain_losses = steps(model, torch.optim.AdamW(params, lr=w["lr"], weight_decay=0.0), ids, labels, a.steps)

    from opacus import PrivacyEngine
    model = load(a.dir, w)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=w["lr"], weight_decay=0.0)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(ids, labels), batch_size=len(labels))
    engine = PrivacyEngine()
    model, opt, _ = engine.make_private(module=model, optimizer=opt, data_loader=loader, noise_multiplier=1.0,
                                        max_grad_norm=1.0, poisson_sampling=False)
    dp_s, dp_losses = steps(model, opt, ids, labels, a.steps)
    print(json.dumps({"workload": w["name"], "threads": a.threads, "tokens_per_step": ids.numel(),
                      "plain_step_ms": plain_s * 1e3, "dp_step_ms": dp_s * 1e3, "dp_over_plain": dp_s / plain_s,
                      "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                      "plain_losses": plain_losses, "dp_losses": dp_losses}))


if __name__ == "__main__":
    main()
