#include "backend/cpu/attention.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "backend/cpu/kernels.h"
#include "backend/cpu/quant.h"
#include "core/error.h"
#include "core/half.h"

namespace tpinfer::cpu {
namespace {

// Byte offset of KV head `kv_head` within a slot.
inline uint64_t head_offset(const KVLayerView& kv, int kv_head) {
  return row_bytes(kv.type, static_cast<uint64_t>(kv_head) * static_cast<uint64_t>(kv.head_dim));
}

inline const uint8_t* slot_ptr(const uint8_t* base, std::span<const int32_t> table, int p, const KVLayerView& kv,
                               int kv_head) {
  const int64_t slot = static_cast<int64_t>(table[static_cast<size_t>(p / kv.block_size)]) * kv.block_size +
                       p % kv.block_size;
  return base + static_cast<uint64_t>(slot) * kv.slot_stride + head_offset(kv, kv_head);
}

void check_kv(const KVLayerView& kv) {
  if (kv.type != DType::F32 && kv.type != DType::F16 && kv.type != DType::BF16 && kv.type != DType::Q8_0) {
    throw Error(cat("KV cache type ", dtype_name(kv.type), " is not supported; valid: f32, f16, bf16, q8_0"));
  }
  check_row_length(kv.type, kv.head_dim, "attention head");
  if (kv.block_size <= 0) throw Error(cat("attention: KV block size ", kv.block_size, " must be positive"));
}

}  // namespace

void attend_group(Isa isa, const AttnGroup& g, int kv_head, std::span<const int32_t> table, const KVLayerView& kv,
                  float scale, AttnScratch& scratch) {
  check_kv(kv);
  if (g.m <= 0) return;
  const int64_t capacity = static_cast<int64_t>(table.size()) * kv.block_size;
  for (int i = 0; i < g.m; ++i) {
    if (g.n_ctx[i] < 1 || g.n_ctx[i] > capacity || (i > 0 && g.n_ctx[i] < g.n_ctx[i - 1])) {
      throw Error(cat("attention: context ", g.n_ctx[i], " of query ", i, " must be in [1, ", capacity,
                      "] and not below the previous query's"));
    }
  }
  const OpKernels& ops = op_kernels(isa);
  const DequantizeFn deq = kernel_table(isa).at(kv.type).dequantize;
  const int hd = kv.head_dim, bs = kv.block_size;
  const int max_ctx = g.n_ctx[g.m - 1];
  const uint64_t head_off = head_offset(kv, kv_head);
  scratch.scores.resize(static_cast<size_t>(g.m) * static_cast<size_t>(max_ctx));
  scratch.rows.resize(static_cast<size_t>(bs) * static_cast<size_t>(hd));
  float* scores = scratch.scores.data();
  float* rows = scratch.rows.data();

  // Queries [first, m) still attend to block b: n_ctx is non-decreasing.
  auto first_active = [&](int p0) {
    int i = 0;
    while (g.n_ctx[i] <= p0) ++i;
    return i;
  };
  // Converts the kv_head rows of the block at position p0 (n slots) to floats.
  auto load_block = [&](const uint8_t* base, int p0, int n) {
    const uint8_t* slot0 =
        base + static_cast<uint64_t>(table[static_cast<size_t>(p0 / bs)]) * static_cast<uint64_t>(bs) * kv.slot_stride +
        head_off;
    for (int j = 0; j < n; ++j) deq(slot0 + static_cast<uint64_t>(j) * kv.slot_stride, rows + j * hd, hd);
  };

  for (int p0 = 0; p0 < max_ctx; p0 += bs) {
    const int n = std::min(bs, max_ctx - p0), i0 = first_active(p0);
    load_block(kv.k, p0, n);
    ops.attn_scores(g.q + i0, g.m - i0, rows, n, hd, scale, scores + static_cast<int64_t>(i0) * max_ctx + p0, max_ctx);
  }
  for (int i = 0; i < g.m; ++i) {
    float* s = scores + static_cast<int64_t>(i) * max_ctx;
    ops.softmax(s, g.n_ctx[i], s);
    std::fill(s + g.n_ctx[i], s + max_ctx, 0.0f);  // positions past the query's own
    std::fill(g.out[i], g.out[i] + hd, 0.0f);
  }
  for (int p0 = 0; p0 < max_ctx; p0 += bs) {
    const int n = std::min(bs, max_ctx - p0), i0 = first_active(p0);
    load_block(kv.v, p0, n);
    ops.attn_accumulate(scores + static_cast<int64_t>(i0) * max_ctx + p0, max_ctx, g.m - i0, rows, n, hd, g.out + i0);
  }
}

void attend_group(const AttnGroup& g, int kv_head, std::span<const int32_t> table, const KVLayerView& kv, float scale,
                  AttnScratch& scratch) {
  attend_group(dispatch_isa(), g, kv_head, table, kv, scale, scratch);
}

void attend_ref(const float* q, int kv_head, std::span<const int32_t> table, int n_ctx, const KVLayerView& kv,
                float scale, float* out) {
  const int hd = kv.head_dim;
  std::vector<float> k(static_cast<size_t>(hd)), v(static_cast<size_t>(hd));
  std::vector<double> s(static_cast<size_t>(n_ctx));
  double mx = -INFINITY;
  for (int p = 0; p < n_ctx; ++p) {
    dequantize_row_ref(kv.type, slot_ptr(kv.k, table, p, kv, kv_head), k.data(), hd);
    double d = 0;
    for (int i = 0; i < hd; ++i) d += static_cast<double>(q[i]) * k[static_cast<size_t>(i)];
    s[static_cast<size_t>(p)] = d * scale;
    mx = std::max(mx, s[static_cast<size_t>(p)]);
  }
  double sum = 0;
  for (double& x : s) sum += (x = std::exp(x - mx));
  std::vector<double> acc(static_cast<size_t>(hd), 0.0);
  for (int p = 0; p < n_ctx; ++p) {
    dequantize_row_ref(kv.type, slot_ptr(kv.v, table, p, kv, kv_head), v.data(), hd);
    for (int i = 0; i < hd; ++i) acc[static_cast<size_t>(i)] += s[static_cast<size_t>(p)] / sum * v[static_cast<size_t>(i)];
  }
  for (int i = 0; i < hd; ++i) out[i] = static_cast<float>(acc[static_cast<size_t>(i)]);
}

void store_kv(DType type, const float* src, uint8_t* dst, int64_t n) { quantize_row(type, src, dst, n); }

}  // namespace tpinfer::cpu
