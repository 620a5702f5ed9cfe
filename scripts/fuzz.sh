#!/usr/bin/env bash
# Runs every data-reader fuzz target for a bounded time (default 60 s each), seeding the corpora
# from ../shared/data when it is there. cargo-fuzz needs nightly features; on a stable toolchain
# RUSTC_BOOTSTRAP=1 enables them.
#   scripts/fuzz.sh [seconds-per-target]
set -euo pipefail
secs="${1:-60}"
root="$(cd "$(dirname "$0")/.." && pwd)"
shared="$root/../shared/data"
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
cd "$root/crates/data"
seed() { # target, files...
  local dir="fuzz/corpus/$1"; shift
  mkdir -p "$dir"
  for f in "$@"; do [ -f "$f" ] && head -c 4096 "$f" > "$dir/seed-$(basename "$f")" || true; done
}
seed read_jsonl "$shared/gsm8k/train.jsonl" "$shared/llamafactory-demo/c4_demo.jsonl"
seed read_json_array "$shared/llamafactory-demo/alpaca_en_demo.json" "$shared/sharegpt-dummy-fastchat/dummy_conversation.json" "$shared/llamafactory-demo/dpo_en_demo.json"
seed read_csv "$shared/sst2/dev.tsv"
seed read_tsv "$shared/sst2/dev.tsv" "$shared/sms-spam/SMSSpamCollection"
seed read_text "$shared/tinystories-sample/tinystories.txt"
seed read_parquet
failed=0
for t in read_jsonl read_json_array read_csv read_tsv read_text read_parquet; do
  echo "== $t ($secs s)"
  log="fuzz/$t.log"
  if RUSTC_BOOTSTRAP=1 cargo fuzz run -O "$t" -- -max_total_time="$secs" -rss_limit_mb=4096 >"$log" 2>&1; then
    grep -E "^Done [0-9]+ runs" "$log" || tail -1 "$log"
  else
    failed=1
    grep -E "panicked|ERROR|SUMMARY|Test unit written" "$log" | head -20
  fi
done
exit $failed
