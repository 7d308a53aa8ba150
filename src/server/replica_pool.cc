#include "server/replica_pool.h"

#include <algorithm>
#include <cstdio>

#include "core/error.h"
#include "server/metrics.h"

namespace tpinfer::server {

ReplicaPool::ReplicaPool(const std::vector<Engine*>& engines, const SchedulerOptions& options, ServerMetrics& metrics,
                         const std::vector<Engine*>& drafts)
    : metrics_(metrics), options_(options) {
  if (options.speculative.method == Speculation::Draft && drafts.size() != engines.size()) {
    throw ConfigError(cat("speculative decoding with a draft model needs one draft per replica: ", drafts.size(),
                          " for ", engines.size()));
  }
  if (engines.empty() || engines[0] == nullptr) throw ConfigError("the server needs at least one engine");
  const Engine& first = *engines[0];
  const int context = first.config().max_context;
  if (context > 0 && options.max_model_len > context) {
    throw ConfigError(
        cat("--max-model-len ", options.max_model_len, " is longer than the model's context of ", context, " tokens"));
  }
  for (Engine* e : engines) {
    if (e == nullptr || e->config().vocab != first.config().vocab || e->config().n_layers != first.config().n_layers) {
      throw ConfigError("the replicas of a data-parallel server must hold the same model");
    }
    auto r = std::make_unique<Replica>();
    r->engine = e;
    SchedulerOptions own = options;
    if (own.speculative.method == Speculation::Draft) own.speculative.draft = drafts[replicas_.size()];
    r->scheduler = std::make_unique<Scheduler>(*e, own);
    max_model_len_ = replicas_.empty() ? r->scheduler->options().max_model_len
                                       : std::min<int64_t>(max_model_len_, r->scheduler->options().max_model_len);
    replicas_.push_back(std::move(r));
  }
}

ReplicaPool::~ReplicaPool() { stop(); }

void ReplicaPool::start() {
  for (size_t i = 0; i < replicas_.size(); ++i) {
    replicas_[i]->thread = std::thread([this, i] { loop(i); });
  }
}

void ReplicaPool::stop() {
  for (auto& r : replicas_) {
    if (!r->thread.joinable()) continue;
    {
      std::lock_guard<std::mutex> lock(r->loop_mutex);
      r->stop_loop = true;
    }
    r->loop_cv.notify_all();
    r->thread.join();
  }
}

int ReplicaPool::prefix_slack() const { return std::max(1, options_.max_num_seqs / 8); }

size_t ReplicaPool::pick(const std::vector<int32_t>& prompt) const {
  std::vector<int> load(replicas_.size());
  for (size_t i = 0; i < replicas_.size(); ++i) load[i] = replicas_[i]->scheduler->unfinished();
  const int least = *std::min_element(load.begin(), load.end());
  const bool prefixes = options_.prefix_caching && replicas_.size() > 1;
  // The most prefix blocks within the slack, then the fewest sequences, then the first.
  size_t best = 0;
  int best_match = -1;
  for (size_t i = 0; i < replicas_.size(); ++i) {
    if (prefixes && load[i] > least + prefix_slack()) continue;
    const int match = prefixes ? replicas_[i]->scheduler->prefix_match(prompt) : 0;
    if (match > best_match || (match == best_match && load[i] < load[best])) {
      best = i;
      best_match = match;
    }
  }
  return best;
}

Placement ReplicaPool::submit(SequenceSpec spec) {
  Placement where;
  {
    std::lock_guard<std::mutex> dispatch(dispatch_mutex_);
    where.replica = pick(spec.prompt);
    where.id = replicas_[where.replica]->scheduler->submit(std::move(spec));
  }
  wake(where.replica);
  return where;
}

void ReplicaPool::cancel(const Placement& where) {
  replicas_[where.replica]->scheduler->cancel(where.id);
  wake(where.replica);
}

std::vector<SchedulerMetrics> ReplicaPool::metrics() const {
  std::vector<SchedulerMetrics> m;
  for (const auto& r : replicas_) m.push_back(r->scheduler->metrics());
  return m;
}

void ReplicaPool::wake(size_t replica) {
  Replica& r = *replicas_[replica];
  {
    std::lock_guard<std::mutex> lock(r.loop_mutex);
    r.work_pending = true;
  }
  r.loop_cv.notify_one();
}

void ReplicaPool::loop(size_t replica) {
  Replica& r = *replicas_[replica];
  for (;;) {
    bool busy = false;
    try {
      busy = r.scheduler->step();
    } catch (const std::exception& e) {
      // The sequences of the failed step got FinishReason::Error; the others go on.
      std::fprintf(stderr, "error: engine step failed (replica %zu): %s\n", replica, e.what());
      busy = true;
    }
    // The engine's counters: this thread, between steps.
    metrics_.set_parallel(replica, r.engine->parallel_stats());
    metrics_.set_expert_load(replica, r.engine->expert_load());
    std::unique_lock<std::mutex> lock(r.loop_mutex);
    if (!busy) r.loop_cv.wait(lock, [&] { return r.work_pending || r.stop_loop; });
    r.work_pending = false;
    if (r.stop_loop) break;
  }
  // Whatever is left (nothing after a drain) ends as cancelled, callbacks included.
  r.scheduler->stop(/*drain=*/false);
  r.scheduler->run();
}

}  // namespace tpinfer::server
