#include "comm/local_comm.h"

#include <gtest/gtest.h>
#include <pthread.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <fstream>
#include <iterator>
#include <random>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

#include "core/error.h"
#include "test_util.h"

namespace tpinfer {
namespace {

using namespace std::chrono_literals;

// Runs fn(comm) (or fn(comm, group)) on `n` rank threads of one LocalGroup;
// returns the error text of each rank ("" if it finished cleanly).
template <typename Fn>
std::vector<std::string> run_ranks(int n, std::chrono::milliseconds timeout, Fn fn) {
  LocalGroup group(n, timeout);
  std::vector<std::string> errors(static_cast<size_t>(n));
  std::vector<std::thread> threads;
  for (int r = 0; r < n; ++r) {
    threads.emplace_back([&, r] {
      auto comm = group.communicator(r);
      try {
        if constexpr (std::is_invocable_v<Fn&, Communicator&, LocalGroup&>) {
          fn(*comm, group);
        } else {
          fn(*comm);
        }
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

// 1..8 ranks, lengths 1, 7, 4096, 1e6 + 3, repeated 1000 times. One
// test case per rank count, so that ctest -j spreads them over the cores.
const std::vector<size_t> kLengths = {1, 7, 4096, 1000003};
constexpr int kAllReduceRounds = 1000;

class LocalCommRanks : public ::testing::TestWithParam<int> {};

TEST_P(LocalCommRanks, AllReduceSizes) {
  const int n = GetParam();
  for (size_t len : kLengths) {
    // The sum over ranks of round 0's inputs; round k's sum is that + n * k.
    std::vector<float> sum0(len, 0.0f);
    for (int r = 0; r < n; ++r) {
      for (size_t i = 0; i < len; ++i) sum0[i] += input(r, 0, i);
    }
    auto errors = run_ranks(n, 30s, [&](Communicator& comm) {
      // input(rank, round, i) = base[i] + round: the same distinct function of
      // (rank, round, i) as above at a fraction of the cost of recomputing it
      // (1000 rounds of a million floats on every rank); values stay multiples
      // of 1/64 below 2^11, so every sum of up to 8 is exact in float (and a
      // buffer left over from the previous round is off by n).
      std::vector<float> base(len), buf(len);
      for (size_t i = 0; i < len; ++i) base[i] = input(comm.rank(), 0, i);
      for (int round = 0; round < kAllReduceRounds; ++round) {
        const float shift = static_cast<float>(round);
        for (size_t i = 0; i < len; ++i) buf[i] = base[i] + shift;
        comm.all_reduce_sum(buf.data(), len);
        // Every element in the first and last rounds; in between every element
        // of the short lengths and every 997th of the long one (a prime stride
        // that visits every rank's slice at a different offset each time).
        const bool full = round == 0 || round == kAllReduceRounds - 1 || len <= 4096;
        const size_t stride = full ? 1 : 997;
        for (size_t i = full ? 0 : static_cast<size_t>(round) % stride; i < len; i += stride) {
          const float want = sum0[i] + static_cast<float>(n) * shift;
          if (buf[i] != want) {
            throw std::runtime_error("rank " + std::to_string(comm.rank()) + " len " + std::to_string(len) +
                                     " round " + std::to_string(round) + " index " + std::to_string(i) + ": got " +
                                     std::to_string(buf[i]) + ", want " + std::to_string(want));
          }
        }
      }
      EXPECT_EQ(comm.stats()[Collective::AllReduce].calls, static_cast<uint64_t>(kAllReduceRounds));
    });
    for (const auto& e : errors) ASSERT_EQ(e, "") << "n=" << n << " len=" << len;
  }
}

// All-gather, broadcast and send/recv over the same lengths. Fewer repeats than
// the all-reduce (20, and 3 for the million): they share its synchronization
// (slots, barrier phases, mailboxes), which the all-reduce test already turns
// over a thousand times per length; here the point is the data movement at
// every size, with uneven and empty all-gather parts and every root.
TEST_P(LocalCommRanks, AllGatherBroadcastSendRecvSizes) {
  const int n = GetParam();
  for (size_t len : kLengths) {
    const int rounds = len > 100000 ? 3 : 20;
    auto errors = run_ranks(n, 30s, [&](Communicator& comm) {
      const int me = comm.rank();
      auto fail = [&](const std::string& what, int round, size_t i) {
        throw std::runtime_error(what + ": rank " + std::to_string(me) + " len " + std::to_string(len) + " round " +
                                 std::to_string(round) + " index " + std::to_string(i));
      };
      // The gathered vector has `len` floats, split unevenly (the first len % n
      // ranks one more; some parts are empty when len < n), as vocabulary shards are.
      std::vector<size_t> counts;
      for (int r = 0; r < n; ++r) counts.push_back(len / static_cast<size_t>(n) + (static_cast<size_t>(r) < len % static_cast<size_t>(n) ? 1 : 0));
      size_t mine_at = 0;
      for (int r = 0; r < me; ++r) mine_at += counts[static_cast<size_t>(r)];
      std::vector<float> all(len), buf(len);
      for (int round = 0; round < rounds; ++round) {
        std::vector<float> mine(counts[static_cast<size_t>(me)]);
        for (size_t k = 0; k < mine.size(); ++k) mine[k] = input(me, round, mine_at + k);
        std::fill(all.begin(), all.end(), -12345.0f);
        comm.all_gather(mine.data(), counts, all.data());
        size_t at = 0;
        for (int r = 0; r < n; ++r) {
          for (size_t k = 0; k < counts[static_cast<size_t>(r)]; ++k, ++at) {
            if (all[at] != input(r, round, at)) fail("all_gather", round, at);
          }
        }

        const int root = round % n;
        for (size_t i = 0; i < len; ++i) buf[i] = me == root ? input(root, round, i) : 0.0f;
        comm.broadcast(buf.data(), len * sizeof(float), root);
        for (size_t i = 0; i < len; ++i) {
          if (buf[i] != input(root, round, i)) fail("broadcast from " + std::to_string(root), round, i);
        }

        if (n > 1) {  // a ring: everyone sends to the next rank, then receives from the previous one
          const int next = (me + 1) % n, prev = (me + n - 1) % n;
          for (size_t i = 0; i < len; ++i) buf[i] = input(me, round + 1000, i);
          comm.send(buf.data(), len * sizeof(float), next);
          std::fill(buf.begin(), buf.end(), 0.0f);
          comm.recv(buf.data(), len * sizeof(float), prev);
          for (size_t i = 0; i < len; ++i) {
            if (buf[i] != input(prev, round + 1000, i)) fail("recv from " + std::to_string(prev), round, i);
          }
        }
      }
      EXPECT_EQ(comm.stats()[Collective::AllGather].calls, static_cast<uint64_t>(rounds));
      EXPECT_EQ(comm.stats()[Collective::Broadcast].calls, static_cast<uint64_t>(rounds));
    });
    for (const auto& e : errors) ASSERT_EQ(e, "") << "n=" << n << " len=" << len;
  }
}

INSTANTIATE_TEST_SUITE_P(OneToEight, LocalCommRanks, ::testing::Range(1, 9),
                         [](const auto& info) { return std::to_string(info.param) + "_ranks"; });

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
// its sequence number and the missing rank within `bound` seconds, and nobody
// hangs. The skipping rank calls its next collective once the others'
// deadline has aborted the group: it waits for that event (up to 60 s), not
// for a sleep that hopes to outlast the deadline on a loaded machine.
void check_timeout_names_missing_rank(double bound) {
  for (int n : {2, 4}) {
    const auto start = std::chrono::steady_clock::now();
    auto errors = run_ranks(n, 500ms, [&](Communicator& comm, LocalGroup& group) {
      std::vector<float> buf(64, 1.0f);
      comm.all_reduce_sum(buf.data(), buf.size());
      if (comm.rank() == 1) {
        // Misses the second all-reduce until the others' deadline aborts the group,
        if (!testing::wait_until([&] { return group.aborted(); })) {
          throw std::runtime_error("the group was not aborted within 60 s of rank 1 skipping all_reduce #2");
        }
        comm.barrier();  // then finds the group aborted.
      } else {
        comm.all_reduce_sum(buf.data(), buf.size());
      }
    });
    const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    EXPECT_LT(elapsed, bound) << "n=" << n;
    for (int r = 0; r < n; ++r) {
      const std::string& e = errors[static_cast<size_t>(r)];
      EXPECT_NE(e.find("all_reduce #2 timed out"), std::string::npos) << "rank " << r << ": " << e;
      EXPECT_NE(e.find("rank(s) 1 did not arrive"), std::string::npos) << "rank " << r << ": " << e;
    }
  }
}

// By default the bound only catches a deadline that never fires or fires
// far too late: ten times the 0.5 s timeout.
TEST(LocalComm, TimeoutNamesMissingRank) { check_timeout_names_missing_rank(10 * 0.5); }

// Timed: every rank has its error within the timeout + 1 s.
TEST(LocalComm, TimedTimeoutNamesMissingRankWithinTimeoutPlusASecond) {
  TPINFER_SKIP_UNLESS_TIMED();
  check_timeout_names_missing_rank(0.5 + 1.0);
}

// The same as a whole process (tests/comm/local_comm_worker.cc): under a
// watchdog (TERM after 60 s, KILL 5 s later; the run needs
// about one timeout), the process exits with 1 (not a signal, not the
// watchdog's 124), prints the message as tpinfer's main does, and every rank
// reports an error naming all_reduce #2 and rank 1 within `rank_bound` seconds
// of entering the call that threw (all_reduce #2; for the skipping rank its
// next collective, called once the group is aborted, which must throw at
// once). `process_bound`: the whole run, start-up included (0: the watchdog's).
void check_skipped_collective_ends_process(double rank_bound, double process_bound) {
  const int timeout_ms = 1000;
  for (int n : {2, 3, 8}) {
    std::string out;
    const auto start = std::chrono::steady_clock::now();
    const int code = testing::run_command("timeout -k 5 60 " + std::string(TPINFER_LOCAL_CHECK) + " skip --ranks " +
                                              std::to_string(n) + " --timeout-ms " + std::to_string(timeout_ms),
                                          &out);
    const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    ASSERT_EQ(code, 1) << "n=" << n << " (124: the watchdog ended a hang; above 128: a signal)\n" << out;
    if (process_bound > 0) {
      EXPECT_LT(elapsed, process_bound) << out;
    }
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
      EXPECT_LT(seconds, rank_bound) << "n=" << n << ": " << line;
      // Not before the deadline (the waiting ranks; a deadline cannot fire
      // early however busy the machine); the skipping rank finds the group
      // already aborted.
      if (r != 1) {
        EXPECT_GE(seconds, timeout_ms / 1000.0 * 0.99) << "n=" << n << ": " << line;
      }
      EXPECT_NE(line.find("all_reduce #2 timed out"), std::string::npos) << line;
      EXPECT_NE(line.find("rank(s) 1 did not arrive"), std::string::npos) << line;
    }
  }
}

// By default: every rank's error within ten times the 1 s timeout; the run as
// a whole is bounded by the watchdog.
TEST(LocalComm, SkippedCollectiveEndsProcess) { check_skipped_collective_ends_process(10 * 1.0, 0); }

// Timed: every rank's error within the timeout + 1 s, the
// whole run within the timeout + 1 s + 2 s of start-up.
TEST(LocalComm, TimedSkippedCollectiveEndsProcessWithinTimeoutPlusASecond) {
  TPINFER_SKIP_UNLESS_TIMED();
  check_skipped_collective_ends_process(1.0 + 1.0, 1.0 + 1.0 + 2.0);
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

// Wait vs link (communicator.h): rank `late` enters each of five collectives
// `sleep` after every other rank has said it is entering it (the late rank
// waits for that event, so it is the last to arrive however busy the machine
// is). The others' time in the collective is then nearly all wait, at least
// the sleep; the late rank waits for nobody; once everybody is there a
// collective of a few KiB takes microseconds.
//
// The default test checks what load cannot change: every collective counted,
// wait within the total, and some wait on every rank that waited (it arrived
// `sleep` before the late rank, so only a back end that counts no wait, or
// counts it against the wrong rank, shows none). The figures (the others'
// wait at least 0.9 of the sleep, the late rank's and everyone's link under
// half of it) are a timed test: a descheduled rank turns them into noise.
void check_wait_for_the_last_rank(bool timed) {
  constexpr auto kSleep = 40ms;
  const double sleep_ns = std::chrono::duration<double, std::nano>(kSleep).count();
  for (int n : {2, 3}) {
    for (int late = 0; late < n; ++late) {
      std::vector<CommStats> stats(static_cast<size_t>(n));
      std::vector<char> measures(static_cast<size_t>(n));  // not vector<bool>: ranks write their own element concurrently
      std::atomic<int> entering{0};                        // collectives the other ranks have started, summed
      auto errors = run_ranks(n, 30s, [&](Communicator& comm) {
        const int me = comm.rank();
        std::vector<float> data(2048, 1.0f), gathered(2048 * static_cast<size_t>(n));
        std::vector<uint8_t> bytes(64 * static_cast<size_t>(n)), out(bytes.size());
        const std::vector<size_t> counts(static_cast<size_t>(n), 2048);
        int step = 0;
        auto arrive = [&] {
          ++step;
          if (me != late) {
            entering.fetch_add(1);
            return;
          }
          if (!testing::wait_until([&] { return entering.load() >= (n - 1) * step; })) {
            throw std::runtime_error(cat("the other ranks did not reach collective ", step, " within 60 s"));
          }
          std::this_thread::sleep_for(kSleep);
        };
        arrive();
        comm.all_reduce_sum(data.data(), data.size());
        arrive();
        comm.all_gather(data.data(), counts, gathered.data());
        arrive();
        comm.all_gather_bytes(bytes.data(), 64, out.data());
        arrive();
        comm.all_to_all(bytes.data(), 64, out.data());
        arrive();
        comm.broadcast(data.data(), 64, (late + 1) % n);
        EXPECT_EQ(data[0], static_cast<float>(n));
        stats[static_cast<size_t>(me)] = comm.stats();
        measures[static_cast<size_t>(me)] = comm.measures_wait();
      });
      for (const auto& e : errors) ASSERT_EQ(e, "") << "n=" << n;
      for (int r = 0; r < n; ++r) {
        EXPECT_TRUE(measures[static_cast<size_t>(r)]);
        for (Collective kind : {Collective::AllReduce, Collective::AllGather, Collective::AllToAll,
                                Collective::Broadcast}) {
          const CollectiveCounter& c = stats[static_cast<size_t>(r)][kind];
          const std::string where = cat("n=", n, " late=", late, " rank ", r, " ", collective_name(kind));
          ASSERT_EQ(c.calls, kind == Collective::AllGather ? 2u : 1u) << where;  // all_gather + all_gather_bytes
          EXPECT_LE(c.wait_nanos, c.nanos) << where;
          if (r != late) {
            EXPECT_GT(c.wait_nanos, 0u) << where << ": arrived before the late rank, counted no wait";
          }
          if (!timed) continue;
          const double calls = static_cast<double>(c.calls);
          const double wait = static_cast<double>(c.wait_nanos) / calls;
          const double link = static_cast<double>(c.nanos - c.wait_nanos) / calls;
          if (r == late) {
            EXPECT_LT(wait, 0.5 * sleep_ns) << where;
          } else {
            EXPECT_GE(wait, 0.9 * sleep_ns) << where;
          }
          EXPECT_LT(link, 0.5 * sleep_ns) << where;
        }
      }
    }
  }
}

TEST(LocalComm, WaitForTheLastRankIsApartFromLinkTime) { check_wait_for_the_last_rank(/*timed=*/false); }

TEST(LocalComm, TimedWaitForTheLastRankIsApartFromLinkTime) {
  TPINFER_SKIP_UNLESS_TIMED();
  check_wait_for_the_last_rank(/*timed=*/true);
}

// The state of thread `tid` of this process (R running, S sleeping, ...), '?'
// if it cannot be read.
char thread_state(pid_t tid) {
  std::ifstream f("/proc/self/task/" + std::to_string(tid) + "/stat");
  const std::string stat((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  const size_t close = stat.rfind(')');  // after the name, which may hold spaces
  return close == std::string::npos || close + 2 >= stat.size() ? '?' : stat[close + 2];
}

// How long a waiting rank may take to fall asleep: 8192 yields, each of which
// hands the core to every other runnable thread. That takes 10 ms on an idle
// machine, up to 4 s beside two busy loops on two cores, 18 s beside four;
// the cap only ends a rank that never sleeps.
constexpr auto kFallAsleepCap = std::chrono::seconds(300);

// Whether thread `tid` is asleep (waits for it, up to kFallAsleepCap).
bool falls_asleep(const std::atomic<pid_t>& tid) {
  return testing::wait_until([&] { return tid.load() != 0 && thread_state(tid.load()) == 'S'; }, kFallAsleepCap);
}

double cpu_seconds(clockid_t clock) {
  timespec t{};
  clock_gettime(clock, &t);
  return static_cast<double>(t.tv_sec) + t.tv_nsec * 1e-9;
}

// A rank waiting a long time for its peers (a server's worker between
// requests, in broadcast_wait) sleeps until woken instead of polling: it
// spins (up to 2 ms) and yields (8192 times), then sleeps. Rank 0 waits
// until rank 1 is asleep (its state in /proc: a busy poll never is, and
// fails here at kFallAsleepCap), then counts rank 1's CPU time over a second before
// it broadcasts. A sleeping thread uses none, however busy the machine: CPU
// time accrues only while a thread runs. The bound, 20 ms of that second,
// fails the old 50 us poll (150 to 180 ms here on an idle machine). The
// spinning and yielding before are left out: their CPU is fixed by the
// counts, not by the time waited, and under load each yield costs a
// context switch. It still wakes for the broadcast.
TEST(LocalComm, IdleRankSleepsUntilWoken) {
  std::atomic<pid_t> tid{0};
  pthread_t handle{};  // rank 1's thread, written before tid
  bool asleep = false;
  double asleep_cpu = -1, total_cpu = -1;
  int got = 0;
  auto errors = run_ranks(2, 30s, [&](Communicator& comm) {
    int value = 0;
    if (comm.rank() == 0) {
      asleep = falls_asleep(tid);
      clockid_t clock{};
      const bool have_clock = pthread_getcpuclockid(handle, &clock) == 0;  // else asleep_cpu stays -1
      const double c0 = have_clock ? cpu_seconds(clock) : 0;
      std::this_thread::sleep_for(1000ms);
      if (have_clock) asleep_cpu = cpu_seconds(clock) - c0;
      value = 42;  // the broadcast must come whatever happened: rank 1 waits without deadline
      comm.broadcast_wait(&value, sizeof(value), 0);
    } else {
      handle = pthread_self();
      const double c0 = cpu_seconds(CLOCK_THREAD_CPUTIME_ID);
      tid = static_cast<pid_t>(::syscall(SYS_gettid));
      comm.broadcast_wait(&value, sizeof(value), 0);
      total_cpu = cpu_seconds(CLOCK_THREAD_CPUTIME_ID) - c0;
      got = value;
    }
  });
  for (const auto& e : errors) ASSERT_EQ(e, "");
  EXPECT_EQ(got, 42);
  EXPECT_TRUE(asleep) << "the waiting rank did not go to sleep within " << kFallAsleepCap.count() << " s";
  EXPECT_GE(asleep_cpu, 0.0) << "no CPU clock for rank 1's thread";
  EXPECT_LT(asleep_cpu, 0.02) << "a sleeping rank used " << asleep_cpu * 1e3 << " ms of CPU in 1 s (" << total_cpu * 1e3
                              << " ms in all, spinning and yielding included)";
}

// An abort wakes a rank asleep in a collective whose 60 s deadline is far
// away. The test waits until the rank sleeps (its state in /proc, up to
// kFallAsleepCap) rather than for a guess of how long the spinning and yielding take, then
// aborts; `bound` is the seconds from the abort to the rank's error.
void check_abort_wakes_a_sleeping_rank(double bound) {
  LocalGroup group(2, 60s);
  auto comm = group.communicator(1);
  std::string error;
  std::atomic<pid_t> tid{0};
  std::thread waiter([&] {
    tid = static_cast<pid_t>(::syscall(SYS_gettid));
    try {
      comm->barrier();
    } catch (const CommError& e) {
      error = e.what();
    }
  });
  const bool asleep = falls_asleep(tid);
  const auto aborted = std::chrono::steady_clock::now();
  group.abort("stopped by the test");
  waiter.join();
  const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - aborted).count();
  EXPECT_TRUE(asleep) << "the waiting rank did not go to sleep within " << kFallAsleepCap.count() << " s";
  EXPECT_NE(error.find("stopped by the test"), std::string::npos) << error;
  EXPECT_LT(elapsed, bound);
}

// By default: woken by the abort, not by the deadline 60 s later. 10 s is ten
// times the longest a sleeping rank goes without looking (it also wakes once
// a second).
TEST(LocalComm, AbortWakesASleepingRank) { check_abort_wakes_a_sleeping_rank(10.0); }

// Timed: at once, not at its next look a second later.
TEST(LocalComm, TimedAbortWakesASleepingRankAtOnce) {
  TPINFER_SKIP_UNLESS_TIMED();
  check_abort_wakes_a_sleeping_rank(0.3);
}

// A barrier moves nothing: all of its time is wait.
TEST(LocalComm, BarrierIsAllWait) {
  auto errors = run_ranks(2, 30s, [&](Communicator& comm) {
    if (comm.rank() == 1) std::this_thread::sleep_for(20ms);
    comm.barrier();
    const CollectiveCounter& c = comm.stats()[Collective::Barrier];
    EXPECT_EQ(c.calls, 1u);
    EXPECT_EQ(c.wait_nanos, c.nanos);
  });
  for (const auto& e : errors) ASSERT_EQ(e, "");
}

}  // namespace
}  // namespace tpinfer
