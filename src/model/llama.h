// The Llama family decoder (Llama 2/3/3.1/3.2, Mistral, Qwen2/2.5, Qwen3, and
// the mixture-of-experts Mixtral, Qwen2-MoE, Qwen3-MoE) as one rank of a
// tensor-parallel group holds it, on the rank's Device (parallel/device.h:
// a CPU or a GPU, the same code). The forward pass reads like the
// architecture: embed; per layer RMSNorm, attention (Q/K/V column-parallel, RoPE,
// the rank's heads over its KV cache, O row-parallel), residual, RMSNorm, SwiGLU
// MLP (gate/up column-parallel and fused, down row-parallel) or the MoE MLP
// (parallel/moe.h), residual; final norm and the vocabulary-parallel lm_head.
// All communication happens inside the parallel layers: two collectives per
// layer and one for the embedding.
//
// A pipeline stage (parallel/pipeline_plan.h) holds a range of consecutive
// layers: the first stage embeds, the last applies the final norm and the
// lm_head, and between them the residual stream ([tokens, hidden]) is what one
// stage hands the next (stage_input() / stage_output(), host memory). The
// engine moves it.
#pragma once

#include <cstdint>
#include <vector>

#include "formats/model_source.h"
#include "parallel/batch.h"
#include "parallel/device.h"
#include "parallel/layers.h"
#include "parallel/moe.h"
#include "parallel/pipeline_plan.h"
#include "parallel/shard_plan.h"

namespace tpinfer {

class LlamaModel {
 public:
  // The whole model, or the pipeline stage holding `layers`: only their
  // tensors (and the embedding / head when the stage is first / last) are read,
  // and uploaded to `dev`, which holds the stage's KV cache (`kv`: its
  // n_layers and n_kv_heads are filled in here). `dev` must outlive the model.
  LlamaModel(Device& dev, const ModelSource& src, const ShardPlan& plan, int rank, LayerRange layers, KvCacheShape kv);

  // Runs `batch` through this rank's layers. The first stage starts from the
  // embedded tokens, a later one from what stage_input() was filled with. The
  // last stage writes the logits of the tokens that want them, in batch order,
  // to `logits` ([batch.n_logits(), logits_row_floats(batch)], host memory,
  // on every rank: whole rows, or with batch.logit_top every rank's summary
  // of each row, parallel/logit_summary.h); the others leave their output in
  // stage_output() and do not touch `logits`.
  void forward(const Batch& batch, float* logits);
  // Floats per logits row forward() writes for `batch` (last stage).
  int64_t logits_row_floats(const Batch& batch) const { return lm_head_.row_floats(batch.logit_top); }
  // [n_tokens, hidden] to fill before forward() on a stage after the first.
  float* stage_input(int64_t n_tokens);
  // [batch.size(), hidden] after forward() on a stage before the last.
  const float* stage_output() const { return stage_out_.data(); }

  LayerRange layers() const { return range_; }
  bool first_stage() const { return range_.begin == 0; }
  bool last_stage() const { return range_.end == cfg_.n_layers; }

  const ModelConfig& config() const { return cfg_; }
  Device& device() const { return dev_; }
  // Bytes of weights this rank holds (its shards plus the replicated tensors).
  uint64_t weight_bytes() const;
  // MoE: tokens routed to each expert, [layer of this stage][expert], since construction or
  // the last reset_expert_load(); empty for a dense model.
  std::vector<std::vector<uint64_t>> expert_load() const;
  void reset_expert_load();

 private:
  struct Layer {
    DeviceMemory attn_norm, ffn_norm, q_norm, k_norm;
    ColumnParallelLinear qkv;  // fused Q, K, V (+ biases)
    RowParallelLinear o;
    ColumnParallelLinear gate_up;  // fused gate, up
    RowParallelLinear down;
    ParallelMoE moe;  // instead of gate_up and down in a MoE model
  };

  void reserve(const StepShape& s);
  void run(const StepShape& s);  // the layers: what a GPU may capture as a graph
  void attention(const StepShape& s, Layer& L, int layer);

  Device& dev_;
  ModelConfig cfg_;
  LayerRange range_;  // the layers this rank holds (its pipeline stage)
  AttnHeads heads_;   // this rank's query and KV heads
  int64_t ffn_local_ = 0;
  VocabParallelEmbedding embed_;
  std::vector<Layer> layers_;
  DeviceMemory output_norm_;
  ParallelLMHead lm_head_;
  DeviceMemory inv_freq_;  // head_dim/2 RoPE frequencies (scaling applied)
  uint64_t weight_bytes_ = 0;

  // Activations on the device, grown as needed; the stage hand-off on the host.
  DeviceMemory x_, h_, qkv_, attn_, tmp_, gu_, act_, out_rows_;
  std::vector<float> stage_in_, stage_out_;
};

}  // namespace tpinfer
