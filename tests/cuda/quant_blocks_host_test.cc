// The __host__ __device__ block decoders and activation quantizer of
// backend/cuda/quant_blocks.cuh, run on the host, against backend/cpu's
// reference routines: bit-exact on fresh random blocks (random bytes for the
// nibbles and packed scales, random finite f16 scales), and the f16 / bf16
// conversions against core/half.h on every 16-bit pattern and many floats.
// This needs no GPU: it checks the arithmetic the kernels share.
#include "backend/cuda/quant_blocks.cuh"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "backend/cpu/quant.h"
#include "core/half.h"

namespace tpinfer::cuda::quant {
namespace {

uint32_t bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}

// `n_blocks` blocks of random bytes with finite random f16 values (never zero)
// at the scale fields' offsets.
std::vector<uint8_t> random_blocks(size_t block_bytes, size_t n_blocks, const std::vector<int>& f16_fields,
                                   std::mt19937& rng) {
  std::vector<uint8_t> bytes(block_bytes * n_blocks);
  std::uniform_int_distribution<int> byte(0, 255);
  std::uniform_real_distribution<float> scale(0.01f, 2.0f);
  std::bernoulli_distribution negative(0.5);
  for (uint8_t& b : bytes) b = static_cast<uint8_t>(byte(rng));
  for (size_t i = 0; i < n_blocks; ++i) {
    for (int field : f16_fields) {
      const uint16_t h = tpinfer::f32_to_f16(negative(rng) ? -scale(rng) : scale(rng));
      std::memcpy(&bytes[i * block_bytes + static_cast<size_t>(field)], &h, 2);
    }
  }
  return bytes;
}

template <typename Block, typename Decode>
void expect_decodes_like_cpu(DType type, int block_values, const std::vector<int>& f16_fields, Decode decode) {
  std::mt19937 rng(1234 + static_cast<int>(type));
  constexpr size_t kBlocks = 64;
  const std::vector<uint8_t> bytes = random_blocks(sizeof(Block), kBlocks, f16_fields, rng);
  const int64_t n = static_cast<int64_t>(kBlocks) * block_values;
  std::vector<float> want(static_cast<size_t>(n));
  cpu::dequantize_row_ref(type, bytes.data(), want.data(), n);
  std::vector<Block> blocks(kBlocks);
  std::memcpy(blocks.data(), bytes.data(), bytes.size());
  for (int64_t e = 0; e < n; ++e) {
    const float got = decode(blocks[static_cast<size_t>(e / block_values)], static_cast<int>(e % block_values));
    ASSERT_EQ(bits(got), bits(want[static_cast<size_t>(e)]))
        << dtype_name(type) << " element " << e << ": " << got << " vs " << want[static_cast<size_t>(e)];
  }
}

TEST(CudaQuantBlocksHost, Q8_0DecodesLikeCpu) {
  expect_decodes_like_cpu<BlockQ8_0>(DType::Q8_0, kQK, {0}, [](const BlockQ8_0& b, int i) { return decode_q8_0(b, i); });
}

TEST(CudaQuantBlocksHost, Q4_0DecodesLikeCpu) {
  expect_decodes_like_cpu<BlockQ4_0>(DType::Q4_0, kQK, {0}, [](const BlockQ4_0& b, int i) { return decode_q4_0(b, i); });
}

TEST(CudaQuantBlocksHost, Q4_KDecodesLikeCpu) {
  expect_decodes_like_cpu<BlockQ4_K>(DType::Q4_K, kQKK, {0, 2},
                                     [](const BlockQ4_K& b, int e) { return decode_q4_k(b, e); });
}

// Values with a different magnitude per block, outliers, exact ties (x.5
// multiples of the step) and an all-zero block.
std::vector<float> activation_values(int64_t n, std::mt19937& rng) {
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::uniform_real_distribution<float> exponent(-4.0f, 3.0f);
  std::vector<float> x(static_cast<size_t>(n));
  float scale = 1.0f;
  for (int64_t i = 0; i < n; ++i) {
    if (i % kQK == 0) scale = std::pow(10.0f, exponent(rng));
    x[static_cast<size_t>(i)] = normal(rng) * scale;
  }
  for (int i = 0; i < kQK; ++i) x[static_cast<size_t>(i)] = 0.0f;  // block 0: all zeros
  for (int i = 0; i < kQK; ++i) {
    x[static_cast<size_t>(kQK + i)] = static_cast<float>(i - 16) * 0.5f;  // block 1: halves, amax 8
  }
  return x;
}

TEST(CudaQuantBlocksHost, ActivationQuantizationMatchesCpuQ8_0) {
  std::mt19937 rng(99);
  constexpr int64_t kBlocks = 512;
  const std::vector<float> x = activation_values(kBlocks * kQK, rng);
  std::vector<cpu::BlockQ8_0> want(kBlocks);
  cpu::quantize_row_ref(DType::Q8_0, x.data(), want.data(), kBlocks * kQK);
  std::vector<cpu::BlockQ8_0> fast(kBlocks);
  cpu::quantize_row(DType::Q8_0, x.data(), fast.data(), kBlocks * kQK);
  for (int64_t b = 0; b < kBlocks; ++b) {
    int8_t qs[kQK];
    uint16_t d = 0;
    quantize_q8_block(x.data() + b * kQK, qs, &d);
    ASSERT_EQ(d, want[static_cast<size_t>(b)].d) << "block " << b;
    ASSERT_EQ(0, std::memcmp(qs, want[static_cast<size_t>(b)].qs, kQK)) << "block " << b;
    ASSERT_EQ(0, std::memcmp(&fast[static_cast<size_t>(b)], &want[static_cast<size_t>(b)], sizeof(cpu::BlockQ8_0)));
  }
}

TEST(CudaQuantBlocksHost, HalfConversionsMatchCore) {
  for (uint32_t h = 0; h < 65536; ++h) {
    const uint16_t v = static_cast<uint16_t>(h);
    ASSERT_EQ(bits(quant::f16_to_f32(v)), bits(tpinfer::f16_to_f32(v))) << "f16 " << h;
    ASSERT_EQ(bits(quant::bf16_to_f32(v)), bits(tpinfer::bf16_to_f32(v))) << "bf16 " << h;
  }
  std::mt19937 rng(7);
  std::uniform_int_distribution<uint32_t> any;
  std::vector<float> xs = {0.0f, -0.0f, 1.0f, 65504.0f, 65520.0f, 1e-8f, -3e-5f, 5.9604645e-08f, 2.98e-08f,
                           std::numeric_limits<float>::infinity(), std::numeric_limits<float>::quiet_NaN()};
  for (int i = 0; i < 200000; ++i) {
    uint32_t u = any(rng);
    if (i % 2 == 0) u = (u & 0x807fffffu) | ((100u + u % 50u) << 23);  // around the f16 range, subnormals included
    float f;
    std::memcpy(&f, &u, 4);
    xs.push_back(f);
  }
  for (float f : xs) {
    ASSERT_EQ(quant::f32_to_f16(f), tpinfer::f32_to_f16(f)) << "f32 bits " << bits(f);
    ASSERT_EQ(quant::f32_to_bf16(f), tpinfer::f32_to_bf16(f)) << "f32 bits " << bits(f);
  }
}

// The GEMV kernels' lane arithmetic (4 lanes per Q8_0 / Q4_0 block, 16 per
// Q4_K super-block), summed over the lanes as the warp reduction does, against
// the plain sum of dequantized weights times dequantized activations.
template <typename Block, typename LaneSum>
void expect_gemv_lanes_exact(DType type, int block_values, const std::vector<int>& f16_fields, LaneSum lane_sum) {
  std::mt19937 rng(4321 + static_cast<int>(type));
  constexpr int kBlocks = 16;
  const int64_t n = static_cast<int64_t>(kBlocks) * block_values;
  const std::vector<uint8_t> bytes = random_blocks(sizeof(Block), kBlocks, f16_fields, rng);
  std::vector<float> wv(static_cast<size_t>(n));
  cpu::dequantize_row_ref(type, bytes.data(), wv.data(), n);
  // Activations quantized as the kernels do: int8 per 32 with an f16-rounded scale.
  const std::vector<float> x = activation_values(n, rng);
  std::vector<int8_t> aq(static_cast<size_t>(n));
  std::vector<float> ad(static_cast<size_t>(n / kQK));
  for (int64_t b = 0; b < n / kQK; ++b) {
    uint16_t d = 0;
    quantize_q8_block(x.data() + b * kQK, aq.data() + b * kQK, &d);
    ad[static_cast<size_t>(b)] = f16_to_f32(d);
  }
  std::vector<Block> blocks(kBlocks);
  std::memcpy(blocks.data(), bytes.data(), bytes.size());
  for (int b = 0; b < kBlocks; ++b) {
    double want = 0.0, mag = 0.0;
    for (int e = 0; e < block_values; ++e) {
      const size_t c = static_cast<size_t>(b) * block_values + e;
      const double a = static_cast<double>(aq[c]) * ad[c / kQK];
      want += static_cast<double>(wv[c]) * a;
      mag += std::fabs(static_cast<double>(wv[c]) * a);
    }
    const double got = lane_sum(blocks[static_cast<size_t>(b)], aq.data() + static_cast<size_t>(b) * block_values,
                                ad.data() + static_cast<size_t>(b) * block_values / kQK);
    ASSERT_NEAR(got, want, 1e-5 * mag + 1e-30) << dtype_name(type) << " block " << b;
  }
}

TEST(CudaQuantBlocksHost, GemvLaneDotsQ8_0) {
  expect_gemv_lanes_exact<BlockQ8_0>(DType::Q8_0, kQK, {0}, [](const BlockQ8_0& b, const int8_t* a, const float* da) {
    int s = 0;
    for (int part = 0; part < 4; ++part) s += q8_0_part_dot(b, a, part);
    return static_cast<double>(f16_to_f32(b.d)) * da[0] * s;
  });
}

TEST(CudaQuantBlocksHost, GemvLaneDotsQ4_0) {
  expect_gemv_lanes_exact<BlockQ4_0>(DType::Q4_0, kQK, {0}, [](const BlockQ4_0& b, const int8_t* a, const float* da) {
    int s = 0;
    for (int part = 0; part < 4; ++part) s += q4_0_part_dot(b, a, part);
    return static_cast<double>(f16_to_f32(b.d)) * da[0] * s;
  });
}

TEST(CudaQuantBlocksHost, GemvLaneDotsQ4_K) {
  expect_gemv_lanes_exact<BlockQ4_K>(DType::Q4_K, kQKK, {0, 2},
                                     [](const BlockQ4_K& b, const int8_t* a, const float* da) {
                                       double s = 0.0;
                                       for (int i = 0; i < 16; ++i) s += q4_k_lane_dot(q4_k_lane(b, i), a, da, i);
                                       return s;
                                     });
}

TEST(CudaQuantBlocksHost, Dp4aIsASignedByteDot) {
  std::mt19937 rng(3);
  std::uniform_int_distribution<uint32_t> any;
  for (int k = 0; k < 10000; ++k) {
    const int a = static_cast<int>(any(rng)), b = static_cast<int>(any(rng)), c = static_cast<int>(any(rng) % 1000);
    int want = c;
    for (int j = 0; j < 4; ++j) {
      want += static_cast<int8_t>(static_cast<uint32_t>(a) >> (8 * j)) *
              static_cast<int8_t>(static_cast<uint32_t>(b) >> (8 * j));
    }
    ASSERT_EQ(dp4a(a, b, c), want);
  }
}

}  // namespace
}  // namespace tpinfer::cuda::quant
