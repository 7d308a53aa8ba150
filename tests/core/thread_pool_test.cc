#include "core/thread_pool.h"

#include <gtest/gtest.h>
#include <pthread.h>
#include <sched.h>

#include <atomic>
#include <stdexcept>
#include <chrono>
#include <thread>
#include <vector>

namespace tpinfer {
namespace {

// Every index is covered exactly once, by pieces aligned to the grain, for
// sizes around the grain and thread count boundaries.
TEST(ThreadPool, ParallelForCoversEachIndexOnceInGrainAlignedPieces) {
  for (int threads : {1, 2, 3, 5}) {
    ThreadPool pool(threads);
    for (int64_t grain : {1, 3, 16}) {
      for (int64_t n : {1, 2, 15, 16, 17, 100, 1000, 4099}) {
        std::vector<std::atomic<int>> hits(static_cast<size_t>(n));
        std::atomic<bool> misaligned{false};
        pool.parallel_for(n, grain, [&](int64_t b, int64_t e) {
          if (b % grain != 0 || (e != n && e % grain != 0) || e <= b) {
            misaligned = true;
          }
          for (int64_t i = b; i < e; ++i) hits[static_cast<size_t>(i)].fetch_add(1);
        });
        EXPECT_FALSE(misaligned) << "threads " << threads << " grain " << grain << " n " << n;
        for (int64_t i = 0; i < n; ++i) {
          ASSERT_EQ(hits[static_cast<size_t>(i)].load(), 1)
              << "index " << i << " threads " << threads << " grain " << grain << " n " << n;
        }
      }
    }
  }
}

// A thread that is slow on its share (here: the thread holding index 0 stalls
// there) has the rest of its share taken by the others, so the call does not
// last as long as the slow thread's whole share would.
TEST(ThreadPool, ParallelForMovesWorkAwayFromASlowThread) {
  ThreadPool pool(2);
  constexpr int64_t kUnits = 64;
  std::vector<std::atomic<int>> by_thread(kUnits);
  std::atomic<int> pieces_after_stall{0};
  std::atomic<int> stolen{0};  // units of thread 0's share done by the other thread
  const std::thread::id caller = std::this_thread::get_id();
  pool.parallel_for(kUnits, 1, [&](int64_t b, int64_t e) {
    if (b == 0) {
      // Stall until the other thread has taken more than a quarter of the units
      // (it can only by stealing from this share), or give up after 10 s: a
      // wait on the event, not on a guess of how long a loaded machine needs.
      const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(10);
      while (stolen.load() <= kUnits / 4 && std::chrono::steady_clock::now() < give_up) {
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
      }
    }
    for (int64_t u = b; u < e; ++u) {
      const bool other = std::this_thread::get_id() != caller;
      by_thread[static_cast<size_t>(u)] = other ? 1 : 0;
      if (u > 0 && u < kUnits / 2) {
        pieces_after_stall.fetch_add(1);
        if (other) stolen.fetch_add(1);
      }
    }
  });
  // Units 1..31 belong to thread 0's share (it stalls in its first piece, at
  // most 16 grains): the other thread finishes its own share and takes the rest.
  int taken = 0;
  for (int64_t u = 1; u < kUnits / 2; ++u) taken += by_thread[static_cast<size_t>(u)] == 1;
  EXPECT_EQ(pieces_after_stall.load(), kUnits / 2 - 1);
  EXPECT_GT(taken, kUnits / 4) << "the idle thread should have taken most of the stalled thread's share";
}

TEST(ThreadPool, ParallelForRethrowsAnException) {
  ThreadPool pool(2);
  EXPECT_THROW(pool.parallel_for(100, 1,
                                 [&](int64_t b, int64_t) {
                                   if (b == 77) throw std::runtime_error("unit 77");
                                 }),
               std::runtime_error);
  // The pool is usable afterwards.
  std::atomic<int64_t> sum{0};
  pool.parallel_for(100, 7, [&](int64_t b, int64_t e) { sum.fetch_add(e - b); });
  EXPECT_EQ(sum.load(), 100);
}

}  // namespace
// Unpinning restores what the process was given (taskset, mpirun, a cgroup),
// not every CPU of the machine: an emulated host confined to one core must
// not spread its threads over the others.
TEST(ThreadPool, UnpinRestoresTheProcessAffinity) {
  std::thread t([] {
    cpu_set_t given;
    CPU_ZERO(&given);
    ASSERT_EQ(sched_getaffinity(0, sizeof(given), &given), 0);
    EXPECT_EQ(available_cpus(), CPU_COUNT(&given));
    int first = 0;
    while (!CPU_ISSET(first, &given)) ++first;
    EXPECT_EQ(available_cpu(0), first);
    EXPECT_EQ(available_cpu(available_cpus()), -1);
    EXPECT_TRUE(CPU_ISSET(available_cpu(available_cpus() - 1), &given));
    ASSERT_TRUE(pin_current_thread(first));
    cpu_set_t now;
    ASSERT_EQ(pthread_getaffinity_np(pthread_self(), sizeof(now), &now), 0);
    EXPECT_EQ(CPU_COUNT(&now), 1);
    ASSERT_TRUE(unpin_current_thread());
    ASSERT_EQ(pthread_getaffinity_np(pthread_self(), sizeof(now), &now), 0);
    EXPECT_TRUE(CPU_EQUAL(&now, &given));
  });
  t.join();
}

// A pool pins its caller (thread 0) to its first CPU while it lives, and gives
// the caller its CPUs back when destroyed on it. Left pinned, a test process's
// main thread would start every later child on that core: the two emulated
// hosts of a multi-host test would share one core.
TEST(ThreadPool, CallerGetsItsCpusBackWhenThePoolIsGone) {
  if (available_cpus() < 2) GTEST_SKIP() << "needs two CPUs to tell pinned from not";
  std::thread t([] {
    ASSERT_TRUE(unpin_current_thread());
    cpu_set_t before, during, after;
    ASSERT_EQ(pthread_getaffinity_np(pthread_self(), sizeof(before), &before), 0);
    {
      ThreadPool pool(2, {available_cpu(1), available_cpu(0)});
      ASSERT_EQ(pthread_getaffinity_np(pthread_self(), sizeof(during), &during), 0);
      EXPECT_EQ(CPU_COUNT(&during), 1);
      EXPECT_TRUE(CPU_ISSET(available_cpu(1), &during));
    }
    ASSERT_EQ(pthread_getaffinity_np(pthread_self(), sizeof(after), &after), 0);
    EXPECT_TRUE(CPU_EQUAL(&after, &before)) << CPU_COUNT(&after) << " CPUs after, " << CPU_COUNT(&before) << " before";
  });
  t.join();
}

}  // namespace tpinfer
