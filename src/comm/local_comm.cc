#include "comm/local_comm.h"

#include <algorithm>
#include <cstring>
#include <thread>

#include "comm/host_comm.h"
#include "core/error.h"
#include "core/thread_pool.h"

namespace tpinfer {

// How long a rank with a core of its own busy-waits in a collective (wait_all).
constexpr std::chrono::microseconds kSpinTime{2000};

class LocalCommunicator final : public HostCommunicator {
 public:
  LocalCommunicator(LocalGroup& group, int rank) : HostCommunicator(rank, group.size_, group.timeout_), g_(group) {}

  const char* backend() const override { return "local"; }

  void all_reduce_sum(float* data, size_t n) override {
    const int p = size_;
    CollectiveTimer timer(stats_, Collective::AllReduce, bus_bytes(n * sizeof(float)));
    begin(Collective::AllReduce);
    if (p == 1) return;
    publish(data, timer);
    const size_t begin_i = n * static_cast<size_t>(rank_) / static_cast<size_t>(p);
    const size_t end_i = n * static_cast<size_t>(rank_ + 1) / static_cast<size_t>(p);
    // Reduce-scatter: sum my slice of every peer's buffer into my own buffer.
    // Rank order is fixed, so every rank's result is bit-identical.
    if (end_i > begin_i) {
      const size_t len = end_i - begin_i;
      ensure_acc(len);
      std::fill(acc_.begin(), acc_.begin() + static_cast<std::ptrdiff_t>(len), 0.0f);
      for (int r = 0; r < p; ++r) {
        const float* src = static_cast<const float*>(g_.slots_[static_cast<size_t>(r)].ptr) + begin_i;
        for (size_t i = 0; i < len; ++i) acc_[i] += src[i];
      }
      std::memcpy(data + begin_i, acc_.data(), len * sizeof(float));
    }
    wait_all();
    // All-gather: copy every other slice from its owner.
    for (int r = 0; r < p; ++r) {
      if (r == rank_) continue;
      const size_t b = n * static_cast<size_t>(r) / static_cast<size_t>(p);
      const size_t e = n * static_cast<size_t>(r + 1) / static_cast<size_t>(p);
      const float* src = static_cast<const float*>(g_.slots_[static_cast<size_t>(r)].ptr);
      if (e > b) std::memcpy(data + b, src + b, (e - b) * sizeof(float));
    }
    wait_all();  // nobody may reuse its buffer while a peer still reads it
  }

  void all_gather(const float* send, std::span<const size_t> counts, float* recv) override {
    const int p = size_;
    const size_t total = check_counts(counts);
    CollectiveTimer timer(stats_, Collective::AllGather, (total - counts[static_cast<size_t>(rank_)]) * sizeof(float));
    begin(Collective::AllGather);
    publish(send, timer);
    size_t offset = 0;
    for (int r = 0; r < p; ++r) {
      const size_t c = counts[static_cast<size_t>(r)];
      const float* src = r == rank_ ? send : static_cast<const float*>(g_.slots_[static_cast<size_t>(r)].ptr);
      if (c > 0) std::memmove(recv + offset, src, c * sizeof(float));
      offset += c;
    }
    wait_all();
  }

  void all_gather_bytes(const void* send, size_t bytes, void* recv) override {
    const size_t p = static_cast<size_t>(size_);
    CollectiveTimer timer(stats_, Collective::AllGather, bytes * (p - 1));
    begin(Collective::AllGather);
    publish(send, timer);
    for (size_t r = 0; r < p; ++r) {
      std::memcpy(static_cast<uint8_t*>(recv) + r * bytes, g_.slots_[r].ptr, bytes);
    }
    wait_all();
  }

  void all_to_all(const void* send, size_t bytes, void* recv) override {
    const size_t p = static_cast<size_t>(size_);
    CollectiveTimer timer(stats_, Collective::AllToAll, bytes * (p - 1));
    begin(Collective::AllToAll);
    publish(send, timer);
    for (size_t r = 0; r < p; ++r) {
      const auto* src = static_cast<const uint8_t*>(g_.slots_[r].ptr) + static_cast<size_t>(rank_) * bytes;
      std::memcpy(static_cast<uint8_t*>(recv) + r * bytes, src, bytes);
    }
    wait_all();
  }

  void broadcast(void* data, size_t bytes, int root) override {
    CollectiveTimer timer(stats_, Collective::Broadcast, bytes);
    begin(Collective::Broadcast);
    check_root(root, "broadcast");
    if (size_ == 1) return;
    publish(data, timer);
    if (rank_ != root) std::memcpy(data, g_.slots_[static_cast<size_t>(root)].ptr, bytes);
    wait_all();
  }

  void broadcast_wait(void* data, size_t bytes, int root) override {
    CollectiveTimer timer(stats_, Collective::Broadcast, bytes);
    begin(Collective::Broadcast);
    check_root(root, "broadcast_wait");
    if (size_ == 1) return;
    publish(data, timer, /*deadline_applies=*/rank_ == root);
    if (rank_ != root) std::memcpy(data, g_.slots_[static_cast<size_t>(root)].ptr, bytes);
    wait_all();
  }

  void send(const void* data, size_t bytes, int dst) override {
    CollectiveTimer timer(stats_, Collective::SendRecv, bytes);
    begin(Collective::SendRecv);
    check_peer(dst, "send");
    LocalGroup::Mailbox& box = mailbox(rank_, dst);
    {
      std::lock_guard<std::mutex> lock(box.mutex);
      const auto* p = static_cast<const uint8_t*>(data);
      box.messages.emplace_back(p, p + bytes);
    }
    box.ready.notify_all();
  }

  void barrier() override {
    CollectiveTimer timer(stats_, Collective::Barrier, 0);
    timer.all_wait();
    begin(Collective::Barrier);
    wait_all();
  }

 private:
  void receive(void* data, size_t bytes, int src, bool deadline_applies) override {
    CollectiveTimer timer(stats_, Collective::SendRecv, bytes);
    begin(Collective::SendRecv);
    check_peer(src, "recv");
    LocalGroup::Mailbox& box = mailbox(src, rank_);
    const Clock::time_point deadline = this->deadline();
    std::unique_lock<std::mutex> lock(box.mutex);
    while (box.messages.empty()) {
      check_usable();
      if (deadline_applies && Clock::now() >= deadline) {
        const std::string msg = recv_timeout(cat("rank ", src, " sent nothing"));
        lock.unlock();
        g_.abort(msg);
        throw CommError(msg);
      }
      box.ready.wait_for(lock, std::chrono::milliseconds(10));
    }
    std::vector<uint8_t> message = std::move(box.messages.front());
    box.messages.pop_front();
    if (message.size() != bytes) {
      throw CommError(recv_size_mismatch(bytes, src, message.size()));
    }
    std::memcpy(data, message.data(), bytes);
  }

  void ensure_acc(size_t n) {
    if (acc_.size() < n) acc_.resize(n);
  }

  LocalGroup::Mailbox& mailbox(int src, int dst) {
    return *g_.mailboxes_[static_cast<size_t>(src * size_ + dst)];
  }

  void check_usable() const override {
    if (g_.aborted()) throw CommError(cat("rank ", rank_, ": ", g_.abort_message()));
  }

  // Publishes this rank's buffer and arrival and waits until every rank has
  // published; tells the timer the group's latest arrival. The caller must
  // pass one more phase (wait_all) before it returns, so that no rank
  // overwrites its arrival in its next collective while a peer still reads it.
  void publish(const void* ptr, CollectiveTimer& timer, bool deadline_applies = true) {
    LocalGroup::Slot& mine = g_.slots_[static_cast<size_t>(rank_)];
    mine.ptr = ptr;
    mine.arrival.store(timer.start_nanos(), std::memory_order_relaxed);  // published by wait_all's release
    wait_all(deadline_applies);
    int64_t last = 0;
    for (const LocalGroup::Slot& s : g_.slots_) last = std::max(last, s.arrival.load(std::memory_order_relaxed));
    timer.last_arrival(last);
  }

  // A barrier phase with the deadline. Spins, then yields, then sleeps until
  // woken, so oversubscribed ranks (more ranks than cores) still make progress
  // and an idle rank (a server's worker waiting for the next request) uses no
  // CPU.
  //
  // A rank with a core of its own spins for up to kSpinTime: ranks reach a
  // collective within microseconds to a few hundred of each other, and giving
  // the core away costs more. A yield hands it to any other runnable thread of
  // the machine for a whole time slice (milliseconds): with a background job
  // on the core, yielding at once after a short spin makes TP=2 decode run at
  // 0.6x of TP=1 with two threads. The last stage sleeps until woken rather
  // than polling: a 50 us poll keeps an idle TP=2 server at 14% of a core and
  // slows whatever else runs on the polling rank's core.
  void wait_all(bool deadline_applies = true) {
    const uint64_t target = ++phase_;
    // seq_cst with the sleepers count (Dekker): either this rank sees a sleeper
    // and wakes it, or the sleeper sees this arrival before it sleeps.
    g_.slots_[static_cast<size_t>(rank_)].arrived.store(target, std::memory_order_seq_cst);
    if (g_.sleepers_.load(std::memory_order_seq_cst) > 0) {
      { std::lock_guard<std::mutex> lock(g_.sleep_mutex_); }
      g_.sleep_cv_.notify_all();
    }
    auto all_arrived = [&] {
      for (int r = 0; r < size_; ++r) {
        if (g_.slots_[static_cast<size_t>(r)].arrived.load(std::memory_order_seq_cst) < target) return false;
      }
      return true;
    };
    const Clock::time_point start = Clock::now();
    const Clock::time_point deadline = start + timeout_;
    const Clock::time_point spin_until = start + (g_.spin_ ? kSpinTime : Clock::duration::zero());
    bool spinning = g_.spin_;
    for (uint64_t iter = 0, waits = 0;; ++iter) {
      if (all_arrived()) return;
      if ((iter & 255) == 0) {
        check_usable();
        const Clock::time_point now = Clock::now();
        if (deadline_applies && now >= deadline) timed_out(target);
        spinning = spinning && now < spin_until;
      }
      if (spinning) {
#if defined(__x86_64__)
        __builtin_ia32_pause();
#endif
      } else if (waits++ < 8192) {
        std::this_thread::yield();
      } else {
        sleep_until_woken(all_arrived, deadline_applies ? deadline : Clock::time_point::max());
        check_usable();
        if (deadline_applies && Clock::now() >= deadline) timed_out(target);
      }
    }
  }

  template <typename Ready>
  void sleep_until_woken(Ready& ready, Clock::time_point deadline) {
    g_.sleepers_.fetch_add(1, std::memory_order_seq_cst);
    {
      std::unique_lock<std::mutex> lock(g_.sleep_mutex_);
      // Bounded by the deadline (noticed on time even if nobody arrives) and a
      // second (a last resort: arrivals and aborts notify).
      const Clock::time_point until = std::min(deadline, Clock::now() + std::chrono::seconds(1));
      g_.sleep_cv_.wait_until(lock, until, [&] { return ready() || g_.aborted(); });
    }
    g_.sleepers_.fetch_sub(1, std::memory_order_seq_cst);
  }

  [[noreturn]] void timed_out(uint64_t target) {
    std::string missing;
    for (int r = 0; r < size_; ++r) {
      if (g_.slots_[static_cast<size_t>(r)].arrived.load(std::memory_order_acquire) < target) {
        missing += missing.empty() ? "" : ", ";
        missing += std::to_string(r);
      }
    }
    const std::string msg = cat(timeout_head(), "rank(s) ", missing, " did not arrive");
    g_.abort(msg);
    throw CommError(msg);
  }

  LocalGroup& g_;
  uint64_t phase_ = 0;  // barrier phases passed
  std::vector<float> acc_;
};

LocalGroup::LocalGroup(int size, std::chrono::milliseconds timeout, int busy_threads)
    : size_(size), timeout_(timeout), slots_(static_cast<size_t>(size)) {
  spin_ = (busy_threads > 0 ? busy_threads : size) <= available_cpus();
  if (size < 1) throw ConfigError(cat("a communicator group needs at least one rank, got ", size));
  for (int i = 0; i < size * size; ++i) mailboxes_.push_back(std::make_unique<Mailbox>());
}

LocalGroup::~LocalGroup() = default;

std::unique_ptr<Communicator> LocalGroup::communicator(int rank) {
  if (rank < 0 || rank >= size_) throw ConfigError(cat("rank ", rank, " outside a group of ", size_));
  return std::make_unique<LocalCommunicator>(*this, rank);
}

void LocalGroup::abort(const std::string& message) {
  {
    std::lock_guard<std::mutex> lock(abort_mutex_);
    if (aborted_.load()) return;
    abort_message_ = message;
    aborted_.store(true, std::memory_order_release);
  }
  for (auto& box : mailboxes_) box->ready.notify_all();
  { std::lock_guard<std::mutex> lock(sleep_mutex_); }
  sleep_cv_.notify_all();
}

std::string LocalGroup::abort_message() const {
  std::lock_guard<std::mutex> lock(abort_mutex_);
  return abort_message_;
}

}  // namespace tpinfer
