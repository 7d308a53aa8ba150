#!/usr/bin/env bash
# The GPU checks, in one go, on a machine with an NVIDIA GPU and the CUDA
# toolkit (nvcc, cuBLAS, NCCL): builds tpinfer with the CUDA back end
# (Release, into build-gpu/), runs every GPU test (gtest suites named Cuda*),
# then compares greedy generation on --device cuda (TP = 1 and TP = 2) with
# --device cpu through the CLI on the bible model. Prints a summary; exits
# non-zero on any failure, and on a GPU test that skipped (here a skip means
# the GPU was not usable, which is a failure of this script's purpose).
#
#   tests/gpu/run.sh                 # from anywhere
#   BUILD_DIR=/tmp/b JOBS=8 tests/gpu/run.sh
#   SKIP_BUILD=1 tests/gpu/run.sh    # reuse build-gpu/
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
BUILD_DIR="${BUILD_DIR:-$ROOT/build-gpu}"
JOBS="${JOBS:-$(nproc)}"
SHARED="${TPINFER_SHARED_DIR:-$ROOT/../shared}"
N_TOKENS="${N_TOKENS:-32}"
PROMPT="${PROMPT:-In the beginning God created the heaven and the earth. And the earth was}"

failures=()
passes=()
log() { printf '\n=== %s\n' "$*"; }
pass() { passes+=("$1"); printf 'PASS: %s\n' "$1"; }
fail() { failures+=("$1"); printf 'FAIL: %s\n' "$1" >&2; }

summary() {
  printf '\n=== summary: %d passed, %d failed\n' "${#passes[@]}" "${#failures[@]}"
  for p in "${passes[@]+"${passes[@]}"}"; do printf '  pass  %s\n' "$p"; done
  for f in "${failures[@]+"${failures[@]}"}"; do printf '  FAIL  %s\n' "$f"; done
  [ "${#failures[@]}" -eq 0 ]
}

# --- the machine -------------------------------------------------------------
log "machine"
if command -v nvidia-smi >/dev/null 2>&1; then
  nvidia-smi --query-gpu=index,name,memory.total,driver_version --format=csv,noheader || true
  N_GPUS="$(nvidia-smi --query-gpu=index --format=csv,noheader 2>/dev/null | wc -l)"
else
  echo "nvidia-smi not found: the GPU tests will fail (skip = failure here)"
  N_GPUS=0
fi
echo "GPUs: $N_GPUS  build: $BUILD_DIR  jobs: $JOBS  shared: $SHARED"

# --- build -------------------------------------------------------------------
if [ "${SKIP_BUILD:-0}" != 1 ]; then
  log "build (Release, -DTPINFER_CUDA=ON)"
  generator=()
  command -v ninja >/dev/null 2>&1 && generator=(-G Ninja)
  if ! cmake -S "$ROOT" -B "$BUILD_DIR" "${generator[@]}" -DCMAKE_BUILD_TYPE=Release -DTPINFER_CUDA=ON; then
    fail "cmake configure"
    summary || exit 1
  fi
  if ! cmake --build "$BUILD_DIR" -j "$JOBS"; then
    fail "build"
    summary || exit 1
  fi
  pass "build"
fi
BIN="$BUILD_DIR/tpinfer"
TESTS="$BUILD_DIR/tests/tpinfer_tests"
[ -x "$BIN" ] || { fail "no binary at $BIN"; summary || exit 1; }

# --- GPU gtests ----------------------------------------------------------------
log "GPU tests (gtest suites Cuda*, the device operations on cuda, StreamsGroup, NcclComm, DeviceCodec, PlaceRanks, Topology, DeviceOption)"
gtest_log="$BUILD_DIR/gpu-gtests.log"
if [ -x "$TESTS" ]; then
  # DeviceOption.CudaWithoutBackEndOrGpuSaysWhy is the no-GPU case: it skips where there is a GPU.
  if "$TESTS" --gtest_filter='Cuda*:*Cuda*:*/DeviceOps.*/cuda:StreamsGroup.*:NcclComm.*:DeviceCodec.*:PlaceRanks.*:Topology.*:DeviceOption*:-DeviceOption.CudaWithoutBackEndOrGpuSaysWhy' 2>&1 |
    tee "$gtest_log"; then
    if grep -q 'no CUDA device' "$gtest_log"; then
      fail "GPU tests skipped: $(grep -m 1 'no CUDA device' "$gtest_log")"
    else
      # Other skips (e.g. a test that needs two GPUs on a one-GPU machine) are reported, not failures.
      grep '^\[  SKIPPED \] [A-Za-z]' "$gtest_log" | sed 's/^/note: /' || true
      pass "GPU tests ($(grep -o '\[  PASSED  \] [0-9]* test' "$gtest_log" | grep -o '[0-9]*' || echo '?') passed)"
    fi
  else
    fail "GPU tests (see $gtest_log)"
  fi
else
  fail "no test binary at $TESTS (configure with -DTPINFER_TESTS=ON)"
fi

# --- CLI: greedy tokens on cuda equal cpu --------------------------------------
# The "tokens" array of `tpinfer run --json`.
tokens_of() { grep -o '"tokens":\[[0-9,]*\]' | head -n 1; }

run_tokens() {  # model device tp -> tokens json (stderr to the log)
  local model="$1" device="$2" tp="$3" extra=()
  [ "$#" -gt 3 ] && extra=("${@:4}")
  "$BIN" run -m "$model" -p "$PROMPT" -n "$N_TOKENS" --temp 0 --ignore-eos --json --device "$device" --tp "$tp" \
    -c 1024 "${extra[@]+"${extra[@]}"}" 2>>"$BUILD_DIR/gpu-cli.log" | tokens_of
}

compare() {  # model tp [extra args for the cuda run]
  local model="$1" tp="$2" name want got
  name="$(basename "$model") tp=$tp${3:+ $3}"
  if [ ! -e "$model" ]; then
    fail "$name: model missing at $model"
    return
  fi
  if ! want="$(run_tokens "$model" cpu 1)" || [ -z "$want" ]; then
    fail "$name: cpu run failed: $(tail -n 1 "$BUILD_DIR/gpu-cli.log")"
    return
  fi
  if ! got="$(run_tokens "$model" cuda "$tp" "${@:3}")" || [ -z "$got" ]; then
    fail "$name: cuda run failed: $(tail -n 1 "$BUILD_DIR/gpu-cli.log")"
    return
  fi
  if [ "$want" = "$got" ]; then
    pass "$name: cuda greedy tokens == cpu"
  else
    fail "$name: cuda greedy tokens differ from cpu
      cpu:  $want
      cuda: $got"
  fi
}

log "CLI: --device cuda vs --device cpu, greedy, $N_TOKENS tokens"
: >"$BUILD_DIR/gpu-cli.log"
Q8="$ROOT/models/bible-q8_0.gguf"
[ -e "$Q8" ] || Q8="$SHARED/models/bible/bible-q8_0.gguf"
BF16="$SHARED/models/bible/bible-bf16.gguf"
for model in "$Q8" "$BF16"; do
  compare "$model" 1
  compare "$model" 2
  compare "$model" 1 --no-cuda-graphs
done

summary
