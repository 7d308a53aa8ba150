#!/usr/bin/env bash
# Builds the libFuzzer harnesses into build-fuzz/ (or $1): clang-14, the layer
# libraries with AddressSanitizer + UndefinedBehaviorSanitizer and
# -fsanitize=fuzzer-no-link, the harnesses linked with -fsanitize=fuzzer.
# Installs clang-14 through scripts/deps.sh when it is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build-fuzz}
command -v clang++-14 >/dev/null || bash scripts/deps.sh
CC=clang-14 CXX=clang++-14 cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -g" -DCMAKE_CXX_FLAGS="-fsanitize=fuzzer-no-link" \
  -DTPINFER_SANITIZE=address,undefined -DTPINFER_TESTS=OFF -DTPINFER_BENCH=OFF \
  -DTPINFER_WERROR=OFF -DTPINFER_FUZZ=ON >/dev/null
ninja -C "$build" -j"${TPINFER_JOBS:-$(nproc)}" fuzz_all
