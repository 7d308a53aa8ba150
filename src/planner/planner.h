// The layout planner behind `tpinfer plan`: for a model shape on N devices
// joined by a link, every (tensor-parallel tp, pipeline-parallel pp) layout
// with tp x pp <= N, its memory per device, and its predicted latency and
// throughput, ranked, with the recommended layout and one line saying why.
//
// Memory per device (the fullest device of the layout):
//   weights      the bytes of every tensor slice the rank holds, from the real
//                ShardPlan ranges (parallel/shard_plan.h) for the tensor's type:
//                rows x row_bytes(type, cols) of a row or column range; vectors
//                f32, as tpinfer holds them; norms replicated. A pp stage holds
//                its layers (split by apportion(), uneven when pp does not
//                divide the layers); the first stage the embedding, the last
//                the output norm and lm_head.
//   kv cache     context x batch tokens x the stage's layers x the rank's KV
//                heads (GQA-replicated ones included) x head_dim x 2 (K, V) x
//                kv dtype bytes.
//   activations  one prefill chunk of min(prefill_chunk, context x batch)
//                tokens: (2 hidden + local q + 2 local kv + 3 local ffn x
//                experts_per_token) values of 4 bytes each, + batch x vocab f32
//                logits.
//   overhead     overhead_fraction x device memory + overhead_bytes (runtime,
//                communication buffers, fragmentation).
//
// Time (roofline per device, alpha-beta per collective):
//   compute      max(bytes read / device bandwidth, FLOPs / device FLOP/s).
//                Decode of b tokens reads the rank's weights once (an embedding
//                row is a lookup; a MoE layer reads the experts its b tokens
//                touch: 1 - (1 - k/E)^b of them) and b x context KV entries;
//                FLOPs are 2 x b x matmul parameters + 4 x b x context x local
//                heads x head_dim per layer. Prefill of one prompt of `context`
//                tokens: the whole shard read once, 2 x P x parameters + 2 x P^2
//                x local heads x head_dim per layer (causal), logits only for
//                the last token.
//   all-reduce   2 per layer + 1 (embedding) of tokens x hidden x
//                activation_bytes: ring 2(p-1)/p x m / bw + 2(p-1) x latency.
//   all-gather   of the logits (tokens x vocab x 4): (p-1)/p x m / bw + (p-1) x latency.
//                A probed link (LinkSpec::curve, over the same number of
//                ranks) gives both from its measured all-reduce times instead:
//                interpolated between the probed sizes; an all-gather of m
//                as the all-reduce of m/2 less (p-1) latencies. Its sustained
//                rate (the two largest sizes) bounds the step: compute + comm
//                >= the step's bytes per rank / that rate (a token bucket
//                passes small messages at burst speed until it runs dry).
//   comm share   what the collectives add to a step: bench measures it as
//                the critical-path share (the least collective share over the
//                ranks). The driver's extra wait for a rank that computes
//                longer is load imbalance and not predicted.
//   broadcast    of the batch by the driver: 2 x latency per step (tp > 1).
//   pp           a send of tokens x hidden x activation_bytes between stages:
//                latency + m / bw, on the inter-node link when it crosses nodes.
//                A tp group larger than a node runs on the inter-node link.
//   decode       the user's batch B goes in m = min(pp, B) micro-batches of
//                ceil(B/m); each stage's step takes t_s; period = max(m x max t_s
//                (+ hop), sum of t_s + hops); a sequence gets a token every
//                period; throughput = B / period per replica.
//
// Ranking: layouts that fit first; then decode throughput per device at the
// user's batch; then lower latency. Replicas = devices / (tp x pp) (data
// parallel copies) multiply the total throughput.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "planner/hardware.h"
#include "planner/model_shape.h"

namespace tpinfer::planner {

struct PlanRequest {
  ModelShape model;
  DeviceSpec device;
  int devices = 1;
  int nodes = 1;
  LinkSpec link;        // between the devices of a node
  LinkSpec inter_node;  // between nodes (used when nodes > 1)
  int64_t context = 8192;
  int batch = 1;
  DType kv_type = DType::F16;
  double activation_bytes = 2;  // per value in activations and all-reduces (4 on tpinfer's cpu back end)
  double overhead_fraction = 0.05;
  uint64_t overhead_bytes = uint64_t{1} << 30;
  int64_t prefill_chunk = 2048;
};

// What one rank of one stage holds and streams.
struct RankLoad {
  uint64_t weight_bytes = 0;  // everything it holds
  uint64_t lookup_bytes = 0;  // embedding rows (read by lookup, not streamed)
  uint64_t expert_bytes = 0;  // MoE expert slices (all experts)
  double layer_params = 0;    // matmul parameters of its layers, experts at k/E
  double lm_head_params = 0;  // its vocabulary rows of the lm_head
  int64_t q_heads = 0;
  int64_t kv_heads = 0;
  int64_t ffn = 0;
  int layers = 0;
  bool first_stage = false;
  bool last_stage = false;
};

// [stage][rank] loads of a layout; throws ConfigError when tp is not a valid size.
std::vector<std::vector<RankLoad>> rank_loads(const ModelShape& model, int tp, int pp);

struct MemoryEstimate {
  uint64_t weights = 0;
  uint64_t kv = 0;
  uint64_t activations = 0;
  uint64_t overhead = 0;
  uint64_t total = 0;
  bool fits = false;
  int64_t kv_room = 0;        // bytes left for KV after weights, activations, overhead (negative: weights do not fit)
  int64_t kv_tokens_max = 0;  // tokens of KV that room holds
};

struct PhaseTime {
  double latency = 0;            // seconds: per step (decode) or per prompt (prefill)
  double tokens_per_second = 0;  // one replica
  double compute = 0;            // seconds of the step on the devices (roofline)
  double comm = 0;               // seconds in collectives and pp sends
  double comm_share = 0;         // comm / (compute + comm) along one micro-batch's path
  bool memory_bound = false;
};

struct LayoutPlan {
  int tp = 1;
  int pp = 1;
  int replicas = 1;
  std::vector<int> stage_layers;
  std::vector<std::vector<uint64_t>> weight_bytes;  // [stage][rank]
  MemoryEstimate memory;                            // the fullest device
  PhaseTime decode;
  PhaseTime prefill;
  double decode_per_device = 0;  // decode tokens/s of a replica / its devices
  double decode_total = 0;       // all replicas
  bool tp_inter_node = false;
  int pp_inter_node_hops = 0;
};

struct Plan {
  PlanRequest request;
  std::vector<LayoutPlan> layouts;  // ranked, best first
  bool any_fits = false;
  std::string why;    // one line: the recommendation and its reason
  std::string error;  // when nothing fits: what is missing
};

Plan make_plan(const PlanRequest& request);
// One layout (tp must be a valid size for the model's block constraints).
LayoutPlan plan_layout(const PlanRequest& request, int tp, int pp);

// Ring collectives in the alpha-beta model.
double all_reduce_seconds(double bytes, int ranks, const LinkSpec& link);
double all_gather_seconds(double bytes, int ranks, const LinkSpec& link);

nlohmann::ordered_json plan_json(const Plan& plan);
// The human-readable table and recommendation.
std::string plan_text(const Plan& plan);

}  // namespace tpinfer::planner
