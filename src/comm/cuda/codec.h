// The compression codecs of compressed_comm.h, one value (or one block scale) at
// a time, as functions compiled for both the host and the device, so that the
// device kernels (compress.cu) produce the same bytes as the CPU codecs and the
// host tests can check that without a GPU (tests/cuda/device_comm_test.cc runs
// these on the CPU against encode_values / decode_values).
//
// Every step is spelled so that nvcc cannot change its rounding: products and
// sums go through __fmul_rn / __fadd_rn / __fdiv_rn on the device (nvcc would
// otherwise fuse a*b+c into one FMA, rounding once instead of twice), which are
// the plain IEEE operations on the host (x86-64 baseline has no FMA to fuse into).
#pragma once

#include <cstddef>
#include <cstdint>

#include "backend/cuda/quant_blocks.cuh"  // TPINFER_HD and the rounding-exact f32 steps

namespace tpinfer::cuda::codec {

inline constexpr uint32_t kScaleNaN = 0x7fc0;      // bf16 quiet NaN
inline constexpr uint32_t kMinScaleBits = 0x0080;  // bf16 2^-126
inline constexpr float kQFp8 = 448.0f;
inline constexpr float kQInt8 = 127.0f;

TPINFER_HD float add(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fadd_rn(a, b);
#else
  return a + b;
#endif
}

TPINFER_HD float div(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fdiv_rn(a, b);
#else
  return a / b;
#endif
}

// f32 -> bf16, round to nearest even; NaN stays a (quiet) NaN (core/half.h).
TPINFER_HD uint16_t bf16_encode(float f) { return quant::f32_to_bf16(f); }

TPINFER_HD float bf16_decode(uint32_t h) { return quant::f32_from_bits(h << 16); }

// |x| as f32 bits: the block's amax is the largest of these (a NaN's bits are
// above every finite value's and infinity's, so it shows as non-finite).
TPINFER_HD uint32_t abs_bits(float x) { return quant::f32_bits(x) & 0x7fffffffu; }

// The bf16 block scale: the smallest bf16 >= amax / q, at least 2^-126; NaN
// when the block holds Inf or NaN (compressed_comm.cc's block_scale_branchless).
TPINFER_HD uint32_t block_scale(uint32_t amax_bits, float q) {
  const float amax = quant::f32_from_bits(amax_bits);
  uint32_t h = quant::f32_bits(div(amax, q)) >> 16;
  h += quant::mul_rn(quant::f32_from_bits(h << 16), q) < amax ? 1u : 0u;
  h = h < kMinScaleBits ? kMinScaleBits : h;
  return h >= 0x7f80u ? kScaleNaN : h;
}

// 1 / scale, the factor every value of the block is multiplied by before
// rounding to its code (unused for a NaN scale: the codes are 0 then).
TPINFER_HD float inverse_scale(uint32_t scale) { return scale == kScaleNaN ? 0.0f : div(1.0f, bf16_decode(scale)); }

// v (already divided by the scale) -> E4M3, ties to even, saturating at 448.
TPINFER_HD uint8_t fp8_encode(float v) {
  const uint32_t u = quant::f32_bits(v);
  const uint32_t sign = (u >> 24) & 0x80u;
  const uint32_t a = u & 0x7fffffffu;
  uint32_t r;
  if (a > 0x7f800000u) {
    r = 0x7fu;  // NaN
  } else if (a >= 0x43e00000u) {
    r = 0x7eu;  // 448 and beyond
  } else if (a < 0x3c800000u) {
    // below 2^-6: round(|v| * 2^9) to nearest even through the 2^23 add
    r = quant::f32_bits(add(quant::mul_rn(quant::f32_from_bits(a), 512.0f), 8388608.0f)) - 0x4b000000u;
  } else {
    const uint32_t normal = a - 0x3c000000u;  // rebias 127 -> 7
    r = (normal + 0x7ffffu + ((normal >> 20) & 1u)) >> 20;
  }
  return static_cast<uint8_t>(sign | r);
}

TPINFER_HD float fp8_decode(uint8_t c) {
  const uint32_t c7 = c & 0x7fu;
  uint32_t b;
  if (c7 == 0x7fu) {
    b = 0x7fc00000u;
  } else if (c7 < 8u) {
    b = quant::f32_bits(quant::mul_rn(static_cast<float>(static_cast<int32_t>(c & 7u)), 0.001953125f));
  } else {
    b = (c7 << 20) + (120u << 23);
  }
  return quant::f32_from_bits(b | (static_cast<uint32_t>(c & 0x80u) << 24));
}

// v (already divided by the scale) -> int8 code, ties to even, in [-127, 127].
TPINFER_HD uint8_t int8_encode(float v) {
  const auto q = static_cast<int32_t>(add(add(v, 12582912.0f), -12582912.0f));
  return static_cast<uint8_t>(static_cast<int8_t>(q < -127 ? -127 : (q > 127 ? 127 : q)));
}

TPINFER_HD float int8_decode(uint8_t c) { return static_cast<float>(static_cast<int8_t>(c)); }

// Code of x in a block of scale `scale` (inverse `inv`), fp8 or int8.
TPINFER_HD uint8_t encode_code(bool fp8, uint32_t scale, float inv, float x) {
  if (scale == kScaleNaN) return 0;
  const float v = quant::mul_rn(x, inv);
  return fp8 ? fp8_encode(v) : int8_encode(v);
}

// Value of a code in a block of scale `scale` (exact in f32).
TPINFER_HD float decode_code(bool fp8, uint32_t scale, uint8_t code) {
  return quant::mul_rn(fp8 ? fp8_decode(code) : int8_decode(code), bf16_decode(scale));
}

// Offsets inside the encoding of m values (compressed_comm.h's wire format).
TPINFER_HD size_t blocks_of(size_t m) { return (m + 31) / 32; }

}  // namespace tpinfer::cuda::codec
