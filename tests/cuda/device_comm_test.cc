// The device communicators on a GPU: streams (2 and 3 ranks on one GPU) against
// host sums and the host codec, bit for bit; the deadline; nccl with one GPU
// per rank where there are two. Without a GPU every test skips, saying why.
#include "comm/cuda/device_comm.h"

#include <gtest/gtest.h>

#include <chrono>
#include <cstring>
#include <exception>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "backend/cuda/runtime.h"
#include "comm/local_comm.h"
#include "core/error.h"

namespace tpinfer::cuda {
namespace {

using namespace std::chrono_literals;

#define SKIP_WITHOUT_GPU()                                                                     \
  do {                                                                                         \
    if (device_count() == 0) GTEST_SKIP() << "no CUDA device: " << unavailable_reason(); \
  } while (0)

std::vector<float> gaussian(size_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> d(0.0f, 1.0f);
  std::vector<float> x(n);
  for (float& v : x) v = d(rng);
  return x;
}

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

// What every rank must hold after an all-reduce of `inputs`: the rank-ordered
// sum, of the values (None) or of their host-codec decodings.
std::vector<float> expected_sum(Compression c, const std::vector<std::vector<float>>& inputs) {
  const size_t n = inputs[0].size();
  std::vector<float> out(n);
  if (c == Compression::None) {
    out = inputs[0];
    for (size_t r = 1; r < inputs.size(); ++r) {
      for (size_t i = 0; i < n; ++i) out[i] += inputs[r][i];
    }
    return out;
  }
  std::vector<uint8_t> enc(encoded_size(c, n));
  for (size_t r = 0; r < inputs.size(); ++r) {
    encode_values(c, inputs[r].data(), n, enc.data(), CodecImpl::Reference);
    if (r == 0) {
      decode_values(c, enc.data(), n, out.data(), CodecImpl::Reference);
    } else {
      decode_add_values(c, enc.data(), n, out.data(), CodecImpl::Reference);
    }
  }
  return out;
}

// Runs body(rank) on p threads; rethrows the first exception.
template <typename F>
void on_ranks(int p, F body) {
  std::vector<std::thread> threads;
  std::mutex mutex;
  std::exception_ptr first;
  for (int r = 0; r < p; ++r) {
    threads.emplace_back([&, r] {
      try {
        body(r);
      } catch (...) {
        std::lock_guard<std::mutex> lock(mutex);
        if (!first) first = std::current_exception();
      }
    });
  }
  for (auto& t : threads) t.join();
  if (first) std::rethrow_exception(first);
}

TEST(StreamsGroup, AllReduceIsTheRankOrderedSumOnEveryRank) {
  SKIP_WITHOUT_GPU();
  for (int p : {2, 3}) {
    for (Compression c : {Compression::None, Compression::BF16, Compression::FP8, Compression::INT8}) {
      SCOPED_TRACE(cat("p=", p, " ", compression_name(c)));
      StreamsGroup group(p, 0, DeviceCommOptions{10000ms, c});
      // Several rounds of changing sizes: both slot parities, growth and reuse.
      const std::vector<size_t> sizes = {1000, 1000, 37, 4099, 4099, 1};
      std::vector<std::vector<std::vector<float>>> outputs(p);
      on_ranks(p, [&](int r) {
        auto comm = group.rank(r);
        DeviceGuard guard(0);
        Stream stream;
        for (size_t round = 0; round < sizes.size(); ++round) {
          const size_t n = sizes[round];
          const std::vector<float> x = gaussian(n, 1000 * round + static_cast<uint64_t>(r));
          DeviceBuffer buf(n * sizeof(float));
          buf.upload(x.data(), n * sizeof(float));
          comm->all_reduce_sum(buf.as<float>(), n, stream.get());
          comm->wait(stream.get());
          std::vector<float> y(n);
          buf.download(y.data(), n * sizeof(float));
          outputs[static_cast<size_t>(r)].push_back(y);
        }
        EXPECT_EQ(comm->stats()[Collective::AllReduce].calls, sizes.size());
      });
      for (size_t round = 0; round < sizes.size(); ++round) {
        std::vector<std::vector<float>> inputs;
        for (int r = 0; r < p; ++r) inputs.push_back(gaussian(sizes[round], 1000 * round + static_cast<uint64_t>(r)));
        const std::vector<float> want = expected_sum(c, inputs);
        for (int r = 0; r < p; ++r) {
          EXPECT_TRUE(same_bits(outputs[static_cast<size_t>(r)][round], want)) << "round " << round << " rank " << r;
        }
      }
    }
  }
}

TEST(StreamsGroup, AllGatherConcatenatesInRankOrder) {
  SKIP_WITHOUT_GPU();
  for (int p : {2, 3}) {
    StreamsGroup group(p, 0, DeviceCommOptions{});
    const size_t count = 37;
    std::vector<std::vector<float>> outputs(p);
    on_ranks(p, [&](int r) {
      auto comm = group.rank(r);
      DeviceGuard guard(0);
      Stream stream;
      for (int round = 0; round < 3; ++round) {
        const std::vector<float> x = gaussian(count, 50 * round + r);
        DeviceBuffer send(count * sizeof(float)), recv(count * p * sizeof(float));
        send.upload(x.data(), count * sizeof(float));
        comm->all_gather(send.as<float>(), count, recv.as<float>(), stream.get());
        comm->wait(stream.get());
        outputs[static_cast<size_t>(r)].resize(count * p);
        recv.download(outputs[static_cast<size_t>(r)].data(), count * p * sizeof(float));
      }
      EXPECT_EQ(comm->stats()[Collective::AllGather].bytes, 3 * count * 4 * (p - 1));
    });
    std::vector<float> want;
    for (int r = 0; r < p; ++r) {
      const std::vector<float> x = gaussian(count, 50 * 2 + r);
      want.insert(want.end(), x.begin(), x.end());
    }
    for (int r = 0; r < p; ++r) EXPECT_TRUE(same_bits(outputs[static_cast<size_t>(r)], want)) << "p " << p << " rank " << r;
  }
}

TEST(StreamsGroup, ARankThatNeverCallsMakesTheOthersThrowWithinTheDeadline) {
  SKIP_WITHOUT_GPU();
  const int p = 3;
  StreamsGroup group(p, 0, DeviceCommOptions{500ms, Compression::None});
  std::vector<std::string> errors(p);
  const auto start = std::chrono::steady_clock::now();
  on_ranks(p, [&](int r) {
    auto comm = group.rank(r);
    if (r == 2) return;  // never calls
    DeviceGuard guard(0);
    Stream stream;
    DeviceBuffer buf(64 * sizeof(float));
    try {
      comm->all_reduce_sum(buf.as<float>(), 64, stream.get());
      comm->wait(stream.get());
    } catch (const CommError& e) {
      errors[static_cast<size_t>(r)] = e.what();
    }
  });
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  // A hang-catcher, not a figure: ten times and more what the run needs (the
  // 0.5 s deadline, with the ranks' streams and buffers made inside the span).
  EXPECT_LT(seconds, 30.0);
  for (int r = 0; r < 2; ++r) {
    EXPECT_NE(errors[static_cast<size_t>(r)].find("all_reduce #1"), std::string::npos) << errors[static_cast<size_t>(r)];
  }
  const bool named = errors[0].find("rank(s) 2 did not arrive") != std::string::npos ||
                     errors[1].find("rank(s) 2 did not arrive") != std::string::npos;
  EXPECT_TRUE(named) << errors[0] << " | " << errors[1];
}

TEST(StreamsGroup, AbortWakesAWaitingRank) {
  SKIP_WITHOUT_GPU();
  StreamsGroup group(2, 0, DeviceCommOptions{60000ms, Compression::None});
  auto comm = group.rank(0);
  std::thread aborter([&] {
    std::this_thread::sleep_for(100ms);
    group.abort("stopped by the test");
  });
  DeviceGuard guard(0);
  Stream stream;
  DeviceBuffer buf(16);
  const auto start = std::chrono::steady_clock::now();
  try {
    comm->all_reduce_sum(buf.as<float>(), 4, stream.get());
    ADD_FAILURE() << "expected CommError";
  } catch (const CommError& e) {
    EXPECT_NE(std::string(e.what()).find("stopped by the test"), std::string::npos) << e.what();
  }
  aborter.join();
  // A hang-catcher: the abort comes 0.1 s in; without it the 60 s deadline would end the wait.
  EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(), 5.0);
}

TEST(NcclComm, AllReduceAndAllGatherOnTwoGpus) {
  SKIP_WITHOUT_GPU();
  if (device_count() < 2) GTEST_SKIP() << "the nccl test needs 2 GPUs, this machine has " << device_count();
#if !defined(TPINFER_HAVE_NCCL)
  GTEST_SKIP() << "this build has no NCCL";
#else
  const int p = 2;
  for (Compression c : {Compression::None, Compression::BF16, Compression::FP8, Compression::INT8}) {
    SCOPED_TRACE(compression_name(c));
    LocalGroup host(p, 30000ms);
    const size_t n = 4099;
    std::vector<std::vector<float>> inputs = {gaussian(n, 7), gaussian(n, 8)};
    std::vector<std::vector<float>> outputs(p), gathered(p);
    on_ranks(p, [&](int r) {
      auto host_comm = host.communicator(r);
      auto comm = make_nccl_comm(*host_comm, r, DeviceCommOptions{30000ms, c});
      EXPECT_TRUE(comm->capturable());
      DeviceGuard guard(r);
      Stream stream;
      DeviceBuffer buf(n * sizeof(float)), all(n * p * sizeof(float));
      buf.upload(inputs[static_cast<size_t>(r)].data(), n * sizeof(float));
      comm->all_gather(buf.as<float>(), n, all.as<float>(), stream.get());
      comm->all_reduce_sum(buf.as<float>(), n, stream.get());
      comm->wait(stream.get());
      outputs[static_cast<size_t>(r)].resize(n);
      buf.download(outputs[static_cast<size_t>(r)].data(), n * sizeof(float));
      gathered[static_cast<size_t>(r)].resize(n * p);
      all.download(gathered[static_cast<size_t>(r)].data(), n * p * sizeof(float));
      EXPECT_EQ(comm->stats()[Collective::AllReduce].calls, 1u);
    });
    std::vector<float> cat_inputs = inputs[0];
    cat_inputs.insert(cat_inputs.end(), inputs[1].begin(), inputs[1].end());
    const std::vector<float> want = expected_sum(c, inputs);
    for (int r = 0; r < p; ++r) {
      EXPECT_TRUE(same_bits(outputs[static_cast<size_t>(r)], want)) << "rank " << r;
      EXPECT_TRUE(same_bits(gathered[static_cast<size_t>(r)], cat_inputs)) << "rank " << r;
    }
  }
#endif
}

}  // namespace
}  // namespace tpinfer::cuda
