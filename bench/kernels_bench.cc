// Microbenchmarks of the CPU kernels (backend/cpu): matmul as GEMV (one token,
// the decode step) and as a prefill GEMM (64 tokens), per weight type, matrix
// shape and thread count. Bytes/s counts the weight bytes, the traffic that
// bounds a GEMV; compare it with MemRead, a plain streaming read of a buffer far
// larger than the caches (the bandwidth one core or two can actually pull).
//
// Single-thread runs report CPU time (the build machine is shared, and a
// preempted thread should not count as a slow kernel); two-thread runs report
// wall time.
//
// Q4_0, Q4_K and Q8_0 weights are interleaved first, as the engine does at load
// (backend/cpu/repack.h). The *Cold variants rotate over enough copies of the
// matrix (>= 256 MiB) that every call streams its weights from DRAM; GemvL2
// (256 rows) keeps them in L2, so it shows the kernel's compute ceiling; the
// plain ones reuse one matrix, which for these shapes (4-67 MB) partly or
// wholly fits the 32 MB L3.
//
//   ./build/bench/tpinfer_microbench --benchmark_filter='Gemv/(q8_0|q4_0|q4_k)'
//   ./build/bench/tpinfer_microbench --benchmark_filter='GemvL2|GemvCold' --benchmark_repetitions=3
#include <benchmark/benchmark.h>

#include <cstring>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "backend/cpu/matmul.h"
#include "backend/cpu/quant.h"
#include "core/thread_pool.h"

namespace tpinfer::cpu {
namespace {

const DType kTypes[] = {DType::F32, DType::F16, DType::BF16, DType::Q8_0, DType::Q4_0, DType::Q4_K, DType::Q6_K};

struct Shape {
  int64_t rows, cols;
};
const Shape kShapes[] = {{2048, 2048}, {8192, 2048}};

std::vector<float> random_values(int64_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> v(static_cast<size_t>(n));
  for (float& x : v) x = normal(rng);
  return v;
}

// One quantized matrix per (type, shape), made once (K-quant encoding is slow).
const std::vector<uint8_t>& weights(DType t, Shape s) {
  static std::map<std::pair<uint32_t, int64_t>, std::vector<uint8_t>> cache;
  auto& bytes = cache[{static_cast<uint32_t>(t), s.rows * 100000 + s.cols}];
  if (bytes.empty()) {
    const uint64_t rb = row_bytes(t, static_cast<uint64_t>(s.cols));
    bytes.resize(rb * static_cast<uint64_t>(s.rows));
    const std::vector<float> row = random_values(s.cols * 64, 7);
    // 64 distinct rows, repeated: contents do not change the speed.
    std::vector<uint8_t> q(rb * 64);
    quantize_row(t, row.data(), q.data(), s.cols * 64);
    for (int64_t r = 0; r < s.rows; ++r) std::memcpy(&bytes[rb * static_cast<uint64_t>(r)], &q[rb * (r % 64)], rb);
  }
  return bytes;
}

void run_matmul(benchmark::State& state, DType t, Shape s, int threads, int64_t n_tokens, int copies) {
  // The layout the engine runs: Q4_0, Q4_K and Q8_0 matrices are interleaved
  // at load (repack.h), the other types stay plain rows.
  const std::vector<uint8_t>& plain = weights(t, s);
  const uint64_t rb = row_bytes(t, static_cast<uint64_t>(s.cols));
  const WeightView plain_view{t, s.rows, s.cols, plain.data(), rb};
  std::vector<uint8_t> base = plain;
  WeightView view = plain_view;
  if (can_interleave(plain_view)) {
    base.resize(interleaved_size(plain_view));
    view = interleave_rows(plain_view, base.data());
  }
  view.data = base.data();
  std::vector<std::vector<uint8_t>> extra(static_cast<size_t>(copies - 1), base);
  std::vector<WeightView> views{view};
  for (const std::vector<uint8_t>& e : extra) {
    views.push_back(view);
    views.back().data = e.data();
  }
  const std::vector<float> x = random_values(s.cols * n_tokens, 9);
  std::vector<float> y(static_cast<size_t>(s.rows * n_tokens));
  ThreadPool pool(threads);
  MatmulScratch scratch;
  size_t next = 0;
  for (auto _ : state) {
    matmul(views[next], x.data(), n_tokens, y.data(), pool, scratch);
    next = (next + 1) % views.size();
    benchmark::DoNotOptimize(y.data());
  }
  state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(base.size()));
  state.counters["tok/s"] =
      benchmark::Counter(static_cast<double>(state.iterations() * n_tokens), benchmark::Counter::kIsRate);
  state.counters["GFLOP/s"] = benchmark::Counter(
      2.0 * static_cast<double>(s.rows * s.cols * n_tokens) * static_cast<double>(state.iterations()) * 1e-9,
      benchmark::Counter::kIsRate);
  state.SetLabel(active_isa());
}

// Streaming read of 512 MiB: the practical DRAM bandwidth for `threads` cores.
__attribute__((target("avx2"))) uint64_t sum_avx2(const uint64_t* p, size_t n) {
  typedef uint64_t v4 __attribute__((vector_size(32)));
  v4 a = {0, 0, 0, 0}, b = a, c = a, d = a;
  for (size_t i = 0; i + 16 <= n; i += 16) {
    v4 x0, x1, x2, x3;
    std::memcpy(&x0, p + i, 32);
    std::memcpy(&x1, p + i + 4, 32);
    std::memcpy(&x2, p + i + 8, 32);
    std::memcpy(&x3, p + i + 12, 32);
    a ^= x0;
    b ^= x1;
    c ^= x2;
    d ^= x3;
  }
  const v4 s = a ^ b ^ c ^ d;
  return s[0] ^ s[1] ^ s[2] ^ s[3];
}

void BM_MemRead(benchmark::State& state) {
  const int threads = static_cast<int>(state.range(0));
  const size_t n = (size_t{512} << 20) / 8;
  std::vector<uint64_t> buf(n, 1);
  ThreadPool pool(threads);
  uint64_t sink = 0;
  for (auto _ : state) {
    pool.parallel_for(static_cast<int64_t>(n), 4096, [&](int64_t b, int64_t e) {
      const uint64_t v = sum_avx2(buf.data() + b, static_cast<size_t>(e - b));
      benchmark::DoNotOptimize(v);
    });
    benchmark::DoNotOptimize(sink);
  }
  state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(n * 8));
}
BENCHMARK(BM_MemRead)->Arg(1)->ArgName("threads")->Unit(benchmark::kMillisecond);
BENCHMARK(BM_MemRead)->Arg(2)->ArgName("threads")->UseRealTime()->Unit(benchmark::kMillisecond);

// Wall time only where other threads share the work.
benchmark::internal::Benchmark* timing(benchmark::internal::Benchmark* b, int threads) {
  return threads > 1 ? b->UseRealTime() : b;
}

bool register_all() {
  for (DType t : kTypes) {
    const std::string tn(dtype_name(t));
    for (Shape s : kShapes) {
      const std::string sn = std::to_string(s.rows) + "x" + std::to_string(s.cols);
      for (int threads : {1, 2}) {
        const std::string suffix = "/threads:" + std::to_string(threads);
        timing(benchmark::RegisterBenchmark(("Gemv/" + tn + "/" + sn + suffix).c_str(),
                                            [=](benchmark::State& st) { run_matmul(st, t, s, threads, 1, 1); }),
               threads)
            ->Unit(benchmark::kMicrosecond);
        timing(benchmark::RegisterBenchmark(("Prefill64/" + tn + "/" + sn + suffix).c_str(),
                                            [=](benchmark::State& st) { run_matmul(st, t, s, threads, 64, 1); }),
               threads)
            ->Unit(benchmark::kMillisecond);
      }
    }
  }
  // GEMV whose weights stay in L2 (256 rows): the kernel's compute ceiling,
  // to tell a compute-bound kernel from a memory-bound one (compare GemvCold).
  for (DType t : {DType::Q8_0, DType::Q4_0, DType::Q4_K, DType::Q6_K}) {
    const Shape s{256, 2048};
    benchmark::RegisterBenchmark(("GemvL2/" + std::string(dtype_name(t)) + "/256x2048/threads:1").c_str(),
                                 [=](benchmark::State& st) { run_matmul(st, t, s, 1, 1, 1); })
        ->Unit(benchmark::kMicrosecond);
  }
  // DRAM-bound GEMV for the main quantized types: enough copies of the 8192x2048
  // matrix that no call finds its weights in the caches.
  for (DType t : {DType::Q8_0, DType::Q4_0, DType::Q4_K, DType::Q6_K}) {
    const Shape s = kShapes[1];
    const uint64_t bytes = row_bytes(t, static_cast<uint64_t>(s.cols)) * static_cast<uint64_t>(s.rows);
    const int copies = static_cast<int>((uint64_t{256} << 20) / bytes + 1);
    for (int threads : {1, 2}) {
      timing(benchmark::RegisterBenchmark(
                 ("GemvCold/" + std::string(dtype_name(t)) + "/8192x2048/threads:" + std::to_string(threads)).c_str(),
                 [=](benchmark::State& st) { run_matmul(st, t, s, threads, 1, copies); }),
             threads)
          ->Unit(benchmark::kMicrosecond);
    }
  }
  return true;
}

const bool registered = register_all();

}  // namespace
}  // namespace tpinfer::cpu
