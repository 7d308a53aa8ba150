#include "core/fp8.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <vector>

namespace tpinfer {
namespace {

// The OCP definitions, straight from the bit fields (double precision).
double ocp_e4m3(uint8_t c) {
  const int s = c >> 7, e = (c >> 3) & 15, m = c & 7;
  if (e == 15 && m == 7) return std::numeric_limits<double>::quiet_NaN();
  const double mag = e == 0 ? std::ldexp(m / 8.0, 1 - 7) : std::ldexp(1.0 + m / 8.0, e - 7);
  return s ? -mag : mag;
}

double ocp_e5m2(uint8_t c) {
  const int s = c >> 7, e = (c >> 2) & 31, m = c & 3;
  double mag;
  if (e == 31) {
    mag = m == 0 ? std::numeric_limits<double>::infinity() : std::numeric_limits<double>::quiet_NaN();
  } else {
    mag = e == 0 ? std::ldexp(m / 4.0, 1 - 15) : std::ldexp(1.0 + m / 4.0, e - 15);
  }
  return s ? -mag : mag;
}

struct Format {
  const char* name;
  double (*ocp)(uint8_t);
  float (*decode)(uint8_t);
  uint8_t (*encode)(float);
  double max_finite;
  bool has_inf;
};

const Format kFormats[] = {
    {"e4m3", ocp_e4m3, fp8_e4m3_to_f32, f32_to_fp8_e4m3, 448.0, false},
    {"e5m2", ocp_e5m2, fp8_e5m2_to_f32, f32_to_fp8_e5m2, 57344.0, true},
};

// The code nearest to f by brute force over all finite codes; ties go to the code
// with an even mantissa (its lowest bit clear). Beyond the largest finite value,
// saturation. Zero keeps f's sign.
uint8_t nearest_code(const Format& fmt, float f) {
  const double x = f;
  if (std::fabs(x) >= fmt.max_finite) {
    for (int c = 0; c < 256; ++c) {
      if (fmt.ocp(static_cast<uint8_t>(c)) == (x > 0 ? fmt.max_finite : -fmt.max_finite))
        return static_cast<uint8_t>(c);
    }
  }
  int best = -1;
  double best_d = 0;
  for (int c = 0; c < 256; ++c) {
    const double v = fmt.ocp(static_cast<uint8_t>(c));
    if (!std::isfinite(v)) continue;
    if (v == 0 && std::signbit(v) != std::signbit(x)) continue;
    const double d = std::fabs(v - x);
    if (best < 0 || d < best_d || (d == best_d && (c & 1) == 0)) {
      best = c;
      best_d = d;
    }
  }
  return static_cast<uint8_t>(best);
}

TEST(Fp8, DecodeMatchesOcpDefinitionForAllCodes) {
  for (const Format& fmt : kFormats) {
    int nans = 0, infs = 0;
    for (int c = 0; c < 256; ++c) {
      const double want = fmt.ocp(static_cast<uint8_t>(c));
      const float got = fmt.decode(static_cast<uint8_t>(c));
      if (std::isnan(want)) {
        EXPECT_TRUE(std::isnan(got)) << fmt.name << " code " << c;
        ++nans;
        continue;
      }
      infs += std::isinf(want);
      EXPECT_EQ(static_cast<double>(got), want) << fmt.name << " code " << c;
      EXPECT_EQ(std::signbit(got), (c & 0x80) != 0) << fmt.name << " code " << c;
    }
    EXPECT_EQ(nans, fmt.has_inf ? 6 : 2) << fmt.name;
    EXPECT_EQ(infs, fmt.has_inf ? 2 : 0) << fmt.name;
  }
  EXPECT_EQ(fp8_e4m3_to_f32(0x7e), 448.0f);
  EXPECT_EQ(fp8_e4m3_to_f32(0x01), std::ldexp(1.0f, -9));
  EXPECT_EQ(fp8_e5m2_to_f32(0x7b), 57344.0f);
  EXPECT_EQ(fp8_e5m2_to_f32(0x01), std::ldexp(1.0f, -16));
}

TEST(Fp8, EncodeDecodeRoundTripsEveryCode) {
  for (const Format& fmt : kFormats) {
    for (int c = 0; c < 256; ++c) {
      const float v = fmt.decode(static_cast<uint8_t>(c));
      if (std::isnan(v)) {
        // NaN stays NaN (with its sign).
        EXPECT_TRUE(std::isnan(fmt.decode(fmt.encode(v)))) << fmt.name << " code " << c;
        EXPECT_EQ(fmt.encode(v) & 0x80, c & 0x80) << fmt.name << " code " << c;
        continue;
      }
      EXPECT_EQ(fmt.encode(v), c) << fmt.name << " code " << c << " value " << v;  // +0 and -0 included
    }
  }
}

TEST(Fp8, EncodeIsNearestTiesToEvenWithSaturation) {
  std::mt19937 rng(1234);
  for (const Format& fmt : kFormats) {
    std::vector<float> probes;
    // Random magnitudes over the whole range and beyond, both signs.
    std::uniform_real_distribution<float> log2mag(-22.0f, 20.0f);
    for (int i = 0; i < 20000; ++i) {
      const float v = std::exp2(log2mag(rng));
      probes.push_back(i % 2 ? v : -v);
    }
    // Every midpoint between neighbouring finite values (the ties), and one f32
    // step either side of it; the largest value and beyond.
    std::vector<double> finite;
    for (int c = 0; c < 128; ++c) {
      const double v = fmt.ocp(static_cast<uint8_t>(c));
      if (std::isfinite(v)) finite.push_back(v);
    }
    std::sort(finite.begin(), finite.end());
    for (size_t i = 0; i + 1 < finite.size(); ++i) {
      const float mid = static_cast<float>((finite[i] + finite[i + 1]) / 2);  // exact in f32
      ASSERT_EQ(static_cast<double>(mid), (finite[i] + finite[i + 1]) / 2);
      for (float f : {mid, std::nextafter(mid, 0.0f), std::nextafter(mid, 1e30f)}) {
        probes.push_back(f);
        probes.push_back(-f);
      }
    }
    const float big = static_cast<float>(fmt.max_finite);
    for (float f : {big, std::nextafter(big, 1e30f), big * 1.0625f, big * 1.2f, 1e30f,
                    std::numeric_limits<float>::max(), std::numeric_limits<float>::denorm_min(), 1e-30f}) {
      probes.push_back(f);
      probes.push_back(-f);
    }
    for (float f : probes) {
      ASSERT_EQ(fmt.encode(f), nearest_code(fmt, f)) << fmt.name << " value " << f;
    }
  }
}

TEST(Fp8, NonFiniteInputs) {
  const float inf = std::numeric_limits<float>::infinity();
  const float nan = std::numeric_limits<float>::quiet_NaN();
  EXPECT_EQ(f32_to_fp8_e4m3(inf), 0x7e);  // saturates: E4M3 has no infinity
  EXPECT_EQ(f32_to_fp8_e4m3(-inf), 0xfe);
  EXPECT_EQ(f32_to_fp8_e4m3(nan), 0x7f);
  EXPECT_EQ(f32_to_fp8_e4m3(-nan), 0xff);
  EXPECT_EQ(f32_to_fp8_e5m2(inf), 0x7c);
  EXPECT_EQ(f32_to_fp8_e5m2(-inf), 0xfc);
  EXPECT_TRUE(std::isnan(fp8_e5m2_to_f32(f32_to_fp8_e5m2(nan))));
}

}  // namespace
}  // namespace tpinfer
