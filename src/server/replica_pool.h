// The data-parallel replicas behind one server: each an Engine (tp x pp ranks
// of its own) with its own Scheduler and KV cache, and the thread that runs
// that scheduler's steps. Every replica must hold the same model, so greedy
// output does not depend on which replica serves a sequence.
//
// submit() sends a sequence to the replica with the fewest unfinished
// sequences (waiting, running or in flight), unless prefix caching is on and
// another replica holds (or is computing) more of its prompt's leading blocks
// while it has at most `prefix_slack()` more unfinished sequences than the
// least loaded: then that one, where the prompt's beginning costs nothing.
// The slack bounds the imbalance that following prefixes may cause (a system
// prompt shared by every request would otherwise pull them all to one
// replica); the n choices of a request follow the first, whose prompt the
// replica is computing. The choice and the submit are one step, so concurrent
// submits balance. A replica's thread sleeps while its
// scheduler is idle and wakes on submit() and cancel(). Between steps it
// copies its engine's parallel counters (communication per dimension, pipeline
// stage times, expert load) into ServerMetrics for /metrics. An engine step
// that throws fails only the sequences of that step; the thread goes on.
//
// Threads: start() once; submit(), cancel() and metrics() from any thread;
// stop() (or the destructor) ends the threads, finishing whatever is left as
// Cancelled, callbacks included.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "engine/engine.h"
#include "engine/scheduler.h"

namespace tpinfer::server {

class ServerMetrics;

// Where a submitted sequence runs.
struct Placement {
  size_t replica = 0;
  uint64_t id = 0;  // in that replica's scheduler
};

class ReplicaPool {
 public:
  // One replica per engine; `options` apply to every scheduler. Throws
  // ConfigError when there is no engine, the engines hold different models, or
  // options.max_model_len is longer than the model's context.
  // `metrics` must outlive the pool.
  // With a draft model (options.speculative.method Draft), `drafts` holds
  // one draft engine per replica, in the order of `engines`.
  ReplicaPool(const std::vector<Engine*>& engines, const SchedulerOptions& options, ServerMetrics& metrics,
              const std::vector<Engine*>& drafts = {});
  ~ReplicaPool();
  ReplicaPool(const ReplicaPool&) = delete;
  ReplicaPool& operator=(const ReplicaPool&) = delete;

  // Starts one scheduler thread per replica.
  void start();
  // Ends the scheduler threads (no-op when not started); idempotent.
  void stop();

  // Submits to the least-loaded replica. Throws what Scheduler::submit throws.
  Placement submit(SequenceSpec spec);
  // Finishes a sequence early; its KV blocks are freed on its replica's next step.
  void cancel(const Placement& where);

  // One per replica, in order.
  std::vector<SchedulerMetrics> metrics() const;
  size_t size() const { return replicas_.size(); }
  // The first replica's engine: tokenizer and configuration, the same for all.
  Engine& engine() const { return *replicas_[0]->engine; }
  // The shortest of the replicas' max_model_len.
  int64_t max_model_len() const { return max_model_len_; }

 private:
  struct Replica {
    Engine* engine = nullptr;
    std::unique_ptr<Scheduler> scheduler;
    std::thread thread;
    std::mutex loop_mutex;
    std::condition_variable loop_cv;
    bool work_pending = false;
    bool stop_loop = false;
  };

  void loop(size_t replica);
  void wake(size_t replica);
  size_t pick(const std::vector<int32_t>& prompt) const;
  int prefix_slack() const;

  ServerMetrics& metrics_;
  std::vector<std::unique_ptr<Replica>> replicas_;
  std::mutex dispatch_mutex_;  // picking a replica and submitting to it, as one step
  int64_t max_model_len_ = 0;
  SchedulerOptions options_;
};

}  // namespace tpinfer::server
