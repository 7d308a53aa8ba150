// The CUDA kernels of the transformer forward, as launchers that enqueue work on
// a stream and return (nothing here synchronizes). Every pointer is device
// memory unless it says otherwise; activations are f32 row-major.
//
// Each kernel has a plain counterpart in backend/cpu or tests/reference, and a
// test (tests/cuda/cuda_kernels_test.cc) compares them on random inputs on
// a machine with a GPU; without one those tests skip with a visible message.
// The per-block decoding of the quantized formats is __host__ __device__
// (quant_blocks.cuh) and is also tested on the host against backend/cpu.
//
// Weight formats: F32, F16, BF16 (cuBLAS, f32 accumulation) and Q8_0, Q4_0,
// Q4_K (own kernels; GGUF block layouts, rows of whole blocks). Activations are
// rounded to the weight's 16-bit type for cuBLAS, and quantized to 8 bits per
// 32 values for the quantized GEMV (n <= 8 tokens), as the CPU kernels do; for
// more tokens quantized weights are dequantized to BF16 in chunks of rows and
// multiplied by cuBLAS with BF16 activations (matmul.cu states the numerics).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "backend/cuda/runtime.h"
#include "core/dtype.h"

namespace tpinfer::cuda {

// A weight matrix on the device: `rows` rows of `cols` values, row r at
// data + r * row_bytes(type, cols) (rows packed, no stride).
struct DeviceMatrix {
  DType type = DType::F32;
  int64_t rows = 0;
  int64_t cols = 0;
  const void* data = nullptr;
};

// True for the weight types matmul() and embed() accept.
bool supported_weight_type(DType type);

// One per stream: the cuBLAS(Lt) handle, its workspace, and scratch for the
// converted / quantized activations. Not thread-safe; one per rank.
class MatmulContext {
 public:
  explicit MatmulContext(cudaStream_t stream);
  ~MatmulContext();
  MatmulContext(const MatmulContext&) = delete;
  MatmulContext& operator=(const MatmulContext&) = delete;

  cudaStream_t stream() const { return stream_; }
  void* blas() const { return blas_; }  // cublasHandle_t / cublasLtHandle_t, opaque here
  DeviceBuffer& scratch() { return scratch_; }
  DeviceBuffer& workspace() { return workspace_; }

 private:
  cudaStream_t stream_;
  void* blas_ = nullptr;
  DeviceBuffer scratch_, workspace_;
};

// y[n, w.rows] = x[n, w.cols] * W^T. Throws Error for an unsupported type or
// cols that are not whole blocks. Capturable in a CUDA graph once the scratch
// has grown for n (call it once outside capture first).
void matmul(MatmulContext& ctx, const DeviceMatrix& w, const float* x, int64_t n, float* y);

// out[i, :] = row ids[i] - row_begin of `table` dequantized to f32, or zeros
// when the id is outside [row_begin, row_begin + table.rows) (a vocab-parallel
// embedding shard).
void embed(const DeviceMatrix& table, const int32_t* ids, int64_t n, int64_t row_begin, float* out,
           cudaStream_t stream);

// y[r] = x[r] / sqrt(mean(x[r]^2) + eps) * w, for `rows` rows of `dim`
// values, rows `x_stride` / `y_stride` floats apart. y may equal x.
void rms_norm(const float* x, int64_t x_stride, const float* w, int64_t rows, int64_t dim, float eps, float* y,
              int64_t y_stride, cudaStream_t stream);

// Rotates `n_heads` heads of head_dim values in each of n_tokens rows
// (row_stride floats apart; the heads start at the row's beginning) by the
// token's position: pairs (2i, 2i+1), or (i, i + head_dim/2) when neox.
// inv_freq: [head_dim / 2], positions: [n_tokens].
void rope(float* x, int64_t n_tokens, int64_t row_stride, int n_heads, int head_dim, const int32_t* positions,
          const float* inv_freq, bool neox, cudaStream_t stream);

// out[t, i] = silu(gu[t, i]) * gu[t, ffn + i]; gu: [n, 2 ffn], out: [n, ffn].
void swiglu(const float* gu, int64_t n, int64_t ffn, float* out, cudaStream_t stream);

// y[i] += x[i], i < n.
void add(float* y, const float* x, int64_t n, cudaStream_t stream);
// y[i] += bias[i % dim], i < n * dim.
void add_bias(float* y, const float* bias, int64_t n, int64_t dim, cudaStream_t stream);

// dst[i, :] = src[rows[i], :], dim floats per row.
void gather_rows(const float* src, const int32_t* rows, int64_t n, int64_t dim, float* dst, cudaStream_t stream);

// out[rows[i], :] += weights[i] * ys[i, :] for i < m in order, dim floats per
// row (the weighted sum of the experts a token was routed to).
void add_rows_scaled(float* out, const int32_t* rows, const float* weights, const float* ys, int64_t m, int64_t dim,
                     cudaStream_t stream);
// out[t, :] += sigmoid(h[t, :] . w) * ys[t, :] for t < n, the dot product in
// double (a gated shared expert).
void add_sigmoid_gated(float* out, const float* h, const float* w, const float* ys, int64_t n, int64_t dim,
                       cudaStream_t stream);

// A paged KV cache layer on the device: K and V each [n_blocks * block_size
// slots][n_kv_heads][head_dim] in F16 or BF16.
struct PagedKV {
  void* k = nullptr;
  void* v = nullptr;
  DType type = DType::F16;
  int block_size = 16;
  int n_kv_heads = 0;
  int head_dim = 0;
};

// Writes the keys and values of n tokens (rows of `qkv`, row_stride floats
// apart, keys at k_offset and values at v_offset floats into the row, n_kv_heads
// x head_dim each) to the slots slots[t] (block * block_size + offset).
void kv_store(const PagedKV& kv, const float* qkv, int64_t row_stride, int64_t k_offset, int64_t v_offset,
              const int32_t* slots, int64_t n, cudaStream_t stream);

// The batch's layout for attention, on the device: for token t, its position
// and its sequence; sequence s's block table is block_tables[s * max_blocks,
// + max_blocks) (entries past its length unused).
struct AttnBatch {
  const int32_t* positions = nullptr;
  const int32_t* seq = nullptr;
  const int32_t* block_tables = nullptr;
  int max_blocks = 0;
  int64_t n_tokens = 0;
};

// Causal attention over the cache for decode and prefill: query head h of token
// t (q + t * q_stride + h * head_dim) attends over positions [0, positions[t]]
// of its sequence with local KV head (q_begin + h) / heads_per_kv - kv_begin,
// writing out + t * out_stride + h * head_dim. Softmax in f32 with the running
// max (online), scores scaled by `scale`.
void paged_attention(const float* q, int64_t q_stride, const PagedKV& kv, const AttnBatch& batch, int n_heads,
                     int q_begin, int heads_per_kv, int kv_begin, float scale, float* out, int64_t out_stride,
                     cudaStream_t stream);

// f32 <-> 16-bit conversions (the KV cache, the compressed collectives' BF16).
void convert(const float* x, int64_t n, DType to, void* y, cudaStream_t stream);
void convert_to_f32(const void* x, DType from, int64_t n, float* y, cudaStream_t stream);

}  // namespace tpinfer::cuda
