#!/usr/bin/env bash
# The demo: installs what is missing, builds the tpinfer binary, and generates
# text from the bundled model (models/bible-q8_0.gguf) split over two ranks
# (--tensor-parallel-size 2).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
ninja -C build -j"$(nproc)" tpinfer
./build/tpinfer run -m models/bible-q8_0.gguf --tensor-parallel-size 2 \
  -p "And Jesus said unto them," -n 48 --temperature 0
