// Megatron-LM parallel layers: each holds a rank's slice of its weights (as the
// ShardPlan says) on the rank's Device and does the communication the split
// needs, so a model built from them reads like the architecture, with no
// `if (rank == ...)` in it. Written once over parallel/device.h: the same code
// runs on a CPU and a GPU.
//
//   ColumnParallelLinear   y_local = x W_r^T (+ b_r)        input replicated, no comm
//   RowParallelLinear      y = all_reduce(x_r W_r^T)        input split by the same ranges
//   VocabParallelEmbedding x = all_reduce(rows of E_r)      out-of-range ids give zeros
//   ParallelLMHead         logits = all_gather(x W_r^T)     every rank gets the full vocab,
//                          or all_gather(summary(x W_r^T))  or every rank's top candidates
//                                                           (parallel/logit_summary.h)
#pragma once

#include <cstdint>
#include <memory>
#include <span>
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
  // x: [n, hidden]; afterwards the rank holds its shard of the n rows'
  // logits on the device (no communication: a step's layers may be a graph).
  void forward(Device& dev, const float* x, int64_t n);
  // After the step's layers: brings the first `rows` of them together on
  // every rank with one all-gather: top 0, every rank's logits; else every
  // rank's summary of each row with `top` candidates (and its log-sum-exp
  // with `lse`), after penalties[row] (none when empty).
  void gather(Device& dev, int64_t rows, int top, bool lse, std::span<const PenaltyInputs> penalties);
  // Floats per gathered row: vocab, or ranks x summary_floats(top).
  int64_t row_floats(int top) const;
  // The gathered rows into out[rows, row_floats(top)] on the host: the
  // logits, or the row's summaries rank after rank (complete after the
  // device's end_step()).
  void download(Device& dev, float* out) const;
  uint64_t weight_bytes() const { return w_ ? w_->bytes() : 0; }

 private:
  std::shared_ptr<const DeviceWeight> w_;
  std::vector<Range> ranges_;  // every rank's vocabulary range
  int64_t vocab_ = 0;
  int64_t n_ = 0;     // rows of the last forward
  int64_t rows_ = 0;  // rows of the last gather
  int top_ = 0;       // and its candidates (0: whole rows)
  DeviceMemory local_, summaries_, gathered_;
  const float* gathered_source_ = nullptr;  // what download() reads: gathered_, or at tp 1 the rank's own
};

}  // namespace tpinfer
