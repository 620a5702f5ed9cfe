#!/usr/bin/env python3
"""Peer of `bench grpo`: GRPO with LoRA on SmolLM2 (the GGUF dequantized by transformers) with
TRL's GRPOTrainer (transformers' generate, PEFT; the reference is the base with the adapter
disabled), as a Python user would run it today.

  python3 grpo_peer.py prepare GGUF DATA DIR   # DIR/prompts.json (GSM8K questions through the
                                               #   chat template's generation prompt, as token
                                               #   ids and text), DIR/adapter/ (the seeded initial
                                               #   adapter), DIR/hf/ (the dequantized model)
  python3 grpo_peer.py run GGUF DIR [--threads 2] [--steps 4] [--prompts 4] [--group 4] [--max-new 64]

Each step samples `--group` completions of `--prompts` prompts (temperature 1), rewards them by
length (1 when 20 to 150 characters) and takes one optimization step (β 0.04, ε 0.2, loss
"grpo", AdamW lr 1e-4). `run` prints one JSON line: tokens_per_s counts generated plus trained
tokens (completions, then prompts and completions again) over the steps after the first, and
peak_rss_mb.
"""
import argparse, json, os, resource, time

TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
RANK, ALPHA, LR, SEED, PROMPTS = 16, 32, 1e-4, 1234, 64


def prepare(gguf, data, out):
    import torch, transformers, peft
    from safetensors.torch import save_model
    d, name = os.path.split(os.path.abspath(gguf))
    tok = transformers.AutoTokenizer.from_pretrained(d, gguf_file=name)
    prompts = []
    with open(data, encoding="utf-8") as f:
        for line in f:
            q = json.loads(line)["question"]
            text = tok.apply_chat_template([{"role": "user", "content": q}], add_generation_prompt=True, tokenize=False)
            prompts.append({"text": text, "ids": tok(text, add_special_tokens=False)["input_ids"]})
            if len(prompts) == PROMPTS:
                break
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "prompts.json"), "w") as f:
        json.dump(prompts, f)
    model = transformers.AutoModelForCausalLM.from_pretrained(d, gguf_file=name, dtype=torch.float32)
    hf = os.path.join(out, "hf")
    os.makedirs(hf, exist_ok=True)
    cfg = model.config.to_dict()
    cfg.pop("quantization_config", None)
    with open(os.path.join(hf, "config.json"), "w") as f:
        json.dump(cfg, f, indent=1)
    save_model(model, os.path.join(hf, "model.safetensors"))
    torch.manual_seed(SEED)
    lora = peft.LoraConfig(r=RANK, lora_alpha=ALPHA, lora_dropout=0.0, target_modules=TARGETS, task_type="CAUSAL_LM")
    peft.get_peft_model(model, lora).save_pretrained(os.path.join(out, "adapter"))


def length_reward(completions, **kwargs):
    texts = [c if isinstance(c, str) else c[-1]["content"] for c in completions]
    return [1.0 if 20 <= len(t) <= 150 else 0.0 for t in texts]


def run(gguf, d, threads, steps, prompts_per_step, group, max_new):
    import torch, transformers, peft, trl
    from datasets import Dataset
    from safetensors.torch import load_file
    torch.set_num_threads(threads)
    d_gguf, name = os.path.split(os.path.abspath(gguf))
    tok = transformers.AutoTokenizer.from_pretrained(d_gguf, gguf_file=name)
    tok.padding_side = "left"
    model = transformers.AutoModelForCausalLM.from_pretrained(os.path.join(d, "hf"), dtype=torch.float32)
    prompts = json.load(open(os.path.join(d, "prompts.json")))
    rows = [{"prompt": p["text"]} for p in prompts[: steps * prompts_per_step]]
    args = trl.GRPOConfig(output_dir=os.path.join(d, "trl-out"), beta=0.04, epsilon=0.2, loss_type="grpo",
                          num_generations=group, per_device_train_batch_size=prompts_per_step * group,
                          max_completion_length=max_new, temperature=1.0, learning_rate=LR, max_steps=steps,
                          logging_steps=1, report_to="none", use_cpu=True, bf16=False, save_strategy="no",
                          shuffle_dataset=False, seed=SEED, lr_scheduler_type="constant", warmup_steps=0,
                          weight_decay=0.0)
    lora = peft.LoraConfig(r=RANK, lora_alpha=ALPHA, lora_dropout=0.0, target_modules=TARGETS, task_type="CAUSAL_LM")
    trainer = trl.GRPOTrainer(model=model, reward_funcs=[length_reward], args=args, train_dataset=Dataset.from_list(rows),
                              processing_class=tok, peft_config=lora)
    saved = load_file(os.path.join(d, "adapter", "adapter_model.safetensors"))
    with torch.no_grad():
        params = dict(trainer.model.named_parameters())
        for k, v in saved.items():
            params[k.replace(".lora_A.weight", ".lora_A.default.weight").replace(".lora_B.weight", ".lora_B.default.weight")].copy_(v)
    logs, times = [], []

    class Clock(transformers.TrainerCallback):
        def on_step_begin(self, *a, **k):
            self.t0 = time.perf_counter()

        def on_step_end(self, *a, **k):
            times.append(time.perf_counter() - self.t0)

        def on_log(self, a, state, control, logs=None, **k):
            if logs and "completions/mean_length" in logs:
                entries.append(dict(logs))

    entries = []
    trainer.add_callback(Clock())
    trainer.train()
    # Tokens per step: the prompts once and the completions twice (generated, then trained).
    prompt_tokens = [sum(len(p["ids"]) for p in prompts[s * prompts_per_step:(s + 1) * prompts_per_step]) * group
                     for s in range(steps)]
    completion_tokens = [e["completions/mean_length"] * prompts_per_step * group for e in entries]
    timed = range(1, steps) if steps > 1 else range(steps)
    tokens = sum(prompt_tokens[s] + 2 * completion_tokens[s] for s in timed)
    secs = sum(times[s] for s in timed)
    print(json.dumps(dict(peer="trl-grpo+peft", trl=trl.__version__, torch=torch.__version__,
                          transformers=transformers.__version__, peft=peft.__version__, threads=threads,
                          step_ms=round(secs / len(timed) * 1e3, 1), tokens_per_s=round(tokens / secs, 1),
                          mean_completion=round(sum(completion_tokens) / len(completion_tokens) / (prompts_per_step * group), 1),
                          rewards=[round(e.get("reward", 0.0), 4) for e in entries],
                          peak_rss_mb=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1))))


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("cmd", choices=["prepare", "run"])
    ap.add_argument("gguf")
    ap.add_argument("rest", nargs="+", help="prepare: DATA DIR; run: DIR")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--prompts", type=int, default=4)
    ap.add_argument("--group", type=int, default=4)
    ap.add_argument("--max-new", type=int, default=64)
    a = ap.parse_args()
    if a.cmd == "prepare":
        prepare(a.gguf, a.rest[0], a.rest[1])
    else:
        run(a.gguf, a.rest[0], a.threads, a.steps, a.prompts, a.group, a.max_new)
