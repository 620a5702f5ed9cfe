#!/usr/bin/env python3
"""Alignment-loss fixtures for crates/train/tests/alignment_parity.rs, from TRL itself.

Model level: the tiny Llama parity checkpoint (crates/models/tests/fixtures/parity/llama_gqa)
with a PEFT LoRA adapter whose A and B are both random (init_lora_weights=False), so that the
policy differs from the reference (the base: DPOTrainer given a peft_config disables the new
adapter for the reference pass). For each DPOTrainer loss type it records, on one fixed batch of three pairs: the loss,
TRL's logged metrics and the gradient of every LoRA parameter.

Reward model: the same checkpoint with a fresh one-output score head (saved beside); for
RewardTrainer with and without a margin and reward centering: the loss, its metrics and the
gradients of a few parameters (full fine-tuning).

GRPO: GRPOTrainer's loss on a fixed group (two prompts, three completions each, fixed rewards
turned into advantages by TRL's grouping), for each aggregation, with and without the KL
penalty (reference: the adapter disabled) and with sampling log-probs that differ from the
current policy (so that the ratio clips): the loss and every LoRA gradient.

KTO: KTOTrainer on one batch of four unpaired completions (its KL estimate from the batch's
rotated completions): the loss, its metrics and every LoRA gradient.

Function level: the reference-free losses on fixed summed log-probs, through TRL's own
functions: CPOTrainer.cpo_loss (loss_type="simpo", SimPO) and ORPOTrainer.odds_ratio_loss
(ORPO), with autograd gradients with respect to the log-probs.

  bench/.venv/bin/python scripts/make_alignment_fixtures.py crates/train/tests/fixtures/alignment

Needs torch, transformers, peft and trl (bench/.venv has them).
"""
import json, os, sys, tempfile, types

import torch
import transformers as tf
from datasets import Dataset
from peft import LoraConfig, get_peft_model
from tokenizers import Tokenizer, models, pre_tokenizers
import trl
from trl import DPOConfig, DPOTrainer, GRPOConfig, GRPOTrainer, KTOConfig, KTOTrainer, RewardConfig, RewardTrainer
from trl.trainer.utils import nanstd
from trl.experimental.cpo import CPOTrainer
from trl.experimental.orpo import ORPOTrainer

OUT = sys.argv[1] if len(sys.argv) > 1 else "crates/train/tests/fixtures/alignment"
BASE = "crates/models/tests/fixtures/parity/llama_gqa"
V = 97
torch.manual_seed(0)

# Pairs as token ids (the tokenizer below maps "wK" to id K; 0 is <pad>, 1 <unk>, 2 </s>).
PAIRS = [
    ([5, 17, 33, 8], [40, 41, 9, 2], [50, 12, 2]),
    ([6, 7], [60, 61, 62, 63, 64, 2], [70, 2]),
    ([9, 10, 11, 12, 13], [80, 2], [81, 82, 83, 84, 2]),
]


def tokenizer():
    vocab = {"<pad>": 0, "<unk>": 1, "</s>": 2, **{f"w{i}": i for i in range(3, V)}}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    fast = tf.PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>")
    return fast


def text(ids):
    return " ".join(f"w{i}" for i in ids if i != 2)


LORA = dict(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], lora_dropout=0.0, task_type="CAUSAL_LM")


def random_adapter(adapter_dir):
    """A LoRA adapter with A and B both random (scaled so that the policy differs clearly from
    the base), saved in PEFT's format; returns its weights."""
    base = tf.LlamaForCausalLM.from_pretrained(BASE, torch_dtype=torch.float32)
    torch.manual_seed(1)
    model = get_peft_model(base, LoraConfig(**LORA, init_lora_weights=False))
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "lora_" in n:
                p.mul_(0.5)
    model.save_pretrained(adapter_dir)
    os.remove(os.path.join(adapter_dir, "README.md"))  # PEFT's model card template
    return {n: p.detach().clone() for n, p in model.named_parameters() if "lora_" in n}


def set_adapter(model, weights):
    """Overwrites the trainer's fresh LoRA adapter with the saved random one."""
    with torch.no_grad():
        params = dict(model.named_parameters())
        for n, w in weights.items():
            params[n].copy_(w)


def lora_grads(model):
    """Every parameter's gradient, named as tunesmith names it (no PEFT prefix or adapter name)."""
    return {n.replace("base_model.model.", "", 1).replace(".default", ""): p.grad.detach().flatten().tolist()
            for n, p in model.named_parameters() if p.grad is not None}


def dpo_case(weights, tok, loss_type, beta, work):
    """DPOTrainer given the base and a LoRA config (a new adapter: the reference is the base with
    the adapter disabled), its adapter then set to the random weights."""
    ds = Dataset.from_list([{"prompt": text(p) + " ", "chosen": text(c), "rejected": text(r)} for p, c, r in PAIRS])
    args = DPOConfig(output_dir=work, beta=beta, loss_type=[loss_type], report_to="none", use_cpu=True,
                     per_device_train_batch_size=len(PAIRS), max_length=None, bf16=False, dataset_num_proc=None)
    base = tf.LlamaForCausalLM.from_pretrained(BASE, torch_dtype=torch.float32)
    trainer = DPOTrainer(model=base, args=args, train_dataset=ds, processing_class=tok,
                         peft_config=LoraConfig(**LORA))
    set_adapter(trainer.model, weights)
    rows = [trainer.train_dataset[i] for i in range(len(PAIRS))]
    for row, (p, c, r) in zip(rows, PAIRS):
        assert row["prompt_ids"] == p and row["chosen_ids"] == c and row["rejected_ids"] == r, row
    batch = trainer.data_collator(rows)
    trainer.model.train()
    trainer.model.zero_grad()
    loss = trainer.compute_loss(trainer.model, batch)
    loss.backward()
    grads = lora_grads(trainer.model)
    assert grads, "no LoRA parameter got a gradient"
    metrics = {k: v[-1] for k, v in trainer._metrics["train"].items()
               if k.startswith("rewards/") or k.startswith("logps/")}
    return {"loss": loss.item(), "metrics": metrics, "grads": grads}


REWARD_GRADS = ["score.weight", "model.norm.weight", "model.layers.1.self_attn.v_proj.weight",
                "model.layers.0.mlp.gate_proj.weight"]


def reward_model(model_dir):
    """The tiny Llama with a fresh one-output score head (seeded), saved for the Rust side."""
    torch.manual_seed(2)
    model = tf.LlamaForSequenceClassification.from_pretrained(BASE, num_labels=1, torch_dtype=torch.float32)
    with torch.no_grad():
        model.score.weight.normal_(0.0, 0.2)
    model.config.pad_token_id = 0
    model.save_pretrained(model_dir)


def reward_case(model_dir, tok, margin, center, work):
    """RewardTrainer's loss, metrics and gradients on the pairs (prompt + completion, as
    RewardTrainer joins an explicit prompt), full fine-tuning."""
    model = tf.LlamaForSequenceClassification.from_pretrained(model_dir, torch_dtype=torch.float32)
    rows = [{"prompt": text(p) + " ", "chosen": text(c), "rejected": text(r)} for p, c, r in PAIRS]
    if margin:
        for row in rows:
            row["margin"] = margin
    args = RewardConfig(output_dir=work, report_to="none", use_cpu=True, per_device_train_batch_size=len(PAIRS),
                        center_rewards_coefficient=center or None, max_length=None, bf16=False,
                        dataset_num_proc=None)
    trainer = RewardTrainer(model=model, args=args, train_dataset=Dataset.from_list(rows), processing_class=tok)
    examples = [trainer.train_dataset[i] for i in range(len(PAIRS))]
    for ex, (p, c, r) in zip(examples, PAIRS):
        assert ex["chosen_ids"] == p + c and ex["rejected_ids"] == p + r, ex
    batch = trainer.data_collator(examples)
    trainer.model.train()
    trainer.model.zero_grad()
    loss = trainer.compute_loss(trainer.model, batch)
    loss.backward()
    params = dict(trainer.model.named_parameters())
    grads = {n: params[n].grad.detach().flatten().tolist() for n in REWARD_GRADS}
    metrics = {k: v[-1] for k, v in trainer._metrics["train"].items() if k != "num_tokens"}
    return {"margin": margin, "center_rewards": center, "loss": loss.item(), "metrics": metrics, "grads": grads}


# GRPO group: prompts of one length (no left padding), completions of several lengths.
GRPO_PROMPTS = [[5, 17, 33, 8], [6, 7, 40, 41]]
GRPO_COMPLETIONS = [[40, 41, 9, 2], [50, 2], [60, 61, 62], [70, 71, 2], [80, 2], [81, 82, 83, 84, 2]]
GRPO_REWARDS = [1.0, 0.0, 0.5, 0.0, 1.0, 1.0]
G = 3


def grpo_advantages(rewards):
    r = torch.tensor(rewards, dtype=torch.float32)
    mean = r.view(-1, G).mean(dim=1).repeat_interleave(G)
    std = nanstd(r.view(-1, G), dim=1).repeat_interleave(G)
    return ((r - mean) / (std + 1e-4)).tolist()


def grpo_case(weights, tok, loss_type, beta, perturb_old, work):
    ds = Dataset.from_list([{"prompt": text(p)} for p in GRPO_PROMPTS])
    args = GRPOConfig(output_dir=work, beta=beta, epsilon=0.2, loss_type=loss_type, num_generations=G,
                      per_device_train_batch_size=G * len(GRPO_PROMPTS), max_completion_length=8,
                      report_to="none", use_cpu=True, bf16=False)
    base = tf.LlamaForCausalLM.from_pretrained(BASE, torch_dtype=torch.float32)
    trainer = GRPOTrainer(model=base, reward_funcs=[lambda completions, **kw: [0.0] * len(completions)], args=args,
                          train_dataset=ds, processing_class=tok, peft_config=LoraConfig(**LORA))
    set_adapter(trainer.model, weights)
    prompt_ids = torch.tensor([p for p in GRPO_PROMPTS for _ in range(G)])
    width = max(map(len, GRPO_COMPLETIONS))
    completion_ids = torch.tensor([c + [0] * (width - len(c)) for c in GRPO_COMPLETIONS])
    completion_mask = torch.tensor([[1] * len(c) + [0] * (width - len(c)) for c in GRPO_COMPLETIONS])
    inputs = {"prompt_ids": prompt_ids, "prompt_mask": torch.ones_like(prompt_ids), "completion_ids": completion_ids,
              "completion_mask": completion_mask, "advantages": torch.tensor(grpo_advantages(GRPO_REWARDS))}
    input_ids = torch.cat([prompt_ids, completion_ids], dim=1)
    attention = torch.cat([inputs["prompt_mask"], completion_mask], dim=1)
    with torch.no_grad():
        if beta != 0.0:
            with trainer.model.disable_adapter():
                ref, _, _ = trainer._get_per_token_logps_and_entropies(trainer.model, input_ids, attention, width)
            inputs["ref_per_token_logps"] = ref
        if perturb_old:
            now, _, _ = trainer._get_per_token_logps_and_entropies(trainer.model, input_ids, attention, width)
            torch.manual_seed(3)
            inputs["old_per_token_logps"] = now + 0.3 * torch.randn_like(now)
    trainer.model.train()
    trainer.model.zero_grad()
    trainer.current_gradient_accumulation_steps = 1
    loss = trainer._compute_loss(trainer.model, inputs)
    loss.backward()
    grads = lora_grads(trainer.model)
    old = None
    if perturb_old:
        old = [row[: len(c)] for row, c in zip(inputs["old_per_token_logps"].tolist(), GRPO_COMPLETIONS)]
    return {"loss_type": loss_type, "beta": beta, "epsilon": 0.2, "max_new_tokens": 8, "loss": loss.item(),
            "old_logps": old, "grads": grads}


# KTO: each of the first two pairs as a desirable and an undesirable completion, in one batch.
KTO_ROWS = [(p, c, True) for p, c, _ in PAIRS[:2]] + [(p, r, False) for p, _, r in PAIRS[:2]]


def kto_case(weights, tok, beta, undesirable_weight, work):
    """KTOTrainer (a new adapter: the reference is the base with it disabled) on one batch of the
    four rows; its KL term from the batch's rotated completions."""
    ds = Dataset.from_list([{"prompt": text(p) + " ", "completion": text(c), "label": d} for p, c, d in KTO_ROWS])
    args = KTOConfig(output_dir=work, beta=beta, desirable_weight=1.0, undesirable_weight=undesirable_weight,
                     per_device_train_batch_size=len(KTO_ROWS), report_to="none", use_cpu=True, max_length=None,
                     bf16=False, dataset_num_proc=None)
    base = tf.LlamaForCausalLM.from_pretrained(BASE, torch_dtype=torch.float32)
    trainer = KTOTrainer(model=base, args=args, train_dataset=ds, processing_class=tok, peft_config=LoraConfig(**LORA))
    set_adapter(trainer.model, weights)
    rows = [trainer.train_dataset[i] for i in range(len(KTO_ROWS))]
    for row, (p, c, d) in zip(rows, KTO_ROWS):
        assert row["prompt_ids"] == p and row["completion_ids"] == c and bool(row["label"]) == d, row
    batch = trainer.data_collator(rows)
    trainer.model.train()
    trainer.model.zero_grad()
    loss = trainer.compute_loss(trainer.model, batch)
    loss.backward()
    grads = lora_grads(trainer.model)
    metrics = {k: v[-1] for k, v in trainer._metrics["train"].items()
               if k.startswith("rewards/") or k.startswith("logps/") or k == "kl"}
    return {"beta": beta, "desirable_weight": 1.0, "undesirable_weight": undesirable_weight, "loss": loss.item(),
            "metrics": metrics, "grads": grads}


def function_cases():
    chosen = torch.tensor([-1.25, -0.5, -2.0, -0.05], dtype=torch.float64)
    rejected = torch.tensor([-1.5, -0.25, -2.75, -3.0], dtype=torch.float64)
    out = []
    stub = types.SimpleNamespace(accelerator=types.SimpleNamespace(device="cpu"))
    for beta, gamma, eps in [(2.0, 0.5, 0.0), (0.7, 1.2, 0.1)]:
        c, r = chosen.clone().requires_grad_(), rejected.clone().requires_grad_()
        s = types.SimpleNamespace(**vars(stub), alpha=0.0, loss_type="simpo", simpo_gamma=gamma, beta=beta,
                                  label_smoothing=eps)
        losses, rc, rr = CPOTrainer.cpo_loss(s, c, r)
        losses.mean().backward()
        out.append({"loss": "simpo", "beta": beta, "gamma": gamma, "label_smoothing": eps,
                    "chosen_mean_logps": chosen.tolist(), "rejected_mean_logps": rejected.tolist(),
                    "value": losses.mean().item(), "d_chosen": c.grad.tolist(), "d_rejected": r.grad.tolist(),
                    "chosen_rewards": rc.tolist(), "rejected_rewards": rr.tolist()})
    for beta in [0.1, 0.5]:
        c, r = chosen.clone().requires_grad_(), rejected.clone().requires_grad_()
        s = types.SimpleNamespace(**vars(stub), beta=beta)
        losses, rc, rr, _, _ = ORPOTrainer.odds_ratio_loss(s, c, r)
        # ORPOTrainer's loss is the NLL minus the mean of these; the pair part here.
        (-losses.mean()).backward()
        out.append({"loss": "orpo", "beta": beta, "gamma": 0.0, "label_smoothing": 0.0,
                    "chosen_mean_logps": chosen.tolist(), "rejected_mean_logps": rejected.tolist(),
                    "value": -losses.mean().item(), "d_chosen": c.grad.tolist(), "d_rejected": r.grad.tolist(),
                    "chosen_rewards": rc.tolist(), "rejected_rewards": rr.tolist()})
    return out


def main():
    os.makedirs(OUT, exist_ok=True)
    tok = tokenizer()
    weights = random_adapter(os.path.join(OUT, "adapter"))
    cases = []
    with tempfile.TemporaryDirectory() as work:
        for loss_type, ours, beta in [("sigmoid", "dpo", 0.1), ("sigmoid", "dpo", 0.5), ("ipo", "ipo", 0.1),
                                      ("hinge", "hinge", 0.5)]:
            case = dpo_case(weights, tok, loss_type, beta, work)
            case.update({"loss_type": ours, "trl_loss_type": loss_type, "beta": beta})
            cases.append(case)
    reward_dir = os.path.join(OUT, "reward_model")
    reward_model(reward_dir)
    with tempfile.TemporaryDirectory() as work:
        rewards = [reward_case(reward_dir, tok, m, c, work) for m, c in [(0.0, 0.0), (0.5, 0.01)]]
    with tempfile.TemporaryDirectory() as work:
        grpo = [grpo_case(weights, tok, lt, beta, old, work)
                for lt, beta, old in [("grpo", 0.0, False), ("grpo", 0.04, False), ("bnpo", 0.04, True),
                                      ("dr_grpo", 0.1, True), ("grpo", 0.04, True)]]
    with tempfile.TemporaryDirectory() as work:
        kto = [kto_case(weights, tok, b, u, work) for b, u in [(0.1, 1.0), (0.5, 1.33)]]
    fixture = {
        "source": f"scripts/make_alignment_fixtures.py, trl {trl.__version__}, torch {torch.__version__}",
        "model": BASE,
        "adapter": "adapter",
        "pairs": [{"prompt_ids": p, "chosen_ids": c, "rejected_ids": r} for p, c, r in PAIRS],
        "dpo_trainer": cases,
        "reward_model": "reward_model",
        "reward_trainer": rewards,
        "kto": {"rows": [{"prompt_ids": p, "completion_ids": c, "desirable": d} for p, c, d in KTO_ROWS],
                "cases": kto},
        "grpo": {"prompts": GRPO_PROMPTS, "completions": GRPO_COMPLETIONS, "rewards": GRPO_REWARDS, "group": G,
                 "advantages": grpo_advantages(GRPO_REWARDS), "cases": grpo},
        "functions": function_cases(),
    }
    with open(os.path.join(OUT, "trl.json"), "w") as f:
        json.dump(fixture, f)
    print(f"wrote {OUT}/trl.json: {len(cases)} DPOTrainer cases, {len(fixture['functions'])} function cases, {len(rewards)} RewardTrainer cases, {len(grpo)} GRPOTrainer cases, {len(kto)} KTOTrainer cases")


if __name__ == "__main__":
    main()
