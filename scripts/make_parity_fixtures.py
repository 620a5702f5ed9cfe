#!/usr/bin/env python3
"""Parity fixtures for crates/models/tests/parity.rs: tiny random checkpoints of every family
and variant tunesmith supports, with golden outputs from transformers.

For each case it writes OUT/<case>/{config.json, model.safetensors, golden.safetensors}:
  golden: input_ids, attention_mask, [token_type_ids], labels, logits (or last_hidden_state /
  embedding), loss, and grad.<param name> for a few named parameters, for a fixed batch with
  right padding. Dropout is off; weights use a larger init range so outputs are discriminative.

  python3 scripts/make_parity_fixtures.py crates/models/tests/fixtures/parity [CASE ...]

Naming cases regenerates only those (and notes them in SOURCE.txt); otherwise every case.
"""
import json, os, shutil, sys
import torch
import transformers as tf
from safetensors.torch import save_file

OUT = sys.argv[1] if len(sys.argv) > 1 else "crates/models/tests/fixtures/parity"
ONLY = sys.argv[2:]
B, T, V = 2, 7, 97
MASK = torch.tensor([[1] * T, [1] * 5 + [0] * 2])

LLAMA = dict(vocab_size=V, hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
             num_key_value_heads=2, max_position_embeddings=64, rms_norm_eps=1e-6, initializer_range=0.2,
             attention_dropout=0.0, pad_token_id=0)
GPT2 = dict(vocab_size=V, n_embd=32, n_layer=2, n_head=4, n_positions=64, initializer_range=0.2,
            resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, summary_first_dropout=0.0, pad_token_id=0)
BERT = dict(vocab_size=V, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=48,
            max_position_embeddings=64, type_vocab_size=2, initializer_range=0.2, hidden_dropout_prob=0.0,
            attention_probs_dropout_prob=0.0, classifier_dropout=0.0, pad_token_id=0)


def cases():
    yield "llama_gqa", tf.LlamaConfig(**LLAMA), tf.LlamaForCausalLM, "lm"
    yield "llama_tied_llama3_rope", tf.LlamaConfig(**LLAMA, tie_word_embeddings=True, rope_scaling=dict(
        rope_type="llama3", factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0,
        original_max_position_embeddings=16), rope_theta=500000.0), tf.LlamaForCausalLM, "lm"
    yield "llama_linear_rope_bias", tf.LlamaConfig(**LLAMA, rope_scaling=dict(rope_type="linear", factor=2.0),
                                                   attention_bias=True, mlp_bias=True), tf.LlamaForCausalLM, "lm"
    yield "mistral_sliding_window", tf.MistralConfig(**LLAMA, sliding_window=4), tf.MistralForCausalLM, "lm"
    yield "qwen2_qkv_bias_tied", tf.Qwen2Config(**LLAMA, tie_word_embeddings=True), tf.Qwen2ForCausalLM, "lm"
    yield "qwen3_qk_norm", tf.Qwen3Config(**LLAMA, head_dim=16), tf.Qwen3ForCausalLM, "lm"
    yield "gemma3_sliding_window", tf.Gemma3TextConfig(
        **{k: v for k, v in LLAMA.items() if k != "attention_dropout"}, head_dim=16, sliding_window=4,
        query_pre_attn_scalar=24, layer_types=["sliding_attention", "full_attention"],
        rope_parameters={"full_attention": {"rope_type": "default", "rope_theta": 1000000.0},
                         "sliding_attention": {"rope_type": "default", "rope_theta": 10000.0}}), \
        tf.Gemma3ForCausalLM, "lm"
    yield "gpt2", tf.GPT2Config(**GPT2), tf.GPT2LMHeadModel, "lm"
    yield "llama_seq_cls", tf.LlamaConfig(**LLAMA, num_labels=3), tf.LlamaForSequenceClassification, "seq"
    yield "gpt2_seq_cls", tf.GPT2Config(**GPT2, num_labels=3), tf.GPT2ForSequenceClassification, "seq"
    yield "bert_seq_cls", tf.BertConfig(**BERT, num_labels=3), tf.BertForSequenceClassification, "seq"
    yield "bert_regression", tf.BertConfig(**BERT, num_labels=1), tf.BertForSequenceClassification, "reg"
    yield "bert_token_cls", tf.BertConfig(**BERT, num_labels=5), tf.BertForTokenClassification, "tok"
    yield "roberta_seq_cls", tf.RobertaConfig(**dict(BERT, pad_token_id=1), num_labels=2), tf.RobertaForSequenceClassification, "seq"
    yield "bert_embedding", tf.BertConfig(**BERT), tf.BertModel, "emb"


def grad_names(model):
    names = [n for n, p in model.named_parameters()]
    wanted = []
    for key in ["embed_tokens.weight", "wte.weight", "word_embeddings.weight", "layers.0.self_attn.q_proj.weight",
                "layers.1.self_attn.k_proj.bias", "layers.0.self_attn.q_norm.weight", "h.0.attn.c_attn.weight",
                "h.1.mlp.c_fc.weight", "layer.0.attention.self.query.weight", "layer.1.output.LayerNorm.weight",
                "layers.1.mlp.down_proj.weight", "norm.weight", "ln_f.bias", "lm_head.weight", "score.weight",
                "classifier.weight", "classifier.out_proj.weight", "pooler.dense.weight",
                "token_type_embeddings.weight"]:
        wanted += [n for n in names if n.endswith(key)]
    return sorted(set(wanted))


def main():
    if os.path.isdir(OUT) and not ONLY:
        shutil.rmtree(OUT)
    for name, cfg, cls, kind in cases():
        if ONLY and name not in ONLY:
            continue
        torch.manual_seed(0)
        cfg._attn_implementation = "sdpa"
        model = cls(cfg).float()
        if "gemma" in name:
            # Gemma initialises its (1 + gamma) norms at gamma = 0; perturb them so the offset shows.
            with torch.no_grad():
                for n, p in model.named_parameters():
                    if n.endswith("norm.weight"):
                        p.add_(torch.randn_like(p) * 0.3)
        model.train()  # dropout is 0 everywhere; train() keeps transformers' training code paths
        g = torch.Generator().manual_seed(1)
        ids = torch.randint(3, V, (B, T), generator=g)
        pad = cfg.pad_token_id
        ids = torch.where(MASK.bool(), ids, torch.full_like(ids, pad))
        inputs = dict(input_ids=ids, attention_mask=MASK)
        golden = dict(input_ids=ids, attention_mask=MASK)
        if kind in ("seq", "reg", "tok", "emb") and "roberta" not in name:
            tt = torch.zeros_like(ids)
            tt[:, 4:] = 1
            inputs["token_type_ids"] = tt
            golden["token_type_ids"] = tt
        if kind == "lm":
            labels = torch.where(MASK.bool(), ids, torch.full_like(ids, -100))
        elif kind == "seq":
            labels = torch.tensor([2 % cfg.num_labels, 0])
        elif kind == "reg":
            labels = torch.tensor([0.7, -1.3])
        elif kind == "tok":
            labels = torch.randint(0, 5, (B, T), generator=g)
            labels = torch.where(MASK.bool(), labels, torch.full_like(labels, -100))
        if kind != "emb":
            out = model(**inputs, labels=labels)
            loss = out.loss
            golden["labels"] = labels
            golden["logits"] = out.logits.detach().contiguous()
        else:
            out = model(**inputs)
            h = out.last_hidden_state
            m = MASK.unsqueeze(-1).float()
            pooled = (h * m).sum(1) / m.sum(1)
            emb = torch.nn.functional.normalize(pooled, dim=-1)
            w = torch.randn(emb.shape, generator=g)
            loss = (emb * w).sum()
            golden["projection"] = w
            golden["last_hidden_state"] = h.detach().contiguous()
            golden["embedding"] = emb.detach().contiguous()
        loss.backward()
        golden["loss"] = loss.detach().reshape(1)
        for n in grad_names(model):
            p = dict(model.named_parameters())[n]
            if p.grad is not None:
                golden[f"grad.{n}"] = p.grad.detach().contiguous()
        d = os.path.join(OUT, name)
        model.save_pretrained(d, safe_serialization=True)
        save_file({k: v.contiguous() for k, v in golden.items()}, os.path.join(d, "golden.safetensors"))
        print(name, cls.__name__, "loss", float(loss), "grads", len([k for k in golden if k.startswith("grad.")]))
    with open(os.path.join(OUT, "SOURCE.txt"), "a" if ONLY else "w") as f:
        what = f"Cases {', '.join(ONLY)} generated" if ONLY else "Generated"
        f.write(f"{what} by scripts/make_parity_fixtures.py with torch {torch.__version__}, "
                f"transformers {tf.__version__}.\n")


if __name__ == "__main__":
    main()
