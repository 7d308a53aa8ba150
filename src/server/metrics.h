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
//   kv_cache_used_blocks, kv_cache_capacity_blocks, kv_cache_usage_ratio  gauges
//   num_preemptions_total, scheduler_steps_total, requests_cancelled_total  counters
//   prefix_cache_queries_total, prefix_cache_hits_total  counters: tokens looked
//                                             up in the prefix cache, and found
//   prefix_cache_blocks                       gauge: blocks in the prefix cache
//   prefix_cache_evictions_total              counter: cached blocks evicted
//   collective_calls_total{collective}, collective_bytes_total{collective},
//   collective_seconds_total{collective}      counters (driver ranks, summed
//                                             over replicas; send_recv is the
//                                             traffic between pipeline stages)
// Per data-parallel replica (label replica="0", "1", ...):
//   replica_requests_running, replica_requests_waiting,
//   replica_kv_cache_used_blocks              gauges
//   replica_generation_tokens_total, replica_scheduler_steps_total,
//   replica_prefix_cache_hits_total           counters
//   parallel_calls_total{replica,dim}, parallel_bytes_total{replica,dim},
//   parallel_seconds_total{replica,dim}       counters: the driver's traffic per
//                                             parallel dimension, dim="tp" or "pp"
//   pipeline_stage_busy_seconds_total{replica,stage}  counter: forward time of
//                                             the stage's rank 0
//   pipeline_seconds_total{replica}           counter: wall time with work in
//                                             the pipeline
//   pipeline_micro_batches_total{replica}     counter
//   pipeline_bubble_ratio{replica}            gauge: 1 - stage busy time /
//                                             (stages x pipeline time), since start
//   expert_tokens_total{expert}               counter: tokens routed to each
//                                             expert, summed over layers and
//                                             replicas (MoE only)
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
  // The replica's engine counters (Engine::parallel_stats()), from its
  // scheduler thread.
  void set_parallel(size_t replica, const ParallelStats& stats);
  // The replica's Engine::expert_load() ([layer][expert]; empty for a dense
  // model), from its scheduler thread.
  void set_expert_load(size_t replica, const std::vector<std::vector<uint64_t>>& load);

  // One SchedulerMetrics per replica.
  std::string render(const std::vector<SchedulerMetrics>& replicas) const;
  std::string render(const SchedulerMetrics& one) const { return render(std::vector<SchedulerMetrics>{one}); }

 private:
  mutable std::mutex mutex_;
  std::map<std::pair<std::string, int>, uint64_t> requests_;
  uint64_t cancelled_ = 0;
  Histogram ttft_, itl_, e2e_;
  void render_replicas(std::string& out, const std::vector<SchedulerMetrics>& replicas) const;

  std::vector<ParallelStats> parallel_;  // per replica
  std::vector<std::vector<uint64_t>> expert_tokens_;  // per replica: per expert, summed over layers
};

// Escapes a Prometheus label value (backslash, quote, newline).
std::string escape_label(std::string_view v);

}  // namespace tpinfer::server
