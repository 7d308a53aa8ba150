// Known answers: one block of each format built byte by byte from the GGUF
// layout (ggml-common.h / ggml-quants.c), with the decoded values worked out by
// hand in the comments. These pin the layouts to GGUF itself rather than to our
// own encoder. Each block is also dotted with an all-ones activation on every
// instruction-set level, which must give the sum of the hand values.
#include <gtest/gtest.h>

#include <cstring>
#include <map>
#include <vector>

#include "backend/cpu/quant.h"
#include "core/half.h"

namespace tpinfer::cpu {
namespace {

constexpr uint16_t kHalf = 0x3800;     // f16 0.5
constexpr uint16_t kOne = 0x3C00;      // f16 1.0
constexpr uint16_t kTwo = 0x4000;      // f16 2.0
constexpr uint16_t kQuarter = 0x3400;  // f16 0.25
constexpr uint16_t kMinusTwo = 0xC000;

struct Case {
  DType type;
  std::vector<uint8_t> block;
  std::vector<float> want;  // all values of the block
};

void put16(std::vector<uint8_t>& b, size_t off, uint16_t v) { std::memcpy(&b[off], &v, 2); }

// A block of `t`'s size, zero-filled.
std::vector<uint8_t> zero_block(DType t) { return std::vector<uint8_t>(dtype_info(t).type_size, 0); }

Case q4_0_case() {
  // d = 0.5; value = (nibble - 8) * 0.5. Value i < 16 is the low nibble of
  // qs[i], value i + 16 the high nibble.
  std::vector<uint8_t> b = zero_block(DType::Q4_0);
  put16(b, 0, kHalf);
  for (int j = 0; j < 16; ++j) b[2 + j] = 0x88;  // (8 - 8) * 0.5 = 0
  b[2 + 0] = 0x1F;                               // value 0: 15 -> 3.5;  value 16: 1 -> -3.5
  b[2 + 5] = 0x80;                               // value 5: 0 -> -4.0;  value 21: 8 -> 0
  std::vector<float> want(32, 0.0f);
  want[0] = 3.5f;
  want[16] = -3.5f;
  want[5] = -4.0f;
  return {DType::Q4_0, b, want};
}

Case q4_1_case() {
  // d = 1, m = -2; value = nibble * 1 - 2.
  std::vector<uint8_t> b = zero_block(DType::Q4_1);
  put16(b, 0, kOne);
  put16(b, 2, kMinusTwo);
  b[4 + 3] = 0xA2;  // value 3: 2 - 2 = 0;  value 19: 10 - 2 = 8
  std::vector<float> want(32, -2.0f);
  want[3] = 0.0f;
  want[19] = 8.0f;
  return {DType::Q4_1, b, want};
}

Case q5_0_case() {
  // d = 1; qh = 0x80010001 (bits 0, 16, 31); value = ((nibble | bit << 4) - 16).
  std::vector<uint8_t> b = zero_block(DType::Q5_0);
  put16(b, 0, kOne);
  b[2] = 0x01;
  b[4] = 0x01;
  b[5] = 0x80;
  b[6 + 0] = 0x21;   // value 0: 1 | 16 = 17 -> 1;  value 16: 2 | 16 = 18 -> 2
  b[6 + 15] = 0xF0;  // value 15: 0, bit 15 clear -> -16;  value 31: 15 | 16 = 31 -> 15
  std::vector<float> want(32, -16.0f);
  want[0] = 1.0f;
  want[16] = 2.0f;
  want[31] = 15.0f;
  return {DType::Q5_0, b, want};
}

Case q5_1_case() {
  // d = 0.5, m = 1; qh bit 2; value = (nibble | bit << 4) * 0.5 + 1.
  std::vector<uint8_t> b = zero_block(DType::Q5_1);
  put16(b, 0, kHalf);
  put16(b, 2, kOne);
  b[4] = 0x04;
  b[8 + 2] = 0x0F;  // value 2: 15 | 16 = 31 -> 16.5;  value 18: 0 -> 1
  std::vector<float> want(32, 1.0f);
  want[2] = 16.5f;
  return {DType::Q5_1, b, want};
}

Case q8_0_case() {
  // d = 0.25; value = qs * 0.25.
  std::vector<uint8_t> b = zero_block(DType::Q8_0);
  put16(b, 0, kQuarter);
  b[2 + 0] = 0x80;  // -128 -> -32
  b[2 + 7] = 0xFD;  // -3 -> -0.75
  b[2 + 31] = 127;  // 31.75
  std::vector<float> want(32, 0.0f);
  want[0] = -32.0f;
  want[7] = -0.75f;
  want[31] = 31.75f;
  return {DType::Q8_0, b, want};
}

Case q8_1_case() {
  // d = 2 (s, the cached sum, plays no part in the values).
  std::vector<uint8_t> b = zero_block(DType::Q8_1);
  put16(b, 0, kTwo);
  put16(b, 2, 0x7BFF);
  b[4 + 1] = 5;  // 10
  std::vector<float> want(32, 0.0f);
  want[1] = 10.0f;
  return {DType::Q8_1, b, want};
}

Case q2_k_case() {
  // scales[16] @0, qs[64] @16, d @80 = 1, dmin @82 = 0.5.
  // Sub-block j (values 16j..16j+15): scale d * (scales[j] & 15), min dmin * (scales[j] >> 4).
  // Value e: byte qs[32 * (e / 128) + e % 32], bits 2 * ((e % 128) / 32).
  std::vector<uint8_t> b = zero_block(DType::Q2_K);
  put16(b, 80, kOne);
  put16(b, 82, kHalf);
  b[0] = 0x32;        // sub-block 0: scale 2, min 3 * 0.5 = 1.5 -> 2q - 1.5
  b[5] = 0x17;        // sub-block 5 (values 80..95): scale 7, min 0.5 -> 7q - 0.5
  b[15] = 0xF1;       // sub-block 15 (values 240..255): scale 1, min 7.5 -> q - 7.5
  b[16 + 0] = 0x03;   // value 0: q = 3 -> 4.5
  b[16 + 16] = 0x20;  // value 80: byte 16, bits 4-5 = 2 -> 13.5
  b[16 + 63] = 0x40;  // value 255: byte 32 + 31, bits 6-7 = 1 -> -6.5
  std::vector<float> want(256, 0.0f);
  for (int e = 0; e < 16; ++e) want[e] = -1.5f;
  for (int e = 80; e < 96; ++e) want[e] = -0.5f;
  for (int e = 240; e < 256; ++e) want[e] = -7.5f;
  want[0] = 4.5f;
  want[80] = 13.5f;
  want[255] = -6.5f;
  return {DType::Q2_K, b, want};
}

Case q3_k_case() {
  // hmask[32] @0, qs[64] @32, scales[12] @96, d @108 = 1.
  // Scale j is 6 bits minus 32: low 4 bits in scales[j] (j < 8) or scales[j-8] >> 4,
  // high 2 bits at bits 2*(j/4) of scales[8 + j%4]. Scale 0 is stored as 32
  // (low 0, high 2); so bytes 8..11 are 0b10101010 = 0xAA by default.
  // s_0 = +3: 35 = 0b10'0011 -> scales[0] low nibble 3, high bits 2 (default).
  // s_9 = -5: 27 = 0b01'1011 -> scales[1] high nibble 0xB; scales[9] bits 4-5 = 01 -> 0x9A.
  // Value e = d * s * (q2 - (hmask[e % 32] bit e/32 ? 0 : 4)), q2 as in Q2_K.
  std::vector<uint8_t> b = zero_block(DType::Q3_K);
  put16(b, 108, kOne);
  const uint8_t scales[12] = {0x03, 0xB0, 0, 0, 0, 0, 0, 0, 0xAA, 0x9A, 0xAA, 0xAA};
  std::memcpy(&b[96], scales, 12);
  b[32 + 0] = 0x03;   // value 0: q2 = 3
  b[0] |= 0x01;       // value 0: high bit set -> 3 * (3 - 0) = 9
  b[32 + 1] = 0x01;   // value 1: q2 = 1, high bit clear -> 3 * (1 - 4) = -9
  b[32 + 48] = 0x02;  // value 144 (128 + 16): q2 = 2
  b[16] |= 0x10;      // value 144: hmask[16] bit 4 -> -5 * 2 = -10
  std::vector<float> want(256, 0.0f);
  for (int e = 0; e < 16; ++e) want[e] = -12.0f;    // 3 * (0 - 4)
  for (int e = 144; e < 160; ++e) want[e] = 20.0f;  // -5 * (0 - 4)
  want[0] = 9.0f;
  want[1] = -9.0f;
  want[144] = -10.0f;
  return {DType::Q3_K, b, want};
}

Case q4_k_case() {
  // d @0 = 0.5, dmin @2 = 1, scales[12] @4, qs[128] @16.
  // Packed 6-bit (sc, m): j < 4: scales[j] & 63, scales[j+4] & 63; j >= 4:
  // sc = scales[j+4] & 15 | (scales[j-4] >> 6) << 4, m = scales[j+4] >> 4 | (scales[j] >> 6) << 4.
  // j=0: (5, 3) -> scales[0] = 5, scales[4] = 3.
  // j=1: (1, 0) -> scales[1] = 1, scales[5] = 0.
  // j=5: (40, 17) -> scales[9] = 8 | 1 << 4 = 0x18; scales[1] |= 2 << 6 -> 0x81; scales[5] |= 1 << 6 -> 0x40.
  // Value e: sub-block j = e / 32, nibble of qs[32 * (j / 2) + e % 32] (low for even j);
  // value = 0.5 * sc * q - 1 * m.
  std::vector<uint8_t> b = zero_block(DType::Q4_K);
  put16(b, 0, kHalf);
  put16(b, 2, kOne);
  const uint8_t scales[12] = {0x05, 0x81, 0, 0, 0x03, 0x40, 0, 0, 0, 0x18, 0, 0};
  std::memcpy(&b[4], scales, 12);
  b[16 + 0] = 0xA9;   // value 0: 9 -> 0.5*5*9 - 3 = 19.5;  value 32: 10 -> 0.5*1*10 = 5
  b[16 + 65] = 0x30;  // value 161 (j=5): high nibble 3 -> 0.5*40*3 - 17 = 43
  std::vector<float> want(256, 0.0f);
  for (int e = 0; e < 32; ++e) want[e] = -3.0f;
  for (int e = 160; e < 192; ++e) want[e] = -17.0f;
  want[0] = 19.5f;
  want[32] = 5.0f;
  want[161] = 43.0f;
  return {DType::Q4_K, b, want};
}

Case q5_k_case() {
  // d @0 = 1, dmin @2 = 0.5, scales[12] @4 (as Q4_K), qh[32] @16, qs[128] @48.
  // j=2: (3, 4) -> scales[2] = 3, scales[6] = 4.
  // j=7: (2, 63) -> scales[11] = 2 | 15 << 4 = 0xF2; scales[3] bits 6-7 = 0; scales[7] |= 3 << 6 = 0xC0.
  // Fifth bit of value e: qh[e % 32] bit e / 32.
  std::vector<uint8_t> b = zero_block(DType::Q5_K);
  put16(b, 0, kOne);
  put16(b, 2, kHalf);
  const uint8_t scales[12] = {0, 0, 0x03, 0, 0, 0, 0x04, 0xC0, 0, 0, 0, 0xF2};
  std::memcpy(&b[4], scales, 12);
  b[48 + 37] = 0x07;   // value 69 (j=2, l=5): low nibble of qs[32 + 5] = 7
  b[16 + 5] = 0x04;    // qh[5] bit 2: +16 -> q = 23 -> 1*3*23 - 0.5*4 = 67
  b[48 + 127] = 0x10;  // value 255 (j=7, l=31): high nibble of qs[96 + 31] = 1
  b[16 + 31] = 0x80;   // qh[31] bit 7: +16 -> q = 17 -> 2*17 - 0.5*63 = 2.5
  std::vector<float> want(256, 0.0f);
  for (int e = 64; e < 96; ++e) want[e] = -2.0f;
  for (int e = 224; e < 256; ++e) want[e] = -31.5f;
  want[69] = 67.0f;
  want[255] = 2.5f;
  return {DType::Q5_K, b, want};
}

Case q6_k_case() {
  // ql[128] @0, qh[64] @128, scales int8[16] @192, d @208 = 0.5.
  // Value e: h = e/128, k = e%128, l = k%32, g = k/32; low 4 bits from
  // ql[64h + l + 32(g&1)] (low nibble for g < 2), high 2 bits (qh[32h + l] >> 2g) & 3;
  // value = d * scales[e/16] * (q - 32).
  std::vector<uint8_t> b = zero_block(DType::Q6_K);
  put16(b, 208, kHalf);
  b[192 + 0] = 2;
  b[192 + 7] = static_cast<uint8_t>(-3);
  b[192 + 13] = 1;
  b[3] = 0x0D;         // value 3 (g=0, l=3): low 13
  b[128 + 3] = 0x02;   //   high 2 -> q = 45 -> 0.5*2*13 = 13
  b[56] = 0xA0;        // value 120 (g=3, l=24): high nibble of ql[24 + 32] = 10, high bits 0
                       //   -> q = 10 -> 0.5*(-3)*(-22) = 33
  b[82] = 0xF0;        // value 210 (h=1, g=2, l=18): high nibble of ql[64 + 18] = 15
  b[128 + 50] = 0x30;  //   qh[32 + 18] bits 4-5 = 3 -> q = 63 -> 0.5*1*31 = 15.5
  std::vector<float> want(256, 0.0f);
  for (int e = 0; e < 16; ++e) want[e] = -32.0f;     // 0.5*2*(0-32)
  for (int e = 112; e < 128; ++e) want[e] = 48.0f;   // 0.5*(-3)*(0-32)
  for (int e = 208; e < 224; ++e) want[e] = -16.0f;  // 0.5*1*(0-32)
  want[3] = 13.0f;
  want[120] = 33.0f;
  want[210] = 15.5f;
  return {DType::Q6_K, b, want};
}

Case q8_k_case() {
  // d (f32) @0 = 0.125, qs[256] @4, bsums @260 (not part of the values).
  std::vector<uint8_t> b = zero_block(DType::Q8_K);
  const float d = 0.125f;
  std::memcpy(&b[0], &d, 4);
  b[4 + 0] = static_cast<uint8_t>(-127);
  b[4 + 255] = 100;
  std::vector<float> want(256, 0.0f);
  want[0] = -15.875f;
  want[255] = 12.5f;
  return {DType::Q8_K, b, want};
}

Case f16_case() {
  std::vector<uint8_t> b(8);
  put16(b, 0, kOne);
  put16(b, 2, kMinusTwo);
  put16(b, 4, 0x0001);  // smallest subnormal, 2^-24
  put16(b, 6, 0x7BFF);  // largest finite, 65504
  return {DType::F16, b, {1.0f, -2.0f, 0x1p-24f, 65504.0f}};
}

Case bf16_case() {
  std::vector<uint8_t> b(4);
  put16(b, 0, 0x3F80);  // 1.0
  put16(b, 2, 0x4049);  // 0x40490000 = 3.140625
  return {DType::BF16, b, {1.0f, 3.140625f}};
}

std::vector<Case> all_cases() {
  return {q4_0_case(), q4_1_case(), q5_0_case(), q5_1_case(), q8_0_case(), q8_1_case(), q2_k_case(),
          q3_k_case(), q4_k_case(), q5_k_case(), q6_k_case(), q8_k_case(), f16_case(),  bf16_case()};
}

TEST(QuantKnownAnswer, HandBuiltBlocksDecodeAsDocumented) {
  for (const Case& c : all_cases()) {
    const int64_t n = static_cast<int64_t>(c.want.size());
    for (Isa isa : supported_isas()) {
      std::vector<float> got(c.want.size(), 1234.0f);
      dequantize_row(isa, c.type, c.block.data(), got.data(), n);
      for (size_t i = 0; i < got.size(); ++i) {
        ASSERT_EQ(got[i], c.want[i]) << dtype_name(c.type) << "/" << isa_name(isa) << " value " << i;
      }
    }
  }
}

// An activation row of ones: Q8_0 (d = 1, qs = 1), Q8_K (d = 1, qs = 1, bsums = 16)
// or F32 ones. The dot with it is the plain sum of the block's values.
std::vector<uint8_t> ones_activation(DType w, int64_t n) {
  const DType at = vec_dot_type(w);
  std::vector<uint8_t> a(row_bytes(at, static_cast<uint64_t>(n)));
  if (at == DType::F32) {
    const std::vector<float> ones(static_cast<size_t>(n), 1.0f);
    std::memcpy(a.data(), ones.data(), a.size());
  } else if (at == DType::Q8_0) {
    put16(a, 0, kOne);
    std::memset(&a[2], 1, 32);
  } else {
    const float d = 1.0f;
    std::memcpy(&a[0], &d, 4);
    std::memset(&a[4], 1, 256);
    for (int j = 0; j < 16; ++j) put16(a, 260 + 2 * static_cast<size_t>(j), 16);
  }
  return a;
}

TEST(QuantKnownAnswer, DotWithOnesIsTheSumOfHandValues) {
  for (const Case& c : all_cases()) {
    const int64_t n = static_cast<int64_t>(c.want.size());
    double sum = 0.0;
    for (float v : c.want) sum += v;
    const std::vector<uint8_t> a = ones_activation(c.type, n);
    EXPECT_EQ(vec_dot_ref(c.type, n, c.block.data(), a.data()), static_cast<float>(sum)) << dtype_name(c.type);
    for (Isa isa : supported_isas()) {
      EXPECT_EQ(vec_dot(isa, c.type, n, c.block.data(), a.data()), static_cast<float>(sum))
          << dtype_name(c.type) << "/" << isa_name(isa);
    }
  }
}

// Known quantizations: a Q8_0 block whose values are multiples of its step, and
// the worked Q4_0 example (max -8 -> d = 1; values round half up after +8.5).
TEST(QuantKnownAnswer, SimpleQuantizations) {
  std::vector<float> x(32);
  for (int i = 0; i < 32; ++i) x[i] = static_cast<float>(i - 16) * 0.5f;  // amax 8 -> d = 8/127
  x[31] = 63.5f;                                                          // amax 63.5 -> d = 0.5
  std::vector<uint8_t> q(34);
  quantize_row_ref(DType::Q8_0, x.data(), q.data(), 32);
  uint16_t d;
  std::memcpy(&d, q.data(), 2);
  EXPECT_EQ(d, kHalf);
  for (int i = 0; i < 31; ++i) EXPECT_EQ(static_cast<int8_t>(q[2 + i]), i - 16) << i;
  EXPECT_EQ(static_cast<int8_t>(q[2 + 31]), 127);

  std::vector<float> y(32, 0.0f);
  y[0] = -8.0f;  // d = -8 / -8 = 1, nibble = x + 8.5 truncated
  y[1] = 7.0f;
  y[2] = 2.4f;   // 10.9 -> 10
  y[3] = -2.5f;  // 6.0 -> 6
  y[17] = 8.0f;  // 16.5 -> 16 -> clamped to 15
  std::vector<uint8_t> q4(18);
  quantize_row_ref(DType::Q4_0, y.data(), q4.data(), 32);
  std::memcpy(&d, q4.data(), 2);
  EXPECT_EQ(d, kOne);
  EXPECT_EQ(q4[2 + 0], 0x80);  // values 0 (-8 -> 0) and 16 (0 -> 8)
  EXPECT_EQ(q4[2 + 1], 0xF0 | 15);
  EXPECT_EQ(q4[2 + 2], 0x80 | 10);
  EXPECT_EQ(q4[2 + 3], 0x80 | 6);
}

}  // namespace
}  // namespace tpinfer::cpu
