// The mpi back end (mpi_comm.h): the session, the factories, and the
// communicator's creation and operations: each collective as the messages it
// posts (our own all-reduce, pairwise all-gather and all-to-all, broadcast in
// pieces), buffered sends and probed receives. Arrival stamps are in
// mpi_comm_stamps.cc, waiting and deadlines in mpi_comm_deadline.cc.

#include <algorithm>
#include <array>
#include <climits>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "comm/mpi_comm_internal.h"  // mpi_comm.h, after mpi.h (so with its MPI_Comm overload)
#include "core/error.h"

namespace tpinfer {
namespace {

// Up to this size an all-reduce among more than two ranks sends every buffer to
// every peer (one hop, latency-bound); above it, reduce-scatter + all-gather.
constexpr size_t kExchangeMaxBytes = size_t{32} << 10;

// Largest piece of an all-reduce done at once (16 MiB): bounds the scratch
// memory; the per-piece cost is negligible at that size.
constexpr size_t kMaxFloatsPerCall = size_t{1} << 22;
// Largest piece of a broadcast handed to one MPI call (counts are `int`).
constexpr size_t kMaxBytesPerCall = size_t{1} << 30;

bool overlaps(const void* a, size_t a_bytes, const void* b, size_t b_bytes) {
  const auto pa = reinterpret_cast<uintptr_t>(a), pb = reinterpret_cast<uintptr_t>(b);
  return a_bytes > 0 && b_bytes > 0 && pa < pb + b_bytes && pb < pa + a_bytes;
}

}  // namespace

std::string mpi_error_text(int code) {
  std::array<char, MPI_MAX_ERROR_STRING> text{};
  int len = 0;
  if (MPI_Error_string(code, text.data(), &len) != MPI_SUCCESS) return cat("MPI error ", code);
  return std::string(text.data(), static_cast<size_t>(len));
}

MpiCommunicator::MpiCommunicator(MPI_Comm comm, std::chrono::milliseconds timeout, std::shared_ptr<MpiSession> session)
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

MpiCommunicator::~MpiCommunicator() {
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

void MpiCommunicator::all_reduce_sum(float* data, size_t n) {
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

void MpiCommunicator::all_gather(const float* send, std::span<const size_t> counts, float* recv) {
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

void MpiCommunicator::all_gather_bytes(const void* send, size_t bytes, void* recv) {
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

void MpiCommunicator::all_to_all(const void* send, size_t bytes, void* recv) {
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

void MpiCommunicator::broadcast(void* data, size_t bytes, int root) {
  CollectiveTimer timer(stats_, Collective::Broadcast, bytes);
  begin(Collective::Broadcast);
  check_root(root, "broadcast");
  if (size_ == 1) return;
  do_broadcast(data, bytes, root, /*deadline_applies=*/true);
}

void MpiCommunicator::broadcast_wait(void* data, size_t bytes, int root) {
  CollectiveTimer timer(stats_, Collective::Broadcast, bytes);
  begin(Collective::Broadcast);
  check_root(root, "broadcast_wait");
  if (size_ == 1) return;
  do_broadcast(data, bytes, root, /*deadline_applies=*/rank_ == root);
}

void MpiCommunicator::send(const void* data, size_t bytes, int dst) {
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

void MpiCommunicator::barrier() {
  CollectiveTimer timer(stats_, Collective::Barrier, 0);
  timer.all_wait();
  begin(Collective::Barrier);
  MPI_Request req;
  check(MPI_Ibarrier(comm_, &req), "MPI_Ibarrier");
  wait(req, deadline());
}

// recv_wait waits for the message without deadline; once it has arrived,
// completing it has the deadline like every other operation.
void MpiCommunicator::receive(void* data, size_t bytes, int src, bool deadline_applies) {
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

void MpiCommunicator::check_total(size_t bytes, const char* op) const {
  if (bytes > static_cast<size_t>(INT_MAX)) {
    throw CommError(cat(op, " #", seq_, " on rank ", rank_, ": ", bytes,
                        " bytes exceed what one MPI call can address (", INT_MAX, ")"));
  }
}

const void* MpiCommunicator::stage_if_overlapping(const void* send, size_t send_bytes, const void* recv,
                                                  size_t recv_bytes) {
  if (!overlaps(send, send_bytes, recv, recv_bytes)) return send;
  const auto* p = static_cast<const uint8_t*>(send);
  staging_.assign(p, p + send_bytes);
  return staging_.data();
}

// All-reduce in one hop: every rank sends its whole buffer to every peer and
// sums all of them. Moves (p-1) x bytes per rank: for two ranks as little as
// any algorithm, for more ranks only worth it for small buffers.
void MpiCommunicator::all_reduce_exchange(float* data, size_t len, bool stamped, Clock::time_point deadline) {
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
void MpiCommunicator::all_reduce_scatter_gather(float* data, size_t len, bool stamped, Clock::time_point deadline) {
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

// out[i] = ((0 + src(0)[i]) + src(1)[i]) + ...: the order of the local back
// end, so both back ends and every rank give bit-identical sums.
template <typename Source>
void MpiCommunicator::sum_in_rank_order(float* out, size_t len, Source src) {
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
void MpiCommunicator::post_recv(float* buf, size_t len, int peer, int tag) {
  reqs_.push_back(MPI_REQUEST_NULL);
  check(MPI_Irecv(buf, static_cast<int>(len), MPI_FLOAT, peer, tag, comm_, &reqs_.back()), "MPI_Irecv");
}

void MpiCommunicator::post_send(const float* buf, size_t len, int peer, int tag) {
  reqs_.push_back(MPI_REQUEST_NULL);
  check(MPI_Isend(buf, static_cast<int>(len), MPI_FLOAT, peer, tag, comm_, &reqs_.back()), "MPI_Isend");
}

void MpiCommunicator::do_broadcast(void* data, size_t bytes, int root, bool deadline_applies) {
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
