// Waiting under the deadline: every wait polls its MPI requests, and while it
// polls answers peers' "which operation are you in?" on the control channel
// and retires finished sends. When a deadline passes, the rank asks every peer
// the same question, names the ranks that did not arrive, and ends the job
// (mpi_comm.h, "Who did not arrive").

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "comm/mpi_comm_internal.h"
#include "core/error.h"

namespace tpinfer {

using namespace std::chrono_literals;

void MpiCommunicator::wait_reqs(Clock::time_point deadline) {
  const int count = static_cast<int>(reqs_.size());
  if (!poll([&] { return test_all(reqs_.data(), count, collective_name(kind_)); }, deadline, true)) {
    collective_timed_out();
  }
}

void MpiCommunicator::wait(MPI_Request& req, Clock::time_point deadline) {
  if (!poll([&] { return test_all(&req, 1, collective_name(kind_)); }, deadline, true)) collective_timed_out();
}

bool MpiCommunicator::test_all(MPI_Request* reqs, int n, const char* what) {
  int done = 0;
  check(MPI_Testall(n, reqs, &done, MPI_STATUSES_IGNORE), what);
  return done != 0;
}

// Answers a pending probe and retires finished sends.
void MpiCommunicator::service() {
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

void MpiCommunicator::post_probe_recv() {
  check(MPI_Irecv(&probe_in_, 1, MPI_UINT64_T, MPI_ANY_SOURCE, kTagProbe, ctl_, &probe_req_), "probe MPI_Irecv");
}

void MpiCommunicator::reap(std::vector<std::unique_ptr<PendingSend>>& list) {
  std::erase_if(list, [&](const std::unique_ptr<PendingSend>& s) { return test_all(&s->req, 1, "MPI_Isend"); });
}

// Asks every peer which operation it is in; waits up to min(timeout, 1 s).
std::vector<PeerState> MpiCommunicator::probe_peers() {
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

std::string MpiCommunicator::describe(int q, const PeerState& s) const {
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
void MpiCommunicator::collective_timed_out() {
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
void MpiCommunicator::deadline_passed(const std::string& head, int peer) {
  const std::vector<PeerState> states = probe_peers();
  fatal(cat(head, " (", describe(peer, states[static_cast<size_t>(peer)]), ")"));
}

void MpiCommunicator::check(int code, const char* what) {
  if (code != MPI_SUCCESS) {
    fatal(cat(what, " failed in ", collective_name(kind_), " #", seq_, " on rank ", rank_, ": ", mpi_error_text(code)));
  }
}

// Peers may be left inside an operation that will never complete: the only
// way to not hang them is to end the job (documented in mpi_comm.h).
void MpiCommunicator::fatal(const std::string& message) {
  std::fprintf(stderr, "tpinfer mpi: %s\n", message.c_str());
  std::fflush(stderr);
  MPI_Abort(comm_ != MPI_COMM_NULL ? comm_ : MPI_COMM_WORLD, 1);
  std::abort();  // MPI_Abort does not return
}

}  // namespace tpinfer
