#!/usr/bin/env python3
"""TRL's SFT preprocessing of a chat JSONL file, timed: what `bench -- data` compares against.

Loads the file into a `datasets.Dataset`, then runs exactly SFTTrainer's own `_prepare_dataset`
(chat template, tokenization, assistant-only masks from `{% generation %}` blocks, truncation and
best-fit-decreasing packing), by constructing an SFTTrainer on a tiny random model and timing the
call. Prints one JSON line.

  python bench/data_peer.py --input chats.jsonl --tokenizer MODEL_DIR --template T.jinja \
      --max-length 1024 --num-proc 2
"""
import argparse, json, os, time

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
import datasets
from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM
from trl import SFTConfig, SFTTrainer


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--input", required=True)
    ap.add_argument("--tokenizer", required=True)
    ap.add_argument("--template", required=True)
    ap.add_argument("--max-length", type=int, default=1024)
    ap.add_argument("--num-proc", type=int, default=2)
    a = ap.parse_args()
    datasets.disable_caching()
    datasets.logging.disable_progress_bar()
    tok = AutoTokenizer.from_pretrained(a.tokenizer)
    tok.chat_template = open(a.template).read()
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                      num_attention_heads=2, num_key_value_heads=2)
    model = LlamaForCausalLM(cfg)

    t0 = time.perf_counter()
    with open(a.input) as f:
        rows = [json.loads(line) for line in f]
    ds = datasets.Dataset.from_list(rows)
    load_s = time.perf_counter() - t0

    timed = {}
    original = SFTTrainer._prepare_dataset

    def prepare(self, *args, **kwargs):
        t = time.perf_counter()
        out = original(self, *args, **kwargs)
        timed["prep_s"] = time.perf_counter() - t
        return out

    SFTTrainer._prepare_dataset = prepare
    args = SFTConfig(output_dir="/tmp/tunesmith-trl-bench", packing=True, packing_strategy="bfd",
                     max_length=a.max_length, assistant_only_loss=True, dataset_num_proc=a.num_proc,
                     report_to=[], use_cpu=True)
    trainer = SFTTrainer(model=model, args=args, train_dataset=ds, processing_class=tok)
    packed = trainer.train_dataset
    lengths = packed["seq_lengths"] if "seq_lengths" in packed.column_names else None
    labels = packed["labels"]
    ids = packed["input_ids"]
    print(json.dumps({
        "examples": len(rows),
        "rows": len(packed),
        "load_s": load_s,
        "prep_s": timed["prep_s"],
        "total_s": load_s + timed["prep_s"],
        "tokens": sum(len(x) for x in ids),
        "trained_tokens": sum(sum(1 for t in x if t != -100) for x in labels),
        "sequences": sum(len(s) for s in lengths) if lengths is not None else None,
        "trl": __import__("trl").__version__,
    }))


if __name__ == "__main__":
    main()
