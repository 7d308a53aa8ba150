#include "server/metrics.h"

#include <algorithm>
#include <cstdio>

#include "engine/comm_summary.h"

namespace tpinfer::server {

namespace {

std::string num(double v) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%.17g", v);
  return buf;
}

void header(std::string& out, const std::string& name, const char* type, const char* help) {
  out += "# HELP " + name + " " + help + "\n";
  out += "# TYPE " + name + " " + type + "\n";
}

void sample(std::string& out, const std::string& name, double v) { out += name + " " + num(v) + "\n"; }

constexpr const char* kEndpoints[] = {"/v1/completions", "/v1/chat/completions", "/v1/models", "/health",
                                      "/metrics", "/tokenize", "/detokenize"};

}  // namespace

std::string escape_label(std::string_view v) {
  std::string out;
  for (char c : v) {
    if (c == '\\') out += "\\\\";
    else if (c == '"') out += "\\\"";
    else if (c == '\n') out += "\\n";
    else out += c;
  }
  return out;
}

Histogram::Histogram(std::vector<double> bounds) : bounds_(std::move(bounds)), buckets_(bounds_.size() + 1, 0) {
  std::sort(bounds_.begin(), bounds_.end());
}

void Histogram::observe(double v) {
  const size_t i = static_cast<size_t>(std::lower_bound(bounds_.begin(), bounds_.end(), v) - bounds_.begin());
  buckets_[i] += 1;
  sum_ += v;
  count_ += 1;
}

void Histogram::render(std::string& out, const std::string& name) const {
  uint64_t cumulative = 0;
  for (size_t i = 0; i < bounds_.size(); ++i) {
    cumulative += buckets_[i];
    out += name + "_bucket{le=\"" + num(bounds_[i]) + "\"} " + std::to_string(cumulative) + "\n";
  }
  cumulative += buckets_.back();
  out += name + "_bucket{le=\"+Inf\"} " + std::to_string(cumulative) + "\n";
  out += name + "_sum " + num(sum_) + "\n";
  out += name + "_count " + std::to_string(count_) + "\n";
}

ServerMetrics::ServerMetrics()
    : ttft_({0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0,
             80.0}),
      itl_({0.001, 0.0025, 0.005, 0.01, 0.015, 0.02, 0.025, 0.03, 0.04, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5,
            0.75, 1.0, 2.5, 5.0}),
      e2e_({0.1, 0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0, 240.0,
            480.0}) {}

void ServerMetrics::count_request(std::string_view path, int status) {
  std::string endpoint = "other";
  for (const char* e : kEndpoints) {
    if (path == e) endpoint = e;
  }
  std::lock_guard<std::mutex> lock(mutex_);
  requests_[{endpoint, status}] += 1;
}

void ServerMetrics::count_cancelled() {
  std::lock_guard<std::mutex> lock(mutex_);
  cancelled_ += 1;
}

void ServerMetrics::observe_ttft(double seconds) {
  std::lock_guard<std::mutex> lock(mutex_);
  ttft_.observe(seconds);
}

void ServerMetrics::observe_itl(double seconds) {
  std::lock_guard<std::mutex> lock(mutex_);
  itl_.observe(seconds);
}

void ServerMetrics::observe_e2e(double seconds) {
  std::lock_guard<std::mutex> lock(mutex_);
  e2e_.observe(seconds);
}

void ServerMetrics::set_parallel(size_t replica, const ParallelStats& stats) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (parallel_.size() <= replica) parallel_.resize(replica + 1);
  parallel_[replica] = stats;
}

void ServerMetrics::set_expert_load(size_t replica, const std::vector<std::vector<uint64_t>>& load) {
  std::vector<uint64_t> total(load.empty() ? 0 : load[0].size(), 0);
  for (const std::vector<uint64_t>& layer : load) {
    for (size_t e = 0; e < layer.size() && e < total.size(); ++e) total[e] += layer[e];
  }
  std::lock_guard<std::mutex> lock(mutex_);
  if (expert_tokens_.size() <= replica) expert_tokens_.resize(replica + 1);
  expert_tokens_[replica] = std::move(total);
}

std::string ServerMetrics::render(const std::vector<SchedulerMetrics>& replicas) const {
  std::lock_guard<std::mutex> lock(mutex_);
  // The server-wide series sum the replicas.
  SchedulerMetrics s;
  for (const SchedulerMetrics& r : replicas) {
    s.running += r.running;
    s.waiting += r.waiting;
    s.kv_blocks_total += r.kv_blocks_total;
    s.kv_blocks_used += r.kv_blocks_used;
    s.preemptions += r.preemptions;
    s.steps += r.steps;
    s.prompt_tokens += r.prompt_tokens;
    s.generated_tokens += r.generated_tokens;
    s.prefix_cache_blocks += r.prefix_cache_blocks;
    s.prefix_cache_queries += r.prefix_cache_queries;
    s.prefix_cache_hits += r.prefix_cache_hits;
    s.prefix_cache_evictions += r.prefix_cache_evictions;
    s.decode_steps += r.decode_steps;
    s.spec_drafts += r.spec_drafts;
    s.spec_draft_tokens += r.spec_draft_tokens;
    s.spec_accepted_tokens += r.spec_accepted_tokens;
  }
  CommStats driver;  // every replica's driver, both dimensions
  for (const ParallelStats& p : parallel_) {
    driver += p.tp;
    driver += p.pp;
  }
  const CommSummary comm = summarize_comm(driver);
  std::string out;
  header(out, "tpinfer_requests_total", "counter", "HTTP requests by endpoint and status code.");
  for (const auto& [key, count] : requests_) {
    out += "tpinfer_requests_total{endpoint=\"" + escape_label(key.first) + "\",status=\"" +
           std::to_string(key.second) + "\"} " + std::to_string(count) + "\n";
  }
  header(out, "tpinfer_requests_cancelled_total", "counter",
         "Sequences cancelled before they finished (client disconnected).");
  sample(out, "tpinfer_requests_cancelled_total", static_cast<double>(cancelled_));
  header(out, "tpinfer_prompt_tokens_total", "counter", "Prompt tokens prefilled.");
  sample(out, "tpinfer_prompt_tokens_total", static_cast<double>(s.prompt_tokens));
  header(out, "tpinfer_generation_tokens_total", "counter", "Tokens generated.");
  sample(out, "tpinfer_generation_tokens_total", static_cast<double>(s.generated_tokens));

  header(out, "tpinfer_time_to_first_token_seconds", "histogram",
         "Seconds from a sequence's submission to its first generated token.");
  ttft_.render(out, "tpinfer_time_to_first_token_seconds");
  header(out, "tpinfer_inter_token_latency_seconds", "histogram", "Seconds between consecutive tokens of a sequence.");
  itl_.render(out, "tpinfer_inter_token_latency_seconds");
  header(out, "tpinfer_e2e_request_latency_seconds", "histogram",
         "Seconds from a sequence's submission to its end.");
  e2e_.render(out, "tpinfer_e2e_request_latency_seconds");

  header(out, "tpinfer_num_requests_running", "gauge", "Sequences holding KV-cache blocks.");
  sample(out, "tpinfer_num_requests_running", s.running);
  header(out, "tpinfer_num_requests_waiting", "gauge", "Sequences waiting to be scheduled.");
  sample(out, "tpinfer_num_requests_waiting", s.waiting);
  header(out, "tpinfer_kv_cache_used_blocks", "gauge", "KV-cache blocks held by sequences.");
  sample(out, "tpinfer_kv_cache_used_blocks", s.kv_blocks_used);
  header(out, "tpinfer_kv_cache_capacity_blocks", "gauge", "KV-cache blocks in all.");
  sample(out, "tpinfer_kv_cache_capacity_blocks", s.kv_blocks_total);
  header(out, "tpinfer_kv_cache_usage_ratio", "gauge", "Fraction of the KV-cache blocks in use.");
  sample(out, "tpinfer_kv_cache_usage_ratio",
         s.kv_blocks_total > 0 ? static_cast<double>(s.kv_blocks_used) / s.kv_blocks_total : 0.0);
  header(out, "tpinfer_num_preemptions_total", "counter",
         "Sequences preempted (KV blocks freed, recomputed later) when the cache ran out.");
  sample(out, "tpinfer_num_preemptions_total", static_cast<double>(s.preemptions));
  header(out, "tpinfer_scheduler_steps_total", "counter", "Engine steps run by the scheduler.");
  sample(out, "tpinfer_scheduler_steps_total", static_cast<double>(s.steps));
  header(out, "tpinfer_prefix_cache_queries_total", "counter",
         "Tokens of sequences looked up in the prefix cache before their prefill.");
  sample(out, "tpinfer_prefix_cache_queries_total", static_cast<double>(s.prefix_cache_queries));
  header(out, "tpinfer_prefix_cache_hits_total", "counter",
         "Of tpinfer_prefix_cache_queries_total, tokens found in the cache (their K/V not computed again).");
  sample(out, "tpinfer_prefix_cache_hits_total", static_cast<double>(s.prefix_cache_hits));
  header(out, "tpinfer_prefix_cache_blocks", "gauge",
         "KV-cache blocks in the prefix cache, held by sequences or kept for reuse.");
  sample(out, "tpinfer_prefix_cache_blocks", s.prefix_cache_blocks);
  header(out, "tpinfer_prefix_cache_evictions_total", "counter",
         "Cached blocks no sequence held, evicted (least recently used first) to make room.");
  sample(out, "tpinfer_prefix_cache_evictions_total", static_cast<double>(s.prefix_cache_evictions));
  // Speculative decoding (vLLM's spec_decode series): a sequence step yields
  // one token plus the guesses accepted in it.
  header(out, "tpinfer_sequence_steps_total", "counter",
         "Steps in which a sequence got logits and took tokens (one per sequence per engine step).");
  sample(out, "tpinfer_sequence_steps_total", static_cast<double>(s.decode_steps));
  header(out, "tpinfer_spec_decode_num_drafts_total", "counter", "Sequence steps that checked guesses.");
  sample(out, "tpinfer_spec_decode_num_drafts_total", static_cast<double>(s.spec_drafts));
  header(out, "tpinfer_spec_decode_num_draft_tokens_total", "counter", "Guessed tokens checked by the target model.");
  sample(out, "tpinfer_spec_decode_num_draft_tokens_total", static_cast<double>(s.spec_draft_tokens));
  header(out, "tpinfer_spec_decode_num_accepted_tokens_total", "counter", "Of the guessed tokens, those accepted.");
  sample(out, "tpinfer_spec_decode_num_accepted_tokens_total", static_cast<double>(s.spec_accepted_tokens));
  header(out, "tpinfer_spec_decode_acceptance_rate", "gauge",
         "Accepted over guessed tokens since the start (0 without guesses).");
  sample(out, "tpinfer_spec_decode_acceptance_rate",
         s.spec_draft_tokens > 0 ? static_cast<double>(s.spec_accepted_tokens) / s.spec_draft_tokens : 0.0);
  header(out, "tpinfer_spec_decode_tokens_per_forward", "gauge",
         "Tokens a sequence took per target forward since the start: 1 + accepted guesses per step (1 without "
         "speculation).");
  sample(out, "tpinfer_spec_decode_tokens_per_forward",
         s.decode_steps > 0 ? static_cast<double>(s.decode_steps + s.spec_accepted_tokens) / s.decode_steps : 0.0);

  header(out, "tpinfer_collective_calls_total", "counter", "Collective operations of the driver rank, by kind.");
  for (const CollectiveSummary& c : comm.by_collective) {
    out += std::string("tpinfer_collective_calls_total{collective=\"") + c.name + "\"} " + std::to_string(c.calls) + "\n";
  }
  header(out, "tpinfer_collective_bytes_total", "counter", "Bytes the driver rank moved in collectives, by kind.");
  for (const CollectiveSummary& c : comm.by_collective) {
    out += std::string("tpinfer_collective_bytes_total{collective=\"") + c.name + "\"} " + std::to_string(c.bytes) + "\n";
  }
  header(out, "tpinfer_collective_seconds_total", "counter",
         "Seconds the driver rank spent in collectives (waiting included), by kind.");
  for (const CollectiveSummary& c : comm.by_collective) {
    out += std::string("tpinfer_collective_seconds_total{collective=\"") + c.name + "\"} " + num(c.seconds) + "\n";
  }
  header(out, "tpinfer_collective_wait_seconds_total", "counter",
         "Of tpinfer_collective_seconds_total: seconds the driver rank waited for the last rank to arrive (load "
         "imbalance, not link time), by kind; 0 where the back end cannot tell (device communicators).");
  for (const CollectiveSummary& c : comm.by_collective) {
    out += std::string("tpinfer_collective_wait_seconds_total{collective=\"") + c.name + "\"} " +
           num(c.wait_seconds) + "\n";
  }
  render_replicas(out, replicas);
  std::vector<uint64_t> experts;  // summed over replicas
  for (const std::vector<uint64_t>& r : expert_tokens_) {
    if (experts.size() < r.size()) experts.resize(r.size(), 0);
    for (size_t e = 0; e < r.size(); ++e) experts[e] += r[e];
  }
  if (!experts.empty()) {
    header(out, "tpinfer_expert_tokens_total", "counter",
           "Tokens routed to each expert of the mixture-of-experts layers, summed over layers.");
    for (size_t e = 0; e < experts.size(); ++e) {
      out += "tpinfer_expert_tokens_total{expert=\"" + std::to_string(e) + "\"} " + std::to_string(experts[e]) + "\n";
    }
  }
  return out;
}

void ServerMetrics::render_replicas(std::string& out, const std::vector<SchedulerMetrics>& replicas) const {
  auto label = [](size_t r) { return "{replica=\"" + std::to_string(r) + "\""; };
  auto per_replica = [&](const char* name, const char* type, const char* help, auto value) {
    header(out, name, type, help);
    for (size_t r = 0; r < replicas.size(); ++r) {
      out += std::string(name) + label(r) + "} " + num(static_cast<double>(value(replicas[r]))) + "\n";
    }
  };
  per_replica("tpinfer_replica_requests_running", "gauge", "Sequences holding KV-cache blocks, per replica.",
              [](const SchedulerMetrics& m) { return m.running; });
  per_replica("tpinfer_replica_requests_waiting", "gauge", "Sequences waiting to be scheduled, per replica.",
              [](const SchedulerMetrics& m) { return m.waiting; });
  per_replica("tpinfer_replica_kv_cache_used_blocks", "gauge", "KV-cache blocks held by sequences, per replica.",
              [](const SchedulerMetrics& m) { return m.kv_blocks_used; });
  per_replica("tpinfer_replica_generation_tokens_total", "counter", "Tokens generated, per replica.",
              [](const SchedulerMetrics& m) { return m.generated_tokens; });
  per_replica("tpinfer_replica_scheduler_steps_total", "counter", "Batches run by the replica's scheduler.",
              [](const SchedulerMetrics& m) { return m.steps; });
  per_replica("tpinfer_replica_prefix_cache_hits_total", "counter",
              "Tokens found in the replica's prefix cache, per replica.",
              [](const SchedulerMetrics& m) { return m.prefix_cache_hits; });

  struct Dim {
    const char* name;
    const CommStats ParallelStats::*stats;
  };
  const Dim dims[] = {{"tp", &ParallelStats::tp}, {"pp", &ParallelStats::pp}};
  auto per_dim = [&](const char* name, const char* help, auto value) {
    header(out, name, "counter", help);
    for (size_t r = 0; r < parallel_.size(); ++r) {
      for (const Dim& d : dims) {
        out += std::string(name) + label(r) + ",dim=\"" + d.name + "\"} " +
               num(value(summarize_comm(parallel_[r].*d.stats).total)) + "\n";
      }
    }
  };
  per_dim("tpinfer_parallel_calls_total",
          "Communication calls of the replica's driver rank, by parallel dimension (tp: its group's collectives; "
          "pp: sends and receives between pipeline stages).",
          [](const CollectiveSummary& c) { return static_cast<double>(c.calls); });
  per_dim("tpinfer_parallel_bytes_total", "Bytes the replica's driver rank moved, by parallel dimension.",
          [](const CollectiveSummary& c) { return static_cast<double>(c.bytes); });
  per_dim("tpinfer_parallel_seconds_total",
          "Seconds the replica's driver rank spent communicating (waiting included), by parallel dimension.",
          [](const CollectiveSummary& c) { return c.seconds; });

  header(out, "tpinfer_pipeline_stage_busy_seconds_total", "counter",
         "Seconds each pipeline stage's rank 0 spent running micro-batches.");
  for (size_t r = 0; r < parallel_.size(); ++r) {
    const std::vector<double>& busy = parallel_[r].stage_busy_seconds;
    for (size_t st = 0; st < busy.size(); ++st) {
      out += "tpinfer_pipeline_stage_busy_seconds_total" + label(r) + ",stage=\"" + std::to_string(st) + "\"} " +
             num(busy[st]) + "\n";
    }
  }
  header(out, "tpinfer_pipeline_seconds_total", "counter", "Wall seconds with work in the replica's pipeline.");
  for (size_t r = 0; r < parallel_.size(); ++r) {
    out += "tpinfer_pipeline_seconds_total" + label(r) + "} " + num(parallel_[r].pipeline_seconds) + "\n";
  }
  header(out, "tpinfer_pipeline_micro_batches_total", "counter", "Micro-batches through the replica's pipeline.");
  for (size_t r = 0; r < parallel_.size(); ++r) {
    out += "tpinfer_pipeline_micro_batches_total" + label(r) + "} " +
           num(static_cast<double>(parallel_[r].micro_batches)) + "\n";
  }
  header(out, "tpinfer_pipeline_bubble_ratio", "gauge",
         "Share of the stages' time idle while work was in the pipeline, since start "
         "(1 - stage busy seconds / (stages x pipeline seconds)).");
  for (size_t r = 0; r < parallel_.size(); ++r) {
    out += "tpinfer_pipeline_bubble_ratio" + label(r) + "} " + num(parallel_[r].bubble_share()) + "\n";
  }
}

}  // namespace tpinfer::server
