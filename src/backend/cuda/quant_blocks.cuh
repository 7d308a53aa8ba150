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
// The block layouts are core/quant_blocks.h's, the ones backend/cpu reads (the
// CUDA back end does not depend on backend/cpu; the host test compares the
// decoded values).
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

#include "core/quant_blocks.h"

#ifdef __CUDACC__
#define TPINFER_HD __host__ __device__ __forceinline__
#else
#define TPINFER_HD inline
#endif

namespace tpinfer::cuda::quant {

// The block layouts (core/quant_blocks.h, shared with backend/cpu).
using ::tpinfer::BlockQ4_0;
using ::tpinfer::BlockQ4_K;
using ::tpinfer::BlockQ8_0;
using ::tpinfer::kQK;   // values per Q8_0 / Q4_0 block, and per activation block
using ::tpinfer::kQKK;  // values per Q4_K super-block

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

// ---- The GEMV kernels' per-lane integer dot products (matmul.cu), here so
// that their index arithmetic is tested on the host. Weights are read in the
// kernels' units: Q8_0 / Q4_0 blocks are only 2-byte aligned (34 / 18 bytes),
// so 4 bytes are two 16-bit loads; Q4_K blocks (144 bytes) keep 8-byte
// alignment, so a lane reads its 8 bytes at once. Activations: int8, 8-byte
// aligned per 8 values.

// Sum of the 4 signed byte products of a and b, plus c (__dp4a on the device).
TPINFER_HD int dp4a(int a, int b, int c) {
#ifdef __CUDA_ARCH__
  return __dp4a(a, b, c);
#else
  for (int k = 0; k < 4; ++k) {
    c += static_cast<int>(static_cast<int8_t>(a >> (8 * k))) * static_cast<int>(static_cast<int8_t>(b >> (8 * k)));
  }
  return c;
#endif
}

constexpr int kOnes = 0x01010101;  // dp4a(kOnes, a, 0): the sum of a's 4 bytes

// Loads through typed pointers on the device (where alignment decides the
// instruction); memcpy on the host, where the bytes live in byte arrays.
TPINFER_HD uint32_t load_u32_2aligned(const uint8_t* p) {
#ifdef __CUDA_ARCH__
  const uint16_t* h = reinterpret_cast<const uint16_t*>(p);
  return static_cast<uint32_t>(h[0]) | (static_cast<uint32_t>(h[1]) << 16);
#else
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
#endif
}

// 8 bytes at an 8-byte aligned address, as two ints (one 64-bit load).
struct Int2 {
  int x, y;
};
TPINFER_HD Int2 load_8(const void* p) {
#ifdef __CUDA_ARCH__
  const int2 v = *reinterpret_cast<const int2*>(p);
  return {v.x, v.y};
#else
  Int2 v;
  std::memcpy(&v, p, 8);
  return v;
#endif
}

// 4 bytes at a 4-byte aligned address.
TPINFER_HD int load_4(const void* p) {
#ifdef __CUDA_ARCH__
  return *reinterpret_cast<const int*>(p);
#else
  int v;
  std::memcpy(&v, p, 4);
  return v;
#endif
}

// Q8_0 / Q4_0: 4 lanes per block, lane `part` (0..3). `a`: the block's 32
// int8 activations. Returns the lane's share of sum(weight_q * a), where
// weight_q is qs (Q8_0) or nibble - 8 (Q4_0); the block's dot is the sum over
// the 4 parts, times d_w * d_a.
TPINFER_HD int q8_0_part_dot(const BlockQ8_0& b, const int8_t* a, int part) {
  const uint8_t* q = reinterpret_cast<const uint8_t*>(b.qs) + 8 * part;
  const int w0 = static_cast<int>(load_u32_2aligned(q));
  const int w1 = static_cast<int>(load_u32_2aligned(q + 4));
  const Int2 a8 = load_8(a + 8 * part);
  return dp4a(w1, a8.y, dp4a(w0, a8.x, 0));
}

// Lane part p reads qs[4p .. 4p+3]: low nibbles are elements 4p.., high nibbles
// 16 + 4p..; sum((nib - 8) * a) = sum(nib * a) - 8 * sum(a).
TPINFER_HD int q4_0_part_dot(const BlockQ4_0& b, const int8_t* a, int part) {
  const uint32_t v = load_u32_2aligned(b.qs + 4 * part);
  const int lo = static_cast<int>(v & 0x0F0F0F0Fu);
  const int hi = static_cast<int>((v >> 4) & 0x0F0F0F0Fu);
  const int a_lo = load_4(a + 4 * part);
  const int a_hi = load_4(a + 16 + 4 * part);
  const int dot = dp4a(hi, a_hi, dp4a(lo, a_lo, 0));
  const int sum = dp4a(kOnes, a_hi, dp4a(kOnes, a_lo, 0));
  return dot - 8 * sum;
}

// Q4_K: 16 lanes per super-block. Lane i reads qs[32c + 8p .. +8] (c = i / 4,
// p = i % 4): low nibbles are elements 8p.. of sub-block 2c, high nibbles the
// same of sub-block 2c + 1. The weight side, decoded once per super-block:
struct Q4KLane {
  int lo[2], hi[2];        // the nibbles, 4 per int
  float dl[2], ml[2];      // d * sc and dmin * m of sub-blocks 2c and 2c + 1
};

TPINFER_HD Q4KLane q4_k_lane(const BlockQ4_K& b, int i) {
  const int c = i >> 2, p = i & 3;
  const Int2 q8 = load_8(b.qs + 32 * c + 8 * p);  // 8-byte aligned
  const uint32_t q[2] = {static_cast<uint32_t>(q8.x), static_cast<uint32_t>(q8.y)};
  Q4KLane w;
  for (int k = 0; k < 2; ++k) {
    w.lo[k] = static_cast<int>(q[k] & 0x0F0F0F0Fu);
    w.hi[k] = static_cast<int>((q[k] >> 4) & 0x0F0F0F0Fu);
  }
  const float d = f16_to_f32(b.d), dmin = f16_to_f32(b.dmin);
  for (int k = 0; k < 2; ++k) {
    int sc, m;
    q4k_scale_min(b.scales, 2 * c + k, &sc, &m);
    w.dl[k] = d * static_cast<float>(sc);
    w.ml[k] = dmin * static_cast<float>(m);
  }
  return w;
}

// The lane's share of the super-block's dot with activations a (its 256 int8
// values) of scales da (its 8 per-32 scales): sub-block j contributes
// da_j * (d sc_j * sum(q a) - dmin m_j * sum(a)).
TPINFER_HD float q4_k_lane_dot(const Q4KLane& w, const int8_t* a, const float* da, int i) {
  const int c = i >> 2, p = i & 3;
  const Int2 a0 = load_8(a + 64 * c + 8 * p);
  const Int2 a1 = load_8(a + 64 * c + 32 + 8 * p);
  const int dot0 = dp4a(w.lo[1], a0.y, dp4a(w.lo[0], a0.x, 0));
  const int dot1 = dp4a(w.hi[1], a1.y, dp4a(w.hi[0], a1.x, 0));
  const int sum0 = dp4a(kOnes, a0.y, dp4a(kOnes, a0.x, 0));
  const int sum1 = dp4a(kOnes, a1.y, dp4a(kOnes, a1.x, 0));
  return da[2 * c] * (w.dl[0] * static_cast<float>(dot0) - w.ml[0] * static_cast<float>(sum0)) +
         da[2 * c + 1] * (w.dl[1] * static_cast<float>(dot1) - w.ml[1] * static_cast<float>(sum1));
}

}  // namespace tpinfer::cuda::quant
