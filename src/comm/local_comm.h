// The `local` back end: the ranks of a group are thread groups of one process
// and exchange data through shared buffers. An all-reduce is a reduce-scatter
// (each rank sums its 1/n slice straight out of every peer's buffer) followed by
// an all-gather (each rank copies the other slices from their owners), with a
// barrier between phases; no rank ever sums more than its slice.
// Every collective publishes its buffer and its arrival time in a first phase;
// the latest arrival of the group gives each rank its wait (communicator.h).
//
// Usage: LocalGroup group(n, timeout); then rank r's thread calls
// group.communicator(r) once and uses it. The group must outlive them.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "comm/communicator.h"

namespace tpinfer {

class LocalGroup {
 public:
  // busy_threads: the threads of the whole job that compete for the cores
  // (every rank of every group, times its pool); 0 means `size`. Ranks
  // busy-wait in collectives only when these fit on the machine's cores.
  LocalGroup(int size, std::chrono::milliseconds timeout, int busy_threads = 0);
  ~LocalGroup();
  LocalGroup(const LocalGroup&) = delete;
  LocalGroup& operator=(const LocalGroup&) = delete;

  int size() const { return size_; }
  std::chrono::milliseconds timeout() const { return timeout_; }
  // The communicator of rank `rank` (call once per rank).
  std::unique_ptr<Communicator> communicator(int rank);

  // Poisons the group: every pending and future collective of every rank throws
  // CommError with this message. The first message wins.
  void abort(const std::string& message);
  bool aborted() const { return aborted_.load(std::memory_order_acquire); }
  std::string abort_message() const;

 private:
  friend class LocalCommunicator;
  struct alignas(64) Slot {
    std::atomic<uint64_t> arrived{0};  // barrier phases this rank has reached
    const void* ptr = nullptr;         // buffer published for the current collective
    // When this rank entered the current collective (steady clock, ns); written
    // before its first phase, read by the others between that phase and the
    // collective's last one, so never overwritten while read.
    std::atomic<int64_t> arrival{0};
  };
  struct Mailbox {
    std::mutex mutex;
    std::condition_variable ready;
    std::deque<std::vector<uint8_t>> messages;
  };

  int size_;
  std::chrono::milliseconds timeout_;
  std::vector<Slot> slots_;
  std::vector<std::unique_ptr<Mailbox>> mailboxes_;  // [src * size + dst]
  bool spin_ = true;  // every rank has a core: busy-wait (up to kSpinTime) before yielding
  // A rank that has spun and yielded without the others arriving sleeps here
  // until an arrival or an abort wakes it, so an idle rank (a server's worker
  // between requests) costs no CPU. Arrivals notify only while someone sleeps.
  std::mutex sleep_mutex_;
  std::condition_variable sleep_cv_;
  std::atomic<int> sleepers_{0};
  std::atomic<bool> aborted_{false};
  mutable std::mutex abort_mutex_;
  std::string abort_message_;
};

}  // namespace tpinfer
