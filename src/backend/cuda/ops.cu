// The element-wise and per-row kernels of kernels.h: embed, rms_norm, rope,
// swiglu, add, add_bias, gather_rows, add_rows_scaled, add_sigmoid_gated,
// kv_store, convert, convert_to_f32.
//
// Design: grid-stride loops with 64-bit indices (any n, grids capped by
// grid_for), one thread per output element (rope: per rotated pair), except
// rms_norm (one block per row) and embed (one block per token). Numerics: f32
// throughout; 16-bit conversions round to nearest even exactly as core/half.h;
// embed decodes weights exactly as backend/cpu's dequantize_row.
#include <cuda_runtime.h>

#include "backend/cuda/device_util.cuh"
#include "backend/cuda/kernels.h"

namespace tpinfer::cuda {
namespace {

using detail::check_launch;
using detail::global_thread;
using detail::grid_for;
using detail::grid_threads;
using detail::kThreads;
using detail::WKind;

// ---- embed: one block per token, threads over the columns.
template <WKind K>
__global__ void embed_kernel(const uint8_t* table, int64_t rows, int64_t cols, uint64_t row_bytes,
                             const int32_t* ids, int64_t row_begin, float* out) {
  const int64_t t = blockIdx.x;
  const int64_t r = static_cast<int64_t>(ids[t]) - row_begin;
  float* o = out + t * cols;
  if (r < 0 || r >= rows) {
    for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) o[c] = 0.0f;
    return;
  }
  const uint8_t* row = table + static_cast<uint64_t>(r) * row_bytes;
  for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) o[c] = detail::weight_value<K>(row, c);
}

// ---- rms_norm: one block per row; sum of squares in f32 per thread, then the
// block reduction; y = x * (1 / sqrt(mean + eps)) * w as the CPU kernel.
__global__ void rms_norm_kernel(const float* x, int64_t x_stride, const float* w, int64_t dim, float eps, float* y,
                                int64_t y_stride) {
  const float* xr = x + static_cast<int64_t>(blockIdx.x) * x_stride;
  float* yr = y + static_cast<int64_t>(blockIdx.x) * y_stride;
  float s = 0.0f;
  for (int64_t i = threadIdx.x; i < dim; i += blockDim.x) s += xr[i] * xr[i];
  s = detail::block_sum(s);  // every read of xr happened before this barrier: y may equal x
  const float scale = 1.0f / sqrtf(s / static_cast<float>(dim) + eps);
  for (int64_t i = threadIdx.x; i < dim; i += blockDim.x) yr[i] = xr[i] * scale * w[i];
}

// ---- rope: one thread per (token, head, pair). The angle is
// positions[t] * inv_freq[i] in f32 and sincosf is the accurate one (no
// --use_fast_math); the CPU computes the angle in double, so the two agree to a
// few f32 ulps of the angle.
__global__ void rope_kernel(float* x, int64_t n_tokens, int64_t row_stride, int n_heads, int head_dim,
                            const int32_t* positions, const float* inv_freq, bool neox) {
  const int half = head_dim / 2;
  const int64_t total = n_tokens * n_heads * half;
  for (int64_t idx = global_thread(); idx < total; idx += grid_threads()) {
    const int i = static_cast<int>(idx % half);
    const int64_t th = idx / half;
    const int h = static_cast<int>(th % n_heads);
    const int64_t t = th / n_heads;
    float* head = x + t * row_stride + static_cast<int64_t>(h) * head_dim;
    const int a = neox ? i : 2 * i;
    const int b = neox ? i + half : 2 * i + 1;
    const float angle = static_cast<float>(positions[t]) * inv_freq[i];
    float s, c;
    sincosf(angle, &s, &c);
    const float x0 = head[a], x1 = head[b];
    head[a] = x0 * c - x1 * s;
    head[b] = x0 * s + x1 * c;
  }
}

__global__ void swiglu_kernel(const float* gu, int64_t n, int64_t ffn, float* out) {
  const int64_t total = n * ffn;
  for (int64_t idx = global_thread(); idx < total; idx += grid_threads()) {
    const int64_t t = idx / ffn, i = idx % ffn;
    const float g = gu[t * 2 * ffn + i];
    const float u = gu[t * 2 * ffn + ffn + i];
    out[idx] = g / (1.0f + expf(-g)) * u;
  }
}

__global__ void add_kernel(float* y, const float* x, int64_t n) {
  for (int64_t i = global_thread(); i < n; i += grid_threads()) y[i] += x[i];
}

__global__ void add_bias_kernel(float* y, const float* bias, int64_t total, int64_t dim) {
  for (int64_t i = global_thread(); i < total; i += grid_threads()) y[i] += bias[i % dim];
}

__global__ void gather_rows_kernel(const float* src, const int32_t* rows, int64_t n, int64_t dim, float* dst) {
  const int64_t total = n * dim;
  for (int64_t idx = global_thread(); idx < total; idx += grid_threads()) {
    const int64_t t = idx / dim, c = idx % dim;
    dst[idx] = src[static_cast<int64_t>(rows[t]) * dim + c];
  }
}

__global__ void add_rows_scaled_kernel(float* out, const int32_t* rows, const float* weights, const float* ys,
                                       int64_t m, int64_t dim) {
  // One thread per column walks the rows in order: a row that appears more
  // than once adds in the CPU's order, and no two threads write one value.
  for (int64_t c = global_thread(); c < dim; c += grid_threads()) {
    for (int64_t i = 0; i < m; ++i) out[static_cast<int64_t>(rows[i]) * dim + c] += weights[i] * ys[i * dim + c];
  }
}

// One block per token: the dot product h[t] . w in double (as the CPU), then
// out[t] += sigmoid(dot) * ys[t].
__global__ void add_sigmoid_gated_kernel(float* out, const float* h, const float* w, const float* ys, int64_t dim) {
  __shared__ double partial[kThreads];
  const int64_t t = blockIdx.x;
  double d = 0;
  for (int64_t i = threadIdx.x; i < dim; i += blockDim.x) d += static_cast<double>(h[t * dim + i]) * w[i];
  partial[threadIdx.x] = d;
  __syncthreads();
  for (int half = blockDim.x / 2; half > 0; half /= 2) {
    if (static_cast<int>(threadIdx.x) < half) partial[threadIdx.x] += partial[threadIdx.x + half];
    __syncthreads();
  }
  const float g = static_cast<float>(1.0 / (1.0 + exp(-partial[0])));
  for (int64_t i = threadIdx.x; i < dim; i += blockDim.x) out[t * dim + i] += g * ys[t * dim + i];
}

// ---- kv_store: one thread per (token, kv head, element), K and V together.
// Negative slots (padding tokens) are skipped.
template <bool kBf16>
__global__ void kv_store_kernel(uint16_t* k, uint16_t* v, int64_t per_token, const float* qkv, int64_t row_stride,
                                int64_t k_offset, int64_t v_offset, const int32_t* slots, int64_t n) {
  const int64_t total = n * per_token;
  for (int64_t idx = global_thread(); idx < total; idx += grid_threads()) {
    const int64_t t = idx / per_token, e = idx % per_token;
    const int64_t slot = slots[t];
    if (slot < 0) continue;
    const float* row = qkv + t * row_stride;
    k[slot * per_token + e] = detail::store16<kBf16>(row[k_offset + e]);
    v[slot * per_token + e] = detail::store16<kBf16>(row[v_offset + e]);
  }
}

template <bool kBf16>
__global__ void convert_kernel(const float* x, int64_t n, uint16_t* y) {
  for (int64_t i = global_thread(); i < n; i += grid_threads()) y[i] = detail::store16<kBf16>(x[i]);
}

template <bool kBf16>
__global__ void convert_to_f32_kernel(const uint16_t* x, int64_t n, float* y) {
  for (int64_t i = global_thread(); i < n; i += grid_threads()) y[i] = detail::load16<kBf16>(x[i]);
}

void check_16bit(DType t, const char* what) {
  if (!detail::is_16bit(t)) throw Error(cat(what, ": type ", dtype_name(t), " is not f16 or bf16"));
}

template <WKind K>
void launch_embed(const DeviceMatrix& table, const int32_t* ids, int64_t n, int64_t row_begin, float* out,
                  cudaStream_t stream) {
  const uint64_t rb = row_bytes(table.type, static_cast<uint64_t>(table.cols));
  embed_kernel<K><<<static_cast<unsigned>(n), kThreads, 0, stream>>>(static_cast<const uint8_t*>(table.data),
                                                                    table.rows, table.cols, rb, ids, row_begin, out);
}

}  // namespace

void embed(const DeviceMatrix& table, const int32_t* ids, int64_t n, int64_t row_begin, float* out,
           cudaStream_t stream) {
  detail::check_matrix(table, "embed");
  if (n <= 0 || table.cols == 0) return;
  if (n > 0x7fffffff) throw Error(cat("embed: ", n, " tokens is more than one launch takes"));
  switch (detail::weight_kind(table.type, "embed")) {
    case WKind::kF32:
      launch_embed<WKind::kF32>(table, ids, n, row_begin, out, stream);
      break;
    case WKind::kF16:
      launch_embed<WKind::kF16>(table, ids, n, row_begin, out, stream);
      break;
    case WKind::kBF16:
      launch_embed<WKind::kBF16>(table, ids, n, row_begin, out, stream);
      break;
    case WKind::kQ8_0:
      launch_embed<WKind::kQ8_0>(table, ids, n, row_begin, out, stream);
      break;
    case WKind::kQ4_0:
      launch_embed<WKind::kQ4_0>(table, ids, n, row_begin, out, stream);
      break;
    case WKind::kQ4_K:
      launch_embed<WKind::kQ4_K>(table, ids, n, row_begin, out, stream);
      break;
  }
  check_launch("embed_kernel");
}

void rms_norm(const float* x, int64_t x_stride, const float* w, int64_t rows, int64_t dim, float eps, float* y,
              int64_t y_stride, cudaStream_t stream) {
  if (rows <= 0 || dim <= 0) return;
  if (rows > 0x7fffffff) throw Error(cat("rms_norm: ", rows, " rows is more than one launch takes"));
  if (x_stride < dim || y_stride < dim) {
    throw Error(cat("rms_norm: row strides ", x_stride, " / ", y_stride, " are shorter than the row (", dim, ")"));
  }
  const int threads = dim >= 4096 ? 1024 : (dim >= 1024 ? 512 : 128);
  rms_norm_kernel<<<static_cast<unsigned>(rows), threads, 0, stream>>>(x, x_stride, w, dim, eps, y, y_stride);
  check_launch("rms_norm_kernel");
}

void rope(float* x, int64_t n_tokens, int64_t row_stride, int n_heads, int head_dim, const int32_t* positions,
          const float* inv_freq, bool neox, cudaStream_t stream) {
  if (head_dim <= 0 || head_dim % 2 != 0) throw Error(cat("rope: head size ", head_dim, " must be even and positive"));
  if (n_tokens <= 0 || n_heads <= 0) return;
  if (row_stride < static_cast<int64_t>(n_heads) * head_dim) {
    throw Error(cat("rope: row stride ", row_stride, " is shorter than ", n_heads, " heads of ", head_dim));
  }
  const int64_t total = n_tokens * n_heads * (head_dim / 2);
  rope_kernel<<<grid_for(total), kThreads, 0, stream>>>(x, n_tokens, row_stride, n_heads, head_dim, positions,
                                                         inv_freq, neox);
  check_launch("rope_kernel");
}

void swiglu(const float* gu, int64_t n, int64_t ffn, float* out, cudaStream_t stream) {
  if (n <= 0 || ffn <= 0) return;
  swiglu_kernel<<<grid_for(n * ffn), kThreads, 0, stream>>>(gu, n, ffn, out);
  check_launch("swiglu_kernel");
}

void add(float* y, const float* x, int64_t n, cudaStream_t stream) {
  if (n <= 0) return;
  add_kernel<<<grid_for(n), kThreads, 0, stream>>>(y, x, n);
  check_launch("add_kernel");
}

void add_bias(float* y, const float* bias, int64_t n, int64_t dim, cudaStream_t stream) {
  if (n <= 0 || dim <= 0) return;
  add_bias_kernel<<<grid_for(n * dim), kThreads, 0, stream>>>(y, bias, n * dim, dim);
  check_launch("add_bias_kernel");
}

void gather_rows(const float* src, const int32_t* rows, int64_t n, int64_t dim, float* dst, cudaStream_t stream) {
  if (n <= 0 || dim <= 0) return;
  gather_rows_kernel<<<grid_for(n * dim), kThreads, 0, stream>>>(src, rows, n, dim, dst);
  check_launch("gather_rows_kernel");
}

void add_rows_scaled(float* out, const int32_t* rows, const float* weights, const float* ys, int64_t m, int64_t dim,
                     cudaStream_t stream) {
  if (m <= 0 || dim <= 0) return;
  add_rows_scaled_kernel<<<grid_for(dim), kThreads, 0, stream>>>(out, rows, weights, ys, m, dim);
  check_launch("add_rows_scaled_kernel");
}

void add_sigmoid_gated(float* out, const float* h, const float* w, const float* ys, int64_t n, int64_t dim,
                       cudaStream_t stream) {
  if (n <= 0 || dim <= 0) return;
  add_sigmoid_gated_kernel<<<static_cast<unsigned>(n), kThreads, 0, stream>>>(out, h, w, ys, dim);
  check_launch("add_sigmoid_gated_kernel");
}

void kv_store(const PagedKV& kv, const float* qkv, int64_t row_stride, int64_t k_offset, int64_t v_offset,
              const int32_t* slots, int64_t n, cudaStream_t stream) {
  check_16bit(kv.type, "kv_store");
  if (kv.n_kv_heads <= 0 || kv.head_dim <= 0) {
    throw Error(cat("kv_store: ", kv.n_kv_heads, " KV heads of ", kv.head_dim, " values"));
  }
  if (n <= 0) return;
  const int64_t per_token = static_cast<int64_t>(kv.n_kv_heads) * kv.head_dim;
  if (k_offset < 0 || v_offset < 0 || k_offset + per_token > row_stride || v_offset + per_token > row_stride) {
    throw Error(cat("kv_store: keys at ", k_offset, " and values at ", v_offset, " (", per_token,
                    " floats each) do not fit rows of ", row_stride));
  }
  uint16_t* k = static_cast<uint16_t*>(kv.k);
  uint16_t* v = static_cast<uint16_t*>(kv.v);
  const unsigned grid = grid_for(n * per_token);
  if (kv.type == DType::BF16) {
    kv_store_kernel<true><<<grid, kThreads, 0, stream>>>(k, v, per_token, qkv, row_stride, k_offset, v_offset, slots, n);
  } else {
    kv_store_kernel<false><<<grid, kThreads, 0, stream>>>(k, v, per_token, qkv, row_stride, k_offset, v_offset, slots,
                                                          n);
  }
  check_launch("kv_store_kernel");
}

void convert(const float* x, int64_t n, DType to, void* y, cudaStream_t stream) {
  check_16bit(to, "convert");
  if (n <= 0) return;
  if (to == DType::BF16) {
    convert_kernel<true><<<grid_for(n), kThreads, 0, stream>>>(x, n, static_cast<uint16_t*>(y));
  } else {
    convert_kernel<false><<<grid_for(n), kThreads, 0, stream>>>(x, n, static_cast<uint16_t*>(y));
  }
  check_launch("convert_kernel");
}

void convert_to_f32(const void* x, DType from, int64_t n, float* y, cudaStream_t stream) {
  check_16bit(from, "convert_to_f32");
  if (n <= 0) return;
  if (from == DType::BF16) {
    convert_to_f32_kernel<true><<<grid_for(n), kThreads, 0, stream>>>(static_cast<const uint16_t*>(x), n, y);
  } else {
    convert_to_f32_kernel<false><<<grid_for(n), kThreads, 0, stream>>>(static_cast<const uint16_t*>(x), n, y);
  }
  check_launch("convert_to_f32_kernel");
}

}  // namespace tpinfer::cuda
