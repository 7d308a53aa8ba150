#include "backend/cpu/matmul.h"

#include <algorithm>
#include <cstdint>

#include "backend/cpu/kernels.h"
#include "backend/cpu/quant.h"
#include "backend/cpu/repack.h"
#include "core/error.h"

namespace tpinfer::cpu {
namespace {

// Rows per unit of the thread split: a multiple of every micro-kernel's row
// count, and small enough that two threads share even a short matrix.
constexpr int64_t kRowGrain = 16;
// Activation bytes a token tile may occupy (kept in L2 while a row group is
// applied to every token of the tile).
constexpr uint64_t kTokenTileBytes = 512 * 1024;
constexpr int64_t kMaxTokenTile = 64;

void check_weight(const WeightView& w, const char* what) {
  if (!quant_supported(w.type)) {
    throw Error(cat(what, ": weight type ", static_cast<uint32_t>(w.type), " is not supported"));
  }
  if (w.rows < 0 || w.cols < 0) throw Error(cat(what, ": negative shape [", w.rows, ", ", w.cols, "]"));
  check_row_length(w.type, w.cols, what);
  check_row_length(vec_dot_type(w.type), w.cols, what);
  const uint64_t bytes = row_bytes(w.type, static_cast<uint64_t>(w.cols));
  if (w.rows > 1 && w.row_stride < bytes) {
    throw Error(cat(what, ": row stride ", w.row_stride, " is smaller than a ", dtype_name(w.type), " row of ", w.cols,
                    " values (", bytes, " bytes)"));
  }
  if (w.rows > 0 && w.data == nullptr) throw Error(cat(what, ": weight data is null"));
  if (w.layout == WeightLayout::kInterleaved8 && (!has_interleaved_layout(w.type) || w.row_stride != bytes)) {
    throw Error(cat(what, ": no interleaved layout for ", dtype_name(w.type), " rows of stride ", w.row_stride));
  }
  const uint64_t align = !dtype_info(w.type).quantized ? 1 : w.type == DType::Q8_K ? 4 : 2;
  if ((reinterpret_cast<uintptr_t>(w.data) | w.row_stride) % align != 0) {
    throw Error(cat(what, ": ", dtype_name(w.type), " rows must be ", align, "-byte aligned (data ",
                    static_cast<const void*>(w.data), ", row stride ", w.row_stride, ")"));
  }
}

// The interleaved groups (gemm8) and the plain tail rows (gemm) of w; act holds
// the converted activations. Thread chunks are multiples of kRowGrain rows, so
// they split only between groups.
void matmul_interleaved(const TypeKernels& k, const WeightView& w, const uint8_t* act, uint64_t act_stride,
                        int64_t n_tokens, int64_t tile, float* y, ThreadPool& pool, const MatmulScratch& scratch) {
  static_assert(kRowGrain % kInterleave == 0, "thread chunks must not split an interleaved group");
  const int64_t n_sums = activation_sum_count(w.type, w.cols);
  const int32_t* sums = scratch.sums.data();
  const int64_t rows8 = w.rows / kInterleave * kInterleave;
  const uint64_t group_bytes = x8_group_bytes(w.type, w.cols);
  const uint8_t* tail = w.data + interleaved_bytes(w.type, w.rows, w.cols);
  pool.parallel_for(w.rows, kRowGrain, [&](int64_t r0, int64_t r1) {
    const int64_t g0 = r0 / kInterleave, g1 = std::min(r1, rows8) / kInterleave;
    const int64_t t_r0 = std::max(r0, rows8);
    for (int64_t t0 = 0; t0 < n_tokens; t0 += tile) {
      const int64_t nt = std::min(tile, n_tokens - t0);
      if (g1 > g0) {
        k.gemm8(w.cols, w.data + static_cast<uint64_t>(g0) * group_bytes, g1 - g0, act + t0 * act_stride, act_stride,
                sums + t0 * n_sums, n_sums, nt, y + t0 * w.rows + g0 * kInterleave, w.rows);
      }
      if (t_r0 < r1) {
        k.gemm(w.cols, tail + static_cast<uint64_t>(t_r0 - rows8) * w.row_stride, w.row_stride, r1 - t_r0,
               act + t0 * act_stride, act_stride, nt, y + t0 * w.rows + t_r0, w.rows);
      }
    }
  });
}

}  // namespace

void matmul(Isa isa, const WeightView& w, const float* x, int64_t n_tokens, float* y, ThreadPool& pool,
            MatmulScratch& scratch) {
  check_weight(w, "matmul");
  if (n_tokens < 0) throw Error(cat("matmul: negative token count ", n_tokens));
  if (n_tokens == 0 || w.rows == 0) return;
  const KernelTable& table = kernel_table(isa);
  const DType act_type = vec_dot_type(w.type);
  const GemmFn gemm = table.at(w.type).gemm;

  // Convert the activations once; every weight row then reads the same bytes.
  const uint8_t* act;
  uint64_t act_stride;
  if (act_type == DType::F32) {
    act = reinterpret_cast<const uint8_t*>(x);
    act_stride = static_cast<uint64_t>(w.cols) * sizeof(float);
  } else {
    act_stride = row_bytes(act_type, static_cast<uint64_t>(w.cols));
    const size_t need = static_cast<size_t>(act_stride * static_cast<uint64_t>(n_tokens));
    if (scratch.bytes.size() < need) scratch.bytes.resize(need);
    uint8_t* buf = scratch.bytes.data();
    const QuantizeFn quantize = table.at(act_type).quantize;
    // The interleaved kernels also take per-block sums of the activations.
    const bool x8 = w.layout == WeightLayout::kInterleaved8;
    const int64_t n_sums = x8 ? activation_sum_count(w.type, w.cols) : 0;
    if (scratch.sums.size() < static_cast<size_t>(n_sums * n_tokens)) {
      scratch.sums.resize(static_cast<size_t>(n_sums * n_tokens));
    }
    int32_t* sums = scratch.sums.data();
    pool.parallel_for(n_tokens, 1, [&](int64_t t0, int64_t t1) {
      for (int64_t t = t0; t < t1; ++t) {
        quantize(x + t * w.cols, buf + t * act_stride, w.cols);
        if (x8) activation_sums(w.type, buf + t * act_stride, w.cols, sums + t * n_sums);
      }
    });
    act = buf;
  }

  const int64_t tile =
      std::clamp<int64_t>(static_cast<int64_t>(kTokenTileBytes / std::max<uint64_t>(act_stride, 1)), 1, kMaxTokenTile);
  if (w.layout == WeightLayout::kInterleaved8) {
    matmul_interleaved(table.at(w.type), w, act, act_stride, n_tokens, tile, y, pool, scratch);
    return;
  }
  pool.parallel_for(w.rows, kRowGrain, [&](int64_t r0, int64_t r1) {
    for (int64_t t0 = 0; t0 < n_tokens; t0 += tile) {
      const int64_t nt = std::min(tile, n_tokens - t0);
      gemm(w.cols, w.data + static_cast<uint64_t>(r0) * w.row_stride, w.row_stride, r1 - r0, act + t0 * act_stride,
           act_stride, nt, y + t0 * w.rows + r0, w.rows);
    }
  });
}

void matmul(const WeightView& w, const float* x, int64_t n_tokens, float* y, ThreadPool& pool, MatmulScratch& scratch) {
  matmul(dispatch_isa(), w, x, n_tokens, y, pool, scratch);
}

void matmul_ref(const WeightView& w, const float* x, int64_t n_tokens, float* y) {
  check_weight(w, "matmul_ref");
  std::vector<float> row(static_cast<size_t>(w.cols));
  std::vector<uint8_t> plain(w.layout == WeightLayout::kRows ? 0 : row_bytes(w.type, static_cast<uint64_t>(w.cols)));
  for (int64_t r = 0; r < w.rows; ++r) {
    const uint8_t* src = w.data + static_cast<uint64_t>(r) * w.row_stride;
    if (w.layout != WeightLayout::kRows) {
      plain_row(w, r, plain.data());
      src = plain.data();
    }
    dequantize_row_ref(w.type, src, row.data(), w.cols);
    for (int64_t t = 0; t < n_tokens; ++t) {
      const float* xt = x + t * w.cols;
      double s = 0.0;
      for (int64_t c = 0; c < w.cols; ++c) s += static_cast<double>(row[static_cast<size_t>(c)]) * xt[c];
      y[t * w.rows + r] = static_cast<float>(s);
    }
  }
}

}  // namespace tpinfer::cpu
