// Attention over a paged KV cache: scores, softmax and the weighted sum of
// values fused per group of query heads that share one KV head (a GQA group,
// possibly for several tokens of one sequence). The cache of one layer is an
// array of slots; slot s holds, for every KV head j of the rank, head_dim keys
// at k + s * slot_stride + row_bytes(type, j * head_dim) (likewise values),
// stored as F32, F16, BF16 or Q8_0. Position p of a sequence lives in slot
// block_table[p / block_size] * block_size + p % block_size.
//
// attend_group walks the sequence one KV block at a time: the block's keys of
// the KV head are converted to floats once and scored against every query of
// the group, then (after a softmax per query) its values are converted once and
// accumulated into every output. So each key and value is read and converted
// once per group, not once per query head. Accuracy against attend_ref: float
// summation plus the polynomial exp of ops.h (relative error ~1e-6 of the
// largest output value).
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "backend/cpu/isa.h"
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

// m queries sharing KV head `kv_head` and one block table: query i (head_dim
// floats at q[i]) attends to positions [0, n_ctx[i]) and writes
// out[i][0, head_dim) = softmax(scale * q[i] . k_p) . v_p. n_ctx must be
// non-decreasing in i (tokens in position order), each >= 1 and covered by the
// block table. Outputs must not overlap the queries.
struct AttnGroup {
  const float* const* q = nullptr;
  const int* n_ctx = nullptr;
  float* const* out = nullptr;
  int m = 0;
};

// Reusable buffers; they grow as needed and never shrink.
struct AttnScratch {
  std::vector<float> scores;
  std::vector<float> rows;
};

void attend_group(const AttnGroup& g, int kv_head, std::span<const int32_t> block_table, const KVLayerView& kv,
                  float scale, AttnScratch& scratch);
// The same with the kernels of one instruction-set level (tests, benchmarks).
void attend_group(Isa isa, const AttnGroup& g, int kv_head, std::span<const int32_t> block_table,
                  const KVLayerView& kv, float scale, AttnScratch& scratch);
// Plain double-precision reference of attend.
void attend_ref(const float* q, int kv_head, std::span<const int32_t> block_table, int n_ctx, const KVLayerView& kv,
                float scale, float* out);

// Converts n floats into the cache's storage type at dst.
void store_kv(DType type, const float* src, uint8_t* dst, int64_t n);

}  // namespace tpinfer::cpu
