#!/usr/bin/env bash
# Prefix caching on a multi-turn chat workload: the same tpinfer_chatbench run
# against `tpinfer serve` without the cache, then with it (one server after
# the other, same arguments otherwise), each printed as one JSON line.
#
#   bench/prefix_cache.sh MODEL [SERVE ARGS...] -- [CHATBENCH ARGS...]
set -euo pipefail
cd "$(dirname "$0")/.."
model=$1
shift
serve_args=()
while [[ $# -gt 0 && $1 != "--" ]]; do
  serve_args+=("$1")
  shift
done
[[ $# -gt 0 ]] && shift
bench_args=("$@")
port=${PORT:-8199}
for mode in off on; do
  flag=()
  [[ $mode == off ]] && flag=(--no-prefix-caching)
  ./build/tpinfer serve -m "$model" --port "$port" "${serve_args[@]}" "${flag[@]}" >"/tmp/prefix_cache_serve_$mode.log" 2>&1 &
  pid=$!
  for _ in $(seq 600); do
    curl -sf "http://127.0.0.1:$port/health" >/dev/null && break
    sleep 0.2
  done
  ./build/bench/tpinfer_chatbench --url "http://127.0.0.1:$port" --label "cache $mode" --json "${bench_args[@]}" || true
  curl -s "http://127.0.0.1:$port/metrics" | grep -E '^tpinfer_(prefix_cache|prompt_tokens_total|num_preemptions)' >&2
  kill "$pid"
  wait "$pid" || true
done
