// ShardPlan: the one place that knows which slice of every tensor each rank of a
// tensor-parallel group holds (Megatron-LM layout, docs/DESIGN.md):
//
//   attn_q (+bias)        rows: the rank's query heads x head_dim
//   attn_k, attn_v        rows: the KV heads its query heads read; a KV head whose
//                         query heads span several ranks is replicated on each
//   attn_output           columns: the rank's query heads x head_dim (row-parallel)
//   ffn_gate, ffn_up      rows: the rank's FFN features (column-parallel, fused)
//   ffn_down              columns: the rank's FFN features (row-parallel)
//   token_embd, output    rows: the rank's vocabulary range (ceil(V / tp) each)
//   norms, rope_freqs     replicated
//
// Mixture-of-experts layers, tensor-parallel (the default): every rank holds
// every routed expert, each split like a dense FFN.
//   ffn_gate_inp          replicated (the router)
//   ffn_gate.E, ffn_up.E  rows: the rank's features of expert E
//   ffn_down.E            columns: the same features (row-parallel)
//   ffn_*_shexp           the shared expert, split like a dense FFN by its own size
//   ffn_gate_inp_shexp    replicated
// Expert-parallel (ParallelConfig::expert_parallel): whole routed experts are
// apportioned to ranks (at least one each); a rank holds its experts whole
// and nothing of the others (an empty row range); the shared expert is
// replicated. Attention and vocabulary are split as above either way.
//
// Heads, FFN features and vocabulary rows are given out in whole units: a head,
// and as many features as the quantization block of the row-parallel matrices
// needs (a row-parallel split must fall on a block boundary). With tensor_split,
// units are apportioned to ranks in proportion to their weights.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "formats/model_config.h"
#include "parallel/parallel_config.h"

namespace tpinfer {

struct Range {
  int64_t begin = 0;
  int64_t end = 0;
  int64_t size() const { return end - begin; }
  bool operator==(const Range&) const = default;
};

struct RankShard {
  Range q_heads;
  Range kv_heads;
  Range ffn;  // FFN features; in a MoE model, of each routed expert the rank holds
  Range vocab;
  Range experts;     // routed experts the rank holds (MoE; empty for a dense model)
  Range shared_ffn;  // shared-expert features (MoE with a shared expert)
};

enum class SplitKind { Replicated, Rows, Cols };

// The part of a tensor a rank holds: all of it, a range of rows (outermost
// dimension), or a range of columns (innermost dimension), in elements.
struct TensorSlice {
  SplitKind kind = SplitKind::Replicated;
  Range range;
};

// Block sizes (values per quantization block) of the row-parallel matrices: a
// rank's column range must be a multiple of these.
struct ShardConstraints {
  int64_t attn_output_block = 1;
  int64_t ffn_down_block = 1;  // of the routed experts' ffn_down in a MoE model
  int64_t shared_down_block = 1;
};

class ShardPlan {
 public:
  // Throws ConfigError naming the valid tensor-parallel sizes when the model
  // cannot be split as asked.
  static ShardPlan build(const ModelConfig& model, const ParallelConfig& parallel,
                         const ShardConstraints& constraints = {});

  // Every even tensor-parallel size (1..max_size) this model can take
  // (with whole experts per rank when expert_parallel).
  static std::vector<int> valid_sizes(const ModelConfig& model, const ShardConstraints& constraints,
                                      int max_size = 256, bool expert_parallel = false);

  int tp() const { return static_cast<int>(ranks_.size()); }
  const RankShard& rank(int r) const { return ranks_.at(static_cast<size_t>(r)); }
  int head_dim() const { return head_dim_; }
  int heads_per_kv() const { return heads_per_kv_; }
  bool expert_parallel() const { return expert_parallel_; }

  // The slice of `canonical_name` (formats/model_source.h) that rank r holds.
  TensorSlice slice(std::string_view canonical_name, int r) const;

 private:
  std::vector<RankShard> ranks_;
  int head_dim_ = 0;
  int heads_per_kv_ = 1;
  bool expert_parallel_ = false;
};

// Splits `units` whole units over ranks in proportion to `weights` (largest
// remainder), every rank getting at least `min_units`. Throws ConfigError if
// that is impossible. Exposed for tests.
std::vector<int64_t> apportion(int64_t units, const std::vector<double>& weights, int64_t min_units);

}  // namespace tpinfer
