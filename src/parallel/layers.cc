#include "parallel/layers.h"

#include <algorithm>
#include <cstring>

#include "backend/cpu/quant.h"
#include "core/error.h"

namespace tpinfer {

ColumnParallelLinear::ColumnParallelLinear(const ModelSource& src, const ShardPlan& plan, int rank,
                                           const std::vector<std::string>& names,
                                           const std::vector<std::string>& bias_names) {
  std::vector<ShardedTensor> parts;
  for (const std::string& name : names) parts.push_back(ShardedTensor::load(src.get(name), plan.slice(name, rank)));
  w_ = parts.size() == 1 ? std::move(parts[0]) : ShardedTensor::concat_rows(parts);
  w_.interleave_for_matmul();
  for (const std::string& name : bias_names) {
    const std::vector<float> b = load_vector_f32(src.get(name), plan.slice(name, rank).range);
    bias_.insert(bias_.end(), b.begin(), b.end());
  }
}

void ColumnParallelLinear::forward(RankContext& ctx, const float* x, int64_t n, float* y) const {
  cpu::matmul(w_.view(), x, n, y, ctx.pool, ctx.scratch);
  if (bias_.empty()) return;
  const int64_t out = out_features();
  for (int64_t t = 0; t < n; ++t) {
    for (int64_t i = 0; i < out; ++i) y[t * out + i] += bias_[static_cast<size_t>(i)];
  }
}

RowParallelLinear::RowParallelLinear(const ModelSource& src, const ShardPlan& plan, int rank,
                                     const std::string& name)
    : w_(ShardedTensor::load(src.get(name), plan.slice(name, rank))) {
  w_.interleave_for_matmul();
}

void RowParallelLinear::forward(RankContext& ctx, const float* x, int64_t n, float* y) const {
  if (w_.cols() > 0) {
    cpu::matmul(w_.view(), x, n, y, ctx.pool, ctx.scratch);
  } else {
    std::fill(y, y + n * w_.rows(), 0.0f);  // a rank with no share of the input adds nothing
  }
  ctx.comm.all_reduce_sum(y, static_cast<size_t>(n * w_.rows()));
}

VocabParallelEmbedding::VocabParallelEmbedding(const ModelSource& src, const ShardPlan& plan, int rank,
                                               const std::string& name) {
  const TensorInfo& t = src.get(name);
  const TensorSlice slice = plan.slice(name, rank);
  w_ = ShardedTensor::load(t, slice);
  range_ = slice.range;
  vocab_ = t.rows();
}

void VocabParallelEmbedding::forward(RankContext& ctx, const int32_t* ids, int64_t n, float* out) const {
  const int64_t hidden = w_.cols();
  for (int64_t t = 0; t < n; ++t) {
    const int64_t id = ids[t];
    if (id < 0 || id >= vocab_) throw Error(cat("token id ", id, " outside the vocabulary of ", vocab_));
    float* row = out + t * hidden;
    if (id >= range_.begin && id < range_.end) {
      cpu::dequantize_row(w_.type(), w_.row(id - range_.begin), row, hidden);
    } else {
      std::fill(row, row + hidden, 0.0f);
    }
  }
  ctx.comm.all_reduce_sum(out, static_cast<size_t>(n * hidden));
}

ParallelLMHead::ParallelLMHead(const ModelSource& src, const ShardPlan& plan, int rank, const std::string& name) {
  const TensorInfo& t = src.get(name);
  w_ = ShardedTensor::load(t, plan.slice(name, rank));
  w_.interleave_for_matmul();
  for (int r = 0; r < plan.tp(); ++r) ranges_.push_back(plan.slice(name, r).range);
  vocab_ = t.rows();
}

void ParallelLMHead::forward(RankContext& ctx, const float* x, int64_t n, float* logits) {
  const int64_t local = w_.rows();
  local_.resize(static_cast<size_t>(n * local));
  if (local > 0) cpu::matmul(w_.view(), x, n, local_.data(), ctx.pool, ctx.scratch);
  if (ranges_.size() == 1) {
    std::memcpy(logits, local_.data(), local_.size() * sizeof(float));
    return;
  }
  std::vector<size_t> counts;
  for (const Range& r : ranges_) counts.push_back(static_cast<size_t>(n * r.size()));
  gathered_.resize(static_cast<size_t>(n * vocab_));
  ctx.comm.all_gather(local_.data(), counts, gathered_.data());
  // gathered_ holds, rank after rank, [n, vocab_r] blocks: interleave into [n, vocab].
  size_t at = 0;
  for (const Range& r : ranges_) {
    for (int64_t t = 0; t < n; ++t) {
      std::memcpy(logits + t * vocab_ + r.begin, gathered_.data() + at, static_cast<size_t>(r.size()) * sizeof(float));
      at += static_cast<size_t>(r.size());
    }
  }
}

}  // namespace tpinfer
