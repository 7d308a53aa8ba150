// mpi.h comes first: mpi_comm.h declares its MPI_Comm overload only when mpi.h
// is already in. The C++ bindings (deprecated, separate library) stay out.
#ifndef OMPI_SKIP_MPICXX
#define OMPI_SKIP_MPICXX 1
#endif
#ifndef MPICH_SKIP_MPICXX
#define MPICH_SKIP_MPICXX 1
#endif
#include "comm/mpi_comm.h"

#include <mpi.h>
#include <sched.h>

#include <algorithm>
#include <array>
#include <climits>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <string>
#include <thread>
#include <vector>

#include "comm/host_comm.h"
#include "core/error.h"

namespace tpinfer {
namespace {

using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

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

// Up to this payload a message carries its arrival stamp inline (one message,
// a struct datatype); above it, in an 8-byte message of its own (post_send_stamped).
constexpr size_t kInlineStampMaxBytes = size_t{64} << 10;

// Round trips rank 0 makes with each peer to estimate its clock offset.
constexpr int kClockSamples = 8;

// Up to this size an all-reduce among more than two ranks sends every buffer to
// every peer (one hop, latency-bound); above it, reduce-scatter + all-gather.
constexpr size_t kExchangeMaxBytes = size_t{32} << 10;

// Largest piece of an all-reduce done at once (16 MiB): bounds the scratch
// memory; the per-piece cost is negligible at that size.
constexpr size_t kMaxFloatsPerCall = size_t{1} << 22;
// Largest piece of a broadcast handed to one MPI call (counts are `int`).
constexpr size_t kMaxBytesPerCall = size_t{1} << 30;

std::string mpi_error_text(int code) {
  std::array<char, MPI_MAX_ERROR_STRING> text{};
  int len = 0;
  if (MPI_Error_string(code, text.data(), &len) != MPI_SUCCESS) return cat("MPI error ", code);
  return std::string(text.data(), static_cast<size_t>(len));
}

// Nanoseconds since the steady clock's epoch: the unit of arrival stamps
// (CollectiveTimer::start_nanos()).
int64_t now_nanos() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch()).count();
}

bool overlaps(const void* a, size_t a_bytes, const void* b, size_t b_bytes) {
  const auto pa = reinterpret_cast<uintptr_t>(a), pb = reinterpret_cast<uintptr_t>(b);
  return a_bytes > 0 && b_bytes > 0 && pa < pb + b_bytes && pb < pa + a_bytes;
}

// What a peer said when asked which operation it is in.
struct PeerState {
  bool answered = false;
  uint64_t seq = 0;
  uint64_t kind = 0;
};

class MpiCommunicator final : public HostCommunicator {
 public:
  // The rank and size of the group are MPI's, read once MPI is known to be up.
  MpiCommunicator(MPI_Comm comm, std::chrono::milliseconds timeout, std::shared_ptr<MpiSession> session)
      : HostCommunicator(0, 1, timeout), session_(std::move(session)) {
    if (timeout.count() <= 0)
      throw ConfigError(cat("the mpi communicator needs a positive timeout, got ", timeout.count(), " ms"));
    int initialized = 0;
    MPI_Initialized(&initialized);
    if (!initialized) throw CommError("make_mpi_communicator: MPI is not initialized (hold an MpiSession)");
    MPI_Comm_rank(comm, &rank_);
    MPI_Comm_size(comm, &size_);
    // Duplicating is collective; with idup a peer that never comes is a timeout,
    // not a hang.
    std::array<MPI_Request, 2> dup{};
    check(MPI_Comm_idup(comm, &comm_, &dup[0]), "MPI_Comm_idup");
    check(MPI_Comm_idup(comm, &ctl_, &dup[1]), "MPI_Comm_idup");
    const Clock::time_point deadline = this->deadline();
    if (!poll([&] { return test_all(dup.data(), 2, "MPI_Comm_idup"); }, deadline, true)) {
      fatal(cat("creating the mpi communicator timed out after ", seconds(timeout_), " s on rank ", rank_,
                ": not every rank of ", size_, " joined"));
    }
    // Errors come back as codes; every call site turns them into a report that
    // names the operation (and ends the job when peers are left mid-operation).
    MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN);
    MPI_Comm_set_errhandler(ctl_, MPI_ERRORS_RETURN);
    measure_clock_offsets();
    post_probe_recv();
    ctl_ready_ = true;
  }

  ~MpiCommunicator() override {
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (finalized) return;  // the session ended first: nothing left to free
    // Sends still in flight must land before the communicator goes away.
    const Clock::time_point deadline = this->deadline();
    const bool delivered = poll(
        [&] {
          reap_sends();
          return sends_.empty();
        },
        deadline, true);
    if (!delivered) {
      const int dst = sends_.front()->peer;
      deadline_passed(cat("send #", sends_.front()->seq, " from rank ", rank_, " to rank ", dst,
                          " was not received within ", seconds(timeout_), " s"),
                      dst);
    }
    ctl_ready_ = false;
    if (probe_req_ != MPI_REQUEST_NULL) {
      MPI_Cancel(&probe_req_);
      MPI_Wait(&probe_req_, MPI_STATUS_IGNORE);
    }
    for (auto& r : replies_) MPI_Wait(&r->req, MPI_STATUS_IGNORE);  // 16-byte eager sends: already out
    MPI_Comm_free(&ctl_);
    MPI_Comm_free(&comm_);
  }

  const char* backend() const override { return "mpi"; }
  void resynchronize_clocks() override { measure_clock_offsets(); }

  void all_reduce_sum(float* data, size_t n) override {
    CollectiveTimer timer(stats_, Collective::AllReduce, bus_bytes(n * sizeof(float)));
    begin(Collective::AllReduce);
    if (size_ == 1) return;
    // One deadline for the whole operation, however many pieces it takes.
    const Clock::time_point deadline = this->deadline();
    my_stamp_ = timer.start_nanos();
    for (size_t done = 0; done < n;) {
      const size_t len = std::min(n - done, kMaxFloatsPerCall);
      // The first piece carries the arrival stamps: every rank is there once it completes.
      const bool stamped = done == 0;
      if (size_ == 2 || len * sizeof(float) <= kExchangeMaxBytes) {
        all_reduce_exchange(data + done, len, stamped, deadline);
      } else {
        all_reduce_scatter_gather(data + done, len, stamped, deadline);
      }
      done += len;
    }
    if (n > 0) timer.last_arrival(latest_arrival());
  }

  void all_gather(const float* send, std::span<const size_t> counts, float* recv) override {
    const size_t total = check_counts(counts);
    const size_t mine = counts[static_cast<size_t>(rank_)];
    CollectiveTimer timer(stats_, Collective::AllGather, (total - mine) * sizeof(float));
    begin(Collective::AllGather);
    if (total > static_cast<size_t>(INT_MAX)) {
      throw CommError(cat("all_gather #", seq_, " on rank ", rank_, ": ", total,
                          " floats in all exceed what one MPI call can address (", INT_MAX, ")"));
    }
    std::vector<size_t>& displs = displs_;
    displs.resize(static_cast<size_t>(size_));
    size_t offset = 0;
    for (int r = 0; r < size_; ++r) {
      displs[static_cast<size_t>(r)] = offset;
      offset += counts[static_cast<size_t>(r)];
    }
    float* my_part = recv + displs[static_cast<size_t>(rank_)];
    // The interface allows `send` to overlap `recv` (the local back end moves
    // memory); MPI does not let a send buffer overlap a receive buffer, so an
    // overlapping part is staged unless it already sits at its place (in place).
    const float* src = send;
    if (send != my_part && overlaps(send, mine * sizeof(float), recv, total * sizeof(float))) {
      staging_.resize(mine * sizeof(float));
      std::memcpy(staging_.data(), send, mine * sizeof(float));
      src = reinterpret_cast<const float*>(staging_.data());
    }
    const Clock::time_point deadline = this->deadline();
    my_stamp_ = timer.start_nanos();
    reqs_.clear();
    for (int q = 0; q < size_; ++q) {
      if (q == rank_) continue;
      post_send_stamped(src, mine, MPI_FLOAT, sizeof(float), q, kTagGather);
      post_recv_stamped(recv + displs[static_cast<size_t>(q)], counts[static_cast<size_t>(q)], MPI_FLOAT, sizeof(float),
                        q, kTagGather);
    }
    if (src != my_part && mine > 0) std::memcpy(my_part, src, mine * sizeof(float));
    wait_reqs(deadline);
    timer.last_arrival(latest_arrival());
  }

  void all_gather_bytes(const void* send, size_t bytes, void* recv) override {
    const size_t p = static_cast<size_t>(size_);
    CollectiveTimer timer(stats_, Collective::AllGather, bytes * (p - 1));
    begin(Collective::AllGather);
    check_total(bytes * p, "all_gather_bytes");
    auto* out_bytes = static_cast<uint8_t*>(recv);
    uint8_t* my_part = out_bytes + bytes * static_cast<size_t>(rank_);
    const void* src = send == my_part ? send : stage_if_overlapping(send, bytes, recv, bytes * p);
    const Clock::time_point deadline = this->deadline();
    my_stamp_ = timer.start_nanos();
    reqs_.clear();
    for (int q = 0; q < size_; ++q) {
      if (q == rank_) continue;
      post_send_stamped(src, bytes, MPI_BYTE, 1, q, kTagGather);
      post_recv_stamped(out_bytes + bytes * static_cast<size_t>(q), bytes, MPI_BYTE, 1, q, kTagGather);
    }
    if (src != my_part && bytes > 0) std::memcpy(my_part, src, bytes);
    wait_reqs(deadline);
    timer.last_arrival(latest_arrival());
  }

  void all_to_all(const void* send, size_t bytes, void* recv) override {
    const size_t p = static_cast<size_t>(size_);
    CollectiveTimer timer(stats_, Collective::AllToAll, bytes * (p - 1));
    begin(Collective::AllToAll);
    check_total(bytes * p, "all_to_all");
    const auto* src = static_cast<const uint8_t*>(stage_if_overlapping(send, bytes * p, recv, bytes * p));
    auto* out_bytes = static_cast<uint8_t*>(recv);
    const Clock::time_point deadline = this->deadline();
    my_stamp_ = timer.start_nanos();
    reqs_.clear();
    for (int q = 0; q < size_; ++q) {
      if (q == rank_) continue;
      const size_t at = bytes * static_cast<size_t>(q);
      post_send_stamped(src + at, bytes, MPI_BYTE, 1, q, kTagAllToAll);
      post_recv_stamped(out_bytes + at, bytes, MPI_BYTE, 1, q, kTagAllToAll);
    }
    const size_t mine = bytes * static_cast<size_t>(rank_);
    if (bytes > 0) std::memcpy(out_bytes + mine, src + mine, bytes);
    wait_reqs(deadline);
    timer.last_arrival(latest_arrival());
  }

  void broadcast(void* data, size_t bytes, int root) override {
    CollectiveTimer timer(stats_, Collective::Broadcast, bytes);
    begin(Collective::Broadcast);
    check_root(root, "broadcast");
    if (size_ == 1) return;
    do_broadcast(data, bytes, root, /*deadline_applies=*/true);
  }

  void broadcast_wait(void* data, size_t bytes, int root) override {
    CollectiveTimer timer(stats_, Collective::Broadcast, bytes);
    begin(Collective::Broadcast);
    check_root(root, "broadcast_wait");
    if (size_ == 1) return;
    do_broadcast(data, bytes, root, /*deadline_applies=*/rank_ == root);
  }

  void send(const void* data, size_t bytes, int dst) override {
    CollectiveTimer timer(stats_, Collective::SendRecv, bytes);
    begin(Collective::SendRecv);
    check_peer(dst, "send");
    check_total(bytes, "send");
    auto pending = std::make_unique<PendingSend>();
    pending->peer = dst;
    pending->seq = seq_;
    const auto* p = static_cast<const uint8_t*>(data);
    pending->data.assign(p, p + bytes);
    check(MPI_Isend(pending->data.data(), static_cast<int>(bytes), MPI_BYTE, dst, kTagData, comm_, &pending->req),
          "MPI_Isend");
    sends_.push_back(std::move(pending));
    reap_sends();
  }

  void barrier() override {
    CollectiveTimer timer(stats_, Collective::Barrier, 0);
    timer.all_wait();
    begin(Collective::Barrier);
    MPI_Request req;
    check(MPI_Ibarrier(comm_, &req), "MPI_Ibarrier");
    wait(req, deadline());
  }

 private:
  // recv_wait waits for the message without deadline; once it has arrived,
  // completing it has the deadline like every other operation.
  void receive(void* data, size_t bytes, int src, bool deadline_applies) override {
    CollectiveTimer timer(stats_, Collective::SendRecv, bytes);
    begin(Collective::SendRecv);
    check_peer(src, "recv");
    check_total(bytes, "recv");
    Clock::time_point deadline = this->deadline();
    // Probe first, so a message of the wrong size is an error that names both
    // sizes rather than MPI's truncation.
    MPI_Message message = MPI_MESSAGE_NULL;
    MPI_Status status;
    int found = 0;
    const bool arrived = poll(
        [&] {
          check(MPI_Improbe(src, kTagData, comm_, &found, &message, &status), "MPI_Improbe");
          return found != 0;
        },
        deadline, deadline_applies);
    if (!arrived) {
      deadline_passed(recv_timeout(cat("rank ", src, " sent nothing")), src);
    }
    int got = 0;
    check(MPI_Get_count(&status, MPI_BYTE, &got), "MPI_Get_count");
    const bool fits = static_cast<size_t>(got) == bytes;
    if (!fits) staging_.resize(static_cast<size_t>(got));
    MPI_Request req;
    check(MPI_Imrecv(fits ? data : staging_.data(), got, MPI_BYTE, &message, &req), "MPI_Imrecv");
    if (!deadline_applies) deadline = this->deadline();
    if (!poll([&] { return test_all(&req, 1, "MPI_Imrecv"); }, deadline, true)) {
      deadline_passed(recv_timeout(cat("the message from rank ", src, " started but did not complete")), src);
    }
    if (!fits) {
      throw CommError(recv_size_mismatch(bytes, src, static_cast<size_t>(got)));
    }
  }

  struct PendingSend {
    std::vector<uint8_t> data;
    std::array<uint64_t, 2> words{};  // a probe reply: seq, kind
    MPI_Request req = MPI_REQUEST_NULL;
    int peer = -1;
    uint64_t seq = 0;
  };

  void check_total(size_t bytes, const char* op) const {
    if (bytes > static_cast<size_t>(INT_MAX)) {
      throw CommError(cat(op, " #", seq_, " on rank ", rank_, ": ", bytes,
                          " bytes exceed what one MPI call can address (", INT_MAX, ")"));
    }
  }

  const void* stage_if_overlapping(const void* send, size_t send_bytes, const void* recv, size_t recv_bytes) {
    if (!overlaps(send, send_bytes, recv, recv_bytes)) return send;
    const auto* p = static_cast<const uint8_t*>(send);
    staging_.assign(p, p + send_bytes);
    return staging_.data();
  }

  // All-reduce in one hop: every rank sends its whole buffer to every peer and
  // sums all of them. Moves (p-1) x bytes per rank: for two ranks as little as
  // any algorithm, for more ranks only worth it for small buffers.
  void all_reduce_exchange(float* data, size_t len, bool stamped, Clock::time_point deadline) {
    const size_t p = static_cast<size_t>(size_);
    scratch_.resize((p - 1) * len);
    reqs_.clear();
    for (int q = 0; q < size_; ++q) {
      if (q == rank_) continue;
      float* slot = scratch_.data() + peer_slot(q) * len;
      if (stamped) {
        post_send_stamped(data, len, MPI_FLOAT, sizeof(float), q, kTagExchange);
        post_recv_stamped(slot, len, MPI_FLOAT, sizeof(float), q, kTagExchange);
      } else {
        post_send(data, len, q, kTagExchange);
        post_recv(slot, len, q, kTagExchange);
      }
    }
    wait_reqs(deadline);
    sum_in_rank_order(data, len, [&](int r) { return r == rank_ ? data : scratch_.data() + peer_slot(r) * len; });
  }

  // All-reduce in two hops, bandwidth-optimal (2 (p-1)/p x bytes per rank), the
  // local back end's algorithm: rank r owns slice r; every rank sends each
  // owner its slice (reduce-scatter), the owner sums them, then sends the sum to
  // every peer (all-gather).
  void all_reduce_scatter_gather(float* data, size_t len, bool stamped, Clock::time_point deadline) {
    const size_t p = static_cast<size_t>(size_);
    auto begin_of = [&](int r) { return len * static_cast<size_t>(r) / p; };
    auto end_of = [&](int r) { return len * static_cast<size_t>(r + 1) / p; };
    const size_t mine_b = begin_of(rank_), mine = end_of(rank_) - mine_b;
    scratch_.resize((p - 1) * mine);
    reqs_.clear();
    for (int q = 0; q < size_; ++q) {
      if (q == rank_) continue;
      float* slot = scratch_.data() + peer_slot(q) * mine;
      if (stamped) {
        post_send_stamped(data + begin_of(q), end_of(q) - begin_of(q), MPI_FLOAT, sizeof(float), q, kTagReduceScatter);
        post_recv_stamped(slot, mine, MPI_FLOAT, sizeof(float), q, kTagReduceScatter);
      } else {
        post_send(data + begin_of(q), end_of(q) - begin_of(q), q, kTagReduceScatter);
        post_recv(slot, mine, q, kTagReduceScatter);
      }
    }
    wait_reqs(deadline);
    sum_in_rank_order(data + mine_b, mine,
                      [&](int r) { return r == rank_ ? data + mine_b : scratch_.data() + peer_slot(r) * mine; });
    reqs_.clear();
    for (int q = 0; q < size_; ++q) {
      if (q == rank_) continue;
      post_send(data + mine_b, mine, q, kTagAllGather);
      post_recv(data + begin_of(q), end_of(q) - begin_of(q), q, kTagAllGather);
    }
    wait_reqs(deadline);
  }

  // Index of peer q among the other ranks (scratch holds no slot for this rank).
  size_t peer_slot(int q) const { return static_cast<size_t>(q < rank_ ? q : q - 1); }

  // out[i] = ((0 + src(0)[i]) + src(1)[i]) + ...: the order of the local back
  // end, so both back ends and every rank give bit-identical sums.
  template <typename Source>
  void sum_in_rank_order(float* out, size_t len, Source src) {
    acc_.assign(len, 0.0f);
    float* acc = acc_.data();
    for (int r = 0; r < size_; ++r) {
      const float* s = src(r);
      for (size_t i = 0; i < len; ++i) acc[i] += s[i];
    }
    std::memcpy(out, acc, len * sizeof(float));
  }

  // Send before receive: with Open MPI over TCP, pre-posting the receives of a
  // large exchange halved its bandwidth (measured, 1 Gbit/s links).
  void post_recv(float* buf, size_t len, int peer, int tag) {
    reqs_.push_back(MPI_REQUEST_NULL);
    check(MPI_Irecv(buf, static_cast<int>(len), MPI_FLOAT, peer, tag, comm_, &reqs_.back()), "MPI_Irecv");
  }

  void post_send(const float* buf, size_t len, int peer, int tag) {
    reqs_.push_back(MPI_REQUEST_NULL);
    check(MPI_Isend(buf, static_cast<int>(len), MPI_FLOAT, peer, tag, comm_, &reqs_.back()), "MPI_Isend");
  }

  // Sends `count` elements of `type` (`type_bytes` each) at `buf` to `peer`
  // with this rank's arrival stamp (my_stamp_), the matching receive below
  // takes both. Up to kInlineStampMaxBytes of payload, one message without
  // copying: a struct datatype {payload, stamp} over absolute addresses, used
  // from MPI_BOTTOM (sender and receiver build the same type signature, so the
  // stamp lands in the receiver's slot for it). Above that, the stamp goes as
  // its own 8-byte message: Open MPI moves a non-contiguous type through
  // copy-in/copy-out fragments, which on one host costs large messages their
  // single copy (measured: 1 MiB all-reduce twice as slow), while an extra
  // 8-byte message is nothing beside them. Both sides choose alike: they
  // agree on every message's size.
  void post_send_stamped(const void* buf, size_t count, MPI_Datatype type, size_t type_bytes, int peer, int tag) {
    if (count * type_bytes > kInlineStampMaxBytes) {
      reqs_.push_back(MPI_REQUEST_NULL);
      check(MPI_Isend(&my_stamp_, 1, MPI_INT64_T, peer, kTagStamp, comm_, &reqs_.back()), "MPI_Isend");
      reqs_.push_back(MPI_REQUEST_NULL);
      check(MPI_Isend(buf, static_cast<int>(count), type, peer, tag, comm_, &reqs_.back()), "MPI_Isend");
      return;
    }
    MPI_Datatype t = stamped_type(buf, count, type, &my_stamp_);
    reqs_.push_back(MPI_REQUEST_NULL);
    check(MPI_Isend(MPI_BOTTOM, 1, t, peer, tag, comm_, &reqs_.back()), "MPI_Isend");
    free_type(t);
  }

  // Receives what post_send_stamped sent: the payload into buf, the peer's
  // arrival stamp into peer_stamps_[peer].
  void post_recv_stamped(void* buf, size_t count, MPI_Datatype type, size_t type_bytes, int peer, int tag) {
    int64_t* stamp = &peer_stamps_[static_cast<size_t>(peer)];
    if (count * type_bytes > kInlineStampMaxBytes) {
      reqs_.push_back(MPI_REQUEST_NULL);
      check(MPI_Irecv(stamp, 1, MPI_INT64_T, peer, kTagStamp, comm_, &reqs_.back()), "MPI_Irecv");
      reqs_.push_back(MPI_REQUEST_NULL);
      check(MPI_Irecv(buf, static_cast<int>(count), type, peer, tag, comm_, &reqs_.back()), "MPI_Irecv");
      return;
    }
    MPI_Datatype t = stamped_type(buf, count, type, stamp);
    reqs_.push_back(MPI_REQUEST_NULL);
    check(MPI_Irecv(MPI_BOTTOM, 1, t, peer, tag, comm_, &reqs_.back()), "MPI_Irecv");
    free_type(t);
  }

  // {count x type at buf, 1 x int64 at stamp} as one datatype over absolute
  // addresses. Freeing it right after posting is legal: MPI keeps a type until
  // the operations using it complete.
  MPI_Datatype stamped_type(const void* buf, size_t count, MPI_Datatype type, const int64_t* stamp) {
    std::array<int, 2> lengths{static_cast<int>(count), 1};
    std::array<MPI_Aint, 2> addresses{};
    check(MPI_Get_address(buf, &addresses[0]), "MPI_Get_address");
    check(MPI_Get_address(stamp, &addresses[1]), "MPI_Get_address");
    std::array<MPI_Datatype, 2> types{type, MPI_INT64_T};
    MPI_Datatype t = MPI_DATATYPE_NULL;
    check(MPI_Type_create_struct(2, lengths.data(), addresses.data(), types.data(), &t), "MPI_Type_create_struct");
    check(MPI_Type_commit(&t), "MPI_Type_commit");
    return t;
  }

  void free_type(MPI_Datatype& t) { check(MPI_Type_free(&t), "MPI_Type_free"); }

  // The latest arrival of the group in this rank's clock: this rank's own
  // (my_stamp_) and every peer's stamp of the collective just completed,
  // moved from the peer's clock to this one with the offsets measured last
  // (at creation, or by resynchronize_clocks()).
  int64_t latest_arrival() const {
    int64_t latest = my_stamp_;
    for (int q = 0; q < size_; ++q) {
      if (q == rank_) continue;
      latest = std::max(latest, peer_stamps_[static_cast<size_t>(q)] - offset_[static_cast<size_t>(q)]);
    }
    return latest;
  }

  // Clocks of different hosts are unrelated: rank 0 makes kClockSamples round
  // trips with each peer in turn, each peer answering with its clock, and keeps
  // per peer the offset of the fastest round trip,
  //   t_peer - (t_send + t_recv) / 2,
  // off by at most half that round trip (by how much its two halves differ).
  // Rank 0 then broadcasts every rank's offset to its clock; differences of
  // those give offset_[q] = clock of q - clock of this rank.
  void measure_clock_offsets() {
    offset_.assign(static_cast<size_t>(size_), 0);
    peer_stamps_.assign(static_cast<size_t>(size_), 0);
    if (size_ == 1) return;
    const Clock::time_point deadline = this->deadline();
    auto complete = [&](MPI_Request* reqs, int n, int peer) {
      if (!poll([&] { return test_all(reqs, n, "clock offset MPI_Testall"); }, deadline, true)) {
        fatal(cat("measuring clock offsets timed out after ", seconds(timeout_), " s on rank ", rank_, ": rank ", peer,
                  " did not answer"));
      }
    };
    std::vector<int64_t> to_root(static_cast<size_t>(size_), 0);  // clock of q - clock of rank 0
    if (rank_ == 0) {
      for (int q = 1; q < size_; ++q) {
        int64_t best = std::numeric_limits<int64_t>::max();
        for (int i = 0; i < kClockSamples; ++i) {
          int64_t ping = i, pong = 0;
          std::array<MPI_Request, 2> reqs{MPI_REQUEST_NULL, MPI_REQUEST_NULL};
          check(MPI_Irecv(&pong, 1, MPI_INT64_T, q, kTagClock, comm_, &reqs[1]), "clock offset MPI_Irecv");
          const int64_t t_send = now_nanos();
          check(MPI_Isend(&ping, 1, MPI_INT64_T, q, kTagClock, comm_, &reqs[0]), "clock offset MPI_Isend");
          complete(reqs.data(), 2, q);
          const int64_t round_trip = now_nanos() - t_send;
          if (round_trip < best) {
            best = round_trip;
            to_root[static_cast<size_t>(q)] = pong - (t_send + round_trip / 2);
          }
        }
      }
    } else {
      for (int i = 0; i < kClockSamples; ++i) {
        int64_t ping = 0;
        MPI_Request req = MPI_REQUEST_NULL;
        check(MPI_Irecv(&ping, 1, MPI_INT64_T, 0, kTagClock, comm_, &req), "clock offset MPI_Irecv");
        complete(&req, 1, 0);
        const int64_t pong = now_nanos();
        check(MPI_Isend(&pong, 1, MPI_INT64_T, 0, kTagClock, comm_, &req), "clock offset MPI_Isend");
        complete(&req, 1, 0);
      }
    }
    MPI_Request req = MPI_REQUEST_NULL;
    check(MPI_Ibcast(to_root.data(), size_, MPI_INT64_T, 0, comm_, &req), "clock offset MPI_Ibcast");
    complete(&req, 1, 0);
    for (int q = 0; q < size_; ++q) {
      offset_[static_cast<size_t>(q)] = to_root[static_cast<size_t>(q)] - to_root[static_cast<size_t>(rank_)];
    }
  }

  void wait_reqs(Clock::time_point deadline) {
    const int count = static_cast<int>(reqs_.size());
    if (!poll([&] { return test_all(reqs_.data(), count, collective_name(kind_)); }, deadline, true)) {
      collective_timed_out();
    }
  }

  void do_broadcast(void* data, size_t bytes, int root, bool deadline_applies) {
    const Clock::time_point deadline = this->deadline();
    size_t done = 0;
    do {
      const size_t len = std::min(bytes - done, kMaxBytesPerCall);
      MPI_Request req;
      check(MPI_Ibcast(static_cast<uint8_t*>(data) + done, static_cast<int>(len), MPI_BYTE, root, comm_, &req),
            "MPI_Ibcast");
      if (!poll([&] { return test_all(&req, 1, "MPI_Ibcast"); }, deadline, deadline_applies)) collective_timed_out();
      done += len;
    } while (done < bytes);
  }

  void wait(MPI_Request& req, Clock::time_point deadline) {
    if (!poll([&] { return test_all(&req, 1, collective_name(kind_)); }, deadline, true)) collective_timed_out();
  }

  bool test_all(MPI_Request* reqs, int n, const char* what) {
    int done = 0;
    check(MPI_Testall(n, reqs, &done, MPI_STATUSES_IGNORE), what);
    return done != 0;
  }

  // Calls done() until it returns true (then true) or, when has_deadline, the
  // deadline passes (then false). Spins first (a collective among ranks that
  // arrive together completes in microseconds), then yields, then sleeps
  // (50 us, then 1 ms once it has waited 20 ms), so
  // oversubscribed ranks still leave the cores to their peers. Answers peers'
  // probes while it waits.
  template <typename Done>
  bool poll(Done&& done, Clock::time_point deadline, bool has_deadline) {
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

  // Answers a pending probe and retires finished sends.
  void service() {
    if (!ctl_ready_) return;
    int flag = 0;
    MPI_Status status;
    check(MPI_Test(&probe_req_, &flag, &status), "probe MPI_Test");
    if (flag) {
      auto reply = std::make_unique<PendingSend>();
      reply->words = {seq_, static_cast<uint64_t>(kind_)};
      reply->peer = status.MPI_SOURCE;
      check(MPI_Isend(reply->words.data(), 2, MPI_UINT64_T, status.MPI_SOURCE, kTagReply, ctl_, &reply->req),
            "probe reply MPI_Isend");
      replies_.push_back(std::move(reply));
      post_probe_recv();
    }
    reap(replies_);
    reap_sends();
  }

  void post_probe_recv() {
    check(MPI_Irecv(&probe_in_, 1, MPI_UINT64_T, MPI_ANY_SOURCE, kTagProbe, ctl_, &probe_req_), "probe MPI_Irecv");
  }

  void reap_sends() { reap(sends_); }

  void reap(std::vector<std::unique_ptr<PendingSend>>& list) {
    std::erase_if(list, [&](const std::unique_ptr<PendingSend>& s) { return test_all(&s->req, 1, "MPI_Isend"); });
  }

  // Asks every peer which operation it is in; waits up to min(timeout, 1 s).
  std::vector<PeerState> probe_peers() {
    std::vector<PeerState> states(static_cast<size_t>(size_));
    if (!ctl_ready_) return states;
    std::vector<std::array<uint64_t, 2>> answers(static_cast<size_t>(size_));
    std::vector<MPI_Request> reqs;
    std::vector<int> peer_of;
    const uint64_t question = seq_;
    std::vector<MPI_Request> asks;
    for (int q = 0; q < size_; ++q) {
      if (q == rank_) continue;
      MPI_Request r;
      check(MPI_Irecv(answers[static_cast<size_t>(q)].data(), 2, MPI_UINT64_T, q, kTagReply, ctl_, &r),
            "probe MPI_Irecv");
      reqs.push_back(r);
      peer_of.push_back(q);
      check(MPI_Isend(&question, 1, MPI_UINT64_T, q, kTagProbe, ctl_, &r), "probe MPI_Isend");
      asks.push_back(r);
    }
    const Clock::time_point deadline = Clock::now() + std::min<std::chrono::milliseconds>(timeout_, 1000ms);
    poll(
        [&] {
          bool all = true;
          for (size_t i = 0; i < reqs.size(); ++i) {
            if (reqs[i] == MPI_REQUEST_NULL) continue;
            if (test_all(&reqs[i], 1, "probe MPI_Test")) {
              PeerState& s = states[static_cast<size_t>(peer_of[i])];
              s.answered = true;
              s.seq = answers[static_cast<size_t>(peer_of[i])][0];
              s.kind = answers[static_cast<size_t>(peer_of[i])][1];
            } else {
              all = false;
            }
          }
          return all;
        },
        deadline, true);
    // The job ends right after this; the unanswered requests die with it.
    return states;
  }

  std::string describe(int q, const PeerState& s) const {
    if (!s.answered) {
      return cat("rank ", q,
                 " did not answer: it is outside every operation of this communicator (computing, stalled or gone)");
    }
    const char* name =
        s.kind < static_cast<uint64_t>(kCollectiveKinds) ? collective_name(static_cast<Collective>(s.kind)) : "unknown";
    if (s.seq == 0) return cat("rank ", q, " has not started any operation");
    return cat("rank ", q, " is in ", name, " #", s.seq);
  }

  // A collective's deadline passed: names the ranks behind or silent, then ends the job.
  [[noreturn]] void collective_timed_out() {
    const std::vector<PeerState> states = probe_peers();
    std::string missing, details;
    for (int q = 0; q < size_; ++q) {
      if (q == rank_) continue;
      const PeerState& s = states[static_cast<size_t>(q)];
      if (!s.answered || s.seq < seq_) missing += cat(missing.empty() ? "" : ", ", q);
      details += cat(details.empty() ? "" : "; ", describe(q, s));
    }
    std::string head = timeout_head();
    head += missing.empty() ? std::string("every rank arrived but the operation did not complete")
                            : cat("rank(s) ", missing, " did not arrive");
    fatal(cat(head, " (", details, ")"));
  }

  // A point-to-point deadline passed: reports what `peer` is doing, then ends the job.
  [[noreturn]] void deadline_passed(const std::string& head, int peer) {
    const std::vector<PeerState> states = probe_peers();
    fatal(cat(head, " (", describe(peer, states[static_cast<size_t>(peer)]), ")"));
  }

  void check(int code, const char* what) {
    if (code != MPI_SUCCESS) {
      fatal(
          cat(what, " failed in ", collective_name(kind_), " #", seq_, " on rank ", rank_, ": ", mpi_error_text(code)));
    }
  }

  // Peers may be left inside an operation that will never complete: the only
  // way to not hang them is to end the job (documented in mpi_comm.h).
  [[noreturn]] void fatal(const std::string& message) {
    std::fprintf(stderr, "tpinfer mpi: %s\n", message.c_str());
    std::fflush(stderr);
    MPI_Abort(comm_ != MPI_COMM_NULL ? comm_ : MPI_COMM_WORLD, 1);
    std::abort();  // MPI_Abort does not return
  }

  std::shared_ptr<MpiSession> session_;  // first member: finalizes MPI last
  MPI_Comm comm_ = MPI_COMM_NULL;  // collectives and data messages
  MPI_Comm ctl_ = MPI_COMM_NULL;   // probes: "which operation are you in?"
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

}  // namespace

MpiSession::MpiSession() {
  int initialized = 0, finalized = 0;
  MPI_Initialized(&initialized);
  MPI_Finalized(&finalized);
  if (finalized) throw CommError("MPI was already finalized in this process and cannot be initialized again");
  int provided = MPI_THREAD_SINGLE;
  if (!initialized) {
    const int code = MPI_Init_thread(nullptr, nullptr, MPI_THREAD_SERIALIZED, &provided);
    if (code != MPI_SUCCESS) throw CommError(cat("MPI_Init_thread failed: ", mpi_error_text(code)));
    owns_ = true;
  } else {
    MPI_Query_thread(&provided);
  }
  if (provided < MPI_THREAD_FUNNELED) {
    if (owns_) MPI_Finalize();
    throw CommError(cat("MPI provides thread level ", provided, "; tpinfer needs at least MPI_THREAD_FUNNELED"));
  }
}

MpiSession::~MpiSession() {
  if (owns_) MPI_Finalize();
}

int MpiSession::world_rank() const {
  int r = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &r);
  return r;
}

int MpiSession::world_size() const {
  int n = 0;
  MPI_Comm_size(MPI_COMM_WORLD, &n);
  return n;
}

std::unique_ptr<Communicator> make_mpi_communicator(std::chrono::milliseconds timeout) {
  int initialized = 0;
  MPI_Initialized(&initialized);
  std::shared_ptr<MpiSession> session;
  if (!initialized) session = std::make_shared<MpiSession>();
  return std::make_unique<MpiCommunicator>(MPI_COMM_WORLD, timeout, std::move(session));
}

std::unique_ptr<Communicator> make_mpi_split_communicator(int color, int key, std::chrono::milliseconds timeout) {
  int initialized = 0;
  MPI_Initialized(&initialized);
  if (!initialized) throw CommError("make_mpi_split_communicator: MPI is not initialized");
  MPI_Comm split = MPI_COMM_NULL;
  const int code = MPI_Comm_split(MPI_COMM_WORLD, color, key, &split);
  if (code != MPI_SUCCESS) throw CommError(cat("MPI_Comm_split failed: ", mpi_error_text(code)));
  // The communicator works on its own duplicate; this one is not needed after.
  auto comm = std::make_unique<MpiCommunicator>(split, timeout, nullptr);
  MPI_Comm_free(&split);
  return comm;
}

std::unique_ptr<Communicator> make_mpi_communicator(MPI_Comm comm, std::chrono::milliseconds timeout) {
  return std::make_unique<MpiCommunicator>(comm, timeout, nullptr);
}

}  // namespace tpinfer
