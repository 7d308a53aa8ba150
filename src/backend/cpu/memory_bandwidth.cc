#include "backend/cpu/memory_bandwidth.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <thread>
#include <vector>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include "core/thread_pool.h"

namespace tpinfer::cpu {
namespace {

#if defined(__x86_64__)
__attribute__((target("avx2"))) uint64_t sum_avx2(const uint8_t* p, uint64_t n) {
  __m256i acc0 = _mm256_setzero_si256(), acc1 = _mm256_setzero_si256();
  uint64_t i = 0;
  for (; i + 64 <= n; i += 64) {
    acc0 = _mm256_add_epi64(acc0, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + i)));
    acc1 = _mm256_add_epi64(acc1, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + i + 32)));
  }
  acc0 = _mm256_add_epi64(acc0, acc1);
  uint64_t out[4];
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(out), acc0);
  return out[0] + out[1] + out[2] + out[3];
}
#endif

}  // namespace

uint64_t sum_bytes(const uint8_t* p, uint64_t n) {
#if defined(__x86_64__)
  if (__builtin_cpu_supports("avx2")) return sum_avx2(p, n);
#endif
  uint64_t s = 0;
  for (uint64_t i = 0; i + 8 <= n; i += 8) {
    uint64_t v;
    std::memcpy(&v, p + i, 8);
    s += v;
  }
  return s;
}

double measure_read_bandwidth(int threads, uint64_t bytes, int passes) {
  threads = std::max(1, threads);
  const uint64_t per = bytes / static_cast<uint64_t>(threads) / 64 * 64;
  std::vector<std::vector<uint8_t>> parts(static_cast<size_t>(threads));
  std::vector<std::thread> pool;
  // Each thread touches its own part first, so pages are local to it.
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&, t] {
      unpin_current_thread();
      parts[static_cast<size_t>(t)].assign(per, static_cast<uint8_t>(t + 1));
    });
  }
  for (auto& th : pool) th.join();
  double best = 0;
  volatile uint64_t sink = 0;
  for (int pass = 0; pass < passes; ++pass) {
    pool.clear();
    std::vector<uint64_t> sums(static_cast<size_t>(threads));
    const auto t0 = std::chrono::steady_clock::now();
    for (int t = 0; t < threads; ++t) {
      pool.emplace_back([&, t] {
        unpin_current_thread();  // not the caller's core (an engine may have pinned it)
        sums[static_cast<size_t>(t)] = sum_bytes(parts[static_cast<size_t>(t)].data(), per);
      });
    }
    for (auto& th : pool) th.join();
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    for (uint64_t v : sums) sink = sink + v;
    best = std::max(best, static_cast<double>(per) * threads / s);
  }
  (void)sink;
  return best;
}

}  // namespace tpinfer::cpu
