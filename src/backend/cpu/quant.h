// Quantized block formats (GGML layouts, bit-exact with GGUF files) and the
// per-type row routines: dequantize, quantize, and the dot product of a weight
// row with an activation row. Each routine has a plain scalar reference
// (`*_ref`); the dispatching versions pick AVX-512 / AVX2 / scalar from cpuid at
// run time (see isa.h; TPINFER_ISA caps the choice) and are tested against the
// references on random inputs. The overloads taking an Isa run that level's code
// (tests, benchmarks); they throw Error if this CPU cannot run it.
//
// Dot products: a weight row of type W is multiplied with an activation row
// already converted to vec_dot_type(W): F32 for F32, F16 and BF16 weights (the
// weights are widened), Q8_0 for Q4_0/Q4_1/Q5_0/Q5_1/Q8_0/Q8_1, Q8_K for the
// K-quants. The integer part of a quantized dot is exact; the per-block scale
// products are combined in float (fast paths) or double (references).
// Activation rows must come from quantize_row (their int8 values lie in
// [-127, 127]; the SIMD paths rely on that, as GGML's do).
//
// All routines take n = number of values; n must be a multiple of the type's
// block size (checked: Error otherwise). Unsupported types throw Error.
// Quantized rows must be 2-byte aligned (Q8_K: 4), as every row of a GGUF
// tensor is; F32/F16/BF16 rows may start at any address.
#pragma once

#include <cstdint>

#include "backend/cpu/isa.h"
#include "core/dtype.h"
#include "core/quant_blocks.h"

namespace tpinfer::cpu {

// ---- Block layouts: core/quant_blocks.h.
using ::tpinfer::kQK;
using ::tpinfer::kQKK;
using ::tpinfer::BlockQ4_0;
using ::tpinfer::BlockQ4_1;
using ::tpinfer::BlockQ5_0;
using ::tpinfer::BlockQ5_1;
using ::tpinfer::BlockQ8_0;
using ::tpinfer::BlockQ8_1;
using ::tpinfer::BlockQ2_K;
using ::tpinfer::BlockQ3_K;
using ::tpinfer::BlockQ4_K;
using ::tpinfer::BlockQ5_K;
using ::tpinfer::BlockQ6_K;
using ::tpinfer::BlockQ8_K;

// ---- Row routines.

// The activation type that weights of type `w` are multiplied against.
DType vec_dot_type(DType w);

// Whether the row routines below accept type t (F32, F16, BF16, every quantized
// type in core/dtype.h).
bool quant_supported(DType t);

void dequantize_row(DType t, const void* src, float* dst, int64_t n);
void dequantize_row(Isa isa, DType t, const void* src, float* dst, int64_t n);
void dequantize_row_ref(DType t, const void* src, float* dst, int64_t n);

// Round-to-nearest quantization as GGML's reference quantizers do (for the
// K-quants, the reference search for scales/mins). The SIMD versions (Q8_0,
// Q8_K: the activation formats) give bit-identical bytes.
void quantize_row(DType t, const float* src, void* dst, int64_t n);
void quantize_row(Isa isa, DType t, const float* src, void* dst, int64_t n);
void quantize_row_ref(DType t, const float* src, void* dst, int64_t n);

// Sum over i < n of w[i] * a[i], w a row of type w_type, a a row of type
// vec_dot_type(w_type).
float vec_dot(DType w_type, int64_t n, const void* w, const void* a);
float vec_dot(Isa isa, DType w_type, int64_t n, const void* w, const void* a);
float vec_dot_ref(DType w_type, int64_t n, const void* w, const void* a);

// Which instruction set the dispatching routines use on this CPU: "avx512",
// "avx2" or "scalar". TPINFER_ISA=scalar|avx2|avx512 in the environment caps it.
const char* active_isa();

}  // namespace tpinfer::cpu
