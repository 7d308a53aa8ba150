#!/usr/bin/env bash
# The whole test suite: installs what is missing, builds, runs every test, then
# rebuilds with AddressSanitizer + UndefinedBehaviorSanitizer the suites listed
# in tests/sanitizer_tests.txt (every parser of hostile input: files,
# tokenizers, templates, requests, fuzz regressions; and the kernels) and runs
# them there.
set -euo pipefail
cd "$(dirname "$0")/.."
# Each section's heading says how long the command has run so far.
section() { echo "== $1 (at ${SECONDS} s)"; }
section "dependencies and build"
bash scripts/deps.sh --test
bash scripts/build.sh
section "tests"
(cd build && ctest -j"$(nproc)" --output-on-failure --timeout 900)

section "sanitizer build (address, undefined)"
# Line tables (-g1) are all the sanitizers' reports need (file:line in every
# frame); full debug info only slows the compile and link. Only tpinfer_tests
# (the sanitizer suites' files, see tests/CMakeLists.txt) and the tpinfer
# binary they run are built.
cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=Debug -DCMAKE_CXX_FLAGS_DEBUG="-O1 -g1" \
  -DTPINFER_SANITIZE=address,undefined -DTPINFER_BENCH=OFF >/dev/null
ninja -C build-asan -j"$(nproc)" tpinfer_tests
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
section "sanitizer tests"
(cd build-asan && ctest -j"$(nproc)" --output-on-failure --timeout 900 -R "$(cat ../tests/sanitizer_tests.txt)")

section "fuzz: every harness over its corpus, 10 s each (clang-14, libFuzzer)"
bash scripts/fuzz.sh 10
section "done"
