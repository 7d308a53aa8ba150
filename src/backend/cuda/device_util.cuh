// Helpers shared by the kernel files of backend/cuda (not a public header):
// launch-error checks, grid sizing for grid-stride loops, warp and block
// reductions, and 16-bit cache element access.
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

#include "backend/cuda/kernels.h"
#include "backend/cuda/quant_blocks.cuh"
#include "backend/cuda/runtime.h"
#include "core/dtype.h"
#include "core/error.h"

namespace tpinfer::cuda::detail {

// A launch that failed (bad configuration, a sticky error of an earlier
// kernel) is reported under the kernel's name. cudaGetLastError is cheap (no
// synchronization) and legal during graph capture.
inline void check_launch(const char* kernel) { check(cudaGetLastError(), kernel); }

constexpr int kThreads = 256;

// Blocks for a grid-stride loop over n items: enough to fill the device, never
// more than the hardware's limit.
inline unsigned grid_for(int64_t n, int threads = kThreads) {
  const int64_t blocks = (n + threads - 1) / threads;
  return static_cast<unsigned>(std::clamp<int64_t>(blocks, 1, int64_t{1} << 20));
}

__device__ __forceinline__ int64_t global_thread() {
  return static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
}
__device__ __forceinline__ int64_t grid_threads() { return static_cast<int64_t>(gridDim.x) * blockDim.x; }

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

// Sum over the block (blockDim.x a multiple of 32, at most 1024); every thread
// gets the total. Must be reached by all threads of the block.
__device__ __forceinline__ float block_sum(float v) {
  __shared__ float partial[32];
  __shared__ float total;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  v = warp_sum(v);
  if (lane == 0) partial[warp] = v;
  __syncthreads();
  if (warp == 0) {
    float s = lane < static_cast<int>(blockDim.x >> 5) ? partial[lane] : 0.0f;
    s = warp_sum(s);
    if (lane == 0) total = s;
  }
  __syncthreads();
  return total;
}

// 16-bit storage (the KV cache, converted activations): F16 or BF16 bits,
// rounded to nearest even exactly as core/half.h.
template <bool kBf16>
__device__ __forceinline__ float load16(uint16_t h) {
  return kBf16 ? quant::bf16_to_f32(h) : quant::f16_to_f32(h);
}
template <bool kBf16>
__device__ __forceinline__ uint16_t store16(float f) {
  return kBf16 ? quant::f32_to_bf16(f) : quant::f32_to_f16(f);
}

inline bool is_16bit(DType t) { return t == DType::F16 || t == DType::BF16; }

// The weight types of matmul() / embed(), as a template parameter.
enum class WKind { kF32, kF16, kBF16, kQ8_0, kQ4_0, kQ4_K };

// Element c of a weight row (row: its first byte; 2-byte aligned for the
// 16-bit and quantized types, 4 for F32), dequantized to f32 as backend/cpu does.
template <WKind K>
__device__ __forceinline__ float weight_value(const uint8_t* row, int64_t c) {
  if constexpr (K == WKind::kF32) {
    return reinterpret_cast<const float*>(row)[c];
  } else if constexpr (K == WKind::kF16) {
    return quant::f16_to_f32(reinterpret_cast<const uint16_t*>(row)[c]);
  } else if constexpr (K == WKind::kBF16) {
    return quant::bf16_to_f32(reinterpret_cast<const uint16_t*>(row)[c]);
  } else if constexpr (K == WKind::kQ8_0) {
    return quant::decode_q8_0(reinterpret_cast<const quant::BlockQ8_0*>(row)[c / quant::kQK],
                              static_cast<int>(c % quant::kQK));
  } else if constexpr (K == WKind::kQ4_0) {
    return quant::decode_q4_0(reinterpret_cast<const quant::BlockQ4_0*>(row)[c / quant::kQK],
                              static_cast<int>(c % quant::kQK));
  } else {
    return quant::decode_q4_k(reinterpret_cast<const quant::BlockQ4_K*>(row)[c / quant::kQKK],
                              static_cast<int>(c % quant::kQKK));
  }
}

// The kind of a supported weight type; throws Error naming `what` otherwise.
inline WKind weight_kind(DType t, const char* what) {
  switch (t) {
    case DType::F32:
      return WKind::kF32;
    case DType::F16:
      return WKind::kF16;
    case DType::BF16:
      return WKind::kBF16;
    case DType::Q8_0:
      return WKind::kQ8_0;
    case DType::Q4_0:
      return WKind::kQ4_0;
    case DType::Q4_K:
      return WKind::kQ4_K;
    default:
      throw Error(cat(what, ": weight type ", dtype_name(t),
                      " is not supported on CUDA (f32, f16, bf16, q8_0, q4_0, q4_k are)"));
  }
}

// Checks a weight matrix's shape and alignment for `what`: cols whole blocks,
// sizes within int range for cuBLAS, data aligned for the kernels' loads.
void check_matrix(const DeviceMatrix& w, const char* what);

}  // namespace tpinfer::cuda::detail
