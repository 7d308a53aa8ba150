// What the engine asks of one rank's model, whatever it runs on: run a batch
// (its shard of its pipeline stage, over its own KV cache), hand the residual
// stream to the next stage, and say what it holds. Two implementations: the
// CPU's (LlamaModel + KVCache + the rank's RankContext, below) and the GPU's
// (model/cuda/cuda_llama.h, built with the CUDA back end). The engine's
// pipeline and MPI logic only ever sees this interface.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "model/batch.h"
#include "model/kv_cache.h"
#include "model/llama.h"
#include "parallel/rank_context.h"

namespace tpinfer {

class RankModel {
 public:
  virtual ~RankModel() = default;
  // LlamaModel::forward's contract: the last stage writes [batch.n_logits(),
  // vocab] to `logits`, the others leave stage_output() filled.
  virtual void forward(const Batch& batch, float* logits) = 0;
  // Host memory, [n_tokens, hidden]: what a later stage starts from.
  virtual float* stage_input(int64_t n_tokens) = 0;
  virtual const float* stage_output() const = 0;
  virtual bool last_stage() const = 0;
  virtual uint64_t weight_bytes() const = 0;
  virtual uint64_t kv_bytes() const = 0;
  // "cpu", or "cuda:0 (NVIDIA H100 80GB HBM3)".
  virtual std::string device_name() const = 0;
  // MoE routing counts (LlamaModel::expert_load()); empty where not tracked.
  virtual std::vector<std::vector<uint64_t>> expert_load() const { return {}; }
  virtual void reset_expert_load() {}
};

// The CPU rank: the model, its cache and the context it computes with (owned
// by the engine's Rank, which outlives this).
class CpuRankModel final : public RankModel {
 public:
  CpuRankModel(RankContext& ctx, std::unique_ptr<LlamaModel> model, std::unique_ptr<KVCache> cache)
      : ctx_(ctx), model_(std::move(model)), cache_(std::move(cache)) {}

  void forward(const Batch& batch, float* logits) override { model_->forward(ctx_, batch, *cache_, logits); }
  float* stage_input(int64_t n_tokens) override { return model_->stage_input(n_tokens); }
  const float* stage_output() const override { return model_->stage_output(); }
  bool last_stage() const override { return model_->last_stage(); }
  uint64_t weight_bytes() const override { return model_->weight_bytes(); }
  uint64_t kv_bytes() const override { return cache_->bytes(); }
  std::string device_name() const override { return "cpu"; }
  std::vector<std::vector<uint64_t>> expert_load() const override { return model_->expert_load(); }
  void reset_expert_load() override { model_->reset_expert_load(); }

 private:
  RankContext& ctx_;
  std::unique_ptr<LlamaModel> model_;
  std::unique_ptr<KVCache> cache_;
};

}  // namespace tpinfer
