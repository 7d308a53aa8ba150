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

namespace tpinfer::cpu {

// ---- Block layouts. All little-endian, no padding; f16 fields are raw IEEE
// binary16 bits (core/half.h). "value" gives how element i of the block decodes.

constexpr int kQK = 32;    // values per block of the _0/_1 formats
constexpr int kQKK = 256;  // values per super-block of the K formats

// value[i] = (nibble[i] - 8) * d; nibble[i] = i < 16 ? qs[i] & 15 : qs[i-16] >> 4.
struct BlockQ4_0 {
  uint16_t d;
  uint8_t qs[kQK / 2];
};
static_assert(sizeof(BlockQ4_0) == 18, "block_q4_0 is 18 bytes in GGUF");

// value[i] = nibble[i] * d + m (nibbles as Q4_0).
struct BlockQ4_1 {
  uint16_t d;
  uint16_t m;
  uint8_t qs[kQK / 2];
};
static_assert(sizeof(BlockQ4_1) == 20, "block_q4_1 is 20 bytes in GGUF");

// value[i] = (nibble[i] | bit_i(qh) << 4) - 16) * d; qh is a little-endian u32,
// bit i belongs to element i.
struct BlockQ5_0 {
  uint16_t d;
  uint8_t qh[4];
  uint8_t qs[kQK / 2];
};
static_assert(sizeof(BlockQ5_0) == 22, "block_q5_0 is 22 bytes in GGUF");

// value[i] = (nibble[i] | bit_i(qh) << 4) * d + m.
struct BlockQ5_1 {
  uint16_t d;
  uint16_t m;
  uint8_t qh[4];
  uint8_t qs[kQK / 2];
};
static_assert(sizeof(BlockQ5_1) == 24, "block_q5_1 is 24 bytes in GGUF");

// value[i] = qs[i] * d.
struct BlockQ8_0 {
  uint16_t d;
  int8_t qs[kQK];
};
static_assert(sizeof(BlockQ8_0) == 34, "block_q8_0 is 34 bytes in GGUF");

// value[i] = qs[i] * d; s = d * sum(qs) (f16), kept for GGML compatibility.
struct BlockQ8_1 {
  uint16_t d;
  uint16_t s;
  int8_t qs[kQK];
};
static_assert(sizeof(BlockQ8_1) == 36, "block_q8_1 is 36 bytes in GGUF");

// 16 sub-blocks of 16 values. Sub-block j: scale = d * (scales[j] & 15),
// min = dmin * (scales[j] >> 4). Element e (0..255): h = e / 128, k = e % 128,
// q = (qs[32h + k % 32] >> (2 * (k / 32))) & 3; value = scale * q - min.
struct BlockQ2_K {
  uint8_t scales[kQKK / 16];
  uint8_t qs[kQKK / 4];
  uint16_t d;
  uint16_t dmin;
};
static_assert(sizeof(BlockQ2_K) == 84, "block_q2_K is 84 bytes in GGUF");

// 16 sub-blocks of 16 values with signed 6-bit scales s_j (stored + 32):
// low 4 bits: j < 8 ? scales[j] & 15 : scales[j-8] >> 4; high 2 bits:
// (scales[8 + j % 4] >> (2 * (j / 4))) & 3. Element e: low 2 bits as Q2_K; high
// bit = hmask[e % 32] bit (e / 32); value = d * (s_j - 32) * (q2 - (high ? 0 : 4)).
struct BlockQ3_K {
  uint8_t hmask[kQKK / 8];
  uint8_t qs[kQKK / 4];
  uint8_t scales[12];
  uint16_t d;
};
static_assert(sizeof(BlockQ3_K) == 110, "block_q3_K is 110 bytes in GGUF");

// 8 sub-blocks of 32 values with 6-bit scale sc_j and min m_j packed in 12 bytes:
// j < 4: sc = scales[j] & 63, m = scales[j+4] & 63;
// j >= 4: sc = (scales[j+4] & 15) | (scales[j-4] >> 6) << 4,
//         m  = (scales[j+4] >> 4) | (scales[j] >> 6) << 4.
// Element e: c = e / 64, q = (e % 64 < 32) ? qs[32c + e % 32] & 15 : qs[32c + e % 32] >> 4;
// value = d * sc_{e/32} * q - dmin * m_{e/32}.
struct BlockQ4_K {
  uint16_t d;
  uint16_t dmin;
  uint8_t scales[12];
  uint8_t qs[kQKK / 2];
};
static_assert(sizeof(BlockQ4_K) == 144, "block_q4_K is 144 bytes in GGUF");

// As Q4_K with a fifth bit per value: q += 16 * ((qh[e % 32] >> (e / 32)) & 1).
struct BlockQ5_K {
  uint16_t d;
  uint16_t dmin;
  uint8_t scales[12];
  uint8_t qh[kQKK / 8];
  uint8_t qs[kQKK / 2];
};
static_assert(sizeof(BlockQ5_K) == 176, "block_q5_K is 176 bytes in GGUF");

// 16 sub-blocks of 16 values with int8 scales. Element e: h = e / 128, k = e % 128,
// l = k % 32, g = k / 32; low 4 bits from ql[64h + l + 32 * (g & 1)] (low nibble
// for g < 2, high nibble otherwise); high 2 bits (qh[32h + l] >> (2g)) & 3;
// value = d * scales[e / 16] * (q - 32).
struct BlockQ6_K {
  uint8_t ql[kQKK / 2];
  uint8_t qh[kQKK / 4];
  int8_t scales[kQKK / 16];
  uint16_t d;
};
static_assert(sizeof(BlockQ6_K) == 210, "block_q6_K is 210 bytes in GGUF");

// Activation format for the K-quants: value[i] = qs[i] * d (d is f32);
// bsums[j] = sum of qs[16j .. 16j+15].
struct BlockQ8_K {
  float d;
  int8_t qs[kQKK];
  int16_t bsums[kQKK / 16];
};
static_assert(sizeof(BlockQ8_K) == 292, "block_q8_K is 292 bytes in GGUF");

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
