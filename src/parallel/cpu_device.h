// The Device of a CPU rank: backend/cpu's kernels on the rank's thread pool,
// its KV cache in host memory (parallel/kv_cache.h, any of its types), and the
// collectives of a host Communicator (local, mpi, or either compressed).
//
// Attention runs in work units of up to 8 consecutive tokens of one sequence x
// one local KV head: the unit's query heads attend together, so each key and
// value is converted once per unit (backend/cpu/attention.h); units are
// spread over the pool's threads.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "backend/cpu/attention.h"
#include "backend/cpu/matmul.h"
#include "comm/communicator.h"
#include "core/thread_pool.h"
#include "parallel/device.h"
#include "parallel/kv_cache.h"

namespace tpinfer {

class CpuDevice final : public Device {
 public:
  // Both must outlive the device.
  CpuDevice(Communicator& comm, ThreadPool& pool);

  std::string name() const override { return "cpu"; }
  int rank() const override { return comm_.rank(); }
  int size() const override { return comm_.size(); }

  using Device::upload;
  DeviceMemory alloc(size_t bytes) override;
  std::unique_ptr<DeviceWeight> upload_weight(ShardedTensor t, WeightUse use) override;
  void upload(const void* host, size_t bytes, void* dst) override;
  void download(const float* src, int64_t rows, int64_t cols, float* host, int64_t host_stride) override;
  void read_to_host(const float* src, size_t n, float* host) override;

  void allocate_kv(const KvCacheShape& shape) override;
  uint64_t kv_bytes() const override { return cache_ ? cache_->bytes() : 0; }

  StepShape begin_step(const Batch& batch, bool graphable) override;
  void run_step(const std::function<void()>& layers) override { layers(); }
  void end_step() override {}
  const Batch& batch() const override { return *batch_; }

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

  void all_reduce_sum(float* data, size_t n) override { comm_.all_reduce_sum(data, n); }
  // Reduces in place on the host, with summarize_shard().
  void summarize_logits(const float* logits, int64_t rows, int64_t cols, int64_t stride, int64_t first_id, int top,
                        bool lse, std::span<const PenaltyInputs> penalties, float* out) override {
    summarize_shard(logits, rows, cols, stride, first_id, top, lse, penalties, out, summary_scratch_);
  }
  void all_gather(const float* send, std::span<const size_t> counts, float* recv) override {
    comm_.all_gather(send, counts, recv);
  }

 private:
  struct Tile {
    int64_t begin, end;
  };
  struct AttnWork {
    cpu::AttnScratch scratch;
    std::vector<const float*> q;
    std::vector<float*> out;
    std::vector<int> n_ctx;
  };

  Communicator& comm_;
  ThreadPool& pool_;
  std::vector<float> summary_scratch_;  // summarize_logits: a penalised row
  cpu::MatmulScratch scratch_;
  std::unique_ptr<KVCache> cache_;
  const Batch* batch_ = nullptr;
  std::vector<Tile> tiles_;          // the step's attention tiles
  std::vector<int> head_begin_;      // local query heads [head_begin_[j], head_begin_[j + 1]) use local KV head j
  std::vector<AttnWork> attn_work_;  // per thread
};

}  // namespace tpinfer
