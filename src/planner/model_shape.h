// The shape of a model as the planner needs it: the hyper-parameters
// (ModelConfig), every weight tensor tpinfer would hold (canonical name, type,
// shape), and for mixture-of-experts models the number of experts and how many
// each token uses. It comes from a model on disk (its real tensor types), or
// from a table of published shapes (named_shape), optionally re-typed to a
// weight type the user asks about (with_weight_type).
//
// The tensors are formats/tensor_table.h's for the config. Routed experts'
// matrices are listed once per layer under expert 0's name
// (blk.N.ffn_gate.0.weight ...) with `copies` = the number of experts: each
// expert is split over the tensor-parallel ranks the way a dense FFN is
// (Megatron / vLLM MoE tensor parallelism), so ShardPlan's FFN ranges apply to
// each copy.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/dtype.h"
#include "formats/model_config.h"
#include "formats/model_source.h"
#include "parallel/shard_plan.h"

namespace tpinfer::planner {

struct PlanTensor {
  std::string name;  // canonical name (formats/tensor_table.h)
  DType type = DType::F32;
  std::vector<int64_t> shape;  // row-major, outermost first
  int copies = 1;              // experts of a MoE layer
  bool expert = false;
  int layer = -1;  // -1: not in a layer (embedding, output norm, lm_head)
};

struct ModelShape {
  ModelConfig config;
  std::vector<PlanTensor> tensors;
  int n_experts = 0;  // 0: dense
  int experts_per_token = 0;
  std::string source;        // file path, or where the published shape comes from
  std::string weight_label;  // "bf16", "q8_0", "mixed (from file)"
};

// The shapes of the table: llama-3.1-8b, llama-3.1-70b, llama-3.1-405b,
// llama-3.2-1b, llama-3.2-3b, qwen2.5-7b, qwen2.5-72b, mistral-7b,
// mixtral-8x7b. Weights are BF16 (as published). nullopt for another name.
std::optional<ModelShape> named_shape(std::string_view name);
std::vector<std::string> named_shape_names();

// The config and actual tensor types of a model on disk.
ModelShape shape_from_source(const ModelSource& src);

// `name` a named shape or a path; throws ConfigError listing the names when it
// is neither.
ModelShape load_shape(const std::string& name_or_path);

// Every matrix re-typed to `type` (a quantized type whose block does not divide
// a matrix's rows falls back as synth does: q8_0, else f16); vectors stay f32.
ModelShape with_weight_type(const ModelShape& shape, DType type);

// Parameters: all of them, and those one token uses (MoE: k of n experts).
int64_t total_parameters(const ModelShape& shape);
int64_t active_parameters(const ModelShape& shape);

// Block sizes of the row-parallel matrices (the table's Cols tensors), for ShardPlan.
ShardConstraints shape_constraints(const ModelShape& shape);

}  // namespace tpinfer::planner
