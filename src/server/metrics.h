// The server's Prometheus metrics (GET /metrics, text exposition format 0.0.4).
// HTTP threads count requests; the scheduler thread observes latencies and hands
// over a snapshot of the engine's communication counters after every step (the
// engine's own counters may only be read from that thread); render() joins them
// with the scheduler's gauges. All methods are thread-safe.
//
// Names (prefix tpinfer_):
//   requests_total{endpoint,status}           counter
//   prompt_tokens_total, generation_tokens_total  counters (from the scheduler)
//   time_to_first_token_seconds, inter_token_latency_seconds,
//   e2e_request_latency_seconds               histograms
//   num_requests_running, num_requests_waiting gauges
//   kv_cache_blocks_used, kv_cache_blocks_total, kv_cache_usage_ratio  gauges
//   num_preemptions_total, scheduler_steps_total, requests_cancelled_total  counters
//   collective_calls_total{collective}, collective_bytes_total{collective},
//   collective_seconds_total{collective}      counters (driver rank)
//   expert_tokens_total{expert}               counter: tokens routed to each
//                                             expert, summed over layers (MoE only)
#pragma once

#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "comm/communicator.h"
#include "engine/scheduler.h"

namespace tpinfer::server {

// A cumulative histogram with fixed upper bounds (the +Inf bucket is implicit).
class Histogram {
 public:
  explicit Histogram(std::vector<double> bounds);
  void observe(double v);
  // Appends the _bucket, _sum and _count lines of `name`.
  void render(std::string& out, const std::string& name) const;
  uint64_t count() const { return count_; }

 private:
  std::vector<double> bounds_;
  std::vector<uint64_t> buckets_;  // per bound, not cumulative; the last is +Inf
  double sum_ = 0;
  uint64_t count_ = 0;
};

class ServerMetrics {
 public:
  ServerMetrics();

  // Endpoints outside the known paths count as "other" (bounded label values).
  void count_request(std::string_view path, int status);
  void count_cancelled();
  void observe_ttft(double seconds);
  void observe_itl(double seconds);
  void observe_e2e(double seconds);
  void set_comm(const CommStats& stats);
  // The engine's Engine::expert_load() ([layer][expert]); empty for a dense model.
  void set_expert_load(const std::vector<std::vector<uint64_t>>& load);

  std::string render(const SchedulerMetrics& scheduler) const;

 private:
  mutable std::mutex mutex_;
  std::map<std::pair<std::string, int>, uint64_t> requests_;
  uint64_t cancelled_ = 0;
  Histogram ttft_, itl_, e2e_;
  CommStats comm_;
  std::vector<uint64_t> expert_tokens_;  // per expert, summed over layers
};

// Escapes a Prometheus label value (backslash, quote, newline).
std::string escape_label(std::string_view v);

}  // namespace tpinfer::server
