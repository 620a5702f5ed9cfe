#!/usr/bin/env bash
# Re-checks the preference losses against the TRL installed now: regenerates the fixtures into
# a temporary folder with scripts/make_alignment_fixtures.py and runs the parity test on them.
#   scripts/check_alignment_live.sh            (uses bench/.venv; needs torch, peft, trl)
set -euo pipefail
cd "$(dirname "$0")/.."
py="${PYTHON:-bench/.venv/bin/python}"
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
"$py" scripts/make_alignment_fixtures.py "$out"
TUNESMITH_ALIGNMENT_FIXTURES="$out" cargo test -q -p tunesmith-train --test alignment_parity
