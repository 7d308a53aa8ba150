// What communication cost over a measured window, from a communicator's
// counters (CommStats): totals and each kind of collective in seconds, shares
// of the window, per token, and the critical-path share over the ranks of the
// driver's tensor-parallel group. The one place these figures are derived:
// `run`, `perplexity` (cli/), `bench` (engine/benchmark) and the server's
// /metrics (server/metrics) all print fields of a CommSummary.
#pragma once

#include <array>
#include <cstdint>
#include <vector>

#include "comm/communicator.h"
#include "engine/engine.h"

namespace tpinfer {

// One kind of collective (or all of them) in reporting units.
struct CollectiveSummary {
  const char* name = "total";  // collective_name(), or "total"
  uint64_t calls = 0;
  uint64_t bytes = 0;
  double seconds = 0;       // inside the collectives, waiting included
  double wait_seconds = 0;  // of it: waiting for the last rank to arrive (comm/communicator.h)
};

struct CommSummary {
  CollectiveSummary total;
  std::array<CollectiveSummary, kCollectiveKinds> by_collective;  // [Collective]
  // Shares of the window's seconds (0 for a window of 0 s).
  double share = 0;       // total.seconds
  double wait_share = 0;  // total.wait_seconds
  double link_share = 0;  // share - wait_share: the collectives once every rank was there
  // What communication added on the critical path: the least collective time
  // over the ranks (Engine::tp_rank_collectives()), never more than these
  // counters say; without ranks, the same as share.
  double critical_share = 0;
  std::vector<double> rank_seconds;     // each rank's collective seconds, [tp_rank]
  std::vector<double> rank_share;       // of the window
  std::vector<double> rank_wait_share;  // of it, waiting for the last rank
  // Per token of the window (0 for 0 tokens).
  double bytes_per_token = 0;
  double all_reduces_per_token = 0;
};

// Summarizes `stats` counted over `seconds` of work that handled `tokens`
// tokens; `ranks` are the group's per-rank collective times over the same
// window, when known.
CommSummary summarize_comm(const CommStats& stats, double seconds = 0, int64_t tokens = 0,
                           const std::vector<Engine::RankCollectives>& ranks = {});

// What communication added on the critical path of `seconds` of work: the
// least collective time over the ranks (Engine::tp_rank_collectives()), never
// more than the driver's own counters say (`driver_collective_seconds`; its
// report window ends a header later), as a share of `seconds`; 0 for 0 s.
double critical_comm_share(const std::vector<Engine::RankCollectives>& ranks, double driver_collective_seconds,
                           double seconds);

}  // namespace tpinfer
