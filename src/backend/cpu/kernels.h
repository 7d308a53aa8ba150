// Internal to backend/cpu: the per-instruction-set kernel tables behind the
// dispatching routines of quant.h and matmul.h. Each level fills the entries it
// has fast code for; kernel_table() merges them over the level below, so every
// entry of a merged table is set for every supported type (scalar = reference).
#pragma once

#include <cstdint>

#include "backend/cpu/isa.h"
#include "core/dtype.h"

namespace tpinfer::cpu {

// y[t * y_stride + r] = dot(row r of w, row t of a) for r < nr, t < nt.
// n values per row; w rows are w_stride bytes apart, a rows a_stride bytes apart
// (a rows are of type vec_dot_type(w)). Implementations read each weight row
// once per call and reuse it for all nt tokens from cache (the prefill tile).
using GemmFn = void (*)(int64_t n, const uint8_t* w, uint64_t w_stride, int64_t nr, const uint8_t* a, uint64_t a_stride,
                        int64_t nt, float* y, int64_t y_stride);
// The same over interleaved weights (repack.h): ng groups of 8 rows at w, one
// group every x8_group_bytes(type, n) bytes; `sums` holds the activation sums of
// token t at sums + t * sums_stride. Results of row g * 8 + i go to
// y[t * y_stride + g * 8 + i].
using Gemm8Fn = void (*)(int64_t n, const uint8_t* w, int64_t ng, const uint8_t* a, uint64_t a_stride,
                         const int32_t* sums, int64_t sums_stride, int64_t nt, float* y, int64_t y_stride);
using DequantizeFn = void (*)(const void* src, float* dst, int64_t n);
using QuantizeFn = void (*)(const float* src, void* dst, int64_t n);

struct TypeKernels {
  DequantizeFn dequantize = nullptr;
  QuantizeFn quantize = nullptr;
  GemmFn gemm = nullptr;
  Gemm8Fn gemm8 = nullptr;  // types with an interleaved layout only
};

constexpr int kMaxTypeId = 31;  // GGML type ids handled here are all below this

struct KernelTable {
  TypeKernels types[kMaxTypeId];
  const TypeKernels& at(DType t) const { return types[static_cast<uint32_t>(t)]; }
  TypeKernels& at(DType t) { return types[static_cast<uint32_t>(t)]; }
};

// The level's own entries (others null). The SIMD ones live in files compiled
// with target pragmas and must only be called when isa_supported() says so.
void fill_scalar_kernels(KernelTable& table);
void fill_scalar_x8_kernels(KernelTable& table);  // repack.cc
void fill_avx2_kernels(KernelTable& table);
void fill_avx512_kernels(KernelTable& table);

// Merged table for `isa`; throws Error if this CPU cannot run it.
const KernelTable& kernel_table(Isa isa);

// Row operations of ops.h (pointers and lengths as there).
struct OpKernels {
  void (*rms_norm)(const float* x, const float* weight, int64_t n, float eps, float* out) = nullptr;
  void (*softmax)(const float* x, int64_t n, float* out) = nullptr;
  void (*silu_mul)(const float* gate, const float* up, int64_t n, float* out) = nullptr;
  void (*add)(const float* a, const float* b, int64_t n, float* out) = nullptr;
  // Attention inner loops (attention.cc), over m queries q[i] (hd floats each)
  // and n keys or values (rows of hd floats, contiguous):
  //   attn_scores:     s[i * s_stride + j] = scale * dot(q[i], k_j)
  //   attn_accumulate: out[i] += sum_j w[i * w_stride + j] * v_j
  void (*attn_scores)(const float* const* q, int m, const float* k, int n, int64_t hd, float scale, float* s,
                      int64_t s_stride) = nullptr;
  void (*attn_accumulate)(const float* w, int64_t w_stride, int m, const float* v, int n, int64_t hd,
                          float* const* out) = nullptr;
};
// The table of `isa` (throws Error if this CPU cannot run it).
const OpKernels& op_kernels(Isa isa);
void fill_avx2_ops(OpKernels& ops);
void fill_avx512_ops(OpKernels& ops);

// Throws Error naming `what` unless n is a non-negative multiple of t's block size.
void check_row_length(DType t, int64_t n, const char* what);

}  // namespace tpinfer::cpu
