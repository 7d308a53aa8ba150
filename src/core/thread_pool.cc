#include "core/thread_pool.h"

#include <pthread.h>
#include <sched.h>

#include <algorithm>
#include <chrono>
#include <thread>

#include "core/error.h"

namespace tpinfer {

bool pin_current_thread(int cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  return pthread_setaffinity_np(pthread_self(), sizeof(set), &set) == 0;
}

namespace {

// The process's affinity before anything of ours pinned a thread (static
// initialization runs on the main thread before main()).
const cpu_set_t& initial_affinity() {
  static const cpu_set_t set = [] {
    cpu_set_t s;
    CPU_ZERO(&s);
    if (sched_getaffinity(0, sizeof(s), &s) != 0 || CPU_COUNT(&s) == 0) {
      const int n = std::min<int>(CPU_SETSIZE, static_cast<int>(std::max(1u, std::thread::hardware_concurrency())));
      for (int cpu = 0; cpu < n; ++cpu) CPU_SET(cpu, &s);
    }
    return s;
  }();
  return set;
}
[[maybe_unused]] const cpu_set_t& g_captured_at_start = initial_affinity();

}  // namespace

bool unpin_current_thread() {
  cpu_set_t set = initial_affinity();
  return pthread_setaffinity_np(pthread_self(), sizeof(set), &set) == 0;
}

int available_cpus() { return std::max(1, CPU_COUNT(&initial_affinity())); }

int available_cpu(int i) {
  if (i < 0) return -1;
  for (int cpu = 0; cpu < CPU_SETSIZE; ++cpu) {
    if (CPU_ISSET(cpu, &initial_affinity()) && i-- == 0) return cpu;
  }
  return -1;
}

ThreadPool::ThreadPool(int n_threads, std::vector<int> cpus)
    : n_threads_(std::max(1, n_threads)), shares_(std::make_unique<Share[]>(static_cast<size_t>(n_threads_))) {
  if (!cpus.empty()) {
    cpu_set_t before;
    CPU_ZERO(&before);
    if (pthread_getaffinity_np(pthread_self(), sizeof(before), &before) == 0) {
      creator_ = std::this_thread::get_id();
      for (int cpu = 0; cpu < CPU_SETSIZE; ++cpu) {
        if (CPU_ISSET(cpu, &before)) creator_cpus_.push_back(cpu);
      }
    }
    pin_current_thread(cpus[0]);
  }
  for (int i = 1; i < n_threads_; ++i) {
    threads_.emplace_back([this, i, cpus] {
      // A worker without a CPU of its own must not inherit its creator's pin:
      // it would then share that one core with the creator.
      if (static_cast<size_t>(i) < cpus.size()) {
        pin_current_thread(cpus[static_cast<size_t>(i)]);
      } else {
        unpin_current_thread();
      }
      worker(i);
    });
  }
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_.store(true);
    generation_.fetch_add(1);
  }
  wake_.notify_all();
  for (std::thread& t : threads_) t.join();
  if (!creator_cpus_.empty() && creator_ == std::this_thread::get_id()) {
    cpu_set_t set;
    CPU_ZERO(&set);
    for (int cpu : creator_cpus_) CPU_SET(cpu, &set);
    pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
  }
}

void ThreadPool::worker(int index) {
  uint64_t seen = 0;
  for (;;) {
    // Spin a little, then sleep until the generation changes.
    uint64_t gen = generation_.load(std::memory_order_acquire);
    for (int spin = 0; gen == seen && spin < 20000; ++spin) {
#if defined(__x86_64__)
      __builtin_ia32_pause();
#endif
      gen = generation_.load(std::memory_order_acquire);
    }
    if (gen == seen) {
      std::unique_lock<std::mutex> lock(mutex_);
      wake_.wait(lock, [&] { return generation_.load(std::memory_order_acquire) != seen; });
      gen = generation_.load(std::memory_order_acquire);
    }
    seen = gen;
    if (stop_.load()) return;
    try {
      (*job_)(index, n_threads_);
    } catch (...) {
      std::lock_guard<std::mutex> lock(error_mutex_);
      if (!error_) error_ = std::current_exception();
    }
    if (pending_.fetch_sub(1, std::memory_order_acq_rel) == 1) {
      std::lock_guard<std::mutex> lock(mutex_);
      done_.notify_one();
    }
  }
}

void ThreadPool::run(const std::function<void(int, int)>& fn) {
  if (n_threads_ == 1) {
    fn(0, 1);
    return;
  }
  job_ = &fn;
  error_ = nullptr;
  pending_.store(n_threads_ - 1, std::memory_order_release);
  {
    std::lock_guard<std::mutex> lock(mutex_);
    generation_.fetch_add(1, std::memory_order_acq_rel);
  }
  wake_.notify_all();
  std::exception_ptr mine;
  try {
    fn(0, n_threads_);
  } catch (...) {
    mine = std::current_exception();
  }
  for (int spin = 0; pending_.load(std::memory_order_acquire) != 0 && spin < 200000; ++spin) {
#if defined(__x86_64__)
    __builtin_ia32_pause();
#endif
  }
  if (pending_.load(std::memory_order_acquire) != 0) {
    std::unique_lock<std::mutex> lock(mutex_);
    done_.wait(lock, [&] { return pending_.load(std::memory_order_acquire) == 0; });
  }
  job_ = nullptr;
  if (mine) std::rethrow_exception(mine);
  if (error_) std::rethrow_exception(error_);
}

namespace {

constexpr uint64_t pack(uint64_t front, uint64_t back) { return front << 32 | back; }

// Takes up to `count` grains from the front (owner) or one from the back
// (others) of a share: [first, first + taken). false when it is empty.
bool take(std::atomic<uint64_t>& share, bool from_front, uint64_t count, int64_t& first, int64_t& taken) {
  uint64_t cur = share.load(std::memory_order_relaxed);
  for (;;) {
    const uint64_t front = cur >> 32, back = cur & 0xFFFFFFFFu;
    if (front >= back) return false;
    const uint64_t n = from_front ? std::min(count, back - front) : 1;
    const uint64_t next = from_front ? pack(front + n, back) : pack(front, back - 1);
    if (share.compare_exchange_weak(cur, next, std::memory_order_relaxed)) {
      first = static_cast<int64_t>(from_front ? front : back - 1);
      taken = static_cast<int64_t>(n);
      return true;
    }
  }
}

}  // namespace

void ThreadPool::parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn) {
  if (n <= 0) return;
  grain = std::max<int64_t>(1, grain);
  const int64_t units = (n + grain - 1) / grain;
  if (n_threads_ == 1 || units == 1) {
    fn(0, n);
    return;
  }
  if (units > 0xFFFFFFFFLL) throw Error(cat("ThreadPool::parallel_for: ", units, " grains, more than 2^32"));
  const int nt = n_threads_;
  const int64_t per = (units + nt - 1) / nt;
  for (int i = 0; i < nt; ++i) {
    const int64_t begin = std::min(units, i * per), end = std::min(units, (i + 1) * per);
    // Published to the workers by run()'s release of the generation counter.
    shares_[static_cast<size_t>(i)].range.store(pack(static_cast<uint64_t>(begin), static_cast<uint64_t>(end)),
                                                std::memory_order_relaxed);
  }
  auto piece = [&](int64_t first, int64_t count) {
    fn(first * grain, std::min(n, (first + count) * grain));
  };
  // The owner takes an eighth of its share at a time (few calls, long
  // contiguous runs); others take single grains from the back, so that what
  // is left to balance at the end is fine-grained.
  const uint64_t owner_step = static_cast<uint64_t>(std::clamp<int64_t>(per / 8, 1, 16));
  run([&](int i, int threads) {
    int64_t first, count;
    while (take(shares_[static_cast<size_t>(i)].range, true, owner_step, first, count)) piece(first, count);
    // Own share done: help the thread with the most grains left.
    for (;;) {
      int victim = -1;
      uint64_t most = 0;
      for (int v = 0; v < threads; ++v) {
        const uint64_t r = shares_[static_cast<size_t>(v)].range.load(std::memory_order_relaxed);
        const uint64_t front = r >> 32, back = r & 0xFFFFFFFFu;
        if (back > front && back - front > most) {
          most = back - front;
          victim = v;
        }
      }
      if (victim < 0) return;
      if (take(shares_[static_cast<size_t>(victim)].range, false, 1, first, count)) piece(first, count);
    }
  });
}

}  // namespace tpinfer
