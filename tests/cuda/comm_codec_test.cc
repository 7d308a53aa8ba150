// The device codec (comm/cuda/codec.h) run on the CPU: the kernels of
// compress.cu are these functions lane by lane, so checking them here against
// compressed_comm's reference codec checks the device bytes without a GPU.
#include "comm/cuda/codec.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "comm/compressed_comm.h"

namespace tpinfer::cuda {
namespace {

// What encode_block_kernel / encode_bf16_kernel write, block by block, lane by lane.
std::vector<uint8_t> encode_like_device(Compression c, const std::vector<float>& x) {
  const size_t n = x.size();
  std::vector<uint8_t> out(encoded_size(c, n), 0xAB);
  if (c == Compression::BF16) {
    for (size_t i = 0; i < n; ++i) {
      const uint16_t h = codec::bf16_encode(x[i]);
      out[2 * i] = static_cast<uint8_t>(h & 0xffu);
      out[2 * i + 1] = static_cast<uint8_t>(h >> 8);
    }
    return out;
  }
  const bool fp8 = c == Compression::FP8;
  const size_t blocks = codec::blocks_of(n);
  for (size_t b = 0; b < blocks; ++b) {
    uint32_t amax = 0;
    for (size_t l = 0; l < 32; ++l) {
      const size_t i = b * 32 + l;
      const uint32_t a = codec::abs_bits(i < n ? x[i] : 0.0f);
      amax = a > amax ? a : amax;
    }
    const uint32_t scale = codec::block_scale(amax, fp8 ? codec::kQFp8 : codec::kQInt8);
    out[2 * b] = static_cast<uint8_t>(scale & 0xffu);
    out[2 * b + 1] = static_cast<uint8_t>(scale >> 8);
    for (size_t l = 0; l < 32 && b * 32 + l < n; ++l) {
      const size_t i = b * 32 + l;
      out[2 * blocks + i] = codec::encode_code(fp8, scale, codec::inverse_scale(scale), x[i]);
    }
  }
  return out;
}

// What decode_sum_kernel computes from the encodings of several ranks.
std::vector<float> decode_sum_like_device(Compression c, const std::vector<std::vector<uint8_t>>& enc, size_t n) {
  std::vector<float> out(n);
  auto one = [&](const std::vector<uint8_t>& in, size_t i) -> float {
    if (c == Compression::BF16) return codec::bf16_decode(in[2 * i] | (static_cast<uint32_t>(in[2 * i + 1]) << 8));
    const size_t b = i / 32;
    const uint32_t scale = in[2 * b] | (static_cast<uint32_t>(in[2 * b + 1]) << 8);
    return codec::decode_code(c == Compression::FP8, scale, in[2 * codec::blocks_of(n) + i]);
  };
  for (size_t i = 0; i < n; ++i) {
    float acc = one(enc[0], i);
    for (size_t r = 1; r < enc.size(); ++r) acc = codec::add(acc, one(enc[r], i));
    out[i] = acc;
  }
  return out;
}

std::vector<float> test_values(size_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> x(n);
  for (size_t i = 0; i < n; ++i) {
    const float v = normal(rng);
    switch ((i / 32) % 8) {  // per block, so scales see every regime
      case 0: x[i] = v; break;
      case 1: x[i] = v * 1e-30f; break;           // tiny: the 2^-126 scale floor
      case 2: x[i] = v * 1e30f; break;            // huge
      case 3: x[i] = v * 1e-3f; break;            // fp8 subnormal codes
      case 4: x[i] = (i % 3 == 0) ? 0.0f : -0.0f; break;
      case 5: x[i] = i % 32 == 5 ? std::numeric_limits<float>::infinity() : v; break;
      case 6: x[i] = i % 32 == 7 ? std::numeric_limits<float>::quiet_NaN() : v; break;
      default: x[i] = std::ldexp(v, static_cast<int>(i % 40) - 20); break;  // wide range inside a block
    }
  }
  return x;
}

bool same_bits(float a, float b) {
  uint32_t x, y;
  std::memcpy(&x, &a, 4);
  std::memcpy(&y, &b, 4);
  return x == y;
}

TEST(DeviceCodec, EncodesTheBytesOfTheHostCodec) {
  for (Compression c : {Compression::BF16, Compression::FP8, Compression::INT8}) {
    for (size_t n : {size_t{1}, size_t{31}, size_t{32}, size_t{33}, size_t{1000}, size_t{4099}}) {
      const std::vector<float> x = test_values(n, n * 7 + static_cast<size_t>(c));
      std::vector<uint8_t> host(encoded_size(c, n));
      encode_values(c, x.data(), n, host.data(), CodecImpl::Reference);
      const std::vector<uint8_t> dev = encode_like_device(c, x);
      ASSERT_EQ(host.size(), dev.size());
      for (size_t i = 0; i < host.size(); ++i) {
        ASSERT_EQ(host[i], dev[i]) << compression_name(c) << " n=" << n << " byte " << i;
      }
    }
  }
}

TEST(DeviceCodec, DecodesAndSumsLikeTheHostCodec) {
  for (Compression c : {Compression::BF16, Compression::FP8, Compression::INT8}) {
    for (size_t p : {size_t{2}, size_t{3}}) {
      const size_t n = 1031;
      std::vector<std::vector<uint8_t>> enc;
      for (size_t r = 0; r < p; ++r) {
        const std::vector<float> x = test_values(n, 100 + r);
        enc.push_back(std::vector<uint8_t>(encoded_size(c, n)));
        encode_values(c, x.data(), n, enc.back().data(), CodecImpl::Reference);
      }
      // The host back end's p == 2 scheme: decode rank 0, add rank 1, ... in order.
      std::vector<float> host(n);
      decode_values(c, enc[0].data(), n, host.data(), CodecImpl::Reference);
      for (size_t r = 1; r < p; ++r) decode_add_values(c, enc[r].data(), n, host.data(), CodecImpl::Reference);
      const std::vector<float> dev = decode_sum_like_device(c, enc, n);
      for (size_t i = 0; i < n; ++i) {
        ASSERT_TRUE(same_bits(host[i], dev[i]) || (std::isnan(host[i]) && std::isnan(dev[i])))
            << compression_name(c) << " p=" << p << " i=" << i << ": " << host[i] << " vs " << dev[i];
      }
    }
  }
}

}  // namespace
}  // namespace tpinfer::cuda
