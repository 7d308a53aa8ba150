// The Device of a GPU rank: backend/cuda's kernels on one stream, weights,
// activations and the paged KV cache (F16 or BF16) in device memory, and the
// tensor-parallel collectives on a cuda::DeviceCommunicator (nccl or streams).
//
// Weights are sliced on the host exactly as on the CPU (ShardedTensor),
// uploaded packed in the file's type, and the host copy dropped; a rank
// uploads only its slice. Weight types are those cuda::supported_weight_type()
// accepts (F32, F16, BF16, Q8_0, Q4_0, Q4_K).
//
// A step: the batch's metadata (tokens, positions, sequence of each token, KV
// slots, the rows that want logits, the flattened block tables) is packed into
// one pinned host buffer and copied with one cudaMemcpyAsync; downloads are
// staged through pinned memory and land on the host at end_step(), which ends
// with the communicator's wait() (the collective deadline), or a stream
// synchronize at tp = 1.
//
// Decode steps (every sequence of the batch has exactly one token) that the
// caller calls graphable run as CUDA graphs when the options allow it and the
// communicator is capturable() (or tp = 1): the batch is padded to a bucket
// (1, 2, 4, ... 128 tokens; the padding tokens read and write a spare KV block
// nobody owns), and the bucket's graph, captured the first time the bucket is
// seen, is replayed with the metadata's new contents. Graphs are dropped and
// captured again whenever device memory was allocated since their capture.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "core/dtype.h"
#include "formats/model_source.h"
#include "parallel/device.h"

namespace tpinfer {

namespace cuda {
class DeviceCommunicator;
}

struct CudaDeviceOptions {
  int device = 0;
  bool cuda_graphs = true;
};

class CudaDevice final : public Device {
 public:
  // `comm`: the tensor-parallel group's device communicator, null at tp = 1;
  // it must outlive the device.
  CudaDevice(const CudaDeviceOptions& options, cuda::DeviceCommunicator* comm);
  ~CudaDevice() override;
  CudaDevice(const CudaDevice&) = delete;
  CudaDevice& operator=(const CudaDevice&) = delete;

  // Throws ConfigError when `src` cannot run on a GPU: a weight type the
  // kernels lack, a KV cache type other than f16 / bf16. Needs no GPU (the
  // engine calls it before starting any rank).
  static void check_supported(const ModelSource& src, DType kv_type);

  std::string name() const override;
  int rank() const override;
  int size() const override;

  using Device::upload;
  DeviceMemory alloc(size_t bytes) override;
  std::unique_ptr<DeviceWeight> upload_weight(ShardedTensor t, WeightUse use) override;
  void upload(const void* host, size_t bytes, void* dst) override;
  void download(const float* src, int64_t rows, int64_t cols, float* host, int64_t host_stride) override;
  void read_to_host(const float* src, size_t n, float* host) override;

  void allocate_kv(const KvCacheShape& shape) override;
  uint64_t kv_bytes() const override;

  StepShape begin_step(const Batch& batch, bool graphable) override;
  void run_step(const std::function<void()>& layers) override;
  void end_step() override;
  const Batch& batch() const override;

  void matmul(const DeviceWeight& w, const float* x, int64_t n, float* y) override;
  void embed(const DeviceWeight& table, int64_t row_begin, float* out) override;
  void rms_norm(const float* x, int64_t x_stride, const float* w, int64_t rows, int64_t dim, float eps, float* y,
                int64_t y_stride) override;
  void rope(float* x, int64_t row_stride, int n_heads, int head_dim, const float* inv_freq, RopeStyle style) override;
  void attention(int layer, const float* qkv, int64_t row_stride, const AttnHeads& heads, float scale,
                 float* out) override;
  void swiglu(const float* gu, int64_t n, int64_t ffn, float* out) override;
  void add(float* y, const float* x, int64_t n) override;
  void add_bias(float* y, const float* bias, int64_t n, int64_t dim) override;
  void zero(float* y, int64_t n) override;
  void gather_logit_rows(const float* src, int64_t dim, float* dst) override;
  void gather_rows(const float* src, std::span<const int64_t> rows, int64_t dim, float* dst) override;
  void add_rows_scaled(float* out, std::span<const int64_t> rows, std::span<const float> weights, const float* ys,
                       int64_t dim) override;
  void add_sigmoid_gated(float* out, const float* h, const float* w, const float* ys, int64_t n, int64_t dim) override;

  void all_reduce_sum(float* data, size_t n) override;
  void all_gather(const float* send, std::span<const size_t> counts, float* recv) override;

  // Steps that replayed a captured graph, and graphs captured (tests).
  uint64_t graph_replays() const;
  uint64_t graph_captures() const;
  // Why graphs were turned off after a capture failed ("" while they are on).
  const std::string& graph_error() const;

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace tpinfer
