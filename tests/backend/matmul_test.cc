// matmul on every instruction-set level, thread count and token count against
// (a) the composition of vec_dot_ref with the reference activation quantizer
// (same arithmetic, so a tight bound) and (b) matmul_ref, the float64 product of
// the dequantized weights with the unquantized activations, within the error
// that quantizing the activations can introduce (bound derived below).
#include "backend/cpu/matmul.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>

#include "backend/cpu/quant.h"
#include "backend_test_util.h"
#include "core/error.h"
#include "core/half.h"

namespace tpinfer::cpu {
namespace {

using testing::all_types;
using testing::random_floats;

struct Matrix {
  WeightView view;
  std::vector<uint8_t> bytes;
};

// rows x cols weights; rows are `pad` bytes further apart than their size.
Matrix random_matrix(DType t, int64_t rows, int64_t cols, uint64_t pad, std::mt19937& rng) {
  Matrix m;
  const uint64_t rb = row_bytes(t, static_cast<uint64_t>(cols));
  m.bytes.assign((rb + pad) * static_cast<uint64_t>(rows), 0x5A);
  for (int64_t r = 0; r < rows; ++r) {
    const std::vector<uint8_t> row = testing::random_weights(t, cols, rng);
    std::copy(row.begin(), row.end(), m.bytes.begin() + static_cast<int64_t>((rb + pad) * static_cast<uint64_t>(r)));
  }
  m.view = {t, rows, cols, m.bytes.data(), rb + pad};
  return m;
}

int64_t cols_for(DType t) {
  const uint32_t bs = dtype_info(vec_dot_type(t)).block_size;
  const uint32_t ws = dtype_info(t).block_size;
  const uint32_t b = std::max(bs, ws);
  return b == 1 ? 227 : (b == 32 ? 7 * 32 : 3 * 256);
}

// Bound on |x - dequant(quant(x))| for element i of an activation row,
// from the block's largest magnitude (see the round-trip test in quant_test.cc).
std::vector<double> activation_error(DType at, const float* x, int64_t n) {
  std::vector<double> err(static_cast<size_t>(n), 0.0);
  if (at == DType::F32) return err;
  const int64_t bs = dtype_info(at).block_size;
  for (int64_t b = 0; b < n; b += bs) {
    double amax = 0.0;
    for (int64_t i = b; i < b + bs; ++i) amax = std::max(amax, std::fabs(static_cast<double>(x[i])));
    double e = amax / 254.0;
    if (at == DType::Q8_0) {
      const double d = amax / 127.0;
      e += 127.0 * std::fabs(d - f16_to_f32(f32_to_f16(static_cast<float>(d))));
    }
    for (int64_t i = b; i < b + bs; ++i) err[static_cast<size_t>(i)] = e * 1.001 + 1e-30;
  }
  return err;
}

void check_matmul(Isa isa, DType t, int64_t rows, int64_t n_tokens, int threads, uint64_t pad, std::mt19937& rng) {
  const int64_t cols = cols_for(t);
  const Matrix m = random_matrix(t, rows, cols, pad, rng);
  std::vector<float> x;
  for (int64_t tok = 0; tok < n_tokens; ++tok) {
    const std::vector<float> row = random_floats(cols, rng);
    x.insert(x.end(), row.begin(), row.end());
  }
  ThreadPool pool(threads);
  MatmulScratch scratch;
  std::vector<float> y(static_cast<size_t>(rows * n_tokens), -7.0f);
  matmul(isa, m.view, x.data(), n_tokens, y.data(), pool, scratch);
  std::vector<float> y_ref(y.size());
  matmul_ref(m.view, x.data(), n_tokens, y_ref.data());

  const DType at = vec_dot_type(t);
  std::vector<uint8_t> act(row_bytes(at, static_cast<uint64_t>(cols)));
  for (int64_t tok = 0; tok < n_tokens; ++tok) {
    const float* xt = x.data() + tok * cols;
    quantize_row_ref(at, xt, act.data(), cols);
    const std::vector<double> aerr = activation_error(at, xt, cols);
    for (int64_t r = 0; r < rows; ++r) {
      const uint8_t* wr = m.view.data + static_cast<uint64_t>(r) * m.view.row_stride;
      const float got = y[static_cast<size_t>(tok * rows + r)];
      const std::string where = testing::type_isa_name(t, isa) + " threads=" + std::to_string(threads) +
                                " tokens=" + std::to_string(n_tokens) + " row=" + std::to_string(r) +
                                " token=" + std::to_string(tok);
      // (a) The same sum as vec_dot_ref on the quantized activations.
      const double mag = testing::dot_magnitude(t, cols, wr, act.data());
      ASSERT_NEAR(got, vec_dot_ref(t, cols, wr, act.data()), 1e-5 * mag + 1e-30) << where;
      // (b) The exact product, within sum_i |w_i| * activation error_i.
      const std::vector<float> wv = testing::dequantized(t, wr, cols);
      double bound = 0.0, plain = 0.0;
      for (int64_t c = 0; c < cols; ++c) {
        bound += std::fabs(wv[static_cast<size_t>(c)]) * aerr[static_cast<size_t>(c)];
        plain += std::fabs(static_cast<double>(wv[static_cast<size_t>(c)]) * xt[c]);
      }
      ASSERT_NEAR(got, y_ref[static_cast<size_t>(tok * rows + r)], bound + 1e-5 * (mag + plain) + 1e-30) << where;
    }
  }
}

TEST(Matmul, EveryIsaTypeThreadAndTokenCountMatchesReference) {
  std::mt19937 rng(21);
  for (Isa isa : supported_isas()) {
    for (DType t : all_types()) {
      if (t == DType::Q8_K) continue;  // an activation format, never a weight
      for (int64_t n_tokens : {1, 3, 17}) {
        for (int threads : {1, 2, 3}) check_matmul(isa, t, 11, n_tokens, threads, 0, rng);
      }
    }
  }
}

// Taller matrices (several full row tiles per thread) and padded row strides
// (6 bytes: F32 rows then start off their natural alignment, which is allowed).
TEST(Matmul, StridedRowsAndFullTiles) {
  std::mt19937 rng(22);
  for (Isa isa : supported_isas()) {
    for (DType t :
         {DType::F32, DType::F16, DType::BF16, DType::Q8_0, DType::Q4_0, DType::Q4_K, DType::Q5_K, DType::Q6_K}) {
      check_matmul(isa, t, 37, 5, 2, 64, rng);
      check_matmul(isa, t, 64, 2, 3, 6, rng);
    }
  }
}

// More tokens than one token tile holds (the tile is capped at 64 tokens).
TEST(Matmul, ManyTokensSpanSeveralTiles) {
  std::mt19937 rng(23);
  check_matmul(dispatch_isa(), DType::Q8_0, 9, 70, 2, 0, rng);
  check_matmul(dispatch_isa(), DType::Q4_K, 5, 67, 2, 0, rng);
}

TEST(Matmul, ScratchIsReusedAcrossCalls) {
  std::mt19937 rng(24);
  const Matrix m = random_matrix(DType::Q8_0, 8, 64, 0, rng);
  const std::vector<float> x = random_floats(64 * 4, rng);
  ThreadPool pool(2);
  MatmulScratch scratch;
  std::vector<float> y1(32), y2(32);
  matmul(m.view, x.data(), 4, y1.data(), pool, scratch);
  const size_t size = scratch.bytes.size();
  EXPECT_GE(size, 4 * row_bytes(DType::Q8_0, 64));
  matmul(m.view, x.data(), 1, y2.data(), pool, scratch);
  EXPECT_EQ(scratch.bytes.size(), size);  // grows, never shrinks
  for (int r = 0; r < 8; ++r) EXPECT_EQ(y1[static_cast<size_t>(r)], y2[static_cast<size_t>(r)]);
}

TEST(Matmul, RejectsBadShapes) {
  std::vector<uint8_t> buf(1 << 16);
  std::vector<float> x(1024), y(1024);
  ThreadPool pool(1);
  MatmulScratch scratch;
  const WeightView not_block = {DType::Q4_K, 2, 128, buf.data(), 1024};
  EXPECT_THROW(matmul(not_block, x.data(), 1, y.data(), pool, scratch), Error);
  const WeightView short_stride = {DType::Q8_0, 2, 64, buf.data(), 60};
  EXPECT_THROW(matmul(short_stride, x.data(), 1, y.data(), pool, scratch), Error);
  const WeightView bad_type = {DType::I32, 2, 4, buf.data(), 16};
  EXPECT_THROW(matmul(bad_type, x.data(), 1, y.data(), pool, scratch), Error);
  EXPECT_THROW(matmul_ref(not_block, x.data(), 1, y.data()), Error);
  const WeightView odd_stride = {DType::Q4_0, 2, 64, buf.data(), 37};
  EXPECT_THROW(matmul(odd_stride, x.data(), 1, y.data(), pool, scratch), Error);
  const WeightView odd_start = {DType::Q6_K, 1, 256, buf.data() + 1, 210};
  EXPECT_THROW(matmul(odd_start, x.data(), 1, y.data(), pool, scratch), Error);
  const WeightView empty = {DType::Q8_0, 0, 64, nullptr, 68};
  EXPECT_NO_THROW(matmul(empty, x.data(), 3, y.data(), pool, scratch));
}

}  // namespace
}  // namespace tpinfer::cpu
