// Communication microbenchmarks: the local all-reduce of a hidden-size vector
// (4096 floats) and of 1M floats on 2 and 4 ranks, uncompressed and with
// BF16 / FP8 / INT8 compression; and the block codecs alone, per implementation.
//
// all-reduce: rank 0 runs on the benchmark thread and times each all_reduce_sum
// (manual time); the other ranks are threads that run the same iterations. Before
// each timed call every rank rescales its buffer by 1/p (exact for p = 2, 4: the
// values stay put instead of growing p-fold) and passes a barrier, untimed.
// Reported: time per all-reduce, bytes_per_second = payload f32 bytes (4n) per
// second, and moved_bytes = bytes rank 0 moved per call (from the counters).
#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "comm/compressed_comm.h"
#include "comm/local_comm.h"

namespace tpinfer {
namespace {

std::vector<float> random_floats(size_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> x(n);
  for (float& v : x) v = normal(rng);
  return x;
}

// One timed iteration's worth of work for a rank; returns the all-reduce's seconds.
double step(Communicator& comm, std::vector<float>& buf, float inv_p) {
  for (float& v : buf) v *= inv_p;
  comm.barrier();
  const auto start = std::chrono::steady_clock::now();
  comm.all_reduce_sum(buf.data(), buf.size());
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

void BM_AllReduce(benchmark::State& state) {
  const int p = static_cast<int>(state.range(0));
  const size_t n = static_cast<size_t>(state.range(1));
  const auto compression = static_cast<Compression>(state.range(2));
  const float inv_p = 1.0f / static_cast<float>(p);
  const int64_t iterations = state.max_iterations;

  LocalGroup group(p, std::chrono::seconds(60));
  std::vector<std::thread> peers;
  for (int r = 1; r < p; ++r) {
    peers.emplace_back([&, r] {
      CompressedCommunicator comm(group.communicator(r), compression);
      std::vector<float> buf = random_floats(n, static_cast<uint64_t>(r));
      for (int64_t i = 0; i < iterations; ++i) step(comm, buf, inv_p);
    });
  }
  CompressedCommunicator comm(group.communicator(0), compression);
  std::vector<float> buf = random_floats(n, 0);
  for (auto _ : state) state.SetIterationTime(step(comm, buf, inv_p));
  for (auto& t : peers) t.join();

  const CollectiveCounter& c = comm.stats()[Collective::AllReduce];
  state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(4 * n));
  state.counters["moved_bytes"] = static_cast<double>(c.bytes) / static_cast<double>(std::max<uint64_t>(c.calls, 1));
  state.SetLabel(compression_name(compression));
}

void all_reduce_args(benchmark::internal::Benchmark* b) {
  for (int p : {2, 4}) {
    for (int64_t n : {int64_t{4096}, int64_t{1} << 20}) {
      for (int c = 0; c < 4; ++c) b->Args({p, n, c});
    }
  }
  b->ArgNames({"ranks", "n", "comp"});
}
BENCHMARK(BM_AllReduce)->Apply(all_reduce_args)->UseManualTime()->Unit(benchmark::kMicrosecond);

// The codecs alone on 1M floats: encode, and decode-add (the reduce step).
void BM_Encode(benchmark::State& state) {
  const auto c = static_cast<Compression>(state.range(0));
  const auto impl = static_cast<CodecImpl>(state.range(1));
  if (!codec_available(impl)) {
    state.SkipWithError("codec not available on this CPU");
    return;
  }
  const size_t n = size_t{1} << 20;
  const std::vector<float> x = random_floats(n, 1);
  std::vector<uint8_t> out(encoded_size(c, n));
  for (auto _ : state) {
    encode_values(c, x.data(), n, out.data(), impl);
    benchmark::DoNotOptimize(out.data());
  }
  state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(4 * n));
  state.SetLabel(std::string(compression_name(c)) + "/" + codec_name(impl));
}

void BM_DecodeAdd(benchmark::State& state) {
  const auto c = static_cast<Compression>(state.range(0));
  const auto impl = static_cast<CodecImpl>(state.range(1));
  if (!codec_available(impl)) {
    state.SkipWithError("codec not available on this CPU");
    return;
  }
  const size_t n = size_t{1} << 20;
  const std::vector<float> x = random_floats(n, 2);
  std::vector<uint8_t> enc(encoded_size(c, n));
  encode_values(c, x.data(), n, enc.data(), impl);
  std::vector<float> acc(n, 0.0f);
  for (auto _ : state) {
    decode_add_values(c, enc.data(), n, acc.data(), impl);
    benchmark::DoNotOptimize(acc.data());
  }
  state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(4 * n));
  state.SetLabel(std::string(compression_name(c)) + "/" + codec_name(impl));
}

void codec_args(benchmark::internal::Benchmark* b) {
  for (int c = 1; c < 4; ++c) {
    for (int impl = 0; impl < 3; ++impl) b->Args({c, impl});
  }
  b->ArgNames({"comp", "impl"});
}
BENCHMARK(BM_Encode)->Apply(codec_args)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_DecodeAdd)->Apply(codec_args)->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace tpinfer
