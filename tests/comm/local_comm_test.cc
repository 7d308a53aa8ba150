#include "comm/local_comm.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "core/error.h"
#include "test_util.h"

namespace tpinfer {
namespace {

using namespace std::chrono_literals;

// Runs fn(comm) on `n` rank threads of one LocalGroup; returns the error text
// of each rank ("" if it finished cleanly).
template <typename Fn>
std::vector<std::string> run_ranks(int n, std::chrono::milliseconds timeout, Fn fn) {
  LocalGroup group(n, timeout);
  std::vector<std::string> errors(static_cast<size_t>(n));
  std::vector<std::thread> threads;
  for (int r = 0; r < n; ++r) {
    threads.emplace_back([&, r] {
      auto comm = group.communicator(r);
      try {
        fn(*comm);
      } catch (const std::exception& e) {
        errors[static_cast<size_t>(r)] = e.what();
      }
    });
  }
  for (auto& t : threads) t.join();
  return errors;
}

// Every rank's input is a distinct deterministic function of (rank, round, i),
// so the expected sum is computable and a slice mixed up between ranks shows.
float input(int rank, int round, size_t i) {
  return static_cast<float>((static_cast<int64_t>(i) * 7919 + rank * 104729 + round * 31) % 2001 - 1000) / 64.0f;
}

TEST(LocalComm, AllReduceSizesAndRanks) {
  const std::vector<size_t> lengths = {1, 7, 4096, 1000003};
  for (int n = 1; n <= 8; ++n) {
    for (size_t len : lengths) {
      // Enough rounds to reuse every buffer and barrier phase many times over;
      // more only cost time (8 ranks on 2 cores switch threads every round).
      const int rounds = len > 100000 ? 3 : 200;
      auto errors = run_ranks(n, 30s, [&](Communicator& comm) {
        std::vector<float> buf(len);
        for (int round = 0; round < rounds; ++round) {
          for (size_t i = 0; i < len; ++i) buf[i] = input(comm.rank(), round, i);
          comm.all_reduce_sum(buf.data(), len);
          // Inputs are multiples of 1/64 well inside float's exact range: sums are exact.
          for (size_t i = 0; i < len; i += (len > 4096 ? 997 : 1)) {
            float want = 0;
            for (int r = 0; r < n; ++r) want += input(r, round, i);
            if (buf[i] != want) {
              throw std::runtime_error("rank " + std::to_string(comm.rank()) + " len " + std::to_string(len) +
                                       " round " + std::to_string(round) + " index " + std::to_string(i));
            }
          }
        }
        EXPECT_EQ(comm.stats()[Collective::AllReduce].calls, static_cast<uint64_t>(rounds));
      });
      for (const auto& e : errors) ASSERT_EQ(e, "") << "n=" << n << " len=" << len;
    }
  }
}

TEST(LocalComm, AllGatherBroadcastSendRecv) {
  for (int n = 1; n <= 8; ++n) {
    auto errors = run_ranks(n, 30s, [&](Communicator& comm) {
      std::vector<size_t> counts;
      for (int r = 0; r < n; ++r) counts.push_back(static_cast<size_t>(r % 3 + 1));
      std::vector<float> mine(counts[static_cast<size_t>(comm.rank())], static_cast<float>(comm.rank()));
      std::vector<float> all(static_cast<size_t>(n) * 3);
      comm.all_gather(mine.data(), counts, all.data());
      size_t at = 0;
      for (int r = 0; r < n; ++r) {
        for (size_t k = 0; k < counts[static_cast<size_t>(r)]; ++k) EXPECT_EQ(all[at++], static_cast<float>(r));
      }
      int64_t value = comm.rank() == n - 1 ? 424242 : -1;
      comm.broadcast(&value, sizeof(value), n - 1);
      EXPECT_EQ(value, 424242);
      if (n > 1) {
        const int next = (comm.rank() + 1) % n, prev = (comm.rank() + n - 1) % n;
        int payload = comm.rank() * 10;
        comm.send(&payload, sizeof(payload), next);
        int got = -1;
        comm.recv(&got, sizeof(got), prev);
        EXPECT_EQ(got, prev * 10);
      }
      comm.barrier();
    });
    for (const auto& e : errors) ASSERT_EQ(e, "") << "n=" << n;
  }
}

// One rank skips a collective: every rank gets an error naming the collective,
// its sequence number and the missing rank within timeout + 1 s, and nobody hangs.
TEST(LocalComm, TimeoutNamesMissingRank) {
  for (int n : {2, 4}) {
    const auto start = std::chrono::steady_clock::now();
    auto errors = run_ranks(n, 500ms, [&](Communicator& comm) {
      std::vector<float> buf(64, 1.0f);
      comm.all_reduce_sum(buf.data(), buf.size());
      if (comm.rank() == 1) {
        std::this_thread::sleep_for(2000ms);  // misses the second all-reduce
        comm.barrier();                         // and then finds the group aborted
      } else {
        comm.all_reduce_sum(buf.data(), buf.size());
      }
    });
    const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    EXPECT_LT(elapsed, 0.5 + 2.0 + 1.0);
    for (int r = 0; r < n; ++r) {
      const std::string& e = errors[static_cast<size_t>(r)];
      EXPECT_NE(e.find("all_reduce #2 timed out"), std::string::npos) << "rank " << r << ": " << e;
      EXPECT_NE(e.find("rank(s) 1 did not arrive"), std::string::npos) << "rank " << r << ": " << e;
    }
  }
}

// The same as a whole process (tests/comm/local_comm_worker.cc), as issue 3
// states it: under a watchdog (TERM after 60 s, KILL 5 s later; the run needs
// about 1.5 timeouts), the process exits with 1 (not a signal, not the
// watchdog's 124), prints the message as tpinfer's main does, and every rank
// reports an error naming all_reduce #2 and rank 1 within timeout + 1 s of
// entering the call that threw (all_reduce #2; for the skipping rank its next
// collective, 1.5 timeouts later, which must throw at once).
TEST(LocalComm, SkippedCollectiveEndsProcess) {
  const int timeout_ms = 1000;
  for (int n : {2, 3, 8}) {
    std::string out;
    const auto start = std::chrono::steady_clock::now();
    const int code = testing::run_command("timeout -k 5 60 " + std::string(TPINFER_LOCAL_CHECK) + " skip --ranks " +
                                              std::to_string(n) + " --timeout-ms " + std::to_string(timeout_ms),
                                          &out);
    const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    ASSERT_EQ(code, 1) << "n=" << n << " (124: the watchdog ended a hang; above 128: a signal)\n" << out;
    EXPECT_LT(elapsed, 1.5 * timeout_ms / 1000.0 + 1.0 + 2.0) << out;  // 2 s for start-up on a loaded machine
    // main's message: the first rank's error (prefixed "rank r: " where the
    // rank only saw the group aborted by another rank's deadline).
    const size_t main_at = out.find("error: ");
    ASSERT_NE(main_at, std::string::npos) << out;
    const std::string main_line = out.substr(main_at, out.find('\n', main_at) - main_at);
    EXPECT_NE(main_line.find("all_reduce #2 timed out after 1 s on rank "), std::string::npos) << main_line;
    EXPECT_NE(main_line.find("rank(s) 1 did not arrive"), std::string::npos) << main_line;
    for (int r = 0; r < n; ++r) {
      const std::string prefix = "rank " + std::to_string(r) + " error after ";
      const size_t at = out.find(prefix);
      ASSERT_NE(at, std::string::npos) << "n=" << n << " rank " << r << " reported no error\n" << out;
      const std::string line = out.substr(at, out.find('\n', at) - at);
      const double seconds = std::stod(line.substr(prefix.size()));
      EXPECT_LT(seconds, timeout_ms / 1000.0 + 1.0) << "n=" << n << ": " << line;
      // Not before the deadline (the waiting ranks); the skipping rank finds the group already aborted.
      if (r != 1) {
        EXPECT_GE(seconds, timeout_ms / 1000.0 * 0.99) << "n=" << n << ": " << line;
      }
      EXPECT_NE(line.find("all_reduce #2 timed out"), std::string::npos) << line;
      EXPECT_NE(line.find("rank(s) 1 did not arrive"), std::string::npos) << line;
    }
  }
}

TEST(LocalComm, RecvTimesOut) {
  auto errors = run_ranks(2, 200ms, [&](Communicator& comm) {
    if (comm.rank() == 0) {
      int x;
      comm.recv(&x, sizeof(x), 1);
    }
  });
  EXPECT_NE(errors[0].find("recv #1 on rank 0 timed out"), std::string::npos) << errors[0];
}

}  // namespace
}  // namespace tpinfer

namespace tpinfer {
namespace {

TEST(LocalComm, AllGatherBytesAndAllToAll) {
  for (int n = 1; n <= 6; ++n) {
    auto errors = run_ranks(n, std::chrono::seconds(30), [&](Communicator& comm) {
      const int me = comm.rank();
      std::vector<uint8_t> mine(5, static_cast<uint8_t>(me + 1)), all(static_cast<size_t>(n) * 5);
      comm.all_gather_bytes(mine.data(), 5, all.data());
      for (int r = 0; r < n; ++r) {
        for (int k = 0; k < 5; ++k) EXPECT_EQ(all[static_cast<size_t>(r * 5 + k)], r + 1);
      }
      // chunk j of rank i holds 16*i + j: after all_to_all, chunk i on rank j is 16*i + j.
      std::vector<uint8_t> send(static_cast<size_t>(n) * 3), recv(send.size());
      for (int j = 0; j < n; ++j) {
        for (int k = 0; k < 3; ++k) send[static_cast<size_t>(j * 3 + k)] = static_cast<uint8_t>(16 * me + j);
      }
      comm.all_to_all(send.data(), 3, recv.data());
      for (int i = 0; i < n; ++i) {
        for (int k = 0; k < 3; ++k) EXPECT_EQ(recv[static_cast<size_t>(i * 3 + k)], 16 * i + me);
      }
    });
    for (const auto& e : errors) ASSERT_EQ(e, "") << "n=" << n;
  }
}

}  // namespace
}  // namespace tpinfer
