// Quantized block formats (GGML layouts, bit-exact with GGUF files) and the
// per-type row routines: dequantize, quantize, and the dot product of a weight
// row with an activation row. Each routine has a plain scalar reference
// (`*_ref`); the dispatching versions pick AVX-512 / AVX2 / scalar from cpuid at
// run time and are tested against the references on random inputs.
//
// Dot products: a weight row of type W is multiplied with an activation row
// already converted to vec_dot_type(W): F32 for F32, F16 and BF16 weights (the
// weights are widened), Q8_0 for Q4_0/Q4_1/Q5_0/Q5_1/Q8_0, Q8_K for the K-quants.
#pragma once

#include <cstdint>

#include "core/dtype.h"

namespace tpinfer::cpu {

// The activation type that weights of type `w` are multiplied against.
DType vec_dot_type(DType w);

// n must be a multiple of the block size of t.
void dequantize_row(DType t, const void* src, float* dst, int64_t n);
void dequantize_row_ref(DType t, const void* src, float* dst, int64_t n);

// Round-to-nearest quantization as GGML's reference quantizers do (for the
// K-quants, the reference search for scales/mins). Supported for every type that
// dequantize_row supports (F32, F16, BF16 and all quantized types listed in
// core/dtype.h except Q8_1).
void quantize_row(DType t, const float* src, void* dst, int64_t n);
void quantize_row_ref(DType t, const float* src, void* dst, int64_t n);

// Sum over i < n of w[i] * a[i], w a row of type w_type, a a row of type
// vec_dot_type(w_type).
float vec_dot(DType w_type, int64_t n, const void* w, const void* a);
float vec_dot_ref(DType w_type, int64_t n, const void* w, const void* a);

// Which instruction set the dispatching routines use on this CPU: "avx512",
// "avx2" or "scalar". TPINFER_ISA=scalar|avx2|avx512 in the environment caps it.
const char* active_isa();

}  // namespace tpinfer::cpu
