// paged_attention: causal attention of each (token, query head) over its
// sequence's paged KV cache, for decode and prefill alike.
//
// Design: one thread block of kWarps warps per (token, head). Lane l holds the
// elements d = l + 32 i (i < 8) of the query (pre-scaled), of the running output
// and of each key / value row it reads, so head_dim may be any size up to 256.
// Warp w walks the positions w*kUnroll + {0..kUnroll-1}, then strides by
// kWarps*kUnroll: kUnroll keys are loaded and reduced together (memory-level
// parallelism on long contexts), then folded into the warp's online softmax
// (running max m, sum l, accumulator). At the end the warps' states are merged
// through shared memory with the usual rescaling by exp(m_w - M).
//
// Position p of token t's sequence s lives in slot
// block_tables[s * max_blocks + p / block_size] * block_size + p % block_size;
// the cache row of KV head k at that slot is (slot * n_kv_heads + k) * head_dim.
//
// Numerics: f32 scores (q * scale) . k, expf, f32 sums; keys and values are
// widened from f16 / bf16 exactly. A token whose position is negative attends
// to nothing and gets zeros.
#include <cuda_runtime.h>

#include <cmath>

#include "backend/cuda/device_util.cuh"
#include "backend/cuda/kernels.h"

namespace tpinfer::cuda {
namespace {

constexpr int kWarps = 4;
constexpr int kUnroll = 4;
constexpr int kMaxHeadDim = 256;
constexpr int kPerLane = kMaxHeadDim / 32;

template <bool kBf16>
__global__ void __launch_bounds__(kWarps * 32)
    paged_attention_kernel(const float* q, int64_t q_stride, const uint16_t* kc, const uint16_t* vc, int block_size,
                           int n_kv_heads, int head_dim, AttnBatch batch, int q_begin, int heads_per_kv, int kv_begin,
                           float scale, float* out, int64_t out_stride) {
  const int64_t t = blockIdx.x;
  const int h = static_cast<int>(blockIdx.y);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int pos = batch.positions[t];
  const int32_t* table = batch.block_tables + static_cast<int64_t>(batch.seq[t]) * batch.max_blocks;
  const int kvh = (q_begin + h) / heads_per_kv - kv_begin;
  const int64_t row_step = static_cast<int64_t>(n_kv_heads) * head_dim;

  const float* qh = q + t * q_stride + static_cast<int64_t>(h) * head_dim;
  float qv[kPerLane], acc[kPerLane];
#pragma unroll
  for (int i = 0; i < kPerLane; ++i) {
    const int d = lane + 32 * i;
    qv[i] = d < head_dim ? qh[d] * scale : 0.0f;
    acc[i] = 0.0f;
  }
  float m = -INFINITY, l = 0.0f;

  for (int p0 = warp * kUnroll; p0 <= pos; p0 += kWarps * kUnroll) {
    int64_t base[kUnroll];
    float s[kUnroll];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int p = p0 + u;
      base[u] = -1;
      s[u] = 0.0f;
      if (p <= pos) {
        const int64_t slot = static_cast<int64_t>(table[p / block_size]) * block_size + p % block_size;
        base[u] = slot * row_step + static_cast<int64_t>(kvh) * head_dim;
#pragma unroll
        for (int i = 0; i < kPerLane; ++i) {
          const int d = lane + 32 * i;
          if (d < head_dim) s[u] += qv[i] * detail::load16<kBf16>(kc[base[u] + d]);
        }
      }
    }
    float m_new = m;
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      s[u] = detail::warp_sum(s[u]);  // every lane gets the score
      if (base[u] >= 0) m_new = fmaxf(m_new, s[u]);
    }
    // p0 <= pos, so position p0 is valid and m_new is a real score.
    const float corr = expf(m - m_new);  // 0 on the first step (m = -inf)
    l *= corr;
#pragma unroll
    for (int i = 0; i < kPerLane; ++i) acc[i] *= corr;
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      if (base[u] < 0) continue;
      const float w = expf(s[u] - m_new);
      l += w;
#pragma unroll
      for (int i = 0; i < kPerLane; ++i) {
        const int d = lane + 32 * i;
        if (d < head_dim) acc[i] += w * detail::load16<kBf16>(vc[base[u] + d]);
      }
    }
    m = m_new;
  }

  __shared__ float warp_m[kWarps], warp_l[kWarps];
  __shared__ float warp_acc[kWarps][kMaxHeadDim];
  if (lane == 0) {
    warp_m[warp] = m;
    warp_l[warp] = l;
  }
#pragma unroll
  for (int i = 0; i < kPerLane; ++i) {
    const int d = lane + 32 * i;
    if (d < head_dim) warp_acc[warp][d] = acc[i];
  }
  __syncthreads();

  float big = -INFINITY;
#pragma unroll
  for (int w = 0; w < kWarps; ++w) big = fmaxf(big, warp_m[w]);
  float total = 0.0f, factor[kWarps];
#pragma unroll
  for (int w = 0; w < kWarps; ++w) {
    // A warp that saw no position has m = -inf and contributes nothing.
    factor[w] = warp_m[w] == -INFINITY ? 0.0f : expf(warp_m[w] - big);
    total += warp_l[w] * factor[w];
  }
  const float inv = total > 0.0f ? 1.0f / total : 0.0f;
  float* o = out + t * out_stride + static_cast<int64_t>(h) * head_dim;
  for (int d = threadIdx.x; d < head_dim; d += blockDim.x) {
    float v = 0.0f;
#pragma unroll
    for (int w = 0; w < kWarps; ++w) v += warp_acc[w][d] * factor[w];
    o[d] = v * inv;
  }
}

}  // namespace

void paged_attention(const float* q, int64_t q_stride, const PagedKV& kv, const AttnBatch& batch, int n_heads,
                     int q_begin, int heads_per_kv, int kv_begin, float scale, float* out, int64_t out_stride,
                     cudaStream_t stream) {
  if (!detail::is_16bit(kv.type)) {
    throw Error(cat("paged_attention: KV cache type ", dtype_name(kv.type), " is not f16 or bf16"));
  }
  if (kv.head_dim <= 0 || kv.head_dim > kMaxHeadDim) {
    throw Error(cat("paged_attention: head size ", kv.head_dim, " is outside 1..", kMaxHeadDim));
  }
  if (kv.block_size <= 0 || kv.n_kv_heads <= 0 || heads_per_kv <= 0) {
    throw Error(cat("paged_attention: block size ", kv.block_size, ", ", kv.n_kv_heads, " KV heads, ", heads_per_kv,
                    " query heads per KV head"));
  }
  if (batch.n_tokens <= 0 || n_heads <= 0) return;
  if (batch.max_blocks <= 0) throw Error(cat("paged_attention: max_blocks ", batch.max_blocks, " must be positive"));
  if (n_heads > 65535 || batch.n_tokens > 0x7fffffff) {
    throw Error(cat("paged_attention: ", batch.n_tokens, " tokens x ", n_heads, " heads is more than one launch takes"));
  }
  const int first = q_begin / heads_per_kv - kv_begin;
  const int last = (q_begin + n_heads - 1) / heads_per_kv - kv_begin;
  if (q_begin < 0 || first < 0 || last >= kv.n_kv_heads) {
    throw Error(cat("paged_attention: query heads ", q_begin, "..", q_begin + n_heads - 1, " map to KV heads ", first,
                    "..", last, " outside the ", kv.n_kv_heads, " local ones"));
  }
  if (q_stride < static_cast<int64_t>(n_heads) * kv.head_dim || out_stride < static_cast<int64_t>(n_heads) * kv.head_dim) {
    throw Error(cat("paged_attention: row strides ", q_stride, " / ", out_stride, " are shorter than ", n_heads,
                    " heads of ", kv.head_dim));
  }
  const dim3 grid(static_cast<unsigned>(batch.n_tokens), static_cast<unsigned>(n_heads));
  const auto* k = static_cast<const uint16_t*>(kv.k);
  const auto* v = static_cast<const uint16_t*>(kv.v);
  if (kv.type == DType::BF16) {
    paged_attention_kernel<true><<<grid, kWarps * 32, 0, stream>>>(q, q_stride, k, v, kv.block_size, kv.n_kv_heads,
                                                                   kv.head_dim, batch, q_begin, heads_per_kv,
                                                                   kv_begin, scale, out, out_stride);
  } else {
    paged_attention_kernel<false><<<grid, kWarps * 32, 0, stream>>>(q, q_stride, k, v, kv.block_size, kv.n_kv_heads,
                                                                    kv.head_dim, batch, q_begin, heads_per_kv,
                                                                    kv_begin, scale, out, out_stride);
  }
  detail::check_launch("paged_attention_kernel");
}

}  // namespace tpinfer::cuda
