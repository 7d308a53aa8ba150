#include "engine/comm_summary.h"

#include <algorithm>

namespace tpinfer {
namespace {

CollectiveSummary summarize_counter(const CollectiveCounter& c, const char* name) {
  CollectiveSummary s;
  s.name = name;
  s.calls = c.calls;
  s.bytes = c.bytes;
  s.seconds = static_cast<double>(c.nanos) / 1e9;
  s.wait_seconds = static_cast<double>(c.wait_nanos) / 1e9;
  return s;
}

}  // namespace

CommSummary summarize_comm(const CommStats& stats, double seconds, int64_t tokens,
                           const std::vector<Engine::RankCollectives>& ranks) {
  CommSummary out;
  out.total = summarize_counter(stats.total(), "total");
  for (int k = 0; k < kCollectiveKinds; ++k) {
    const auto kind = static_cast<Collective>(k);
    out.by_collective[static_cast<size_t>(k)] = summarize_counter(stats[kind], collective_name(kind));
  }
  if (seconds > 0) {
    out.share = out.total.seconds / seconds;
    out.wait_share = out.total.wait_seconds / seconds;
    out.link_share = out.share - out.wait_share;
  }
  out.critical_share = critical_comm_share(ranks, out.total.seconds, seconds);
  for (const Engine::RankCollectives& r : ranks) {
    out.rank_seconds.push_back(r.seconds);
    out.rank_share.push_back(seconds > 0 ? r.seconds / seconds : 0.0);
    out.rank_wait_share.push_back(seconds > 0 ? r.wait_seconds / seconds : 0.0);
  }
  if (tokens > 0) {
    out.bytes_per_token = static_cast<double>(out.total.bytes) / static_cast<double>(tokens);
    out.all_reduces_per_token = static_cast<double>(stats[Collective::AllReduce].calls) / static_cast<double>(tokens);
  }
  return out;
}

double critical_comm_share(const std::vector<Engine::RankCollectives>& ranks, double driver_collective_seconds,
                           double seconds) {
  if (seconds <= 0) return 0;
  double least = driver_collective_seconds;
  for (const Engine::RankCollectives& r : ranks) least = std::min(least, r.seconds);
  return least / seconds;
}

}  // namespace tpinfer
