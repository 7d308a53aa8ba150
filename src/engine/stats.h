// What the driver counts of a replica's parallel work besides its
// communicators' own counters: each stage's busy time and the pipeline's wall
// time (hence the bubble), and MoE routing counts per expert. Both arrive
// with the logits of each micro-batch (engine/stage_message.h).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "comm/communicator.h"
#include "formats/model_source.h"
#include "model/rank_model.h"
#include "parallel/pipeline_plan.h"

namespace tpinfer {

// What the driver knows of the replica's parallel work since the last reset.
// Traffic is the driver's own: its tensor-parallel group's collectives (every
// rank of a group moves the same), and its stage-to-stage sends and receives
// (the activations out, the logits back; every tp_rank of a stage sends its
// counterpart the same).
struct ParallelStats {
  CommStats tp;
  bool tp_measures_wait = false;  // tp's wait_nanos are measured (Communicator::measures_wait)
  CommStats pp;
  // Per stage: seconds its rank 0 spent running micro-batches (the forward,
  // its tensor-parallel collectives included).
  std::vector<double> stage_busy_seconds;
  // Wall seconds with at least one micro-batch submitted and not collected.
  double pipeline_seconds = 0;
  uint64_t micro_batches = 0;
  // The share of stage time idle while work was in the pipeline:
  // 1 - sum(stage_busy_seconds) / (stages x pipeline_seconds); 0 when idle.
  double bubble_share() const;
};

// Stage busy time and pipeline wall time, on the driver.
class PipelineTimes {
 public:
  using Clock = std::chrono::steady_clock;

  PipelineTimes() = default;
  explicit PipelineTimes(int stages) : busy_nanos_(static_cast<size_t>(stages), 0) {}
  // A micro-batch enters the pipeline; `in_flight` micro-batches were there already.
  void submitted(int in_flight);
  // Its forward nanoseconds per stage, [stage], as its logits message carried them.
  void add_busy(const std::vector<int64_t>& nanos);
  // A micro-batch's logits reached the driver; `in_flight` are left.
  void collected(int in_flight);
  // Fills stage_busy_seconds, pipeline_seconds and micro_batches.
  void fill(ParallelStats& s, int in_flight) const;
  void reset();

 private:
  std::vector<int64_t> busy_nanos_;
  int64_t pipeline_nanos_ = 0;
  uint64_t micro_batches_ = 0;
  Clock::time_point since_ = Clock::now();
};

// MoE: tokens routed to each expert, [layer][expert]. Every rank of a stage
// routes every token, so each stage's rank counts its own layers; after each
// micro-batch it takes its counts and appends them (int64 words, its layers in
// order) to what the stages before it sent, and the driver adds up what
// arrives with the logits.
class ExpertLoadTally {
 public:
  ExpertLoadTally() = default;
  ExpertLoadTally(const ModelConfig& config, const PipelinePlan& pipeline);
  // The words the first `stages` stages carry (0 for a dense model).
  size_t words(int stages) const;
  // Appends the model's counts to `loads` and resets them.
  void take(RankModel& model, std::vector<int64_t>& loads) const;
  // The driver: adds the counts of every stage.
  void add(const std::vector<int64_t>& loads);
  const std::vector<std::vector<uint64_t>>& counts() const { return counts_; }
  void reset();

 private:
  std::vector<size_t> stage_layers_;  // layers of each stage
  size_t experts_ = 0;
  std::vector<std::vector<uint64_t>> counts_;  // [layer][expert]
};

}  // namespace tpinfer
