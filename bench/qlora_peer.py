#!/usr/bin/env python3
"""Peer of `bench qlora`: LoRA on a GGUF model with PyTorch + transformers + PEFT, as a Python
user would do it today (transformers dequantizes the GGUF to an fp32 model; PEFT adds LoRA).

  python3 qlora_peer.py prepare GGUF TEXT DIR   # DIR/batch.safetensors (8 x 512 tokens of TEXT,
                                                #   tokenized by the GGUF's own tokenizer),
                                                #   DIR/adapter/ (the seeded initial PEFT adapter)
                                                #   and DIR/hf/ (the dequantized model, for --bnb4)
  python3 qlora_peer.py run GGUF DIR [--threads 2] [--steps 6] [--bnb4] [--checkpointing]

`run` prints one JSON line: tokens_per_s (median of the steps after 2 warm-up steps),
step_ms, peak_rss_mb, losses. `--bnb4` loads the base through bitsandbytes in 4-bit NF4 (QLoRA
as PEFT's guide does it; from DIR/hf, because transformers refuses to quantize a GGUF load), `--checkpointing` turns on gradient checkpointing (as PEFT's
`prepare_model_for_kbit_training` does). Both sides start from the same adapter, batch and
AdamW settings, so their loss curves must agree.
"""
import argparse, json, os, resource, time

TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
BATCH, SEQ, RANK, ALPHA, LR, SEED = 8, 512, 16, 32, 1e-4, 1234


def load(gguf, torch, transformers, hf_dir=None):
    """The GGUF dequantized to fp32 by transformers; with `hf_dir` (the same model saved as
    safetensors, since transformers will not quantize a GGUF load), loaded in 4-bit NF4."""
    if hf_dir:
        q = transformers.BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                                            bnb_4bit_compute_dtype=torch.float32)
        return transformers.AutoModelForCausalLM.from_pretrained(
            hf_dir, attn_implementation="sdpa", dtype=torch.float32, quantization_config=q)
    d, name = os.path.split(os.path.abspath(gguf))
    return transformers.AutoModelForCausalLM.from_pretrained(
        d, gguf_file=name, attn_implementation="sdpa", dtype=torch.float32)


def lora_config():
    import peft
    return peft.LoraConfig(r=RANK, lora_alpha=ALPHA, lora_dropout=0.0, target_modules=TARGETS)


def save_hf(model, out):
    """The dequantized model as config.json + model.safetensors (transformers will not
    `save_pretrained` a GGUF load)."""
    from safetensors.torch import save_model
    os.makedirs(out, exist_ok=True)
    cfg = model.config.to_dict()
    cfg.pop("quantization_config", None)
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(cfg, f, indent=1)
    save_model(model, os.path.join(out, "model.safetensors"))


def prepare(gguf, text, out):
    import torch, transformers, peft
    from safetensors.torch import save_file
    d, name = os.path.split(os.path.abspath(gguf))
    tok = transformers.AutoTokenizer.from_pretrained(d, gguf_file=name)
    ids = []
    with open(text, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                ids.extend(tok(line.strip())["input_ids"] + [tok.eos_token_id])
            if len(ids) >= BATCH * SEQ:
                break
    if len(ids) < BATCH * SEQ:
        raise SystemExit(f"{text}: only {len(ids)} tokens, need {BATCH * SEQ}")
    batch = torch.tensor(ids[:BATCH * SEQ]).reshape(BATCH, SEQ)
    os.makedirs(out, exist_ok=True)
    save_file({"input_ids": batch, "labels": batch.clone()}, os.path.join(out, "batch.safetensors"))
    model = load(gguf, torch, transformers)
    save_hf(model, os.path.join(out, "hf"))
    torch.manual_seed(SEED)
    peft.get_peft_model(model, lora_config()).save_pretrained(os.path.join(out, "adapter"))


def run(gguf, d, threads, steps, bnb4, checkpointing):
    import torch, transformers, peft
    from safetensors.torch import load_file
    torch.set_num_threads(threads)
    model = load(gguf, torch, transformers, os.path.join(d, "hf") if bnb4 else None)
    if checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()
    model = peft.PeftModel.from_pretrained(model, os.path.join(d, "adapter"), is_trainable=True)
    model.config.use_cache = False
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=LR, weight_decay=0.0, eps=1e-8)
    batch = load_file(os.path.join(d, "batch.safetensors"))
    losses, times = [], []
    for _ in range(steps):
        t0 = time.perf_counter()
        out = model(**batch)
        out.loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        losses.append(round(out.loss.item(), 6))
        times.append(time.perf_counter() - t0)
    timed = sorted(times[2:]) or sorted(times)
    med = timed[len(timed) // 2]
    tokens = BATCH * SEQ
    print(json.dumps(dict(peer="pytorch+transformers+peft" + ("+bitsandbytes-nf4" if bnb4 else ""),
                          torch=torch.__version__, transformers=transformers.__version__, peft=peft.__version__,
                          threads=threads, checkpointing=checkpointing, tokens_per_step=tokens,
                          step_ms=round(med * 1e3, 2), tokens_per_s=round(tokens / med, 1),
                          peak_rss_mb=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
                          losses=losses)))


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("cmd", choices=["prepare", "run"])
    ap.add_argument("gguf")
    ap.add_argument("rest", nargs="+", help="prepare: TEXT DIR; run: DIR")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--bnb4", action="store_true")
    ap.add_argument("--checkpointing", action="store_true")
    a = ap.parse_args()
    if a.cmd == "prepare":
        prepare(a.gguf, a.rest[0], a.rest[1])
    else:
        run(a.gguf, a.rest[0], a.threads, a.steps, a.bnb4, a.checkpointing)
