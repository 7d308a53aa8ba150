// The GGUF / GGML quantized block layouts, bit-exact with GGUF files: one
// definition for every back end (backend/cpu's row routines and repacking,
// backend/cuda's block decoders). Plain structs of fixed-width integers, so
// they compile unchanged under nvcc. All little-endian, no padding; f16 fields
// are raw IEEE binary16 bits (core/half.h). Each struct's comment gives how
// element i of the block decodes.
#pragma once

#include <cstdint>

namespace tpinfer {

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

}  // namespace tpinfer
