// How a model is split over ranks: the tensor-parallel size, optional uneven
// weights per rank (--tensor-split 3,1), threads per rank and the deadline of
// every collective.
#pragma once

#include <chrono>
#include <vector>

namespace tpinfer {

struct ParallelConfig {
  int tp = 1;
  // Empty: even split. Otherwise tp positive weights; rank r gets a share of the
  // heads, FFN features and vocabulary proportional to tensor_split[r].
  std::vector<double> tensor_split;
  int threads_per_rank = 1;
  std::chrono::milliseconds comm_timeout{60000};
};

}  // namespace tpinfer
