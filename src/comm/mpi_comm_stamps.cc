// Waiting vs link (mpi_comm.h): the arrival stamp every message of a group
// collective carries (inline in a struct datatype, or in a message of its own
// above 64 KiB), the latest arrival of the group in this rank's clock, and the
// clock offsets to each peer that make peers' stamps comparable.

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdint>
#include <limits>
#include <vector>

#include "comm/mpi_comm_internal.h"
#include "core/error.h"

namespace tpinfer {
namespace {

using Clock = std::chrono::steady_clock;

// Up to this payload a message carries its arrival stamp inline (one message,
// a struct datatype); above it, in an 8-byte message of its own (post_send_stamped).
constexpr size_t kInlineStampMaxBytes = size_t{64} << 10;

// Round trips rank 0 makes with each peer to estimate its clock offset.
constexpr int kClockSamples = 8;

// Nanoseconds since the steady clock's epoch: the unit of arrival stamps
// (CollectiveTimer::start_nanos()).
int64_t now_nanos() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch()).count();
}

}  // namespace

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
void MpiCommunicator::post_send_stamped(const void* buf, size_t count, MPI_Datatype type, size_t type_bytes, int peer,
                                        int tag) {
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
void MpiCommunicator::post_recv_stamped(void* buf, size_t count, MPI_Datatype type, size_t type_bytes, int peer,
                                        int tag) {
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
MPI_Datatype MpiCommunicator::stamped_type(const void* buf, size_t count, MPI_Datatype type, const int64_t* stamp) {
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

// The latest arrival of the group in this rank's clock: this rank's own
// (my_stamp_) and every peer's stamp of the collective just completed,
// moved from the peer's clock to this one with the offsets measured last
// (at creation, or by resynchronize_clocks()).
int64_t MpiCommunicator::latest_arrival() const {
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
void MpiCommunicator::measure_clock_offsets() {
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

}  // namespace tpinfer
