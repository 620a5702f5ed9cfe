#!/usr/bin/env python3
"""Tiny Qwen2 and Llama GGUF files and transformers' logits on them, for
crates/models/tests/gguf_tiny_parity.rs (no real Qwen2 GGUF is available offline; llama.cpp
writes Mistral models as `llama` files, which this Llama case, with an untied head, and the real
SmolLM2 file cover).

Each file is written with gguf-py's GGUFWriter: 2 blocks, width 64, 4 query heads, 2 KV heads,
seeded random weights (matrices F16, vectors F32; Qwen2 with its q/k/v biases and a tied head;
Llama with its own output matrix), a byte-level vocabulary of 256 tokens plus an end-of-text token. transformers
then loads each file itself (`from_pretrained(dir, gguf_file=...)`) and its f32 logits for fixed
token ids are recorded.

  bench/.venv/bin/python scripts/make_tiny_gguf_fixtures.py crates/models/tests/fixtures/gguf_tiny
"""
import json, os, sys
import numpy as np
import gguf
import torch
from transformers import AutoModelForCausalLM

D, FF, HEADS, KV_HEADS, BLOCKS = 64, 96, 4, 2, 2
IDS = [[5, 70, 101, 33, 200, 7, 12, 256], [72, 101, 108, 108, 111]]


def bytes_to_unicode():
    """GPT-2's printable stand-in for each byte (the byte-level BPE alphabet)."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    chars, extra = {}, 0
    for b in range(256):
        if b in keep:
            chars[b] = chr(b)
        else:
            chars[b] = chr(256 + extra)
            extra += 1
    return chars


def write(path, arch, seed):
    rng = np.random.default_rng(seed)
    rand = lambda *shape: (rng.standard_normal(shape) * 0.2).astype(np.float32 if len(shape) == 1 else np.float16)
    head_dim, kv = D // HEADS, D // HEADS * KV_HEADS
    tokens = [bytes_to_unicode()[b] for b in range(256)] + ["<|endoftext|>"]
    w = gguf.GGUFWriter(path, arch)
    w.add_block_count(BLOCKS)
    w.add_context_length(128)
    w.add_embedding_length(D)
    w.add_feed_forward_length(FF)
    w.add_head_count(HEADS)
    w.add_head_count_kv(KV_HEADS)
    w.add_layer_norm_rms_eps(1e-6)
    w.add_rope_freq_base(10000.0 if arch == "llama" else 1000000.0)
    w.add_tokenizer_model("gpt2")
    w.add_token_list(tokens)
    w.add_token_types([1] * 256 + [3])
    w.add_token_merges([])
    w.add_eos_token_id(256)
    w.add_bos_token_id(256)
    w.add_tensor("token_embd.weight", rand(len(tokens), D))
    w.add_tensor("output_norm.weight", 1.0 + rand(D))
    if arch == "llama":
        w.add_tensor("output.weight", rand(len(tokens), D))
    for b in range(BLOCKS):
        p = f"blk.{b}."
        w.add_tensor(p + "attn_norm.weight", 1.0 + rand(D))
        w.add_tensor(p + "ffn_norm.weight", 1.0 + rand(D))
        w.add_tensor(p + "attn_q.weight", rand(D, D))
        w.add_tensor(p + "attn_k.weight", rand(kv, D))
        w.add_tensor(p + "attn_v.weight", rand(kv, D))
        if arch == "qwen2":
            w.add_tensor(p + "attn_q.bias", rand(D))
            w.add_tensor(p + "attn_k.bias", rand(kv))
            w.add_tensor(p + "attn_v.bias", rand(kv))
        w.add_tensor(p + "attn_output.weight", rand(D, D))
        w.add_tensor(p + "ffn_gate.weight", rand(FF, D))
        w.add_tensor(p + "ffn_up.weight", rand(FF, D))
        w.add_tensor(p + "ffn_down.weight", rand(D, FF))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    assert head_dim * HEADS == D


def logits(path):
    d, name = os.path.split(os.path.abspath(path))
    model = AutoModelForCausalLM.from_pretrained(d, gguf_file=name, dtype=torch.float32).eval()
    out = []
    with torch.no_grad():
        for ids in IDS:
            out.append(model(torch.tensor([ids])).logits[0].numpy().astype(np.float32).tolist())
    return out


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    fixture = {"generator": f"gguf-py / transformers {__import__('transformers').__version__}", "ids": IDS, "models": {}}
    for arch, seed in [("qwen2", 1), ("llama", 2)]:
        path = os.path.join(out, f"{arch}.gguf")
        write(path, arch, seed)
        fixture["models"][arch] = logits(path)
    with open(os.path.join(out, "logits.json"), "w") as f:
        json.dump(fixture, f)
        f.write("\n")
    print(f"{out}: {list(fixture['models'])}")


if __name__ == "__main__":
    main()
