#include "engine/stats.h"

#include <algorithm>

namespace tpinfer {
namespace {

int64_t nanos_since(PipelineTimes::Clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(PipelineTimes::Clock::now() - t).count();
}

}  // namespace

double ParallelStats::bubble_share() const {
  if (pipeline_seconds <= 0 || stage_busy_seconds.empty()) return 0;
  double busy = 0;
  for (double b : stage_busy_seconds) busy += b;
  return std::max(0.0, 1.0 - busy / (static_cast<double>(stage_busy_seconds.size()) * pipeline_seconds));
}

void PipelineTimes::submitted(int in_flight) {
  if (in_flight == 0) since_ = Clock::now();
}

void PipelineTimes::add_busy(const std::vector<int64_t>& nanos) {
  for (size_t s = 0; s < nanos.size() && s < busy_nanos_.size(); ++s) busy_nanos_[s] += nanos[s];
}

void PipelineTimes::collected(int in_flight) {
  micro_batches_ += 1;
  if (in_flight == 0) pipeline_nanos_ += nanos_since(since_);
}

void PipelineTimes::fill(ParallelStats& s, int in_flight) const {
  s.stage_busy_seconds.clear();
  for (int64_t ns : busy_nanos_) s.stage_busy_seconds.push_back(static_cast<double>(ns) / 1e9);
  int64_t pipeline = pipeline_nanos_;
  if (in_flight > 0) pipeline += nanos_since(since_);
  s.pipeline_seconds = static_cast<double>(pipeline) / 1e9;
  s.micro_batches = micro_batches_;
}

void PipelineTimes::reset() {
  std::fill(busy_nanos_.begin(), busy_nanos_.end(), 0);
  pipeline_nanos_ = 0;
  micro_batches_ = 0;
  since_ = Clock::now();
}

ExpertLoadTally::ExpertLoadTally(const ModelConfig& config, const PipelinePlan& pipeline) {
  if (!config.is_moe()) return;
  experts_ = static_cast<size_t>(config.n_experts);
  for (int s = 0; s < pipeline.stages(); ++s) stage_layers_.push_back(static_cast<size_t>(pipeline.stage(s).size()));
  counts_.assign(static_cast<size_t>(config.n_layers), std::vector<uint64_t>(experts_, 0));
}

size_t ExpertLoadTally::words(int stages) const {
  size_t layers = 0;
  for (size_t s = 0; s < stage_layers_.size() && s < static_cast<size_t>(std::max(stages, 0)); ++s) {
    layers += stage_layers_[s];
  }
  return layers * experts_;
}

void ExpertLoadTally::take(RankModel& model, std::vector<int64_t>& loads) const {
  if (experts_ == 0) return;
  for (const std::vector<uint64_t>& layer : model.expert_load()) {
    for (uint64_t n : layer) loads.push_back(static_cast<int64_t>(n));
  }
  model.reset_expert_load();
}

void ExpertLoadTally::add(const std::vector<int64_t>& loads) {
  for (size_t i = 0; i < loads.size() && experts_ > 0 && i / experts_ < counts_.size(); ++i) {
    counts_[i / experts_][i % experts_] += static_cast<uint64_t>(loads[i]);
  }
}

void ExpertLoadTally::reset() {
  for (std::vector<uint64_t>& layer : counts_) std::fill(layer.begin(), layer.end(), 0);
}

}  // namespace tpinfer
