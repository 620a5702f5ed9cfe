#!/usr/bin/env bash
# The project's test command (the one README.md gives, and the one CI runs).
# Fetches the test-only model assets if missing, then runs every test of the workspace.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -d ../shared ]; then
    echo "note: ../shared is absent; tests that read real datasets and weights will skip" >&2
fi
cargo test --workspace --locked
