#!/usr/bin/env python3
"""Chat-template fixtures for crates/data/tests/templates.rs.

Renders a fixed set of conversations (system prompts, multi-turn, tools, unicode,
add_generation_prompt on and off) with every template in ../shared/chat-templates using
transformers' own renderer, and records the text (or the error the template raises). For the
models that ship a tokenizer.json it also records apply_chat_template's token ids and the
assistant-token mask under tunesmith's definition (see below), computed here independently from
transformers' rendering and the HF tokenizer's character offsets.

Assistant-mask definition: with F = render(messages), for each assistant message i the trained
span runs from the end of render(messages[:i], add_generation_prompt=True) (which must be a
prefix of F) to the end of the longest common prefix of render(messages[:i+1]) and F, trailing
whitespace removed; a token is trained if its characters overlap a span.

  python3 scripts/make_template_fixtures.py ../shared/chat-templates crates/data/tests/fixtures/templates.json
"""
import json, os, sys

import transformers
from transformers import AutoTokenizer
from transformers.utils.chat_template_utils import render_jinja_template

ROOT, OUT = sys.argv[1], sys.argv[2]
SPECIAL = ["bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token"]
DATE = "26 Jul 2024"

WEATHER_TOOL = {"type": "function", "function": {"name": "get_weather", "description": "Get the current weather in a city.",
                "parameters": {"type": "object", "properties": {"city": {"type": "string", "description": "City name, e.g. Paris"},
                                                                 "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
                               "required": ["city"]}}}

CONVERSATIONS = {
    "single": [{"role": "user", "content": "What is the capital of France?"},
               {"role": "assistant", "content": "The capital of France is Paris."}],
    "system_multi": [{"role": "system", "content": "You are a concise assistant."},
                     {"role": "user", "content": "Name a prime number."},
                     {"role": "assistant", "content": "7"},
                     {"role": "user", "content": "And an even one?"},
                     {"role": "assistant", "content": "2 is the only even prime."}],
    "three_turns": [{"role": "user", "content": "Hi!"}, {"role": "assistant", "content": "Hello! How can I help?"},
                    {"role": "user", "content": "Tell me a joke."}, {"role": "assistant", "content": "Why did the chicken cross the road?"},
                    {"role": "user", "content": "Why?"}, {"role": "assistant", "content": "To get to the other side."}],
    "prompt_only": [{"role": "system", "content": "Answer in French."}, {"role": "user", "content": "Good morning"}],
    "unicode": [{"role": "user", "content": "Traduis « bonjour » en 日本語 👋 and keep \"quotes\", 'apostrophes' & {{braces}}.\nSecond line\ttab."},
                {"role": "assistant", "content": "« bonjour » → こんにちは 👋\n\n1. done in 2021\n\n  2. ok"}],
    "tools": [{"role": "user", "content": "What's the weather in Paris?"},
              {"role": "assistant", "content": "", "tool_calls": [{"id": "call12345", "type": "function",
                                                                   "function": {"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}}}]},
              {"role": "tool", "content": "{\"temperature\": 21, \"sky\": \"clear\"}", "tool_call_id": "call12345", "name": "get_weather"},
              {"role": "assistant", "content": "It is 21 °C and clear in Paris."}],
}
TOOLS = {"tools": [WEATHER_TOOL]}


def find_template(folder):
    cfg_path = os.path.join(folder, "tokenizer_config.json")
    cfg = json.load(open(cfg_path)) if os.path.exists(cfg_path) else {}
    tpl = cfg.get("chat_template")
    src = "tokenizer_config.json"
    if isinstance(tpl, list):
        tpl = next(t["template"] for t in tpl if t["name"] == "default")
    if tpl is None:
        jinjas = sorted(f for f in os.listdir(folder) if f.endswith(".jinja") and "UNVERIFIED" not in f)
        if not jinjas:
            return None, None, cfg
        src = jinjas[0]
        tpl = open(os.path.join(folder, src)).read()
    return tpl, src, cfg


# Template-only folders whose SOURCE.txt names the special tokens the template needs.
SOURCE_SPECIALS = {"zephyr-7b-beta": {"bos_token": "<s>", "eos_token": "</s>"}}


def special_tokens(folder, cfg):
    out = dict(SOURCE_SPECIALS.get(os.path.basename(folder), {}))
    for k in SPECIAL:
        v = cfg.get(k)
        if isinstance(v, dict):
            v = v.get("content")
        if v is not None:
            out[k] = v
    # Folders without a tokenizer_config.json describe their special tokens in a JSON file.
    for f in sorted(os.listdir(folder)):
        if f.startswith("special_tokens") and f.endswith(".json") and not cfg:
            extra = json.load(open(os.path.join(folder, f)))
            for k in SPECIAL:
                v = extra.get(k)
                if isinstance(v, dict):
                    v = v.get("content")
                if v is not None and k not in out:
                    out[k] = v
    return out


def render(tpl, messages, tools, agp, specials):
    try:
        text, _ = render_jinja_template(conversations=[messages], tools=tools, chat_template=tpl, add_generation_prompt=agp,
                                        date_string=DATE, **specials)
        return {"text": text[0]}
    except Exception as e:  # the template's own raise_exception, or a genuine incompatibility
        return {"error": f"{type(e).__name__}: {e}"}


def assistant_spans(tpl, messages, tools, specials):
    full = render(tpl, messages, tools, False, specials)
    if "error" in full:
        return None
    spans = []
    for i, m in enumerate(messages):
        if m["role"] != "assistant":
            continue
        pre = render(tpl, messages[:i], tools, True, specials)
        upto = render(tpl, messages[:i + 1], tools, False, specials)
        if "error" in pre or "error" in upto or not full["text"].startswith(pre["text"]):
            return None
        common = os.path.commonprefix([upto["text"], full["text"]])
        end = len(common.rstrip())
        if end <= len(pre["text"]):
            return None
        spans.append((len(pre["text"]), end))
    return spans


# A ChatML template with transformers' {% generation %} blocks, to check our assistant masks
# against return_assistant_tokens_mask (tokenized with SmolLM2's tokenizer).
GENERATION_TEMPLATE = ("{% for message in messages %}{% if message['role'] == 'assistant' %}{{ '<|im_start|>assistant\\n' }}"
                       "{% generation %}{{ message['content'] + '<|im_end|>' }}{% endgeneration %}{{ '\\n' }}"
                       "{% else %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}{% endif %}{% endfor %}"
                       "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")


def generation_fixture(root):
    tok = AutoTokenizer.from_pretrained(os.path.join(root, "smollm2-135m-instruct"))
    out = {"template": GENERATION_TEMPLATE, "tokenizer": "smollm2-135m-instruct", "cases": {}}
    for cname, msgs in CONVERSATIONS.items():
        if cname == "tools" or msgs[-1]["role"] != "assistant":
            continue
        enc = tok.apply_chat_template(msgs, chat_template=GENERATION_TEMPLATE, tokenize=True, return_dict=True,
                                      return_assistant_tokens_mask=True)
        out["cases"][cname] = {"ids": enc["input_ids"], "assistant_mask": enc["assistant_masks"]}
    return out


def main():
    out = {"transformers": transformers.__version__, "date_string": DATE, "conversations": CONVERSATIONS, "tools": [WEATHER_TOOL], "templates": {}}
    for name in sorted(os.listdir(ROOT)):
        folder = os.path.join(ROOT, name)
        if not os.path.isdir(folder):
            continue
        tpl, src, cfg = find_template(folder)
        if tpl is None:
            continue
        specials = special_tokens(folder, cfg)
        entry = {"source": src, "special_tokens": specials, "renders": {}}
        for cname, msgs in CONVERSATIONS.items():
            tools = TOOLS["tools"] if cname == "tools" else None
            for agp in (False, True):
                entry["renders"][f"{cname}/{'gen' if agp else 'nogen'}"] = render(tpl, msgs, tools, agp, specials)
        if os.path.exists(os.path.join(folder, "tokenizer.json")):
            tok = AutoTokenizer.from_pretrained(folder)
            tokens = {}
            for cname, msgs in CONVERSATIONS.items():
                tools = TOOLS["tools"] if cname == "tools" else None
                r = render(tpl, msgs, tools, False, specials)
                if "error" in r or msgs[-1]["role"] != "assistant":
                    continue
                ids = tok.apply_chat_template(msgs, tools=tools, tokenize=True, return_dict=True, chat_template=tpl, date_string=DATE)["input_ids"]
                enc = tok(r["text"], add_special_tokens=False, return_offsets_mapping=True)
                assert enc["input_ids"] == ids, f"{name}/{cname}: apply_chat_template ids differ from encoding the render"
                spans = assistant_spans(tpl, msgs, tools, specials)
                mask = None
                if spans is not None:
                    # A token is trained when its character range [s, e) overlaps a span.
                    mask = [int(any(s < b and a < e for (a, b) in spans)) for (s, e) in enc["offset_mapping"]]
                tokens[cname] = {"ids": ids, "assistant_mask": mask}
            entry["tokens"] = tokens
        out["templates"][name] = entry
        print(name, src, sum("error" in r for r in entry["renders"].values()), "errors", len(entry.get("tokens", {})), "tokenized")
    out["generation_blocks"] = generation_fixture(ROOT)
    json.dump(out, open(OUT, "w"), ensure_ascii=False, indent=1)


if __name__ == "__main__":
    main()
