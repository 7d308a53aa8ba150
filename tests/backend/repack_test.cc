// The 8-row interleaved layout of Q4_0 / Q4_K / Q8_0 (repack.h): packing is lossless,
// matmul over it agrees with vec_dot_ref and with the plain kernels, every
// instruction-set level gives the scalar reference's very bits, and a token's
// results do not depend on the other tokens of its call (batching invariance).
#include "backend/cpu/repack.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "backend/cpu/matmul.h"
#include "backend/cpu/quant.h"
#include "backend_test_util.h"
#include "core/error.h"

namespace tpinfer::cpu {
namespace {

struct Packed {
  std::vector<uint8_t> plain_bytes, packed_bytes;
  WeightView plain, packed;
};

Packed random_packed(DType t, int64_t rows, int64_t cols, std::mt19937& rng) {
  Packed p;
  const uint64_t rb = row_bytes(t, static_cast<uint64_t>(cols));
  for (int64_t r = 0; r < rows; ++r) {
    const std::vector<uint8_t> row = testing::random_weights(t, cols, rng);
    p.plain_bytes.insert(p.plain_bytes.end(), row.begin(), row.end());
  }
  p.plain = {t, rows, cols, p.plain_bytes.data(), rb};
  EXPECT_TRUE(can_interleave(p.plain));
  p.packed_bytes.assign(interleaved_size(p.plain), 0xA5);
  p.packed = interleave_rows(p.plain, p.packed_bytes.data());
  return p;
}

std::vector<float> random_tokens(int64_t n_tokens, int64_t cols, std::mt19937& rng) {
  std::vector<float> x;
  for (int64_t t = 0; t < n_tokens; ++t) {
    const std::vector<float> row = testing::random_floats(cols, rng);
    x.insert(x.end(), row.begin(), row.end());
  }
  return x;
}

std::vector<float> run(Isa isa, const WeightView& w, const std::vector<float>& x, int64_t n_tokens, int threads) {
  ThreadPool pool(threads);
  MatmulScratch scratch;
  std::vector<float> y(static_cast<size_t>(w.rows * n_tokens), -7.0f);
  matmul(isa, w, x.data(), n_tokens, y.data(), pool, scratch);
  return y;
}

const DType kTypes[] = {DType::Q4_0, DType::Q4_K, DType::Q8_0};

int64_t cols_for(DType t) { return t == DType::Q4_K ? 3 * 256 : 9 * 32; }

TEST(Repack, PlainRowsComeBackBitForBit) {
  std::mt19937 rng(5);
  for (DType t : kTypes) {
    for (int64_t rows : {8, 13, 16, 31}) {
      const Packed p = random_packed(t, rows, cols_for(t), rng);
      EXPECT_EQ(p.packed_bytes.size(),
                interleaved_bytes(t, rows, p.plain.cols) + (rows % 8) * row_bytes(t, p.plain.cols));
      std::vector<uint8_t> row(row_bytes(t, static_cast<uint64_t>(p.plain.cols)));
      for (int64_t r = 0; r < rows; ++r) {
        plain_row(p.packed, r, row.data());
        ASSERT_EQ(0, std::memcmp(row.data(), p.plain.data + r * p.plain.row_stride, row.size()))
            << dtype_name(t) << " rows=" << rows << " row=" << r;
      }
    }
  }
}

TEST(Repack, OnlyQ4TypesWithAFullGroup) {
  std::vector<uint8_t> bytes(1 << 16);
  EXPECT_FALSE(can_interleave({DType::Q4_0, 7, 64, bytes.data(), 36}));
  EXPECT_TRUE(can_interleave({DType::Q4_0, 8, 64, bytes.data(), 36}));
  EXPECT_TRUE(can_interleave({DType::Q8_0, 8, 64, bytes.data(), 68}));
  EXPECT_FALSE(can_interleave({DType::Q6_K, 8, 256, bytes.data(), 210}));
  EXPECT_FALSE(can_interleave({DType::Q4_K, 8, 256, bytes.data(), 144, WeightLayout::kInterleaved8}));
  EXPECT_THROW(interleave_rows({DType::Q6_K, 8, 256, bytes.data(), 210}, bytes.data()), Error);
}

// Interleaved vs the reference arithmetic: vec_dot_ref on the quantized
// activation (tight bound), matmul_ref of the plain matrix (the same exact
// product as matmul_ref of the interleaved view), and the plain kernels of the
// same level (summation order only).
TEST(Repack, MatmulMatchesReferencesOnEveryIsa) {
  std::mt19937 rng(77);
  for (DType t : kTypes) {
    const int64_t cols = cols_for(t);
    for (int64_t rows : {8, 21, 40}) {
      const Packed p = random_packed(t, rows, cols, rng);
      for (int64_t n_tokens : {1, 2, 5, 9, 70}) {
        const std::vector<float> x = random_tokens(n_tokens, cols, rng);
        std::vector<float> ref(static_cast<size_t>(rows * n_tokens)), ref_packed(ref.size());
        matmul_ref(p.plain, x.data(), n_tokens, ref.data());
        matmul_ref(p.packed, x.data(), n_tokens, ref_packed.data());
        ASSERT_EQ(ref, ref_packed) << dtype_name(t);
        const DType at = vec_dot_type(t);
        std::vector<uint8_t> act(row_bytes(at, static_cast<uint64_t>(cols)));
        for (Isa isa : supported_isas()) {
          const std::vector<float> got = run(isa, p.packed, x, n_tokens, 2);
          const std::vector<float> plain = run(isa, p.plain, x, n_tokens, 2);
          for (int64_t tok = 0; tok < n_tokens; ++tok) {
            quantize_row_ref(at, x.data() + tok * cols, act.data(), cols);
            for (int64_t r = 0; r < rows; ++r) {
              const uint8_t* wr = p.plain.data + r * p.plain.row_stride;
              const size_t i = static_cast<size_t>(tok * rows + r);
              const std::string where = testing::type_isa_name(t, isa) + " rows=" + std::to_string(rows) +
                                        " tokens=" + std::to_string(n_tokens) + " row=" + std::to_string(r) +
                                        " token=" + std::to_string(tok);
              const double mag = testing::dot_magnitude(t, cols, wr, act.data());
              ASSERT_NEAR(got[i], vec_dot_ref(t, cols, wr, act.data()), 1e-5 * mag + 1e-30) << where;
              ASSERT_NEAR(got[i], plain[i], 2e-5 * mag + 1e-30) << where;
            }
          }
        }
      }
    }
  }
}

// Every level gives the scalar kernels' bits, and a token's results are the
// same alone or in a batch of any size, with any thread count.
TEST(Repack, EveryIsaBitExactAndBatchInvariant) {
  std::mt19937 rng(91);
  for (DType t : kTypes) {
    const int64_t cols = cols_for(t);
    for (int64_t rows : {16, 29}) {
      const Packed p = random_packed(t, rows, cols, rng);
      const std::vector<float> x = random_tokens(70, cols, rng);
      std::vector<float> alone(static_cast<size_t>(70 * rows));
      for (int64_t tok = 0; tok < 70; ++tok) {
        const std::vector<float> xt(x.begin() + tok * cols, x.begin() + (tok + 1) * cols);
        const std::vector<float> y = run(Isa::kScalar, p.packed, xt, 1, 1);
        std::copy(y.begin(), y.end(), alone.begin() + tok * rows);
      }
      for (Isa isa : supported_isas()) {
        for (int64_t n_tokens = 1; n_tokens <= 70; ++n_tokens) {
          const int threads = 1 + static_cast<int>(n_tokens % 3);
          const std::vector<float> y = run(isa, p.packed, x, n_tokens, threads);
          for (int64_t tok = 0; tok < n_tokens; ++tok) {
            for (int64_t r = 0; r < rows; ++r) {
              const size_t i = static_cast<size_t>(tok * rows + r);
              if (r < rows / 8 * 8) {
                ASSERT_EQ(y[i], alone[i]) << testing::type_isa_name(t, isa) << " rows=" << rows
                                          << " tokens=" << n_tokens << " row=" << r << " token=" << tok;
              }
            }
          }
          // Tail rows use the plain kernels of the level: invariant within it.
          const std::vector<float> y1 = run(isa, p.packed, x, 1, threads);
          for (int64_t r = rows / 8 * 8; r < rows; ++r) ASSERT_EQ(y[static_cast<size_t>(r)], y1[static_cast<size_t>(r)]);
        }
      }
    }
  }
}

}  // namespace
}  // namespace tpinfer::cpu
