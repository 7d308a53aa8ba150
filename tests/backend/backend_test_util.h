// Shared helpers of the backend/cpu tests: type lists, random rows, and error
// scales for comparing dot products.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "backend/cpu/quant.h"
#include "core/dtype.h"
#include "core/half.h"

namespace tpinfer::cpu::testing {

inline const std::vector<DType>& all_types() {
  static const std::vector<DType> types = {DType::F32,  DType::F16,  DType::BF16, DType::Q4_0, DType::Q4_1,
                                           DType::Q5_0, DType::Q5_1, DType::Q8_0, DType::Q8_1, DType::Q2_K,
                                           DType::Q3_K, DType::Q4_K, DType::Q5_K, DType::Q6_K, DType::Q8_K};
  return types;
}

inline std::string type_isa_name(DType t, Isa isa) { return std::string(dtype_name(t)) + "/" + isa_name(isa); }

// Values with a different magnitude per 32-value stretch (1e-3 .. 1e2), as
// real weights and activations have, and a few outliers.
inline std::vector<float> random_floats(int64_t n, std::mt19937& rng) {
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::uniform_real_distribution<float> exponent(-3.0f, 2.0f);
  std::uniform_int_distribution<int> outlier(0, 99);
  std::vector<float> x(static_cast<size_t>(n));
  float scale = 1.0f;
  for (int64_t i = 0; i < n; ++i) {
    if (i % 32 == 0) scale = std::pow(10.0f, exponent(rng));
    float v = normal(rng) * scale;
    if (outlier(rng) == 0) v *= 8.0f;
    x[static_cast<size_t>(i)] = v;
  }
  return x;
}

// Byte offsets of the f16 scale fields inside one block (the rest of a block
// may hold any bits).
inline std::vector<int> f16_fields(DType t) {
  switch (t) {
    case DType::Q4_0:
    case DType::Q5_0:
    case DType::Q8_0:
      return {0};
    case DType::Q4_1:
    case DType::Q5_1:
    case DType::Q8_1:
    case DType::Q4_K:
    case DType::Q5_K:
      return {0, 2};
    case DType::Q2_K:
      return {80, 82};
    case DType::Q3_K:
      return {108};
    case DType::Q6_K:
      return {208};
    default:
      return {};
  }
}

// A row of random bits whose scale fields hold finite values in [-2, 2]
// (plain types: finite random values). Every other bit pattern is fair game.
inline std::vector<uint8_t> random_blocks(DType t, int64_t n, std::mt19937& rng) {
  const DTypeInfo& info = dtype_info(t);
  std::vector<uint8_t> bytes(row_bytes(t, static_cast<uint64_t>(n)));
  std::uniform_int_distribution<int> byte(0, 255);
  std::uniform_real_distribution<float> scale(-2.0f, 2.0f);
  if (!info.quantized) {
    const std::vector<float> x = random_floats(n, rng);
    quantize_row_ref(t, x.data(), bytes.data(), n);
    return bytes;
  }
  for (uint8_t& b : bytes) b = static_cast<uint8_t>(byte(rng));
  for (size_t off = 0; off < bytes.size(); off += info.type_size) {
    for (int field : f16_fields(t)) {
      const uint16_t h = f32_to_f16(scale(rng));
      std::memcpy(&bytes[off + static_cast<size_t>(field)], &h, 2);
    }
    if (t == DType::Q8_K) {
      const float d = scale(rng);
      std::memcpy(&bytes[off], &d, 4);
    }
  }
  return bytes;
}

// A weight row for dot tests: half the time the quantization of random floats
// (realistic), otherwise random bits.
inline std::vector<uint8_t> random_weights(DType t, int64_t n, std::mt19937& rng) {
  if (dtype_info(t).quantized && std::uniform_int_distribution<int>(0, 1)(rng) == 0) {
    const std::vector<float> x = random_floats(n, rng);
    std::vector<uint8_t> bytes(row_bytes(t, static_cast<uint64_t>(n)));
    quantize_row_ref(t, x.data(), bytes.data(), n);
    return bytes;
  }
  return random_blocks(t, n, rng);
}

// An activation row of type vec_dot_type(w) from random floats.
inline std::vector<uint8_t> random_activation(DType w, int64_t n, std::mt19937& rng) {
  const DType at = vec_dot_type(w);
  const std::vector<float> x = random_floats(n, rng);
  std::vector<uint8_t> bytes(row_bytes(at, static_cast<uint64_t>(n)));
  quantize_row_ref(at, x.data(), bytes.data(), n);
  return bytes;
}

inline std::vector<float> dequantized(DType t, const void* data, int64_t n) {
  std::vector<float> out(static_cast<size_t>(n));
  dequantize_row_ref(t, data, out.data(), n);
  return out;
}

inline double plain_dot(const std::vector<float>& a, const std::vector<float>& b) {
  double s = 0.0;
  for (size_t i = 0; i < a.size(); ++i) s += static_cast<double>(a[i]) * b[i];
  return s;
}

// The magnitude the rounding error of a dot product is relative to:
// sum |w_i a_i|, except for formats with a min term (value = scale part - min
// part), where the two parts are combined in float after exact integer sums and
// so each contributes on its own: sum (|scale part_i| + |min part_i|) |a_i|.
inline double dot_magnitude(DType t, int64_t n, const uint8_t* w, const uint8_t* a) {
  const std::vector<float> av = dequantized(vec_dot_type(t), a, n);
  int scale_field = -1, min_field = -1;
  switch (t) {
    case DType::Q4_1:
    case DType::Q5_1:
    case DType::Q4_K:
    case DType::Q5_K:
      scale_field = 0, min_field = 2;
      break;
    case DType::Q2_K:
      scale_field = 80, min_field = 82;
      break;
    default:
      break;
  }
  double s = 0.0;
  if (scale_field < 0) {
    const std::vector<float> wv = dequantized(t, w, n);
    for (size_t i = 0; i < wv.size(); ++i) s += std::fabs(static_cast<double>(wv[i]) * av[i]);
    return s;
  }
  const size_t bytes = row_bytes(t, static_cast<uint64_t>(n));
  const size_t block = dtype_info(t).type_size;
  std::vector<uint8_t> only_scale(w, w + bytes), only_min(w, w + bytes);
  for (size_t off = 0; off < bytes; off += block) {
    std::memset(&only_scale[off + static_cast<size_t>(min_field)], 0, 2);
    std::memset(&only_min[off + static_cast<size_t>(scale_field)], 0, 2);
  }
  const std::vector<float> v1 = dequantized(t, only_scale.data(), n);
  const std::vector<float> v2 = dequantized(t, only_min.data(), n);
  for (size_t i = 0; i < v1.size(); ++i) s += (std::fabs(v1[i]) + std::fabs(v2[i])) * std::fabs(av[i]);
  return s;
}

}  // namespace tpinfer::cpu::testing
