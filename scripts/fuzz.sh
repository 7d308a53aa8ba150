#!/usr/bin/env bash
# Builds the fuzz harnesses (fuzz/build.sh) and runs each over its seed corpus
# for SECONDS (default 30) with its dictionary, as many at a time as there are
# cores (TPINFER_FUZZ_JOBS). New inputs go to a scratch corpus, never into
# fuzz/corpus. Fails (non-zero) when any harness finds a crash, leak, timeout
# or allocation past the limits; the input that did it is saved as
# build-fuzz/artifacts/<harness>-crash-* (or leak-, timeout-, oom-).
#   scripts/fuzz.sh [SECONDS] [HARNESS...]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-30}
shift || true
harnesses=("$@")
[ ${#harnesses[@]} -gt 0 ] || harnesses=(gguf safetensors hf_folder hf_tokenizer tokenizer chat_template chat_messages request)
build=build-fuzz
bash fuzz/build.sh "$build"
mkdir -p "$build/artifacts"
declare -A dicts=([gguf]=gguf [safetensors]=json [hf_folder]=json [hf_tokenizer]=json [tokenizer]=text
  [chat_template]=jinja [chat_messages]=json [request]=json)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export ASAN_OPTIONS=detect_leaks=1:allocator_may_return_null=0 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
# Runs one harness; its libFuzzer output goes to $work/<harness>.log.
run_one() {
  local h=$1
  mkdir -p "$work/$h"
  "$build/fuzz_$h" -max_total_time="$seconds" -rss_limit_mb=2048 -malloc_limit_mb=512 -timeout=20 \
    -print_final_stats=1 -dict="fuzz/${dicts[$h]}.dict" -artifact_prefix="$build/artifacts/$h-" \
    "$work/$h" "fuzz/corpus/$h" >"$work/$h.log" 2>&1
}
# TPINFER_FUZZ_JOBS harnesses at a time (default: the number of cores).
jobs=${TPINFER_FUZZ_JOBS:-$(nproc)}
declare -A pids=()
failed=()
for h in "${harnesses[@]}"; do
  while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do sleep 1; done
  echo "== fuzz_$h: ${seconds}s"
  run_one "$h" &
  pids[$h]=$!
done
for h in "${harnesses[@]}"; do
  if wait "${pids[$h]}"; then
    echo "-- fuzz_$h: $(grep -E '^#[0-9]+[[:space:]]+DONE' "$work/$h.log" | tail -n 1)"
  else
    tail -n 60 "$work/$h.log" >&2
    echo "fuzz_$h FAILED (see above; the input is in $build/artifacts/)" >&2
    failed+=("$h")
  fi
done
[ ${#failed[@]} -eq 0 ] || { echo "fuzz: findings in ${failed[*]}" >&2; exit 1; }
echo "fuzz: all ${#harnesses[@]} harnesses clean"
