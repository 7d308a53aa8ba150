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
  float* local = reserve_f32(dev, local_, static_cast<size_t>(n * w_->rows()));
  dev.matmul(*w_, x, n, local);
  if (ranges_.size() == 1) return;
  std::vector<size_t> counts;
  for (const Range& r : ranges_) counts.push_back(static_cast<size_t>(n * r.size()));
  dev.all_gather(local, counts, reserve_f32(dev, gathered_, static_cast<size_t>(n * vocab_)));
}

// The gathered logits hold, rank after rank, [n, vocab_r] blocks.
void ParallelLMHead::download(Device& dev, int64_t rows, float* logits) const {
  const float* block = ranges_.size() == 1 ? local_.f32() : gathered_.f32();
  for (const Range& r : ranges_) {
    if (r.size() > 0) dev.download(block, rows, r.size(), logits + r.begin, vocab_);
    block += n_ * r.size();
  }
}

}  // namespace tpinfer
