// Megatron-LM parallel layers: each holds a rank's slice of its weights (as the
// ShardPlan says) and does the communication the split needs, so a model built
// from them reads like the architecture, with no `if (rank == ...)` in it.
//
//   ColumnParallelLinear   y_local = x W_r^T (+ b_r)        input replicated, no comm
//   RowParallelLinear      y = all_reduce(x_r W_r^T)        input split by the same ranges
//   VocabParallelEmbedding x = all_reduce(rows of E_r)      out-of-range ids give zeros
//   ParallelLMHead         logits = all_gather(x W_r^T)     every rank gets the full vocab
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "formats/model_source.h"
#include "parallel/rank_context.h"
#include "parallel/shard_plan.h"
#include "parallel/sharded_tensor.h"

namespace tpinfer {

class ColumnParallelLinear {
 public:
  ColumnParallelLinear() = default;
  // `names` are fused row-wise in order (e.g. {gate, up}); `bias_names` are the
  // matching biases, or empty.
  ColumnParallelLinear(const ModelSource& src, const ShardPlan& plan, int rank, const std::vector<std::string>& names,
                       const std::vector<std::string>& bias_names = {});
  // x: [n, in]; y: [n, out_features()].
  void forward(RankContext& ctx, const float* x, int64_t n, float* y) const;
  int64_t out_features() const { return w_.rows(); }
  uint64_t weight_bytes() const { return w_.bytes() + bias_.size() * sizeof(float); }

 private:
  ShardedTensor w_;
  std::vector<float> bias_;
};

class RowParallelLinear {
 public:
  RowParallelLinear() = default;
  RowParallelLinear(const ModelSource& src, const ShardPlan& plan, int rank, const std::string& name);
  // x: [n, in_features()] (the rank's slice of the input); y: [n, out], summed
  // over ranks (one all-reduce).
  void forward(RankContext& ctx, const float* x, int64_t n, float* y) const;
  int64_t in_features() const { return w_.cols(); }
  int64_t out_features() const { return w_.rows(); }
  uint64_t weight_bytes() const { return w_.bytes(); }

 private:
  ShardedTensor w_;
};

class VocabParallelEmbedding {
 public:
  VocabParallelEmbedding() = default;
  VocabParallelEmbedding(const ModelSource& src, const ShardPlan& plan, int rank, const std::string& name);
  // out: [n, hidden]. Ids outside [0, vocab) raise Error.
  void forward(RankContext& ctx, const int32_t* ids, int64_t n, float* out) const;
  uint64_t weight_bytes() const { return w_.bytes(); }

 private:
  ShardedTensor w_;
  Range range_;
  int64_t vocab_ = 0;
};

class ParallelLMHead {
 public:
  ParallelLMHead() = default;
  ParallelLMHead(const ModelSource& src, const ShardPlan& plan, int rank, const std::string& name);
  // x: [n, hidden]; logits: [n, vocab] on every rank (one all-gather).
  void forward(RankContext& ctx, const float* x, int64_t n, float* logits);
  uint64_t weight_bytes() const { return w_.bytes(); }

 private:
  ShardedTensor w_;
  std::vector<Range> ranges_;  // every rank's vocabulary range
  int64_t vocab_ = 0;
  std::vector<float> local_, gathered_;
};

}  // namespace tpinfer
