// The mpi back end's communicator (mpi_comm.h says what it does and why), as
// the files that define it share it: mpi_comm.cc (creation, the operations and
// the messages they post), mpi_comm_stamps.cc (arrival stamps and clock
// offsets), mpi_comm_deadline.cc (waiting under the deadline, answering peers'
// probes, reporting who did not arrive). Compiled only where CMake found MPI;
// internal to comm/.
#pragma once

// The C++ bindings (deprecated, separate library) stay out.
#ifndef OMPI_SKIP_MPICXX
#define OMPI_SKIP_MPICXX 1
#endif
#ifndef MPICH_SKIP_MPICXX
#define MPICH_SKIP_MPICXX 1
#endif
#include <mpi.h>
#include <sched.h>

#include <array>
#include <chrono>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "comm/host_comm.h"
#include "comm/mpi_comm.h"

namespace tpinfer {

// Tags. Data messages travel on the data communicator, probes on the control one,
// so neither can ever match the other.
constexpr int kTagData = 1;
constexpr int kTagProbe = 2;
constexpr int kTagReply = 3;
constexpr int kTagExchange = 4;       // all-reduce, one hop
constexpr int kTagReduceScatter = 5;  // all-reduce, two hops
constexpr int kTagAllGather = 6;      // all-reduce, second of two hops
constexpr int kTagClock = 7;          // clock offsets, at creation and resynchronize_clocks()
constexpr int kTagGather = 8;         // all_gather, all_gather_bytes
constexpr int kTagAllToAll = 9;
constexpr int kTagStamp = 10;  // an arrival stamp sent apart from a large payload

// MPI's text for an error code.
std::string mpi_error_text(int code);

// What a peer said when asked which operation it is in.
struct PeerState {
  bool answered = false;
  uint64_t seq = 0;
  uint64_t kind = 0;
};

class MpiCommunicator final : public HostCommunicator {
 public:
  // The rank and size of the group are MPI's, read once MPI is known to be up.
  MpiCommunicator(MPI_Comm comm, std::chrono::milliseconds timeout, std::shared_ptr<MpiSession> session);
  ~MpiCommunicator() override;

  const char* backend() const override { return "mpi"; }
  void resynchronize_clocks() override { measure_clock_offsets(); }

  void all_reduce_sum(float* data, size_t n) override;
  void all_gather(const float* send, std::span<const size_t> counts, float* recv) override;
  void all_gather_bytes(const void* send, size_t bytes, void* recv) override;
  void all_to_all(const void* send, size_t bytes, void* recv) override;
  void broadcast(void* data, size_t bytes, int root) override;
  void broadcast_wait(void* data, size_t bytes, int root) override;
  void send(const void* data, size_t bytes, int dst) override;
  void barrier() override;

 private:
  void receive(void* data, size_t bytes, int src, bool deadline_applies) override;

  struct PendingSend {
    std::vector<uint8_t> data;
    std::array<uint64_t, 2> words{};  // a probe reply: seq, kind
    MPI_Request req = MPI_REQUEST_NULL;
    int peer = -1;
    uint64_t seq = 0;
  };

  // ---- the operations' messages (mpi_comm.cc)
  void check_total(size_t bytes, const char* op) const;
  const void* stage_if_overlapping(const void* send, size_t send_bytes, const void* recv, size_t recv_bytes);
  void all_reduce_exchange(float* data, size_t len, bool stamped, Clock::time_point deadline);
  void all_reduce_scatter_gather(float* data, size_t len, bool stamped, Clock::time_point deadline);
  // Index of peer q among the other ranks (scratch holds no slot for this rank).
  size_t peer_slot(int q) const { return static_cast<size_t>(q < rank_ ? q : q - 1); }
  template <typename Source>
  void sum_in_rank_order(float* out, size_t len, Source src);
  void post_recv(float* buf, size_t len, int peer, int tag);
  void post_send(const float* buf, size_t len, int peer, int tag);
  void do_broadcast(void* data, size_t bytes, int root, bool deadline_applies);

  // ---- arrival stamps and clock offsets (mpi_comm_stamps.cc)
  void post_send_stamped(const void* buf, size_t count, MPI_Datatype type, size_t type_bytes, int peer, int tag);
  void post_recv_stamped(void* buf, size_t count, MPI_Datatype type, size_t type_bytes, int peer, int tag);
  MPI_Datatype stamped_type(const void* buf, size_t count, MPI_Datatype type, const int64_t* stamp);
  void free_type(MPI_Datatype& t) { check(MPI_Type_free(&t), "MPI_Type_free"); }
  int64_t latest_arrival() const;
  void measure_clock_offsets();

  // ---- waiting, probes and deadlines (mpi_comm_deadline.cc; poll below)
  void wait_reqs(Clock::time_point deadline);
  void wait(MPI_Request& req, Clock::time_point deadline);
  bool test_all(MPI_Request* reqs, int n, const char* what);
  // Calls done() until it returns true (then true) or, when has_deadline, the
  // deadline passes (then false). Spins first (a collective among ranks that
  // arrive together completes in microseconds), then yields, then sleeps
  // (50 us, then 1 ms once it has waited 20 ms), so
  // oversubscribed ranks still leave the cores to their peers. Answers peers'
  // probes while it waits.
  template <typename Done>
  bool poll(Done&& done, Clock::time_point deadline, bool has_deadline);
  void service();
  void post_probe_recv();
  void reap_sends() { reap(sends_); }
  void reap(std::vector<std::unique_ptr<PendingSend>>& list);
  std::vector<PeerState> probe_peers();
  std::string describe(int q, const PeerState& s) const;
  [[noreturn]] void collective_timed_out();
  [[noreturn]] void deadline_passed(const std::string& head, int peer);
  void check(int code, const char* what);
  [[noreturn]] void fatal(const std::string& message);

  std::shared_ptr<MpiSession> session_;  // first member: finalizes MPI last
  MPI_Comm comm_ = MPI_COMM_NULL;        // collectives and data messages
  MPI_Comm ctl_ = MPI_COMM_NULL;         // probes: "which operation are you in?"
  bool ctl_ready_ = false;
  uint64_t probe_in_ = 0;
  MPI_Request probe_req_ = MPI_REQUEST_NULL;
  std::vector<std::unique_ptr<PendingSend>> sends_;    // buffered sends in flight, oldest first
  std::vector<std::unique_ptr<PendingSend>> replies_;  // probe answers in flight
  std::vector<size_t> displs_;                         // all_gather: where each rank's part starts
  std::vector<int64_t> offset_;       // clock of rank q - clock of this rank, nanoseconds (measured last)
  int64_t my_stamp_ = 0;              // this rank's arrival in the collective under way
  std::vector<int64_t> peer_stamps_;  // peers' arrivals in it, each in its own clock
  std::vector<uint8_t> staging_;
  std::vector<MPI_Request> reqs_;     // the all-reduce's messages in flight
  std::vector<float> scratch_, acc_;  // peers' contributions, running sums
};

template <typename Done>
bool MpiCommunicator::poll(Done&& done, Clock::time_point deadline, bool has_deadline) {
  using namespace std::chrono_literals;
  Clock::time_point start{};
  for (uint32_t iter = 0;; ++iter) {
    if (done()) return true;
    if (iter < 32) {
#if defined(__x86_64__)
      __builtin_ia32_pause();
#endif
      continue;
    }
    const Clock::time_point now = Clock::now();
    if (iter == 32) start = now;
    if (has_deadline && now >= deadline) return false;
    const auto waited = now - start;
    if ((iter & 15) == 0 || waited >= 2ms) service();
    if (waited < 100us) {
#if defined(__x86_64__)
      __builtin_ia32_pause();
#endif
    } else if (waited < 2ms) {
      sched_yield();
    } else {
      // Long waits are idle ranks (a server's worker between requests):
      // they poll every millisecond, not every 50 us, so they cost next to
      // no CPU and leave their core to whatever else runs there.
      std::this_thread::sleep_for(waited < 20ms ? 50us : 1000us);
    }
  }
}

}  // namespace tpinfer
