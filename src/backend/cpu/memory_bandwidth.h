// Measures this machine's memory read bandwidth: threads stream through a
// buffer much larger than the caches, summing it, and the best of a few passes
// counts. `tpinfer bench` sets achieved bandwidth (weight bytes per token x
// tokens/s) against it.
#pragma once

#include <cstdint>

namespace tpinfer::cpu {

// Bytes per second read by `threads` threads over a `bytes` buffer (best of `passes`).
double measure_read_bandwidth(int threads, uint64_t bytes = uint64_t{512} << 20, int passes = 5);

// Reads n bytes at p as fast as the memory allows (the loop the bandwidth is
// measured with) and returns their sum as 64-bit words, so the read cannot be
// dropped. The planner's link probe streams with it between collectives.
uint64_t sum_bytes(const uint8_t* p, uint64_t n);

}  // namespace tpinfer::cpu
