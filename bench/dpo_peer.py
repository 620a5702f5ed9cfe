#!/usr/bin/env python3
"""Peer of `bench dpo`: DPO with LoRA on SmolLM2 (the GGUF dequantized by transformers) with
TRL's DPOTrainer loss (PEFT: the reference is the base with the adapter disabled), as a Python
user would run it today.

  python3 dpo_peer.py prepare GGUF DATA DIR   # DIR/pairs.json (the first pairs of DATA as token
                                              #   ids: prompt through the chat template's
                                              #   generation prompt, then each completion and
                                              #   its end-of-turn), DIR/adapter/ (the seeded
                                              #   initial LoRA adapter, B = 0), DIR/hf/ (the
                                              #   dequantized model, which the Trainer accepts)
  python3 dpo_peer.py run GGUF DIR [--threads 2] [--steps 6] [--batch 8]

`run` prints one JSON line: tokens_per_s (prompt + completion tokens of both completions per
step, over the median of the steps after 2 warm-up steps), step_ms, peak_rss_mb, losses. Each
step is DPOTrainer.compute_loss on the next `--batch` pairs (collated by its own collator),
backward, and AdamW (lr 1e-4), so both sides see the same pairs, adapter and optimizer.
"""
import argparse, json, os, resource, time

TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
RANK, ALPHA, LR, SEED, BETA, PAIRS = 16, 32, 1e-4, 1234, 0.1, 64


def load(gguf, torch, transformers):
    d, name = os.path.split(os.path.abspath(gguf))
    return transformers.AutoModelForCausalLM.from_pretrained(
        d, gguf_file=name, attn_implementation="sdpa", dtype=torch.float32)


def save_hf(model, out):
    """The dequantized model as config.json + model.safetensors: the Trainer refuses to train a
    model loaded from a GGUF file, so the peer trains this copy (the same f32 weights)."""
    from safetensors.torch import save_model
    os.makedirs(out, exist_ok=True)
    cfg = model.config.to_dict()
    cfg.pop("quantization_config", None)
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(cfg, f, indent=1)
    save_model(model, os.path.join(out, "model.safetensors"))


def lora_config():
    import peft
    return peft.LoraConfig(r=RANK, lora_alpha=ALPHA, lora_dropout=0.0, target_modules=TARGETS, task_type="CAUSAL_LM")


def prepare(gguf, data, out):
    import torch, transformers, peft
    d, name = os.path.split(os.path.abspath(gguf))
    tok = transformers.AutoTokenizer.from_pretrained(d, gguf_file=name)
    rows = json.load(open(data, encoding="utf-8"))
    pairs = []
    for r in rows:
        if r["chosen"] == r["rejected"]:
            continue
        user = r["instruction"] + (("\n\n" + r["input"]) if r.get("input") else "")
        msgs = [{"role": "user", "content": user}]
        ids = lambda text: tok(text, add_special_tokens=False)["input_ids"]
        prompt_text = tok.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)
        prompt = ids(prompt_text)
        sides = []
        for side in ("chosen", "rejected"):
            full_text = tok.apply_chat_template(msgs + [{"role": "assistant", "content": r[side]}], tokenize=False)
            full = ids(full_text)
            assert full_text.startswith(prompt_text) and full[:len(prompt)] == prompt, "the template must extend the prompt"
            sides.append(full[len(prompt):])
        pairs.append({"prompt_ids": prompt, "chosen_ids": sides[0], "rejected_ids": sides[1]})
        if len(pairs) == PAIRS:
            break
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "pairs.json"), "w") as f:
        json.dump(pairs, f)
    model = load(gguf, torch, transformers)
    save_hf(model, os.path.join(out, "hf"))
    torch.manual_seed(SEED)
    peft.get_peft_model(model, lora_config()).save_pretrained(os.path.join(out, "adapter"))


def run(gguf, d, threads, steps, batch):
    import torch, transformers, peft, trl
    from datasets import Dataset
    from safetensors.torch import load_file
    torch.set_num_threads(threads)
    model = transformers.AutoModelForCausalLM.from_pretrained(
        os.path.join(d, "hf"), attn_implementation="sdpa", dtype=torch.float32)
    d_gguf, name = os.path.split(os.path.abspath(gguf))
    tok = transformers.AutoTokenizer.from_pretrained(d_gguf, gguf_file=name)
    args = trl.DPOConfig(output_dir=os.path.join(d, "trl-out"), beta=BETA, loss_type=["sigmoid"], report_to="none",
                         use_cpu=True, per_device_train_batch_size=batch, max_length=None, bf16=False,
                         dataset_num_proc=None)
    dummy = Dataset.from_list([{"prompt": "a", "chosen": "b", "rejected": "c"}])
    trainer = trl.DPOTrainer(model=model, args=args, train_dataset=dummy, processing_class=tok,
                             peft_config=lora_config())
    # Start from the same adapter as tunesmith (B = 0, so the policy starts at the reference).
    saved = load_file(os.path.join(d, "adapter", "adapter_model.safetensors"))
    with torch.no_grad():
        params = dict(trainer.model.named_parameters())
        for k, v in saved.items():
            params[k.replace(".lora_A.weight", ".lora_A.default.weight").replace(".lora_B.weight", ".lora_B.default.weight")].copy_(v)
    pairs = json.load(open(os.path.join(d, "pairs.json")))
    trainable = [p for p in trainer.model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(trainable, lr=LR, weight_decay=0.0, eps=1e-8)
    trainer.model.train()
    losses, times, tokens = [], [], []
    for step in range(steps):
        rows = [pairs[(step * batch + k) % len(pairs)] for k in range(batch)]
        t0 = time.perf_counter()
        inputs = trainer.data_collator(rows)
        loss = trainer.compute_loss(trainer.model, inputs)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - t0)
        losses.append(round(loss.item(), 6))
        tokens.append(int(inputs["attention_mask"].sum()))
    order = sorted(range(2, steps) if steps > 2 else range(steps), key=lambda i: times[i])
    mid = order[len(order) // 2]
    print(json.dumps(dict(peer="trl+peft", trl=trl.__version__, torch=torch.__version__,
                          transformers=transformers.__version__, peft=peft.__version__, threads=threads,
                          batch=batch, step_ms=round(times[mid] * 1e3, 2),
                          tokens_per_s=round(sum(tokens[i] for i in order) / sum(times[i] for i in order), 1),
                          peak_rss_mb=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
                          losses=losses)))


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("cmd", choices=["prepare", "run"])
    ap.add_argument("gguf")
    ap.add_argument("rest", nargs="+", help="prepare: DATA DIR; run: DIR")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--batch", type=int, default=8)
    a = ap.parse_args()
    if a.cmd == "prepare":
        prepare(a.gguf, a.rest[0], a.rest[1])
    else:
        run(a.gguf, a.rest[0], a.threads, a.steps, a.batch)
