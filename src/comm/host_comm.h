// HostCommunicator: what the host back ends (local_comm.h, mpi_comm.h) share
// beneath their transports. The group's rank, size and deadline; the sequence
// number and kind of the operation under way on this rank (every operation
// counts, starting at 1, and deadline and error messages name it); argument
// checks that throw CommError with the same message on either back end (a bad
// peer, root or counts array); the bytes an all-reduce moves; the heads of the
// timeout messages; and recv / recv_wait as one receive() with or without the
// deadline. How data moves, how a rank waits and what a timeout does (the
// local group is poisoned and the call throws; mpi ends the job) stay with
// each back end.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

#include "comm/communicator.h"

namespace tpinfer {

class HostCommunicator : public Communicator {
 public:
  int rank() const override { return rank_; }
  int size() const override { return size_; }
  // Both back ends learn every rank's arrival (communicator.h).
  bool measures_wait() const override { return true; }

  void recv(void* data, size_t bytes, int src) final { receive(data, bytes, src, /*deadline_applies=*/true); }
  void recv_wait(void* data, size_t bytes, int src) final { receive(data, bytes, src, /*deadline_applies=*/false); }

 protected:
  using Clock = std::chrono::steady_clock;

  HostCommunicator(int rank, int size, std::chrono::milliseconds timeout)
      : rank_(rank), size_(size), timeout_(timeout) {}

  // recv() (deadline_applies) and recv_wait() (no deadline while no message
  // has arrived).
  virtual void receive(void* data, size_t bytes, int src, bool deadline_applies) = 0;
  // Called as every operation begins: throws CommError when the communicator
  // can no longer be used (the local group was aborted).
  virtual void check_usable() const {}

  // Starts an operation of `kind`: check_usable(), then the next sequence number.
  void begin(Collective kind) {
    check_usable();
    kind_ = kind;
    ++seq_;
  }

  // The deadline of an operation starting now.
  Clock::time_point deadline() const { return Clock::now() + timeout_; }
  static double seconds(std::chrono::milliseconds ms) { return static_cast<double>(ms.count()) / 1000.0; }

  // Bytes one rank moves in a reduce-scatter + all-gather of `bytes`: 2 (p-1)/p x bytes.
  uint64_t bus_bytes(size_t bytes) const;

  // Throw CommError naming `op` unless `peer` is another rank of the group,
  // `root` a rank of it, `counts` one count per rank. check_counts returns
  // their sum.
  void check_peer(int peer, const char* op) const;
  void check_root(int root, const char* op) const;
  size_t check_counts(std::span<const size_t> counts) const;

  // "<collective> #<seq> timed out after <s> s on rank <r>: ", to which the
  // back end adds who did not arrive.
  std::string timeout_head() const;
  // "recv #<seq> on rank <r> timed out after <s> s: <why>".
  std::string recv_timeout(const std::string& why) const;
  // "recv #<seq> on rank <r>: expected <bytes> bytes from rank <src>, got <got>".
  std::string recv_size_mismatch(size_t bytes, int src, size_t got) const;

  int rank_ = 0;
  int size_ = 1;
  std::chrono::milliseconds timeout_;
  uint64_t seq_ = 0;                       // operations called on this rank
  Collective kind_ = Collective::Barrier;  // the latest of them
};

}  // namespace tpinfer
