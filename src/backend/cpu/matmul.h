// Matrix multiplication of a (possibly quantized) weight matrix with a batch of
// activations: y[t][r] = sum_c W[r][c] * x[t][c]. Rows of W are split over the
// rank's thread pool. Activations are converted once to vec_dot_type(W.type)
// into caller-owned scratch, so the token loop does not allocate.
//
// Results equal vec_dot of each weight row with the converted activation row
// (up to float summation order), so quantized weights see the activation
// rounding of Q8_0 / Q8_K, as in GGML. For n_tokens > 1 each thread walks its
// rows in small groups and applies each group to a tile of tokens while it is
// in cache: weights are read from memory once per tile of up to 64 tokens.
//
// Errors (Error): unsupported weight type, w.cols not a multiple of the block
// sizes of w.type and vec_dot_type(w.type), w.row_stride smaller than a row,
// quantized rows not 2-byte aligned (see quant.h).
#pragma once

#include <cstdint>
#include <vector>

#include "backend/cpu/isa.h"
#include "core/dtype.h"
#include "core/thread_pool.h"

namespace tpinfer::cpu {

// How the rows of a weight matrix are stored. kRows: row r starts at
// data + r * row_stride bytes. kInterleaved8 (Q4_0, Q4_K, Q8_0 only): groups of 8 rows
// with their blocks interleaved, made by interleave_rows() at load; the rows
// past the last full group follow in the plain layout (see repack.h; an internal
// detail: only matmul and matmul_ref read it).
enum class WeightLayout : uint8_t { kRows, kInterleaved8 };

// A weight matrix [rows, cols].
struct WeightView {
  DType type = DType::F32;
  int64_t rows = 0;
  int64_t cols = 0;
  const uint8_t* data = nullptr;
  uint64_t row_stride = 0;  // bytes between plain rows
  WeightLayout layout = WeightLayout::kRows;
};

// Whether matmul has an interleaved layout for w (a plain Q4_0, Q4_K or Q8_0 matrix
// with at least 8 rows), and the bytes it takes (groups plus plain tail rows).
bool can_interleave(const WeightView& w);
uint64_t interleaved_size(const WeightView& w);
// Writes the interleaved form of plain w to dst (interleaved_size(w) bytes,
// 2-byte aligned) and returns its view. Throws Error unless can_interleave(w).
WeightView interleave_rows(const WeightView& w, uint8_t* dst);

// Reusable scratch for activation conversion; grows as needed, never shrinks.
struct MatmulScratch {
  std::vector<uint8_t> bytes;
  std::vector<int32_t> sums;  // activation sums of the interleaved kernels
};

// x: [n_tokens, w.cols] floats, row stride w.cols; y: [n_tokens, w.rows].
void matmul(const WeightView& w, const float* x, int64_t n_tokens, float* y, ThreadPool& pool, MatmulScratch& scratch);
// The same with the kernels of one instruction-set level (tests, benchmarks).
void matmul(Isa isa, const WeightView& w, const float* x, int64_t n_tokens, float* y, ThreadPool& pool,
            MatmulScratch& scratch);

// Plain reference: dequantize each row and accumulate in double (either layout).
void matmul_ref(const WeightView& w, const float* x, int64_t n_tokens, float* y);

}  // namespace tpinfer::cpu
