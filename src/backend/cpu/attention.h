// Attention of one query head over a paged KV cache: scores, softmax and the
// weighted sum of values fused in one pass per head. The cache of one layer is
// an array of slots; slot s holds, for every KV head j of the rank, head_dim keys
// at k + s * slot_stride + j * head_dim (likewise values), stored as F32, F16 or
// BF16. Position p of a sequence lives in slot block_table[p / block_size] *
// block_size + p % block_size.
#pragma once

#include <cstdint>
#include <span>

#include "core/dtype.h"

namespace tpinfer::cpu {

struct KVLayerView {
  DType type = DType::F32;
  const uint8_t* k = nullptr;
  const uint8_t* v = nullptr;
  uint64_t slot_stride = 0;  // bytes from one slot to the next
  int head_dim = 0;
  int block_size = 0;
};

// out[0, head_dim) = softmax(scale * q . k_p for p < n_ctx) . v_p, using KV head
// `kv_head`. scores: scratch of at least n_ctx floats.
void attend(const float* q, int kv_head, std::span<const int32_t> block_table, int n_ctx, const KVLayerView& kv,
            float scale, float* scores, float* out);
// Plain double-precision reference of attend.
void attend_ref(const float* q, int kv_head, std::span<const int32_t> block_table, int n_ctx, const KVLayerView& kv,
                float scale, float* out);

// Converts n floats into the cache's storage type at dst.
void store_kv(DType type, const float* src, uint8_t* dst, int64_t n);

}  // namespace tpinfer::cpu
