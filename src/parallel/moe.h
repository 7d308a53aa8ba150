// The mixture-of-experts MLP of one layer as one rank holds it (ShardPlan), in
// either layout:
//
//   tensor-parallel   every routed expert (and the shared expert) split like a
//                     dense FFN; each rank adds its share of every token's
//                     experts; one all-reduce, as a dense MLP has.
//   expert-parallel   whole experts on ranks; the input is already replicated
//                     (attention's all-reduce), so nothing is dispatched: each
//                     rank runs its own experts on the tokens routed to them,
//                     and the weighted outputs are combined by one all-gather of
//                     only the rows each rank computed (every rank knows the
//                     routing, so no indices travel). When tokens reach more
//                     than two ranks on average that would move more than an
//                     all-reduce, and the all-reduce is used instead. The shared
//                     expert is replicated and added after the combine.
//
// The router is replicated: every rank computes the same routing from the same
// input, which is what lets the combine skip sending indices (the ranks must
// run the same kernels, as all of tpinfer's replicated computations assume).
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "formats/model_source.h"
#include "parallel/device.h"
#include "parallel/layers.h"
#include "parallel/shard_plan.h"
#include "parallel/sharded_tensor.h"

namespace tpinfer {

// Routing of n tokens over `n_experts` experts from their router logits
// ([n, n_experts]): for token t, experts[t*k + j] and weights[t*k + j], j < k,
// are the k experts of largest logit in decreasing order (ties: the lower
// index first) and their softmax probabilities over all experts, renormalized
// to sum to 1 when `normalize` (Mixtral, Qwen3-MoE) and left as they are
// otherwise (Qwen2-MoE).
void route_top_k(const float* logits, int64_t n, int n_experts, int k, bool normalize, int32_t* experts,
                 float* weights);

class ParallelMoE {
 public:
  ParallelMoE() = default;
  ParallelMoE(Device& dev, const ModelSource& src, const ShardPlan& plan, int rank, int layer);

  // h: [n, hidden], the same on every rank. out: [n, hidden], the MLP's output
  // (weighted routed experts plus the shared expert), the same on every rank.
  // Routing is decided on the host: the router's logits are read back, so a
  // GPU does not capture this layer in a graph.
  void forward(Device& dev, const float* h, int64_t n, float* out);

  uint64_t weight_bytes() const;
  // Tokens routed to each expert (k per token) since construction or the last
  // reset_load(). Every rank counts all tokens, not only its experts'.
  const std::vector<uint64_t>& load() const { return load_; }
  void reset_load();

 private:
  struct Expert {
    ColumnParallelLinear gate_up;        // the rank's rows of gate and up, fused
    std::unique_ptr<DeviceWeight> down;  // the matching columns of down
  };

  void run_experts(Device& dev, const float* h, int64_t n, float* out);
  void add_shared(Device& dev, const float* h, int64_t n, float* out);
  void combine_expert_parallel(Device& dev, int64_t n, float* out);

  int n_experts_ = 0;
  int k_ = 0;
  bool normalize_ = false;
  bool expert_parallel_ = false;
  int64_t hidden_ = 0;
  int64_t ffn_local_ = 0;     // features of each routed expert on this rank
  int64_t shared_local_ = 0;  // shared-expert features on this rank
  std::unique_ptr<DeviceWeight> router_;
  Range mine_;                   // the routed experts this rank holds
  std::vector<Expert> experts_;  // mine_.size() of them
  std::vector<int> owner_;       // expert -> rank (expert parallel)
  ColumnParallelLinear shared_gate_up_;
  std::unique_ptr<DeviceWeight> shared_down_;
  DeviceMemory shared_gate_;  // [hidden], empty when the shared expert has no gate
  std::vector<uint64_t> load_;

  // Device scratch and host routing state, reused across steps.
  DeviceMemory logits_dev_, xs_, gu_, act_, ys_, send_, recv_;
  std::vector<float> logits_, weights_;
  std::vector<int32_t> chosen_;
  std::vector<int64_t> rows_;
  std::vector<float> row_weights_, unit_weights_;
  std::vector<std::vector<int64_t>> touched_;  // per rank: tokens routed to it, ascending
};

}  // namespace tpinfer
