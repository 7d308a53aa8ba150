// FP8 conversions after the OCP 8-bit floating point specification (OFP8, v1.0),
// bit-exact and portable. These are the plain scalar references; bulk codecs
// built on them (comm/compressed_comm.h) are tested against them.
//
// E4M3: sign, 4 exponent bits (bias 7), 3 mantissa bits. No infinities; S.1111.111
//   is NaN (both signs); largest finite magnitude 448 (S.1111.110); subnormals
//   m/8 * 2^-6 down to 2^-9.
//   f32 -> E4M3 rounds to nearest, ties to even, and saturates: every finite value
//   and infinity beyond 448 in magnitude becomes +-448; NaN becomes NaN (sign kept).
// E5M2: sign, 5 exponent bits (bias 15), 2 mantissa bits, IEEE-like: S.11111.00 is
//   infinity, S.11111.{01,10,11} NaN; largest finite magnitude 57344; subnormals
//   m/4 * 2^-14 down to 2^-16.
//   f32 -> E5M2 rounds to nearest even and saturates finite values to +-57344;
//   infinity stays infinity, NaN stays NaN.
// Decoding is exact (every FP8 value is an f32). All of this assumes the default
// floating-point environment (round to nearest; no flush-to-zero is needed).
#pragma once

#include <cstdint>

#include "core/half.h"

namespace tpinfer {

inline constexpr float kFp8E4M3Max = 448.0f;
inline constexpr float kFp8E5M2Max = 57344.0f;
inline constexpr uint8_t kFp8E4M3NaN = 0x7f;

namespace fp8_detail {

// Rounds a non-negative finite f32 (bits `a`) to a float format with `man_bits`
// mantissa bits and exponent bias `bias`, returning its magnitude bits (no sign),
// assuming the result is below that format's overflow threshold.
inline uint32_t round_magnitude(uint32_t a, int man_bits, int bias) {
  const int drop = 23 - man_bits;
  const uint32_t min_normal = static_cast<uint32_t>(127 - bias + 1) << 23;
  if (a < min_normal) {
    // Subnormal target: result = round(value / 2^(1 - bias - man_bits)), an
    // integer in [0, 2^man_bits], ties to even. 2^man_bits is the smallest normal.
    const int shift_exp = bias - 1 + man_bits;  // value * 2^shift_exp
    const float scaled = f32_from_bits(a) * f32_from_bits(static_cast<uint32_t>(127 + shift_exp) << 23);
    // scaled < 2^man_bits <= 2^23: adding 2^23 leaves round-to-nearest-even of it
    // in the low mantissa bits.
    return f32_bits(scaled + 8388608.0f) - 0x4b000000u;
  }
  const uint32_t rebased = a - (static_cast<uint32_t>(127 - bias) << 23);
  const uint32_t half = (1u << (drop - 1)) - 1u;
  return (rebased + half + ((rebased >> drop) & 1u)) >> drop;
}

}  // namespace fp8_detail

inline float fp8_e4m3_to_f32(uint8_t c) {
  const uint32_t sign = static_cast<uint32_t>(c & 0x80u) << 24;
  const uint32_t exp = (c >> 3) & 0xfu;
  const uint32_t man = c & 0x7u;
  if (exp == 0xf && man == 0x7) return f32_from_bits(sign | 0x7fc00000u);
  if (exp == 0) {
    const float v = static_cast<float>(man) * 0.001953125f;  // m * 2^-9, exact
    return sign ? -v : v;
  }
  return f32_from_bits(sign | ((exp + 120u) << 23) | (man << 20));
}

inline uint8_t f32_to_fp8_e4m3(float f) {
  const uint32_t u = f32_bits(f);
  const uint8_t sign = static_cast<uint8_t>((u >> 24) & 0x80u);
  const uint32_t a = u & 0x7fffffffu;
  if (a > 0x7f800000u) return static_cast<uint8_t>(sign | kFp8E4M3NaN);
  // 448 is the largest code; anything at or beyond it (infinity included) saturates.
  if (a >= 0x43e00000u) return static_cast<uint8_t>(sign | 0x7eu);
  return static_cast<uint8_t>(sign | fp8_detail::round_magnitude(a, 3, 7));
}

inline float fp8_e5m2_to_f32(uint8_t c) {
  const uint32_t sign = static_cast<uint32_t>(c & 0x80u) << 24;
  const uint32_t exp = (c >> 2) & 0x1fu;
  const uint32_t man = c & 0x3u;
  if (exp == 0x1f) return f32_from_bits(sign | 0x7f800000u | (man << 21) | (man ? 0x400000u : 0u));
  if (exp == 0) {
    const float v = static_cast<float>(man) * 1.52587890625e-05f;  // m * 2^-16, exact
    return sign ? -v : v;
  }
  return f32_from_bits(sign | ((exp + 112u) << 23) | (man << 21));
}

inline uint8_t f32_to_fp8_e5m2(float f) {
  const uint32_t u = f32_bits(f);
  const uint8_t sign = static_cast<uint8_t>((u >> 24) & 0x80u);
  const uint32_t a = u & 0x7fffffffu;
  if (a > 0x7f800000u) return static_cast<uint8_t>(sign | 0x7fu);   // NaN
  if (a == 0x7f800000u) return static_cast<uint8_t>(sign | 0x7cu);  // infinity
  if (a >= 0x47600000u) return static_cast<uint8_t>(sign | 0x7bu);  // >= 57344: saturate
  return static_cast<uint8_t>(sign | fp8_detail::round_magnitude(a, 2, 15));
}

}  // namespace tpinfer
