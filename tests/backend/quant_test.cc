// Row routines of backend/cpu/quant.h: every instruction-set level against the
// scalar references, on random rows (fixed seeds, so failures reproduce).
#include "backend/cpu/quant.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <random>

#include "backend/cpu/isa.h"
#include "backend_test_util.h"
#include "core/error.h"
#include "core/half.h"

namespace tpinfer::cpu {
namespace {

using testing::all_types;
using testing::dequantized;
using testing::random_blocks;
using testing::random_floats;
using testing::type_isa_name;

// Blocks per row in the tests: odd counts, 1..7 blocks.
constexpr int kMaxBlocks = 7;

int64_t block_size(DType t) { return dtype_info(t).block_size; }

// For plain types a "block" of 37 values keeps the SIMD tails in play.
int64_t row_length(DType t, int blocks) { return blocks * (block_size(t) == 1 ? 37 : block_size(t)); }

TEST(QuantLayout, BlockSizesMatchDtypeInfo) {
  EXPECT_EQ(sizeof(BlockQ4_0), dtype_info(DType::Q4_0).type_size);
  EXPECT_EQ(sizeof(BlockQ4_1), dtype_info(DType::Q4_1).type_size);
  EXPECT_EQ(sizeof(BlockQ5_0), dtype_info(DType::Q5_0).type_size);
  EXPECT_EQ(sizeof(BlockQ5_1), dtype_info(DType::Q5_1).type_size);
  EXPECT_EQ(sizeof(BlockQ8_0), dtype_info(DType::Q8_0).type_size);
  EXPECT_EQ(sizeof(BlockQ8_1), dtype_info(DType::Q8_1).type_size);
  EXPECT_EQ(sizeof(BlockQ2_K), dtype_info(DType::Q2_K).type_size);
  EXPECT_EQ(sizeof(BlockQ3_K), dtype_info(DType::Q3_K).type_size);
  EXPECT_EQ(sizeof(BlockQ4_K), dtype_info(DType::Q4_K).type_size);
  EXPECT_EQ(sizeof(BlockQ5_K), dtype_info(DType::Q5_K).type_size);
  EXPECT_EQ(sizeof(BlockQ6_K), dtype_info(DType::Q6_K).type_size);
  EXPECT_EQ(sizeof(BlockQ8_K), dtype_info(DType::Q8_K).type_size);
  EXPECT_EQ(dtype_info(DType::Q4_0).block_size, static_cast<uint32_t>(kQK));
  EXPECT_EQ(dtype_info(DType::Q6_K).block_size, static_cast<uint32_t>(kQKK));
}

TEST(QuantLayout, VecDotTypes) {
  EXPECT_EQ(vec_dot_type(DType::F32), DType::F32);
  EXPECT_EQ(vec_dot_type(DType::F16), DType::F32);
  EXPECT_EQ(vec_dot_type(DType::BF16), DType::F32);
  for (DType t : {DType::Q4_0, DType::Q4_1, DType::Q5_0, DType::Q5_1, DType::Q8_0, DType::Q8_1}) {
    EXPECT_EQ(vec_dot_type(t), DType::Q8_0) << dtype_name(t);
  }
  for (DType t : {DType::Q2_K, DType::Q3_K, DType::Q4_K, DType::Q5_K, DType::Q6_K, DType::Q8_K}) {
    EXPECT_EQ(vec_dot_type(t), DType::Q8_K) << dtype_name(t);
  }
  EXPECT_THROW(vec_dot_type(DType::I32), Error);
}

// Every level dequantizes random bit patterns to exactly the reference's floats.
TEST(QuantDequantize, EveryIsaMatchesReferenceBitForBit) {
  std::mt19937 rng(11);
  for (Isa isa : supported_isas()) {
    for (DType t : all_types()) {
      for (int blocks = 1; blocks <= kMaxBlocks; blocks += 2) {
        const int64_t n = row_length(t, blocks);
        const std::vector<uint8_t> src = random_blocks(t, n, rng);
        const std::vector<float> want = dequantized(t, src.data(), n);
        std::vector<float> got(static_cast<size_t>(n), -1.0f);
        dequantize_row(isa, t, src.data(), got.data(), n);
        ASSERT_EQ(0, std::memcmp(want.data(), got.data(), want.size() * sizeof(float)))
            << type_isa_name(t, isa) << " n=" << n;
      }
    }
  }
}

// Inputs that stress rounding decisions: exact ties, both signs at the maximum
// magnitude, all zeros, tiny and huge scales.
std::vector<float> special_row(int kind, int64_t n, std::mt19937& rng) {
  std::vector<float> x = random_floats(n, rng);
  std::uniform_int_distribution<int> level(-126, 126);
  switch (kind) {
    case 0:
      break;
    case 1:  // multiples of 0.5 with amax 127: ties for Q8_0 (d = 1) and Q8_K
      for (float& v : x) v = static_cast<float>(level(rng)) + 0.5f;
      for (int64_t i = 0; i < n; i += 32) x[static_cast<size_t>(i)] = 127.0f;
      break;
    case 2:  // the maximum magnitude twice, negative first
      for (int64_t i = 0; i < n; i += 32) {
        x[static_cast<size_t>(i + 3)] = -50.0f;
        x[static_cast<size_t>(i + 9)] = 50.0f;
      }
      break;
    case 3:
      std::fill(x.begin(), x.end(), 0.0f);
      break;
    case 4:
      for (float& v : x) v *= 1e-30f;
      break;
    case 5:
      for (float& v : x) v *= 1e6f;
      break;
    case 6:  // zero blocks between non-zero ones
      for (int64_t i = 0; i < n; ++i) {
        if ((i / 32) % 2 == 1) x[static_cast<size_t>(i)] = 0.0f;
      }
      break;
  }
  return x;
}

// quantize_row on every level writes exactly the reference's bytes.
TEST(QuantQuantize, EveryIsaMatchesReferenceBytes) {
  std::mt19937 rng(12);
  for (Isa isa : supported_isas()) {
    for (DType t : all_types()) {
      for (int kind = 0; kind < 7; ++kind) {
        const int64_t n = row_length(t, 1 + 2 * (kind % 4));
        const std::vector<float> x = special_row(kind, n, rng);
        const size_t bytes = row_bytes(t, static_cast<uint64_t>(n));
        std::vector<uint8_t> want(bytes, 0xAB), got(bytes, 0xCD);
        quantize_row_ref(t, x.data(), want.data(), n);
        quantize_row(isa, t, x.data(), got.data(), n);
        ASSERT_EQ(want, got) << type_isa_name(t, isa) << " kind=" << kind;
      }
    }
  }
}

// A block of zeros quantizes to values that dequantize to zeros.
TEST(QuantQuantize, ZerosStayZero) {
  for (DType t : all_types()) {
    const int64_t n = row_length(t, 2);
    const std::vector<float> zeros(static_cast<size_t>(n), 0.0f);
    std::vector<uint8_t> q(row_bytes(t, static_cast<uint64_t>(n)), 0xEE);
    quantize_row_ref(t, zeros.data(), q.data(), n);
    for (float v : dequantized(t, q.data(), n)) ASSERT_EQ(v, 0.0f) << dtype_name(t);
  }
}

// Largest error of quantize -> dequantize on one block, relative to bounds:
//  - Q4_0 / Q5_0 (d = max/-8, max/-16): |d| + levels * |d - f16(d)|: one full
//    step, because the value of opposite sign to the maximum clamps to the top
//    level (+7 / +15), plus the rounding of the stored scale;
//  - Q8_0 / Q8_1 (d = amax/127): |d|/2 + 127 * |d - f16(d)|;
//  - Q4_1 / Q5_1 (d = range/15, range/31, offset min): d/2 plus the rounding of
//    the stored d (times the top level) and of the stored min;
//  - Q8_K (f32 scale): amax/254, plus float slack;
//  - K-quants with searched scales (no closed form): measured worst case over
//    this test's inputs with ~25% margin, as a fraction of the super-block's
//    largest magnitude: Q2_K 0.52, Q3_K 0.34, Q4_K 0.14, Q5_K 0.08, Q6_K 0.03;
//    and the same for the RMS error: 0.19, 0.105, 0.045, 0.023, 0.011.
//  - F16 / BF16: half an ulp (2^-11 / 2^-8 relative; f16 subnormals 2^-25).
struct Bound {
  double max_err;
  double rms_err;  // negative: no RMS bound
};

Bound round_trip_bound(DType t, const float* x, int64_t n) {
  double amax = 0.0, vmax = 0.0, lo = x[0], hi = x[0];
  for (int64_t i = 0; i < n; ++i) {
    if (std::fabs(x[i]) > amax) {
      amax = std::fabs(x[i]);
      vmax = x[i];
    }
    lo = std::min<double>(lo, x[i]);
    hi = std::max<double>(hi, x[i]);
  }
  auto f16_err = [](double d) { return std::fabs(d - f16_to_f32(f32_to_f16(static_cast<float>(d)))); };
  const double slack = 1e-6 * amax + 1e-30;
  switch (t) {
    case DType::Q4_0:
      return {std::fabs(vmax / 8) + 8 * f16_err(vmax / -8) + slack, -1};
    case DType::Q5_0:
      return {std::fabs(vmax / 16) + 16 * f16_err(vmax / -16) + slack, -1};
    case DType::Q8_0:
    case DType::Q8_1:
      return {amax / 254 + 127 * f16_err(amax / 127) + slack, -1};
    case DType::Q4_1: {
      const double d = (hi - lo) / 15;
      return {d / 2 + 15 * f16_err(d) + f16_err(lo) + slack, -1};
    }
    case DType::Q5_1: {
      const double d = (hi - lo) / 31;
      return {d / 2 + 31 * f16_err(d) + f16_err(lo) + slack, -1};
    }
    case DType::Q8_K:
      return {amax / 254 + slack, -1};
    case DType::Q2_K:
      return {0.52 * amax, 0.19 * amax};
    case DType::Q3_K:
      return {0.34 * amax, 0.105 * amax};
    case DType::Q4_K:
      return {0.14 * amax, 0.045 * amax};
    case DType::Q5_K:
      return {0.08 * amax, 0.023 * amax};
    case DType::Q6_K:
      return {0.03 * amax, 0.011 * amax};
    default:
      return {0.0, -1};  // plain types: checked per element below
  }
}

TEST(QuantQuantize, RoundTripWithinStatedBound) {
  std::mt19937 rng(13);
  for (DType t : all_types()) {
    const int64_t bs = block_size(t) == 1 ? 64 : block_size(t);
    double worst = 0.0;
    for (int iter = 0; iter < 600; ++iter) {
      std::vector<float> x = random_floats(bs, rng);
      if (iter % 2 == 1) {  // flat distributions stress the clamped levels
        std::uniform_real_distribution<float> u(-1.0f, 1.0f);
        const float scale = static_cast<float>(1 + iter % 7);
        for (float& v : x) v = u(rng) * scale;
      }
      std::vector<uint8_t> q(row_bytes(t, static_cast<uint64_t>(bs)));
      quantize_row_ref(t, x.data(), q.data(), bs);
      const std::vector<float> y = dequantized(t, q.data(), bs);
      if (!dtype_info(t).quantized) {
        const double rel = t == DType::F32 ? 0.0 : t == DType::F16 ? 0x1p-11 : 0x1p-8;
        for (int64_t i = 0; i < bs; ++i) {
          const double tol = rel * std::fabs(x[static_cast<size_t>(i)]) + (t == DType::F16 ? 0x1p-25 : 0.0);
          ASSERT_LE(std::fabs(x[static_cast<size_t>(i)] - y[static_cast<size_t>(i)]), tol) << dtype_name(t);
        }
        continue;
      }
      const Bound bound = round_trip_bound(t, x.data(), bs);
      double max_err = 0.0, sq = 0.0;
      for (int64_t i = 0; i < bs; ++i) {
        const double e = std::fabs(static_cast<double>(x[static_cast<size_t>(i)]) - y[static_cast<size_t>(i)]);
        max_err = std::max(max_err, e);
        sq += e * e;
      }
      ASSERT_LE(max_err, bound.max_err) << dtype_name(t) << " iter " << iter;
      if (bound.rms_err >= 0) {
        ASSERT_LE(std::sqrt(sq / static_cast<double>(bs)), bound.rms_err) << dtype_name(t);
      }
      worst = std::max(worst, max_err / bound.max_err);
    }
    // The bounds are not vacuous: some block comes within 2x of its bound.
    if (dtype_info(t).quantized) {
      EXPECT_GT(worst, 0.5) << dtype_name(t);
    }
  }
}

// The reference dot equals the float64 dot of the dequantized rows: it is the
// exact sum, up to the rounding of the dequantized values themselves.
TEST(QuantDot, ReferenceEqualsDotOfDequantizedRows) {
  std::mt19937 rng(14);
  for (DType t : all_types()) {
    for (int blocks = 1; blocks <= kMaxBlocks; ++blocks) {
      const int64_t n = row_length(t, blocks);
      const std::vector<uint8_t> w = testing::random_weights(t, n, rng);
      const std::vector<uint8_t> a = testing::random_activation(t, n, rng);
      const double want = testing::plain_dot(dequantized(t, w.data(), n), dequantized(vec_dot_type(t), a.data(), n));
      const double mag = testing::dot_magnitude(t, n, w.data(), a.data());
      ASSERT_GT(mag, 0.0) << dtype_name(t);
      EXPECT_NEAR(vec_dot_ref(t, n, w.data(), a.data()), want, 2e-6 * mag) << dtype_name(t) << " n=" << n;
    }
  }
}

// Every level against the reference on fresh rows of 1..7 blocks. The integer
// parts are exact on every path; only the float combination of the per-block
// scales differs, so the bound is 1e-5 of the magnitude of the terms.
TEST(QuantDot, EveryIsaMatchesReference) {
  std::mt19937 rng(15);
  for (Isa isa : supported_isas()) {
    for (DType t : all_types()) {
      for (int blocks = 1; blocks <= kMaxBlocks; ++blocks) {
        for (int rep = 0; rep < 3; ++rep) {
          const int64_t n = row_length(t, blocks);
          const std::vector<uint8_t> w = testing::random_weights(t, n, rng);
          const std::vector<uint8_t> a = testing::random_activation(t, n, rng);
          const double want = vec_dot_ref(t, n, w.data(), a.data());
          const double mag = testing::dot_magnitude(t, n, w.data(), a.data());
          ASSERT_NEAR(vec_dot(isa, t, n, w.data(), a.data()), want, 1e-5 * mag + 1e-30)
              << type_isa_name(t, isa) << " n=" << n;
        }
      }
    }
  }
}

// Run the suite with TPINFER_ISA=scalar|avx2|avx512 to see the cap applied.
TEST(QuantDot, DispatchUsesActiveIsa) {
  EXPECT_EQ(dispatch_isa(), resolve_isa(cpu_isa(), std::getenv("TPINFER_ISA")));
  EXPECT_STREQ(active_isa(), isa_name(dispatch_isa()));
  std::mt19937 rng(16);
  const int64_t n = 256;
  const std::vector<uint8_t> w = testing::random_weights(DType::Q4_K, n, rng);
  const std::vector<uint8_t> a = testing::random_activation(DType::Q4_K, n, rng);
  EXPECT_EQ(vec_dot(DType::Q4_K, n, w.data(), a.data()), vec_dot(dispatch_isa(), DType::Q4_K, n, w.data(), a.data()));
}

TEST(QuantErrors, RejectBadLengthsAndTypes) {
  std::vector<uint8_t> buf(4096);
  std::vector<float> f(512);
  EXPECT_THROW(dequantize_row(DType::Q4_0, buf.data(), f.data(), 33), Error);
  EXPECT_THROW(quantize_row(DType::Q4_K, f.data(), buf.data(), 128), Error);
  EXPECT_THROW(vec_dot(DType::Q8_0, 48, buf.data(), buf.data()), Error);
  EXPECT_THROW(vec_dot_ref(DType::Q6_K, 32, buf.data(), buf.data()), Error);
  EXPECT_THROW(dequantize_row_ref(DType::I32, buf.data(), f.data(), 4), Error);
  EXPECT_THROW(quantize_row(DType::I8, f.data(), buf.data(), 4), Error);
  EXPECT_FALSE(quant_supported(DType::I16));
  EXPECT_TRUE(quant_supported(DType::Q8_1));
}

TEST(Isa, ResolveCapsToCpu) {
  EXPECT_EQ(resolve_isa(Isa::kAvx512, nullptr), Isa::kAvx512);
  EXPECT_EQ(resolve_isa(Isa::kAvx512, ""), Isa::kAvx512);
  EXPECT_EQ(resolve_isa(Isa::kAvx512, "avx2"), Isa::kAvx2);
  EXPECT_EQ(resolve_isa(Isa::kAvx512, "SCALAR"), Isa::kScalar);
  EXPECT_EQ(resolve_isa(Isa::kAvx2, "avx512"), Isa::kAvx2);  // a cap, not a demand
  EXPECT_EQ(resolve_isa(Isa::kScalar, "avx2"), Isa::kScalar);
  EXPECT_THROW(resolve_isa(Isa::kAvx2, "sse9"), ConfigError);
}

TEST(Isa, NamesAndSupport) {
  for (Isa isa : {Isa::kScalar, Isa::kAvx2, Isa::kAvx512}) EXPECT_EQ(parse_isa(isa_name(isa)), isa);
  EXPECT_FALSE(parse_isa("neon").has_value());
  const std::vector<Isa> isas = supported_isas();
  ASSERT_FALSE(isas.empty());
  EXPECT_EQ(isas.front(), Isa::kScalar);
  EXPECT_EQ(isas.back(), cpu_isa());
  EXPECT_LE(static_cast<int>(dispatch_isa()), static_cast<int>(cpu_isa()));
  if (!isa_supported(Isa::kAvx512)) {
    std::vector<float> f(32);
    std::vector<uint8_t> b(34);
    EXPECT_THROW(quantize_row(Isa::kAvx512, DType::Q8_0, f.data(), b.data(), 32), Error);
  }
}

}  // namespace
}  // namespace tpinfer::cpu
