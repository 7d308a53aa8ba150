#include "backend/cpu/attention.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "backend/cpu/quant.h"
#include "core/error.h"
#include "core/half.h"

namespace tpinfer::cpu {
namespace {

inline const uint8_t* slot_ptr(const uint8_t* base, std::span<const int32_t> table, int p, const KVLayerView& kv,
                               int kv_head) {
  const int64_t slot = static_cast<int64_t>(table[static_cast<size_t>(p / kv.block_size)]) * kv.block_size +
                       p % kv.block_size;
  const uint64_t elem = dtype_info(kv.type).type_size;
  return base + static_cast<uint64_t>(slot) * kv.slot_stride + static_cast<uint64_t>(kv_head) * kv.head_dim * elem;
}

template <typename Load>
void attend_impl(const float* q, int kv_head, std::span<const int32_t> table, int n_ctx, const KVLayerView& kv,
                 float scale, float* scores, float* out, Load load) {
  const int hd = kv.head_dim;
  float max_score = -INFINITY;
  for (int p = 0; p < n_ctx; ++p) {
    const uint8_t* k = slot_ptr(kv.k, table, p, kv, kv_head);
    float dot = 0.0f;
    for (int i = 0; i < hd; ++i) dot += q[i] * load(k, i);
    scores[p] = dot * scale;
    max_score = std::max(max_score, scores[p]);
  }
  float sum = 0.0f;
  for (int p = 0; p < n_ctx; ++p) {
    scores[p] = std::exp(scores[p] - max_score);
    sum += scores[p];
  }
  const float inv = 1.0f / sum;
  std::fill(out, out + hd, 0.0f);
  for (int p = 0; p < n_ctx; ++p) {
    const uint8_t* v = slot_ptr(kv.v, table, p, kv, kv_head);
    const float w = scores[p] * inv;
    for (int i = 0; i < hd; ++i) out[i] += w * load(v, i);
  }
}

}  // namespace

void attend(const float* q, int kv_head, std::span<const int32_t> table, int n_ctx, const KVLayerView& kv,
            float scale, float* scores, float* out) {
  switch (kv.type) {
    case DType::F32:
      attend_impl(q, kv_head, table, n_ctx, kv, scale, scores, out,
                  [](const uint8_t* p, int i) { return reinterpret_cast<const float*>(p)[i]; });
      break;
    case DType::F16:
      attend_impl(q, kv_head, table, n_ctx, kv, scale, scores, out, [](const uint8_t* p, int i) {
        uint16_t h;
        std::memcpy(&h, p + 2 * i, 2);
        return f16_to_f32(h);
      });
      break;
    case DType::BF16:
      attend_impl(q, kv_head, table, n_ctx, kv, scale, scores, out, [](const uint8_t* p, int i) {
        uint16_t h;
        std::memcpy(&h, p + 2 * i, 2);
        return bf16_to_f32(h);
      });
      break;
    default:
      throw Error(cat("KV cache type ", dtype_name(kv.type), " is not supported; use f32, f16 or bf16"));
  }
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
