#!/usr/bin/env bash
# Memcheck over the real binary: a short generation with the bible model, then
# three malformed inputs (a truncated GGUF, a GGUF claiming 2^60 tensors, a
# Hugging Face folder whose safetensors header is bad). Each must run without
# invalid reads or writes, uninitialised use or leaks (valgrind exits 9 then);
# the malformed ones must be refused with an error (exit code 1..8 from tpinfer
# is expected, and checked to be non-zero).
#   tests/valgrind.sh [path/to/tpinfer]   (default: build/tpinfer, Release)
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:-build/tpinfer}
[ -x "$bin" ] || { echo "no $bin: build first (scripts/build.sh)" >&2; exit 2; }
command -v valgrind >/dev/null || { echo "valgrind is not installed" >&2; exit 2; }
model=models/bible-q8_0.gguf
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
vg=(valgrind --quiet --error-exitcode=9 --leak-check=full --errors-for-leak-kinds=definite
    --suppressions=tests/valgrind.supp)

# Valid input: must succeed.
echo "== run $model"
"${vg[@]}" "$bin" run -m "$model" -p hi -n 4 --temperature 0 >"$work/out.txt"

# Malformed inputs: must fail cleanly (tpinfer's error exit), never with 9.
expect_refused() {
  local what=$1
  shift
  echo "== $what"
  set +e
  "${vg[@]}" "$bin" "$@" >"$work/out.txt" 2>"$work/err.txt"
  local rc=$?
  set -e
  if [ "$rc" -eq 9 ] || [ "$rc" -eq 0 ] || [ "$rc" -ge 128 ]; then
    cat "$work/err.txt" >&2
    echo "FAILED: $what: exit $rc (9: memcheck errors; 0: accepted; >=128: crashed)" >&2
    exit 1
  fi
  grep -m1 -i "error" "$work/err.txt" || true
}
head -c 100000 "$model" >"$work/truncated.gguf"
expect_refused "truncated GGUF" run -m "$work/truncated.gguf" -p hi -n 1
python3 - "$model" "$work/huge-count.gguf" <<'PY'
import struct, sys
b = bytearray(open(sys.argv[1], "rb").read(1 << 20))
b[8:16] = struct.pack("<Q", 1 << 60)  # tensor count
open(sys.argv[2], "wb").write(b)
PY
expect_refused "GGUF with 2^60 tensors" run -m "$work/huge-count.gguf" -p hi -n 1
mkdir "$work/hf"
cp fuzz/corpus/hf_folder/llama-tiny "$work/packed"
python3 - "$work/packed" "$work/hf" <<'PY'
import sys
parts = open(sys.argv[1], "rb").read().split(b"\n@@@@\n")
names = ["config.json", "model.safetensors.index.json", "tokenizer_config.json", "model.safetensors"]
for name, data in zip(names, parts):
    if name == "model.safetensors":
        data = data[:8] + b"{\"x\": [" + data[15:]  # header no longer valid JSON
    open(f"{sys.argv[2]}/{name}", "wb").write(data)
PY
expect_refused "safetensors folder with a bad header" run -m "$work/hf" -p hi -n 1
echo "valgrind: clean"
