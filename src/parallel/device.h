// What one rank computes with: the small set of operations a decoder layer is
// made of (matmul of a sharded weight, RMSNorm, RoPE, attention over the paged
// KV cache, the SwiGLU activation, element-wise adds) and the collectives of
// its tensor-parallel group. The parallel layers (parallel/layers.h,
// parallel/moe.h) and the model (model/llama.h) are written once over this
// interface; parallel/cpu_device.h implements it with backend/cpu and a host
// Communicator, parallel/cuda/cuda_device.h with backend/cuda and a device
// communicator.
//
// Every `float*` an operation takes is memory of this device (host memory on
// the CPU, device memory on a GPU), allocated with alloc() or upload();
// activations are f32, row-major. Operations are issued in order and may
// return before they finish (a GPU enqueues them on its stream); only
// read_to_host(), end_step() and the host copies they complete wait.
//
// A step: begin_step(batch) makes the batch's metadata (token ids, positions,
// KV slots, block tables, the rows that want logits) available to the
// operations that read it, and returns the step's shape; run_step() runs the
// layers (a GPU may capture them as a graph and replay it on later steps of
// the same shape); download() copies results out; end_step() waits for all of
// it, within the collectives' deadline.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "comm/communicator.h"
#include "core/dtype.h"
#include "formats/model_config.h"
#include "parallel/batch.h"
#include "parallel/logit_summary.h"
#include "parallel/sharded_tensor.h"

namespace tpinfer {

// Memory of one device, freed by it when this goes away.
class DeviceMemory {
 public:
  DeviceMemory() = default;
  DeviceMemory(void* data, size_t bytes, std::function<void(void*)> free)
      : data_(data), bytes_(bytes), free_(std::move(free)) {}
  ~DeviceMemory() { reset(); }
  DeviceMemory(DeviceMemory&& o) noexcept : data_(o.data_), bytes_(o.bytes_), free_(std::move(o.free_)) {
    o.data_ = nullptr;
    o.bytes_ = 0;
  }
  DeviceMemory& operator=(DeviceMemory&& o) noexcept {
    if (this != &o) {
      reset();
      data_ = o.data_;
      bytes_ = o.bytes_;
      free_ = std::move(o.free_);
      o.data_ = nullptr;
      o.bytes_ = 0;
    }
    return *this;
  }
  DeviceMemory(const DeviceMemory&) = delete;
  DeviceMemory& operator=(const DeviceMemory&) = delete;

  float* f32() const { return static_cast<float*>(data_); }
  void* data() const { return data_; }
  size_t bytes() const { return bytes_; }
  bool empty() const { return data_ == nullptr; }

 private:
  void reset() {
    if (data_ && free_) free_(data_);
    data_ = nullptr;
    bytes_ = 0;
  }
  void* data_ = nullptr;
  size_t bytes_ = 0;
  std::function<void(void*)> free_;
};

// What a weight is read by: matmul() (a layout the device's kernels read
// fastest), embed() (plain rows), or both (a tied embedding and lm_head on one
// pipeline stage).
enum class WeightUse { Matmul, Rows, RowsAndMatmul };

// A weight matrix resident on a device.
class DeviceWeight {
 public:
  virtual ~DeviceWeight() = default;
  DType type() const { return type_; }
  int64_t rows() const { return rows_; }
  int64_t cols() const { return cols_; }
  uint64_t bytes() const { return row_bytes(type_, static_cast<uint64_t>(cols_)) * static_cast<uint64_t>(rows_); }

 protected:
  DeviceWeight(DType type, int64_t rows, int64_t cols) : type_(type), rows_(rows), cols_(cols) {}

 private:
  DType type_;
  int64_t rows_, cols_;
};

// The shape of one step: the layers run `n` token rows (the batch's tokens,
// plus padding rows when a device pads to reuse a captured graph; padding
// rows compute garbage nobody reads and write a KV block nobody owns), and
// the lm_head `n_out` rows (the tokens that want logits, first in batch order).
struct StepShape {
  int64_t n = 0;
  int64_t n_out = 0;
};

// The rank's attention heads: query heads [q_begin, q_begin + n_q) and KV
// heads [kv_begin, kv_begin + n_kv) of the model; query head h uses KV head
// h / heads_per_kv.
struct AttnHeads {
  int n_q = 0, q_begin = 0;
  int n_kv = 0, kv_begin = 0;
  int heads_per_kv = 1;
  int head_dim = 0;
};

// The paged KV cache a device holds for a rank's layers (parallel/batch.h's
// block tables index it): n_blocks blocks of block_size token slots per layer,
// each slot the keys and values of the rank's KV heads.
struct KvCacheShape {
  int n_layers = 0;
  int n_kv_heads = 0;
  int head_dim = 0;
  int block_size = 16;
  int n_blocks = 0;
  DType type = DType::F16;
};

class Device {
 public:
  virtual ~Device() = default;

  // "cpu", or "cuda:0 (NVIDIA H100 80GB HBM3)".
  virtual std::string name() const = 0;
  // The tensor-parallel group this device's collectives run over.
  virtual int rank() const = 0;
  virtual int size() const = 0;

  // Memory. alloc's contents are undefined.
  virtual DeviceMemory alloc(size_t bytes) = 0;
  DeviceMemory upload(std::span<const float> values);
  virtual std::unique_ptr<DeviceWeight> upload_weight(ShardedTensor t, WeightUse use) = 0;
  // Host -> device, complete on return (the host buffer may be reused).
  virtual void upload(const void* host, size_t bytes, void* dst) = 0;
  // Device -> host: host[r * host_stride + c] = src[r * cols + c] for r <
  // rows, c < cols. Complete after end_step().
  virtual void download(const float* src, int64_t rows, int64_t cols, float* host, int64_t host_stride) = 0;
  // Device -> host, complete on return (waits for the work before it).
  virtual void read_to_host(const float* src, size_t n, float* host) = 0;

  // The KV cache; replaces any earlier one.
  virtual void allocate_kv(const KvCacheShape& shape) = 0;
  virtual uint64_t kv_bytes() const = 0;

  // The step (see above). `graphable`: the caller's layers may be captured as
  // a graph (no host reads inside, a single pipeline stage); the device pads
  // and captures only when it can too. Throws Error for a position without a
  // KV block, or a block outside the cache.
  virtual StepShape begin_step(const Batch& batch, bool graphable) = 0;
  // Runs `layers` for this step's shape: directly, or as a captured graph.
  // Capture is retried after any alloc(), since a graph holds addresses.
  virtual void run_step(const std::function<void()>& layers) = 0;
  virtual void end_step() = 0;

  // The step's batch on the host (embedding's range check, MoE routing).
  virtual const Batch& batch() const = 0;

  // y[n, w.rows] = x[n, w.cols] W^T. A weight with no columns (a rank with no
  // share of a row-parallel input) gives zeros.
  virtual void matmul(const DeviceWeight& w, const float* x, int64_t n, float* y) = 0;
  // out[t] = row (token t - row_begin) of `table`, or zeros where the step's
  // token t is outside [row_begin, row_begin + table.rows), for t < step n.
  virtual void embed(const DeviceWeight& table, int64_t row_begin, float* out) = 0;
  // y[r] = x[r] / sqrt(mean(x[r]^2) + eps) * w for `rows` rows of `dim`
  // values, `x_stride` / `y_stride` floats apart; y may equal x.
  virtual void rms_norm(const float* x, int64_t x_stride, const float* w, int64_t rows, int64_t dim, float eps,
                        float* y, int64_t y_stride) = 0;
  // Rotates `n_heads` heads at the start of each of the step's n rows (row_stride
  // floats apart) by the token's position; inv_freq: [head_dim / 2].
  virtual void rope(float* x, int64_t row_stride, int n_heads, int head_dim, const float* inv_freq,
                    RopeStyle style) = 0;
  // For the step's n rows of `qkv` (row_stride floats apart: the rank's Q
  // heads, then K, then V): stores K and V at the tokens' KV slots of `layer`,
  // then writes each query head's causal attention over its sequence to
  // out[t * n_q * head_dim + h * head_dim].
  virtual void attention(int layer, const float* qkv, int64_t row_stride, const AttnHeads& heads, float scale,
                         float* out) = 0;
  // out[t, i] = silu(gu[t, i]) * gu[t, ffn + i]; gu: [n, 2 ffn], out: [n, ffn].
  virtual void swiglu(const float* gu, int64_t n, int64_t ffn, float* out) = 0;
  // y[i] += x[i] for i < n.
  virtual void add(float* y, const float* x, int64_t n) = 0;
  // y[t, i] += bias[i] for t < n, i < dim.
  virtual void add_bias(float* y, const float* bias, int64_t n, int64_t dim) = 0;
  // y[i] = 0 for i < n.
  virtual void zero(float* y, int64_t n) = 0;
  // dst[i] = src[row i], `dim` floats each, for the step's n_out rows that want logits.
  virtual void gather_logit_rows(const float* src, int64_t dim, float* dst) = 0;
  // dst[i] = src[rows[i]], `dim` floats each; rows on the host.
  virtual void gather_rows(const float* src, std::span<const int64_t> rows, int64_t dim, float* dst) = 0;
  // out[rows[i]] += weights[i] * ys[i], `dim` floats each, rows in order;
  // rows and weights on the host.
  virtual void add_rows_scaled(float* out, std::span<const int64_t> rows, std::span<const float> weights,
                               const float* ys, int64_t dim) = 0;
  // out[t] += sigmoid(h[t] . w) * ys[t], `dim` floats each, t < n (a gated
  // shared expert); the dot product in double.
  virtual void add_sigmoid_gated(float* out, const float* h, const float* w, const float* ys, int64_t n,
                                 int64_t dim) = 0;

  // Shard-local sampling (parallel/logit_summary.h): reduces `rows` rows of
  // this rank's logits (`cols` vocabulary ids from first_id, rows `stride`
  // floats apart) to their summaries with `top` candidates (and the sum of
  // exps with `lse`), after
  // penalties[row] (none when empty), into out[rows, summary_floats(top)].
  // Not inside run_step(). The default reads the logits to the host, reduces
  // them there with summarize_shard() and uploads the summaries; a device may
  // do better, with the same result bit for bit.
  virtual void summarize_logits(const float* logits, int64_t rows, int64_t cols, int64_t stride, int64_t first_id,
                                int top, bool lse, std::span<const PenaltyInputs> penalties, float* out);

  // Collectives over the tensor-parallel group (every rank calls each, in the
  // same order). data[0, n) <- sum over ranks.
  virtual void all_reduce_sum(float* data, size_t n) = 0;
  // recv <- every rank's send[0, counts[r]) in rank order.
  virtual void all_gather(const float* send, std::span<const size_t> counts, float* recv) = 0;
};

// Grows `m` to hold at least `floats` floats (contents lost when it grows) and
// returns its data.
float* reserve_f32(Device& dev, DeviceMemory& m, size_t floats);

}  // namespace tpinfer
