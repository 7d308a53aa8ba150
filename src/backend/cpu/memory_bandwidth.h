// Measures this machine's memory read bandwidth: threads stream through a
// buffer much larger than the caches, summing it, and the best of a few passes
// counts. `tpinfer bench` sets achieved bandwidth (weight bytes per token x
// tokens/s) against it.
#pragma once

#include <cstdint>

namespace tpinfer::cpu {

// Bytes per second read by `threads` threads over a `bytes` buffer (best of `passes`).
double measure_read_bandwidth(int threads, uint64_t bytes = uint64_t{512} << 20, int passes = 5);

}  // namespace tpinfer::cpu
