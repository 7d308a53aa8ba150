#include "core/dtype.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "core/half.h"

namespace tpinfer {
namespace {

TEST(DType, InfoAndParse) {
  EXPECT_EQ(dtype_info(DType::Q8_0).block_size, 32u);
  EXPECT_EQ(dtype_info(DType::Q8_0).type_size, 34u);
  EXPECT_EQ(dtype_info(DType::Q4_K).type_size, 144u);
  EXPECT_EQ(parse_dtype("Q4_K"), DType::Q4_K);
  EXPECT_EQ(parse_dtype("bf16"), DType::BF16);
  EXPECT_FALSE(parse_dtype("q9_9").has_value());
  EXPECT_FALSE(dtype_info(4u).has_value());  // removed GGML type id
  EXPECT_EQ(row_bytes(DType::Q4_0, 64), 36u);
}

// f16: every one of the 65536 codes survives f16 -> f32 -> f16 (NaNs stay NaN).
TEST(Half, F16RoundTripAllCodes) {
  for (uint32_t h = 0; h < 65536; ++h) {
    const float f = f16_to_f32(static_cast<uint16_t>(h));
    if (std::isnan(f)) {
      EXPECT_TRUE(std::isnan(f16_to_f32(f32_to_f16(f))));
      continue;
    }
    EXPECT_EQ(f32_to_f16(f), h) << h;
  }
}

// f32 -> f16 is round-to-nearest-even: compare against the exact nearest code.
TEST(Half, F16RoundsToNearest) {
  std::mt19937 rng(1);
  std::uniform_real_distribution<float> exp_dist(-26.0f, 17.0f);
  for (int i = 0; i < 200000; ++i) {
    const float x = std::ldexp(std::uniform_real_distribution<float>(1.0f, 2.0f)(rng), static_cast<int>(exp_dist(rng)));
    const uint16_t h = f32_to_f16(x);
    const double got = f16_to_f32(h);
    if (std::isinf(got)) {
      EXPECT_GE(x, 65520.0f);
      continue;
    }
    const double lo = f16_to_f32(static_cast<uint16_t>(h - 1));
    const double hi = f16_to_f32(static_cast<uint16_t>(h + 1));
    EXPECT_LE(std::abs(got - x), std::abs(lo - x)) << x;
    if (h != 0x7bff) {
      EXPECT_LE(std::abs(got - x), std::abs(hi - x)) << x;
    }
  }
}

TEST(Half, Bf16) {
  EXPECT_EQ(f32_to_bf16(1.0f), 0x3f80);
  EXPECT_EQ(bf16_to_f32(0x3f80), 1.0f);
  // round to nearest even: 1 + 2^-8 is a tie between 1 and 1 + 2^-7 -> 1
  EXPECT_EQ(f32_to_bf16(1.0f + 1.0f / 256), 0x3f80);
  EXPECT_EQ(f32_to_bf16(1.0f + 3.0f / 256), 0x3f82);
  EXPECT_TRUE(std::isnan(bf16_to_f32(f32_to_bf16(NAN))));
}

}  // namespace
}  // namespace tpinfer
