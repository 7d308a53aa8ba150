// Megatron-LM parallel layers: each holds a rank's slice of its weights (as the
// ShardPlan says) on the rank's Device and does the communication the split
// needs, so a model built from them reads like the architecture, with no
// `if (rank == ...)` in it. Written once over parallel/device.h: the same code
// runs on a CPU and a GPU.
//
//   ColumnParallelLinear   y_local = x W_r^T (+ b_r)        input replicated, no comm
//   RowParallelLinear      y = all_reduce(x_r W_r^T)        input split by the same ranges
//   VocabParallelEmbedding x = all_reduce(rows of E_r)      out-of-range ids give zeros
//   ParallelLMHead         logits = all_gather(x W_r^T)     every rank gets the full vocab
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "formats/model_source.h"
#include "parallel/device.h"
#include "parallel/shard_plan.h"
#include "parallel/sharded_tensor.h"

namespace tpinfer {

// The rank's slice of `names` (rows of each, stacked in order), on `dev`.
std::unique_ptr<DeviceWeight> load_weight(Device& dev, const ModelSource& src, const ShardPlan& plan, int rank,
                                          const std::vector<std::string>& names, WeightUse use = WeightUse::Matmul);

class ColumnParallelLinear {
 public:
  ColumnParallelLinear() = default;
  // `names` are fused row-wise in order (e.g. {gate, up}); `bias_names` are the
  // matching biases, or empty.
  ColumnParallelLinear(Device& dev, const ModelSource& src, const ShardPlan& plan, int rank,
                       const std::vector<std::string>& names, const std::vector<std::string>& bias_names = {});
  // x: [n, in]; y: [n, out_features()].
  void forward(Device& dev, const float* x, int64_t n, float* y) const;
  int64_t out_features() const { return w_ ? w_->rows() : 0; }
  uint64_t weight_bytes() const { return (w_ ? w_->bytes() : 0) + bias_.bytes(); }

 private:
  std::unique_ptr<DeviceWeight> w_;
  DeviceMemory bias_;
};

class RowParallelLinear {
 public:
  RowParallelLinear() = default;
  RowParallelLinear(Device& dev, const ModelSource& src, const ShardPlan& plan, int rank, const std::string& name);
  // x: [n, in_features()] (the rank's slice of the input); y: [n, out], summed
  // over ranks (one all-reduce). A rank with no share of the input adds zeros.
  void forward(Device& dev, const float* x, int64_t n, float* y) const;
  int64_t in_features() const { return w_ ? w_->cols() : 0; }
  int64_t out_features() const { return w_ ? w_->rows() : 0; }
  uint64_t weight_bytes() const { return w_ ? w_->bytes() : 0; }

 private:
  std::unique_ptr<DeviceWeight> w_;
};

class VocabParallelEmbedding {
 public:
  VocabParallelEmbedding() = default;
  // `table`: the rank's rows [range) of a [vocab, hidden] table, readable as rows.
  VocabParallelEmbedding(std::shared_ptr<const DeviceWeight> table, Range range, int64_t vocab)
      : w_(std::move(table)), range_(range), vocab_(vocab) {}
  // out: [n, hidden] for the step's n rows. Ids outside [0, vocab) raise Error.
  void forward(Device& dev, int64_t n, float* out) const;
  uint64_t weight_bytes() const { return w_ ? w_->bytes() : 0; }

 private:
  std::shared_ptr<const DeviceWeight> w_;
  Range range_;
  int64_t vocab_ = 0;
};

class ParallelLMHead {
 public:
  ParallelLMHead() = default;
  // `w`: the rank's rows of [vocab, hidden]; `ranges`: every rank's rows.
  ParallelLMHead(std::shared_ptr<const DeviceWeight> w, std::vector<Range> ranges, int64_t vocab)
      : w_(std::move(w)), ranges_(std::move(ranges)), vocab_(vocab) {}
  // x: [n, hidden]; afterwards every rank holds all ranks' logits of the n
  // rows on the device (one all-gather).
  void forward(Device& dev, const float* x, int64_t n);
  // The first `rows` of the last forward's n rows into logits [rows, vocab]
  // on the host (complete after the device's end_step()).
  void download(Device& dev, int64_t rows, float* logits) const;
  uint64_t weight_bytes() const { return w_ ? w_->bytes() : 0; }

 private:
  std::shared_ptr<const DeviceWeight> w_;
  std::vector<Range> ranges_;  // every rank's vocabulary range
  int64_t vocab_ = 0;
  int64_t n_ = 0;  // rows of the last forward
  DeviceMemory local_, gathered_;
};

}  // namespace tpinfer
