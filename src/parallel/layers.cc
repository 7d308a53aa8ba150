#include "parallel/layers.h"

#include "core/error.h"

namespace tpinfer {

std::unique_ptr<DeviceWeight> load_weight(Device& dev, const ModelSource& src, const ShardPlan& plan, int rank,
                                          const std::vector<std::string>& names, WeightUse use) {
  std::vector<ShardedTensor> parts;
  for (const std::string& name : names) parts.push_back(ShardedTensor::load(src.get(name), plan.slice(name, rank)));
  return dev.upload_weight(parts.size() == 1 ? std::move(parts[0]) : ShardedTensor::concat_rows(parts), use);
}

ColumnParallelLinear::ColumnParallelLinear(Device& dev, const ModelSource& src, const ShardPlan& plan, int rank,
                                           const std::vector<std::string>& names,
                                           const std::vector<std::string>& bias_names)
    : w_(load_weight(dev, src, plan, rank, names)) {
  std::vector<float> bias;
  for (const std::string& name : bias_names) {
    const std::vector<float> b = load_vector_f32(src.get(name), plan.slice(name, rank).range);
    bias.insert(bias.end(), b.begin(), b.end());
  }
  if (!bias.empty()) bias_ = dev.upload(bias);
}

void ColumnParallelLinear::forward(Device& dev, const float* x, int64_t n, float* y) const {
  dev.matmul(*w_, x, n, y);
  if (!bias_.empty()) dev.add_bias(y, bias_.f32(), n, out_features());
}

RowParallelLinear::RowParallelLinear(Device& dev, const ModelSource& src, const ShardPlan& plan, int rank,
                                     const std::string& name)
    : w_(load_weight(dev, src, plan, rank, {name})) {}

void RowParallelLinear::forward(Device& dev, const float* x, int64_t n, float* y) const {
  dev.matmul(*w_, x, n, y);  // zeros where the rank has no columns
  dev.all_reduce_sum(y, static_cast<size_t>(n * out_features()));
}

void VocabParallelEmbedding::forward(Device& dev, int64_t n, float* out) const {
  for (const int32_t id : dev.batch().tokens) {
    if (id < 0 || id >= vocab_) throw Error(cat("token id ", id, " outside the vocabulary of ", vocab_));
  }
  dev.embed(*w_, range_.begin, out);
  dev.all_reduce_sum(out, static_cast<size_t>(n * w_->cols()));
}

void ParallelLMHead::forward(Device& dev, const float* x, int64_t n) {
  n_ = n;
  dev.matmul(*w_, x, n, reserve_f32(dev, local_, static_cast<size_t>(n * w_->rows())));
}

int64_t ParallelLMHead::row_floats(int top) const {
  return top > 0 ? static_cast<int64_t>(ranges_.size()) * summary_floats(top) : vocab_;
}

void ParallelLMHead::gather(Device& dev, int64_t rows, int top, bool lse, std::span<const PenaltyInputs> penalties) {
  if (rows > n_) throw Error(cat("lm_head: ", rows, " rows wanted of the ", n_, " computed"));
  rows_ = rows;
  top_ = top;
  if (rows == 0) return;
  const float* send = local_.f32();
  const int64_t local_cols = w_->rows();
  std::vector<size_t> counts;
  if (top > 0) {
    const int64_t w = summary_floats(top);
    float* s = reserve_f32(dev, summaries_, static_cast<size_t>(rows * w));
    dev.summarize_logits(local_.f32(), rows, local_cols, local_cols, ranges_[static_cast<size_t>(dev.rank())].begin,
                         top, lse, penalties, s);
    send = s;
    counts.assign(ranges_.size(), static_cast<size_t>(rows * w));
  } else {
    for (const Range& r : ranges_) counts.push_back(static_cast<size_t>(rows * r.size()));
  }
  if (ranges_.size() == 1) {
    gathered_source_ = send;
    return;
  }
  size_t total = 0;
  for (size_t c : counts) total += c;
  float* recv = reserve_f32(dev, gathered_, total);
  dev.all_gather(send, counts, recv);
  gathered_source_ = recv;
}

// The gathered block holds, rank after rank, [rows, cols_r] blocks: cols_r
// the rank's vocabulary or its summary's floats.
void ParallelLMHead::download(Device& dev, float* out) const {
  if (rows_ == 0) return;
  const int64_t width = row_floats(top_);
  const float* block = gathered_source_;
  int64_t at = 0;
  for (const Range& r : ranges_) {
    const int64_t cols = top_ > 0 ? summary_floats(top_) : r.size();
    if (cols > 0) dev.download(block, rows_, cols, out + at, width);
    block += rows_ * cols;
    at += cols;
  }
}

}  // namespace tpinfer
