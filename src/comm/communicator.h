// The Communicator: collectives among the ranks of one group (a tensor-parallel
// group, or every rank of a pipeline for the sends between its stages).
// Back ends: local (ranks are thread groups of one process, local_comm.h) and
// mpi (one process per rank, mpi_comm.h), over one base for what host back
// ends share (host_comm.h); collectives over device memory (nccl, streams) are
// comm/cuda/device_comm.h. Every collective has a deadline: when it passes, the call
// throws CommError naming the operation, its sequence number and the ranks that
// did not arrive, and the group is poisoned so every other rank's pending or next
// collective throws too: a stalled peer turns into an error, never a hang.
// Each communicator counts calls, bytes and nanoseconds per kind of collective,
// and of those nanoseconds the time spent waiting for the last rank to arrive.
//
// Waiting vs link: a rank that reaches a collective before its peers waits for
// them; that wait is load imbalance (or a peer's noise), not communication, and
// would be there with an infinitely fast link. wait_nanos separates it: for a
// collective of the group (all-reduce, all-gather, broadcast, all-to-all),
//   wait = clamp(latest arrival of any rank - this rank's arrival, 0, duration),
// arrival = the moment a rank entered the collective; nanos - wait_nanos is the
// time the collective itself took once everybody was there (what a link model
// predicts). A barrier moves nothing: all of its time is wait. Sends and
// receives are point to point: wait 0. Back ends that cannot tell (the device
// communicators) report 0 and measures_wait() false.
#pragma once

#include <algorithm>
#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <span>
#include <string>

namespace tpinfer {

enum class Collective { AllReduce, AllGather, Broadcast, SendRecv, Barrier, AllToAll };
inline constexpr int kCollectiveKinds = 6;
const char* collective_name(Collective c);

struct CollectiveCounter {
  uint64_t calls = 0;
  uint64_t bytes = 0;  // bytes this rank moved over the link (sent + received payload)
  uint64_t nanos = 0;  // wall time inside the collective, waiting included
  uint64_t wait_nanos = 0;  // of nanos: waiting for the last rank to arrive (see above)
  CollectiveCounter& operator+=(const CollectiveCounter& o) {
    calls += o.calls;
    bytes += o.bytes;
    nanos += o.nanos;
    wait_nanos += o.wait_nanos;
    return *this;
  }
};

struct CommStats {
  std::array<CollectiveCounter, kCollectiveKinds> by_kind{};
  const CollectiveCounter& operator[](Collective c) const { return by_kind[static_cast<size_t>(c)]; }
  CollectiveCounter& operator[](Collective c) { return by_kind[static_cast<size_t>(c)]; }
  CollectiveCounter total() const;
  // Adds another communicator's counters, kind by kind.
  CommStats& operator+=(const CommStats& o) {
    for (size_t k = 0; k < by_kind.size(); ++k) by_kind[k] += o.by_kind[k];
    return *this;
  }
};

class Communicator {
 public:
  virtual ~Communicator() = default;

  virtual int rank() const = 0;
  virtual int size() const = 0;
  // Short name of the back end ("local", "mpi", ...).
  virtual const char* backend() const = 0;

  // data[0, n) <- sum over ranks of data[0, n), on every rank.
  virtual void all_reduce_sum(float* data, size_t n) = 0;
  // recv <- concatenation over ranks r of (counts[r] floats from rank r's send);
  // counts is the same on every rank and counts[rank()] floats are read from send.
  virtual void all_gather(const float* send, std::span<const size_t> counts, float* recv) = 0;
  // data[0, bytes) on every rank <- data on `root`.
  virtual void broadcast(void* data, size_t bytes, int root) = 0;
  // A broadcast whose non-root ranks may wait without deadline for the root (a
  // worker idling until the driver has the next batch). An abort still wakes it.
  virtual void broadcast_wait(void* data, size_t bytes, int root) = 0;
  // Byte-level building blocks for decorators (compression): every rank sends
  // `bytes` bytes and receives size() x bytes, in rank order.
  virtual void all_gather_bytes(const void* send, size_t bytes, void* recv) = 0;
  // send holds size() chunks of `bytes` each, chunk j for rank j; recv receives
  // size() chunks, chunk j from rank j.
  virtual void all_to_all(const void* send, size_t bytes, void* recv) = 0;
  // Point to point. send() is buffered: it copies the data and returns without
  // waiting for the receiver. Messages between a pair of ranks arrive in the
  // order they were sent; recv() of the wrong size throws CommError.
  virtual void send(const void* data, size_t bytes, int dst) = 0;
  virtual void recv(void* data, size_t bytes, int src) = 0;
  // A recv that may wait without deadline for the message (a pipeline stage
  // idling until the stage before it has work). An abort still wakes it.
  virtual void recv_wait(void* data, size_t bytes, int src) = 0;
  virtual void barrier() = 0;

  // Whether stats() split each collective's time into waiting and link (above).
  virtual bool measures_wait() const { return false; }
  // Measures again what converts the peers' clocks to this rank's for that
  // split (mpi: the clock offsets, which drift apart on separate hosts over a
  // long run). Collective: every rank at the same point, between collectives.
  // Nothing to do where the ranks share a clock.
  virtual void resynchronize_clocks() {}

  const CommStats& stats() const { return stats_; }
  void reset_stats() { stats_ = CommStats{}; }

 protected:
  CommStats stats_;
};

// Times one collective and adds it to the counters (RAII). start() is the
// rank's arrival; a back end that learns the latest arrival of the group calls
// last_arrival() with it (its own clock), and the wait is counted from there.
class CollectiveTimer {
 public:
  using Clock = std::chrono::steady_clock;
  CollectiveTimer(CommStats& stats, Collective kind, uint64_t bytes)
      : counter_(stats[kind]), bytes_(bytes), start_(Clock::now()) {}
  ~CollectiveTimer() {
    const auto total = std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - start_).count();
    counter_.calls += 1;
    counter_.bytes += bytes_;
    counter_.nanos += static_cast<uint64_t>(total);
    counter_.wait_nanos += static_cast<uint64_t>(std::clamp<int64_t>(wait_, 0, total));
  }
  CollectiveTimer(const CollectiveTimer&) = delete;
  CollectiveTimer& operator=(const CollectiveTimer&) = delete;

  Clock::time_point start() const { return start_; }
  // Nanoseconds of start() since the clock's epoch (what ranks exchange).
  int64_t start_nanos() const {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(start_.time_since_epoch()).count();
  }
  // The latest arrival of any rank of the group, in nanoseconds of this rank's clock.
  void last_arrival(int64_t nanos) { wait_ = nanos - start_nanos(); }
  // All of the collective is wait (a barrier).
  void all_wait() { wait_ = std::numeric_limits<int64_t>::max(); }

 private:
  CollectiveCounter& counter_;
  uint64_t bytes_;
  Clock::time_point start_;
  int64_t wait_ = 0;
};

}  // namespace tpinfer
