#!/usr/bin/env python3
"""GGUF parity fixtures from transformers, for crates/models/tests/gguf_models.rs.

For each real GGUF model (SmolLM2-135M-Instruct Q4_1, Gemma 3 270M Q4_K_M), transformers builds
the tokenizer and the model from the file itself (`from_pretrained(dir, gguf_file=...)`, which
dequantizes to f32). Records:
  - token ids of every chat-template render in crates/data/tests/fixtures/templates.json for the
    model's template family (without special tokens), and of a few plain texts (with and without);
  - f32 logits of three prompts, at every position, for 256 fixed vocabulary ids and the top 8
    of the last position.

  bench/.venv/bin/python scripts/make_gguf_fixtures.py SMOLLM2.gguf GEMMA3.gguf \
      crates/models/tests/fixtures/gguf_transformers.json
"""
import json, os, sys
import numpy as np
import torch
import transformers
from transformers import AutoModelForCausalLM, AutoTokenizer

TEXTS = [
    "Hello world, how are you?\n\n1234 ok",
    "  leading spaces,\ttabs and trailing  ",
    "Ünïcödé: naïve café — 東京 🤖 émoji",
    "def f(x):\n    return x**2  # squares\n",
]
PROMPTS = [
    "The capital of France is",
    "<|im_start|>user\nWrite a haiku about the sea.<|im_end|>\n<|im_start|>assistant\n",
    "<start_of_turn>user\nWhat is 2+2?<end_of_turn>\n<start_of_turn>model\n",
]
TEMPLATES = {"smollm2": "smollm2-135m-instruct", "gemma3": "gemma-2-it"}


def renders(family):
    here = os.path.dirname(os.path.abspath(__file__))
    fx = json.load(open(os.path.join(here, "../crates/data/tests/fixtures/templates.json")))
    out = []
    for key, r in sorted(fx["templates"][TEMPLATES[family]]["renders"].items()):
        if "text" in r:
            out.append((f"{TEMPLATES[family]} {key}", r["text"]))
    return out


def model_case(path, family):
    folder, name = os.path.split(os.path.abspath(path))
    tok = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, torch_dtype=torch.float32).eval()
    ids = []
    for label, text in renders(family):
        ids.append({"label": label, "text": text, "special": False, "ids": tok(text, add_special_tokens=False).input_ids})
    for text in TEXTS:
        for special in (False, True):
            ids.append({"label": "plain", "text": text, "special": special, "ids": tok(text, add_special_tokens=special).input_ids})
    vocab = model.config.vocab_size
    columns = sorted(set(np.linspace(0, vocab - 1, 256).astype(int).tolist()))
    logits = []
    with torch.no_grad():
        for prompt in PROMPTS:
            input_ids = tok(prompt, add_special_tokens=True).input_ids
            out = model(torch.tensor([input_ids])).logits[0].float()
            top = torch.topk(out[-1], 8).indices.tolist()
            cols = sorted(set(columns + top))
            logits.append({"prompt": prompt, "ids": input_ids, "columns": cols,
                           "values": out[:, cols].tolist(), "top8": top})
    return {"file": name, "family": family, "vocab_size": vocab, "tokens": ids, "logits": logits}


def main():
    smollm2, gemma3, dest = sys.argv[1:4]
    out = {"transformers": transformers.__version__, "torch": torch.__version__,
           "models": [model_case(smollm2, "smollm2"), model_case(gemma3, "gemma3")]}
    with open(dest, "w") as f:
        json.dump(out, f)
        f.write("\n")
    print(f"{dest}: {os.path.getsize(dest)} bytes")


if __name__ == "__main__":
    main()
