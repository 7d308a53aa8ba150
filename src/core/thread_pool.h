// A fixed pool of worker threads for one rank. run(fn) calls fn(i, n) on every
// one of the n threads (the caller is thread 0) and returns when all are done.
// Workers spin briefly before sleeping, so the many short parallel regions of a
// decode step do not pay a futex wake-up each. Optional CPU pinning: thread i
// runs on cpus[i] (the caller, thread 0, until the pool is destroyed on it).
// No allocation per run().
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

namespace tpinfer {

class ThreadPool {
 public:
  // n_threads >= 1 (including the caller). cpus: empty, or one CPU id per thread.
  explicit ThreadPool(int n_threads, std::vector<int> cpus = {});
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return n_threads_; }

  // Runs fn(thread_index, n_threads) on every thread; blocks until all return.
  // The first exception thrown by any thread is rethrown here.
  void run(const std::function<void(int, int)>& fn);

  // Calls fn(begin, end) over pieces of [0, n) that together cover it once,
  // each a whole number of `grain`s (the last may be short). Thread i starts on
  // the i-th contiguous share and walks it front to back, an eighth of it per
  // call; a thread done with its share takes single grains from the back of the
  // share with the most left. So a thread slowed by the OS or by a neighbour does not hold up
  // the others, and each thread still streams through mostly contiguous memory.
  // Which thread runs a piece varies from call to call: fn must not depend on it.
  void parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn);

 private:
  void worker(int index);

  int n_threads_;
  std::vector<std::thread> threads_;
  // Pinning the caller is the pool's business while it lives: the destructor,
  // when it runs on the same thread, gives that thread back the CPUs it had.
  // (Left pinned, the thread would start every later thread and child process
  // on that one CPU, since pinning is inherited.)
  std::thread::id creator_;
  std::vector<int> creator_cpus_;  // empty: the caller was not pinned
  const std::function<void(int, int)>* job_ = nullptr;
  std::atomic<uint64_t> generation_{0};
  std::atomic<int> pending_{0};
  std::atomic<bool> stop_{false};
  std::mutex mutex_;
  std::condition_variable wake_;
  std::condition_variable done_;
  std::exception_ptr error_;
  std::mutex error_mutex_;
  // parallel_for's per-thread shares, in grains: (front << 32) | back, one per
  // cache line (the owner takes from the front, others from the back).
  struct alignas(64) Share {
    std::atomic<uint64_t> range{0};
  };
  std::unique_ptr<Share[]> shares_;
};

// Pins the calling thread to `cpu` (best effort; false if the OS refused).
bool pin_current_thread(int cpu);
// Lets the calling thread run on every CPU the process was given again (its
// affinity when it started: all CPUs, or what taskset, a cgroup or a launcher
// such as mpirun allowed). Threads inherit their creator's affinity, so a
// thread that starts helpers which must not share its core (an HTTP server's
// pool, a probe's workers) calls this first.
bool unpin_current_thread();
// How many CPUs the process was given when it started (at least 1).
int available_cpus();
// The id of the i-th of those CPUs (ascending), -1 past the last: where "core
// i of this process" is when taskset or mpirun confined it to, say, cores 2-3.
int available_cpu(int i);

}  // namespace tpinfer
