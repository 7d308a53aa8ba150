// matmul: y[n, rows] = x[n, cols] * W^T for every supported weight type.
//
// Paths (the scratch is the MatmulContext's, grown only outside graph capture):
//  - F32: cublasSgemm, no TF32 (CUBLAS_DEFAULT_MATH), exact f32 products.
//  - F16 / BF16: x rounded to the weight's type in scratch (round to nearest
//    even), cublasGemmEx with f32 accumulation (CUBLAS_COMPUTE_32F), f32 y.
//  - Q8_0 / Q4_0 / Q4_K with n <= kGemvMaxTokens (decode): x quantized in
//    scratch to int8 per 32 values with one f32 scale each (the rounding of
//    cpu::quantize_row to Q8_0, scale rounded to f16 as a Q8_0 block stores
//    it), then a GEMV kernel: one warp per weight row, integer dot products of
//    4 values at a time with __dp4a, per-block scale products in f32, a warp
//    shuffle reduction, no atomics. The weight row is read once for all n
//    tokens. Q4_K's mins need the per-32 sums of the activations, computed
//    with __dp4a against ones: sub-block j contributes
//    da_j * (d*sc_j * sum(q*a) - dmin*m_j * sum(a)). (The CPU quantizes Q4_K's
//    activations per 256 values, Q8_K; 32 here is a finer grid, so at most as
//    much activation error.)
//  - Quantized with larger n (prefill): x rounded to BF16, the weight
//    dequantized (exactly as the CPU does, then rounded to BF16) into scratch
//    in chunks of rows (kChunkBytes at most), cublasGemmEx per chunk. BF16
//    rather than F16 for range: activations of hundreds or thousands do not
//    overflow. Relative rounding 2^-9 per operand, f32 accumulation.
//
// cuBLAS is column-major. A row-major [R, C] matrix's memory is the
// column-major [C, R] matrix (its transpose) with leading dimension C. So
// W (row-major [rows, cols]) is column-major W^T (ld cols), x is x^T (ld cols),
// and y^T (column-major [rows, n], ld rows) is what we must write:
//   y^T = W * x^T = op_T(W^T as stored) * (x^T as stored),
// i.e. gemm(transa = T, transb = N, m = rows, n = n, k = cols, A = W, lda = cols,
// B = x, ldb = cols, C = y, ldc = rows). A chunk of rows r0.. writes y + r0 with
// the same ldc.
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <climits>

#include "backend/cuda/device_util.cuh"
#include "backend/cuda/kernels.h"

namespace tpinfer::cuda {
namespace detail {

void check_matrix(const DeviceMatrix& w, const char* what) {
  const DTypeInfo& info = dtype_info(w.type);
  if (w.rows < 0 || w.cols < 0) throw Error(cat(what, ": negative shape [", w.rows, ", ", w.cols, "]"));
  if (w.cols % info.block_size != 0) {
    throw Error(cat(what, ": ", w.cols, " columns are not whole ", dtype_name(w.type), " blocks of ", info.block_size));
  }
  if (w.rows > INT_MAX || w.cols > INT_MAX) {
    throw Error(cat(what, ": shape [", w.rows, ", ", w.cols, "] exceeds the int range of cuBLAS"));
  }
  // Q4_K rows are read 8 bytes at a time (144-byte blocks keep the alignment);
  // the other quantized and 16-bit rows in 2-byte units, F32 in 4.
  const uintptr_t align = w.type == DType::Q4_K ? 8 : (w.type == DType::F32 ? 4 : 2);
  if (reinterpret_cast<uintptr_t>(w.data) % align != 0) {
    throw Error(cat(what, ": ", dtype_name(w.type), " weights must be ", align, "-byte aligned"));
  }
}

}  // namespace detail

namespace {

using detail::check_launch;
using detail::global_thread;
using detail::grid_for;
using detail::grid_threads;
using detail::kThreads;
using detail::WKind;

constexpr int kGemvMaxTokens = 8;
constexpr int kGemvWarps = 4;                        // rows per thread block
constexpr size_t kChunkBytes = size_t{64} << 20;     // dequantized weight rows per GEMM chunk
constexpr size_t kWorkspaceBytes = size_t{32} << 20;  // cuBLAS workspace (Hopper's recommendation)
constexpr size_t kAlign = 256;

size_t align_up(size_t n) { return (n + kAlign - 1) / kAlign * kAlign; }

void check_blas(cublasStatus_t st, const char* what) {
  if (st != CUBLAS_STATUS_SUCCESS) throw Error(cat("cuBLAS error in ", what, ": ", cublasGetStatusString(st)));
}

cublasHandle_t handle(const MatmulContext& ctx) { return static_cast<cublasHandle_t>(ctx.blas()); }

// Grows the scratch, which frees the old one and so may not happen while the
// stream is being captured into a graph.
void* scratch(MatmulContext& ctx, size_t bytes) {
  if (ctx.scratch().bytes() < bytes) {
    cudaStreamCaptureStatus status = cudaStreamCaptureStatusNone;
    check(cudaStreamIsCapturing(ctx.stream(), &status), "cudaStreamIsCapturing");
    if (status != cudaStreamCaptureStatusNone) {
      throw Error(cat("matmul: the scratch must grow to ", bytes, " bytes during graph capture; run the same shapes "
                      "once before capturing"));
    }
    ctx.scratch().reserve(bytes);
  }
  return ctx.scratch().data();
}

// ---- activation quantization: one warp per 32 values (a row of x holds whole
// blocks since cols % 32 == 0). qs[i] = round(x[i] / d), d[b] = the block's
// scale rounded to f16, as cpu::quantize_row(Q8_0) and its vec_dot read it.
__global__ void quantize_act_kernel(const float* x, int64_t n_blocks, int8_t* qs, float* d) {
  const int lane = threadIdx.x & 31;
  const int64_t warps = grid_threads() / 32;
  for (int64_t b = global_thread() / 32; b < n_blocks; b += warps) {
    const float v = x[b * quant::kQK + lane];
    const float amax = detail::warp_max(fabsf(v));
    const quant::Q8Scale s = quant::q8_scale(amax);
    qs[b * quant::kQK + lane] = quant::q8_value(v, s.id);
    if (lane == 0) d[b] = quant::f16_to_f32(quant::f32_to_f16(s.d));
  }
}

// ---- GEMV, one warp per row; aq: int8 activations [N][cols], ad: their scales
// [N][cols / 32]. The weight side is read once per row for all N tokens. Q8_0
// and Q4_0: 4 lanes per 32-value block (8 values per lane), 8 blocks per warp
// step, so a warp step reads 8 consecutive blocks; Q4_K: 16 lanes per
// super-block, 2 per step. The lane arithmetic is quant_blocks.cuh's (tested on
// the host).

// The block's part of the dot for the 32-value formats (quant_blocks.cuh).
TPINFER_HD int part_dot(const quant::BlockQ8_0& b, const int8_t* a, int part) {
  return quant::q8_0_part_dot(b, a, part);
}
TPINFER_HD int part_dot(const quant::BlockQ4_0& b, const int8_t* a, int part) {
  return quant::q4_0_part_dot(b, a, part);
}

// Q8_0 / Q4_0 (Block): 4 lanes per block, 8 blocks of the row per warp step.
template <class Block, int N>
__device__ __forceinline__ void gemv_q32(const uint8_t* w, int64_t rows, int64_t cols, const int8_t* aq,
                                         const float* ad, float* y) {
  const int lane = threadIdx.x & 31;
  const int64_t row = static_cast<int64_t>(blockIdx.x) * kGemvWarps + (threadIdx.x >> 5);
  if (row >= rows) return;  // the whole warp leaves together
  const int64_t nb = cols / quant::kQK;
  const auto* blocks = reinterpret_cast<const Block*>(w) + row * nb;
  const int part = lane & 3;
  float acc[N];
#pragma unroll
  for (int t = 0; t < N; ++t) acc[t] = 0.0f;
  for (int64_t b = lane >> 2; b < nb; b += 8) {
    const Block& blk = blocks[b];
    const float dw = quant::f16_to_f32(blk.d);
#pragma unroll
    for (int t = 0; t < N; ++t) {
      const int s = part_dot(blk, aq + t * cols + b * quant::kQK, part);
      acc[t] += dw * ad[t * nb + b] * static_cast<float>(s);
    }
  }
#pragma unroll
  for (int t = 0; t < N; ++t) {
    const float s = detail::warp_sum(acc[t]);
    if (lane == 0) y[t * rows + row] = s;
  }
}

template <int N>
__global__ void __launch_bounds__(kGemvWarps * 32)
    gemv_q8_0_kernel(const uint8_t* w, int64_t rows, int64_t cols, const int8_t* aq, const float* ad, float* y) {
  gemv_q32<quant::BlockQ8_0, N>(w, rows, cols, aq, ad, y);
}

template <int N>
__global__ void __launch_bounds__(kGemvWarps * 32)
    gemv_q4_0_kernel(const uint8_t* w, int64_t rows, int64_t cols, const int8_t* aq, const float* ad, float* y) {
  gemv_q32<quant::BlockQ4_0, N>(w, rows, cols, aq, ad, y);
}

template <int N>
__global__ void __launch_bounds__(kGemvWarps * 32)
    gemv_q4_k_kernel(const uint8_t* w, int64_t rows, int64_t cols, const int8_t* aq, const float* ad, float* y) {
  const int lane = threadIdx.x & 31;
  const int64_t row = static_cast<int64_t>(blockIdx.x) * kGemvWarps + (threadIdx.x >> 5);
  if (row >= rows) return;
  const int64_t nsb = cols / quant::kQKK;
  const int64_t nb = cols / quant::kQK;
  const auto* blocks = reinterpret_cast<const quant::BlockQ4_K*>(w) + row * nsb;
  const int i = lane & 15;
  float acc[N];
#pragma unroll
  for (int t = 0; t < N; ++t) acc[t] = 0.0f;
  for (int64_t sb = lane >> 4; sb < nsb; sb += 2) {
    const quant::Q4KLane wl = quant::q4_k_lane(blocks[sb], i);
#pragma unroll
    for (int t = 0; t < N; ++t) {
      acc[t] += quant::q4_k_lane_dot(wl, aq + t * cols + sb * quant::kQKK, ad + t * nb + sb * 8, i);
    }
  }
#pragma unroll
  for (int t = 0; t < N; ++t) {
    const float s = detail::warp_sum(acc[t]);
    if (lane == 0) y[t * rows + row] = s;
  }
}

// ---- dequantization of rows [r0, r0 + n_rows) to BF16, 8 values (one
// 16-byte store) per thread. out: [n_rows][cols], 16-byte aligned.
template <WKind K>
__global__ void dequant_bf16_kernel(const uint8_t* w, uint64_t row_bytes, int64_t r0, int64_t n_rows, int64_t cols,
                                    uint16_t* out) {
  const int64_t per_row = cols / 8;
  const int64_t total = n_rows * per_row;
  for (int64_t idx = global_thread(); idx < total; idx += grid_threads()) {
    const int64_t r = idx / per_row, c0 = (idx % per_row) * 8;
    const uint8_t* row = w + static_cast<uint64_t>(r0 + r) * row_bytes;
    uint32_t packed[4];
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const uint32_t a = quant::f32_to_bf16(detail::weight_value<K>(row, c0 + 2 * j));
      const uint32_t b = quant::f32_to_bf16(detail::weight_value<K>(row, c0 + 2 * j + 1));
      packed[j] = a | (b << 16);
    }
    *reinterpret_cast<uint4*>(out + r * cols + c0) = make_uint4(packed[0], packed[1], packed[2], packed[3]);
  }
}

template <bool kBf16>
__global__ void to_16bit_kernel(const float* x, int64_t n, uint16_t* y) {
  for (int64_t i = global_thread(); i < n; i += grid_threads()) y[i] = detail::store16<kBf16>(x[i]);
}

void to_16bit(const float* x, int64_t n, bool bf16, uint16_t* y, cudaStream_t stream) {
  if (bf16) {
    to_16bit_kernel<true><<<grid_for(n), kThreads, 0, stream>>>(x, n, y);
  } else {
    to_16bit_kernel<false><<<grid_for(n), kThreads, 0, stream>>>(x, n, y);
  }
  check_launch("to_16bit_kernel");
}

// y (+ r0) = W16 * x16 for `m` rows of W16 (see the column-major note on top).
void gemm_16bit(MatmulContext& ctx, cudaDataType_t type, const void* w16, const void* x16, int64_t m, int64_t n,
                int64_t cols, float* y, int64_t ldc) {
  const float one = 1.0f, zero = 0.0f;
  check_blas(cublasGemmEx(handle(ctx), CUBLAS_OP_T, CUBLAS_OP_N, static_cast<int>(m), static_cast<int>(n),
                          static_cast<int>(cols), &one, w16, type, static_cast<int>(cols), x16, type,
                          static_cast<int>(cols), &zero, y, CUDA_R_32F, static_cast<int>(ldc), CUBLAS_COMPUTE_32F,
                          CUBLAS_GEMM_DEFAULT),
             "cublasGemmEx");
}

#define TPINFER_GEMV_CASES(kernel)                                                                          \
  switch (n) {                                                                                              \
    case 1: kernel<1><<<grid, kGemvWarps * 32, 0, stream>>>(w, rows, cols, aq, ad, y); break;               \
    case 2: kernel<2><<<grid, kGemvWarps * 32, 0, stream>>>(w, rows, cols, aq, ad, y); break;               \
    case 3: kernel<3><<<grid, kGemvWarps * 32, 0, stream>>>(w, rows, cols, aq, ad, y); break;               \
    case 4: kernel<4><<<grid, kGemvWarps * 32, 0, stream>>>(w, rows, cols, aq, ad, y); break;               \
    case 5: kernel<5><<<grid, kGemvWarps * 32, 0, stream>>>(w, rows, cols, aq, ad, y); break;               \
    case 6: kernel<6><<<grid, kGemvWarps * 32, 0, stream>>>(w, rows, cols, aq, ad, y); break;               \
    case 7: kernel<7><<<grid, kGemvWarps * 32, 0, stream>>>(w, rows, cols, aq, ad, y); break;               \
    default: kernel<8><<<grid, kGemvWarps * 32, 0, stream>>>(w, rows, cols, aq, ad, y); break;              \
  }

void gemv_quantized(MatmulContext& ctx, WKind kind, const DeviceMatrix& wm, const float* x, int64_t n, float* y) {
  const int64_t rows = wm.rows, cols = wm.cols;
  const int64_t n_blocks = n * cols / quant::kQK;
  const size_t q_bytes = align_up(static_cast<size_t>(n * cols));
  auto* base = static_cast<uint8_t*>(scratch(ctx, q_bytes + static_cast<size_t>(n_blocks) * sizeof(float)));
  auto* aq = reinterpret_cast<int8_t*>(base);
  auto* ad = reinterpret_cast<float*>(base + q_bytes);
  cudaStream_t stream = ctx.stream();
  quantize_act_kernel<<<grid_for(n_blocks * 32), kThreads, 0, stream>>>(x, n_blocks, aq, ad);
  check_launch("quantize_act_kernel");

  const auto* w = static_cast<const uint8_t*>(wm.data);
  const unsigned grid = static_cast<unsigned>((rows + kGemvWarps - 1) / kGemvWarps);
  if (kind == WKind::kQ8_0) {
    TPINFER_GEMV_CASES(gemv_q8_0_kernel)
    check_launch("gemv_q8_0_kernel");
  } else if (kind == WKind::kQ4_0) {
    TPINFER_GEMV_CASES(gemv_q4_0_kernel)
    check_launch("gemv_q4_0_kernel");
  } else {
    TPINFER_GEMV_CASES(gemv_q4_k_kernel)
    check_launch("gemv_q4_k_kernel");
  }
}

#undef TPINFER_GEMV_CASES

template <WKind K>
void dequant_bf16(const DeviceMatrix& wm, int64_t r0, int64_t n_rows, uint16_t* out, cudaStream_t stream) {
  const uint64_t rb = row_bytes(wm.type, static_cast<uint64_t>(wm.cols));
  dequant_bf16_kernel<K><<<grid_for(n_rows * wm.cols / 8), kThreads, 0, stream>>>(
      static_cast<const uint8_t*>(wm.data), rb, r0, n_rows, wm.cols, out);
  check_launch("dequant_bf16_kernel");
}

void gemm_quantized(MatmulContext& ctx, WKind kind, const DeviceMatrix& wm, const float* x, int64_t n, float* y) {
  const int64_t rows = wm.rows, cols = wm.cols;
  const size_t x_bytes = align_up(static_cast<size_t>(n * cols) * 2);
  const size_t row16 = static_cast<size_t>(cols) * 2;
  const int64_t chunk = std::max<int64_t>(1, std::min<int64_t>(rows, static_cast<int64_t>(kChunkBytes / row16)));
  auto* base = static_cast<uint8_t*>(scratch(ctx, x_bytes + static_cast<size_t>(chunk) * row16));
  auto* x16 = reinterpret_cast<uint16_t*>(base);
  auto* w16 = reinterpret_cast<uint16_t*>(base + x_bytes);
  cudaStream_t stream = ctx.stream();
  to_16bit(x, n * cols, true, x16, stream);
  for (int64_t r0 = 0; r0 < rows; r0 += chunk) {
    const int64_t m = std::min(chunk, rows - r0);
    switch (kind) {
      case WKind::kQ8_0:
        dequant_bf16<WKind::kQ8_0>(wm, r0, m, w16, stream);
        break;
      case WKind::kQ4_0:
        dequant_bf16<WKind::kQ4_0>(wm, r0, m, w16, stream);
        break;
      default:
        dequant_bf16<WKind::kQ4_K>(wm, r0, m, w16, stream);
        break;
    }
    gemm_16bit(ctx, CUDA_R_16BF, w16, x16, m, n, cols, y + r0, rows);
  }
}

}  // namespace

bool supported_weight_type(DType type) {
  switch (type) {
    case DType::F32:
    case DType::F16:
    case DType::BF16:
    case DType::Q8_0:
    case DType::Q4_0:
    case DType::Q4_K:
      return true;
    default:
      return false;
  }
}

MatmulContext::MatmulContext(cudaStream_t stream) : stream_(stream) {
  cublasHandle_t h = nullptr;
  check_blas(cublasCreate(&h), "cublasCreate");
  blas_ = h;
  try {
    check_blas(cublasSetStream(h, stream_), "cublasSetStream");
    // A workspace of our own, so cuBLAS allocates nothing while a graph is
    // being captured.
    workspace_.reserve(kWorkspaceBytes);
    check_blas(cublasSetWorkspace(h, workspace_.data(), workspace_.bytes()), "cublasSetWorkspace");
  } catch (...) {
    cublasDestroy(h);
    throw;
  }
}

MatmulContext::~MatmulContext() {
  if (blas_) cublasDestroy(static_cast<cublasHandle_t>(blas_));
}

void matmul(MatmulContext& ctx, const DeviceMatrix& w, const float* x, int64_t n, float* y) {
  const WKind kind = detail::weight_kind(w.type, "matmul");
  detail::check_matrix(w, "matmul");
  if (n < 0) throw Error(cat("matmul: negative token count ", n));
  if (n == 0 || w.rows == 0) return;
  if (n > INT_MAX) throw Error(cat("matmul: ", n, " tokens exceed the int range of cuBLAS"));
  if (w.cols == 0) {
    check(cudaMemsetAsync(y, 0, static_cast<size_t>(n * w.rows) * sizeof(float), ctx.stream()), "cudaMemsetAsync");
    return;
  }
  switch (kind) {
    case WKind::kF32: {
      const float one = 1.0f, zero = 0.0f;
      check_blas(cublasSgemm(handle(ctx), CUBLAS_OP_T, CUBLAS_OP_N, static_cast<int>(w.rows), static_cast<int>(n),
                             static_cast<int>(w.cols), &one, static_cast<const float*>(w.data),
                             static_cast<int>(w.cols), x, static_cast<int>(w.cols), &zero, y,
                             static_cast<int>(w.rows)),
                 "cublasSgemm");
      return;
    }
    case WKind::kF16:
    case WKind::kBF16: {
      const bool bf16 = kind == WKind::kBF16;
      auto* x16 = static_cast<uint16_t*>(scratch(ctx, static_cast<size_t>(n * w.cols) * 2));
      to_16bit(x, n * w.cols, bf16, x16, ctx.stream());
      gemm_16bit(ctx, bf16 ? CUDA_R_16BF : CUDA_R_16F, w.data, x16, w.rows, n, w.cols, y, w.rows);
      return;
    }
    default:
      if (n <= kGemvMaxTokens) {
        gemv_quantized(ctx, kind, w, x, n, y);
      } else {
        gemm_quantized(ctx, kind, w, x, n, y);
      }
      return;
  }
}

}  // namespace tpinfer::cuda
