// How a model is split over ranks: the tensor-parallel size, optional uneven
// weights per rank (--tensor-split 3,1), expert parallelism for MoE models,
// threads per rank and the deadline of every collective.
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
  int threads_per_rank = 1;
  std::chrono::milliseconds comm_timeout{60000};
};

}  // namespace tpinfer
