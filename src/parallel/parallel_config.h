// How a model is split over ranks: the tensor-parallel size, optional uneven
// weights per rank (--tensor-split 3,1), expert parallelism for MoE models,
// the pipeline stages (consecutive layers each, --pipeline-parallel-size,
// --pipeline-split), threads per rank and the deadline of every collective.
// One replica holds tp x pp ranks.
#pragma once

#include <chrono>
#include <vector>

namespace tpinfer {

struct ParallelConfig {
  int tp = 1;
  // Empty: even split. Otherwise tp positive weights; rank r gets a share of the
  // heads, FFN features and vocabulary proportional to tensor_split[r].
  std::vector<double> tensor_split;
  // Mixture-of-experts models: whole routed experts live on ranks (apportioned
  // like the heads, by tensor_split when given) instead of every expert being
  // split over all ranks; attention stays tensor-parallel.
  bool expert_parallel = false;
  // Pipeline stages, each a tensor-parallel group of tp ranks holding
  // consecutive layers (parallel/pipeline_plan.h).
  int pp = 1;
  // Empty: layers split evenly. Otherwise pp layer counts summing to the layers.
  std::vector<int> pipeline_split;
  // Micro-batches Engine::step() cuts a batch into so the stages overlap;
  // 0: pp. Has no effect at pp = 1.
  int micro_batches = 0;
  int threads_per_rank = 1;
  std::chrono::milliseconds comm_timeout{60000};
};

}  // namespace tpinfer
