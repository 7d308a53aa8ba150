// The GGUF block formats the CUDA kernels read (Q8_0, Q4_0, Q4_K), decoded one
// element at a time, the f16 / bf16 conversions, and the 8-bit activation
// quantization (32 values per block, as cpu::quantize_row to Q8_0).
//
// Everything here is __host__ __device__ and compiles as plain C++ when
// __CUDACC__ is not defined, so tests/cuda/quant_blocks_host_test.cc checks it
// on the host, bit for bit, against backend/cpu (quant_ref.cc, core/half.h).
// Bit-exactness on the device too: products that the CPU rounds separately
// (d * sc * q - dmin * m) go through mul_rn / sub_rn, which nvcc may not fuse
// into an FMA; division and roundf are IEEE in nvcc without --use_fast_math.
//
// The block layouts mirror cpu::Block* in backend/cpu/quant.h (the CUDA back end
// does not depend on backend/cpu; the host test static_asserts the sizes and
// compares the decoded values).
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

#ifdef __CUDACC__
#define TPINFER_HD __host__ __device__ __forceinline__
#else
#define TPINFER_HD inline
#endif

namespace tpinfer::cuda::quant {

constexpr int kQK = 32;    // values per Q8_0 / Q4_0 block, and per activation block
constexpr int kQKK = 256;  // values per Q4_K super-block

// value[i] = qs[i] * d.
struct BlockQ8_0 {
  uint16_t d;
  int8_t qs[kQK];
};
static_assert(sizeof(BlockQ8_0) == 34, "block_q8_0 is 34 bytes in GGUF");

// value[i] = (nibble[i] - 8) * d; nibble[i] = i < 16 ? qs[i] & 15 : qs[i-16] >> 4.
struct BlockQ4_0 {
  uint16_t d;
  uint8_t qs[kQK / 2];
};
static_assert(sizeof(BlockQ4_0) == 18, "block_q4_0 is 18 bytes in GGUF");

// 8 sub-blocks of 32 values, 6-bit scale and min each (q4k_scale_min); element
// e: q = (qs[32 (e / 64) + e % 32] >> (4 * ((e / 32) % 2))) & 15,
// value = (d * sc) * q - (dmin * m) of sub-block e / 32.
struct BlockQ4_K {
  uint16_t d;
  uint16_t dmin;
  uint8_t scales[12];
  uint8_t qs[kQKK / 2];
};
static_assert(sizeof(BlockQ4_K) == 144, "block_q4_K is 144 bytes in GGUF");

// ---- Bits and rounding.

TPINFER_HD uint32_t f32_bits(float f) {
#ifdef __CUDA_ARCH__
  return __float_as_uint(f);
#else
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
#endif
}

TPINFER_HD float f32_from_bits(uint32_t u) {
#ifdef __CUDA_ARCH__
  return __uint_as_float(u);
#else
  float f;
  std::memcpy(&f, &u, 4);
  return f;
#endif
}

// a * b and a - b each rounded once (never contracted into an FMA).
TPINFER_HD float mul_rn(float a, float b) {
#ifdef __CUDA_ARCH__
  return __fmul_rn(a, b);
#else
  return a * b;
#endif
}
TPINFER_HD float sub_rn(float a, float b) {
#ifdef __CUDA_ARCH__
  return __fsub_rn(a, b);
#else
  return a - b;
#endif
}

// ---- f16 / bf16, the same bits as core/half.h (round to nearest even, NaN
// stays NaN, f16 overflow gives inf).

TPINFER_HD float bf16_to_f32(uint16_t h) { return f32_from_bits(static_cast<uint32_t>(h) << 16); }

TPINFER_HD uint16_t f32_to_bf16(float f) {
  uint32_t u = f32_bits(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x40);
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}

TPINFER_HD float f16_to_f32(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1fu;
  const uint32_t man = h & 0x3ffu;
  if (exp == 0) {
    const float v = mul_rn(static_cast<float>(man), 5.9604644775390625e-08f);  // man * 2^-24, exact
    return sign ? -v : v;
  }
  if (exp == 31) return f32_from_bits(sign | 0x7f800000u | (man << 13));
  return f32_from_bits(sign | ((exp + 112) << 23) | (man << 13));
}

TPINFER_HD uint16_t f32_to_f16(float f) {
  const uint32_t u = f32_bits(f);
  const uint32_t sign = (u >> 16) & 0x8000u;
  const uint32_t abs = u & 0x7fffffffu;
  if (abs > 0x7f800000u) return static_cast<uint16_t>(sign | 0x7e00u);
  if (abs >= 0x477ff000u) return static_cast<uint16_t>(sign | 0x7c00u);
  if (abs < 0x38800000u) {
    // Subnormal or zero in f16: abs * 2^24 (exact) rounded to an integer,
    // nearest even. rintf does that directly (the CPU's float add trick too).
    const float v = mul_rn(f32_from_bits(abs), 16777216.0f);
    return static_cast<uint16_t>(sign | static_cast<uint32_t>(rintf(v)));
  }
  uint32_t mant_exp = abs - 0x38000000u;
  mant_exp += 0xfffu + ((mant_exp >> 13) & 1u);
  return static_cast<uint16_t>(sign | (mant_exp >> 13));
}

// ---- Element decoding (i: element index inside the block).

TPINFER_HD float decode_q8_0(const BlockQ8_0& b, int i) {
  return mul_rn(static_cast<float>(b.qs[i]), f16_to_f32(b.d));
}

TPINFER_HD int q4_0_nibble(const BlockQ4_0& b, int i) { return i < 16 ? (b.qs[i] & 15) : (b.qs[i - 16] >> 4); }

TPINFER_HD float decode_q4_0(const BlockQ4_0& b, int i) {
  return mul_rn(static_cast<float>(q4_0_nibble(b, i) - 8), f16_to_f32(b.d));
}

// 6-bit scale and min of sub-block j (0..7) from the 12 packed bytes.
TPINFER_HD void q4k_scale_min(const uint8_t* s, int j, int* sc, int* m) {
  if (j < 4) {
    *sc = s[j] & 63;
    *m = s[j + 4] & 63;
  } else {
    *sc = (s[j + 4] & 15) | ((s[j - 4] >> 6) << 4);
    *m = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
  }
}

TPINFER_HD int q4_k_nibble(const BlockQ4_K& b, int e) {
  return (b.qs[32 * (e / 64) + e % 32] >> (4 * ((e / 32) % 2))) & 15;
}

TPINFER_HD float decode_q4_k(const BlockQ4_K& b, int e) {
  int sc, m;
  q4k_scale_min(b.scales, e / 32, &sc, &m);
  const float dl = mul_rn(f16_to_f32(b.d), static_cast<float>(sc));
  const float ml = mul_rn(f16_to_f32(b.dmin), static_cast<float>(m));
  return sub_rn(mul_rn(dl, static_cast<float>(q4_k_nibble(b, e))), ml);
}

// ---- 8-bit activations: 32 values x share d = amax / 127 (stored as f16, as
// Q8_0), q = round-half-away(x / d) computed as x * (1 / d), as cpu::quantize_row.

struct Q8Scale {
  float d;   // amax / 127 in f32: the quantization step used for rounding
  float id;  // 1 / d, 0 when the block is all zeros
};

TPINFER_HD Q8Scale q8_scale(float amax) {
  Q8Scale s;
  s.d = amax / 127.0f;
  s.id = s.d != 0.0f ? 1.0f / s.d : 0.0f;
  return s;
}

TPINFER_HD int8_t q8_value(float x, float id) { return static_cast<int8_t>(roundf(mul_rn(x, id))); }

// One block of 32 values, serially: the reference for the warp-parallel
// quantizer of the kernels (which shares q8_scale / q8_value and differs only
// in taking the max with shuffles, an order-independent exact operation).
// d_bits: the f16 bits of d, as in a Q8_0 block.
TPINFER_HD void quantize_q8_block(const float* x, int8_t* qs, uint16_t* d_bits) {
  float amax = 0.0f;
  for (int i = 0; i < kQK; ++i) amax = fmaxf(amax, fabsf(x[i]));
  const Q8Scale s = q8_scale(amax);
  *d_bits = f32_to_f16(s.d);
  for (int i = 0; i < kQK; ++i) qs[i] = q8_value(x[i], s.id);
}

}  // namespace tpinfer::cuda::quant
