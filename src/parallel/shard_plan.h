// ShardPlan: the one place that knows which slice of every tensor each rank of a
// tensor-parallel group holds (Megatron-LM layout, docs/DESIGN.md). Which
// tensor is split how, and along which unit, is formats/tensor_table.h's table;
// this file gives each rank its units:
//
//   q_heads       the rank's query heads (attn_q and its bias by rows,
//                 attn_output by columns: row-parallel)
//   kv_heads      the KV heads its query heads read; a KV head whose query
//                 heads span several ranks is replicated on each
//   ffn           its FFN features (gate and up by rows, down by columns),
//                 of each routed expert in a mixture-of-experts model
//   shared_ffn    the shared expert's features, split like a dense FFN
//   vocab         its vocabulary rows (ceil(V / tp) each)
//
// Mixture-of-experts layers, tensor-parallel (the default): every rank holds
// every routed expert, each split like a dense FFN; the router and the
// shared-expert gate are replicated. Expert-parallel
// (ParallelConfig::expert_parallel): whole routed experts are apportioned to
// ranks (at least one each); a rank holds its experts whole and nothing of the
// others (an empty row range); the shared expert is replicated. Attention and
// vocabulary are split as above either way.
//
// Heads, FFN features and vocabulary rows are given out in whole units: a head,
// and as many features as the quantization block of the row-parallel matrices
// needs (a row-parallel split must fall on a block boundary). With tensor_split,
// units are apportioned to ranks in proportion to their weights.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "formats/model_config.h"
#include "formats/tensor_table.h"
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

// The part of a tensor a rank holds: all of it, a range of rows (outermost
// dimension), or a range of columns (innermost dimension), in elements.
struct TensorSlice {
  SplitKind kind = SplitKind::Replicated;
  Range range;
};

// Block sizes (values per quantization block) of the row-parallel matrices: a
// rank's column range must be a multiple of these.
struct ShardConstraints {
  int64_t attn_output_block = 1;  // of the query heads' matrices (attn_output)
  int64_t ffn_down_block = 1;     // of the FFN's (the routed experts' in a MoE model)
  int64_t shared_down_block = 1;  // of the shared expert's

  // Takes in tensor `d` stored in blocks of `block` values: a row-parallel
  // (Cols) tensor raises the constraint of its unit; others change nothing.
  void add(const TensorDecl& d, int64_t block);
};

// The constraints of a model of config `m`: `block_of(name)` gives the block
// size of each of its row-parallel tensors, by canonical name.
ShardConstraints shard_constraints_of(const ModelConfig& m, const std::function<int64_t(const std::string&)>& block_of);

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

  // The slice of `canonical_name` (formats/tensor_table.h) that rank r holds;
  // throws Error naming a tensor the table does not declare.
  TensorSlice slice(std::string_view canonical_name, int r) const;

 private:
  std::vector<RankShard> ranks_;
  int head_dim_ = 0;
  int heads_per_kv_ = 1;
  bool expert_parallel_ = false;
  Arch arch_ = Arch::Llama;  // whose tensor table slice() reads
};

// Splits `units` whole units over ranks in proportion to `weights` (largest
// remainder), every rank getting at least `min_units`. Throws ConfigError if
// that is impossible. Exposed for tests.
std::vector<int64_t> apportion(int64_t units, const std::vector<double>& weights, int64_t min_units);

}  // namespace tpinfer
