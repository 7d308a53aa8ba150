#!/usr/bin/env bash
# Builds the fuzz harnesses (fuzz/build.sh) and runs each over its seed corpus
# for SECONDS (default 30) with its dictionary. New inputs go to a scratch
# corpus, never into fuzz/corpus. Fails (non-zero) on the first crash, leak,
# timeout, or allocation past the limits; the input that did it is saved as
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
for h in "${harnesses[@]}"; do
  mkdir -p "$work/$h"
  echo "== fuzz_$h: ${seconds}s"
  "$build/fuzz_$h" -max_total_time="$seconds" -rss_limit_mb=2048 -malloc_limit_mb=512 -timeout=20 \
    -print_final_stats=1 -dict="fuzz/${dicts[$h]}.dict" -artifact_prefix="$build/artifacts/$h-" \
    "$work/$h" "fuzz/corpus/$h" 2>"$work/$h.log" || {
    tail -n 60 "$work/$h.log" >&2
    echo "fuzz_$h FAILED (see above; inputs in $build/artifacts/)" >&2
    exit 1
  }
  grep -E '^#[0-9]+[[:space:]]+DONE|^stat::(number_of_executed_units|peak_rss_mb)' "$work/$h.log"
done
echo "fuzz: all ${#harnesses[@]} harnesses clean"
