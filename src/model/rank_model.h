// What the engine asks of one rank's model, whatever it runs on: run a batch
// (its shard of its pipeline stage, over its own KV cache), hand the residual
// stream to the next stage, and say what it holds. The model and the Device
// it computes on (parallel/cpu_device.h, parallel/cuda/cuda_device.h), owned
// together; the engine's pipeline and MPI logic only ever see this.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "model/llama.h"
#include "parallel/batch.h"
#include "parallel/device.h"

namespace tpinfer {

class RankModel {
 public:
  // `model` computes on `device`.
  RankModel(std::unique_ptr<Device> device, std::unique_ptr<LlamaModel> model)
      : device_(std::move(device)), model_(std::move(model)) {}
  ~RankModel() { model_.reset(); }  // before the device its memory belongs to
  RankModel(const RankModel&) = delete;
  RankModel& operator=(const RankModel&) = delete;

  // LlamaModel::forward's contract: the last stage writes [batch.n_logits(),
  // logits_row_floats(batch)] to `logits`, the others leave stage_output() filled.
  void forward(const Batch& batch, float* logits) { model_->forward(batch, logits); }
  int64_t logits_row_floats(const Batch& batch) const { return model_->logits_row_floats(batch); }
  // Host memory, [n_tokens, hidden]: what a later stage starts from.
  float* stage_input(int64_t n_tokens) { return model_->stage_input(n_tokens); }
  const float* stage_output() const { return model_->stage_output(); }
  bool last_stage() const { return model_->last_stage(); }
  uint64_t weight_bytes() const { return model_->weight_bytes(); }
  uint64_t kv_bytes() const { return device_->kv_bytes(); }
  // "cpu", or "cuda:0 (NVIDIA H100 80GB HBM3)".
  std::string device_name() const { return device_->name(); }
  // MoE routing counts (LlamaModel::expert_load()).
  std::vector<std::vector<uint64_t>> expert_load() const { return model_->expert_load(); }
  void reset_expert_load() { model_->reset_expert_load(); }

  Device& device() const { return *device_; }

 private:
  std::unique_ptr<Device> device_;
  std::unique_ptr<LlamaModel> model_;
};

}  // namespace tpinfer
