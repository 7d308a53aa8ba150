// One rank's shard of a dense Llama-family model on a GPU: the forward of
// model/llama.h (same ShardPlan, same math, same paged KV layout) with the
// weights, activations and KV cache in device memory and the tensor-parallel
// collectives on a cuda::DeviceCommunicator.
//
// Loading: each weight is sliced on the host exactly as the CPU model slices
// it (ShardedTensor), uploaded packed into a DeviceBuffer in the file's type,
// and the host copy dropped; a rank uploads only its slice. Weight types are
// those cuda::supported_weight_type() accepts (F32, F16, BF16, Q8_0, Q4_0,
// Q4_K); anything else is a ConfigError naming the tensor. The KV cache is F16
// or BF16. Mixture-of-experts models are not supported (ConfigError).
//
// A step: the batch's metadata (tokens, positions, sequence of each token, KV
// slots, the rows that want logits, the flattened block tables) is packed into
// one pinned host buffer and copied with one cudaMemcpyAsync; the layers run
// on the model's stream; the lm_head's rows (every rank its vocabulary range,
// padded to the largest range for the all-gather) come back to the host with
// one 2-D copy per rank, compacted to [n_logits, vocab]. The step ends with
// the communicator's wait() (the collective deadline), or a stream
// synchronize at tp = 1. Pipeline stages hand the residual stream over
// through the host (stage_input() / stage_output()).
//
// Decode steps (every sequence of the batch has exactly one token) of a
// single-stage model run as CUDA graphs when the options allow it and the
// communicator is capturable() (or tp = 1): the batch is padded to a bucket
// (1, 2, 4, ... 128 tokens; the padding tokens read and write a spare KV block
// nobody owns), and the bucket's graph, captured the first time the bucket is
// seen, is replayed with the metadata's new contents. Graphs are dropped and
// captured again whenever a buffer they point into has to grow.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "core/dtype.h"
#include "formats/model_source.h"
#include "model/rank_model.h"
#include "parallel/pipeline_plan.h"
#include "parallel/shard_plan.h"

namespace tpinfer {

namespace cuda {
class DeviceCommunicator;
}

struct CudaModelOptions {
  int device = 0;
  DType kv_type = DType::F16;  // F16 or BF16
  int kv_block_size = 16;
  int kv_blocks = 0;  // blocks of the cache (the engine's BlockAllocator's)
  bool cuda_graphs = true;
};

class CudaLlamaModel final : public RankModel {
 public:
  // `comm`: the tensor-parallel group's device communicator, null at tp = 1;
  // it must outlive the model.
  CudaLlamaModel(const ModelSource& src, const ShardPlan& plan, int rank, LayerRange layers,
                 const CudaModelOptions& options, cuda::DeviceCommunicator* comm);
  ~CudaLlamaModel() override;
  CudaLlamaModel(const CudaLlamaModel&) = delete;
  CudaLlamaModel& operator=(const CudaLlamaModel&) = delete;

  // Throws ConfigError when the model cannot run on a GPU here: a MoE model,
  // a weight type the kernels lack, a KV cache type other than f16 / bf16.
  // Needs no GPU (the engine calls it before starting any rank).
  static void check_supported(const ModelSource& src, DType kv_type);

  void forward(const Batch& batch, float* logits) override;
  float* stage_input(int64_t n_tokens) override;
  const float* stage_output() const override;
  bool last_stage() const override;
  uint64_t weight_bytes() const override;
  uint64_t kv_bytes() const override;
  std::string device_name() const override;

  // Steps that replayed a captured graph, and graphs captured (tests).
  uint64_t graph_replays() const;
  uint64_t graph_captures() const;
  // Why graphs were turned off for this model after a capture failed ("" while they are on).
  const std::string& graph_error() const;

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace tpinfer
