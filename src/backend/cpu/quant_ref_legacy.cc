// Scalar references for the 32-value block formats Q4_0, Q4_1, Q5_0, Q5_1, Q8_0
// and Q8_1 (layouts in core/quant_blocks.h): dequantize, quantize with GGML's
// reference rounding, and the dot product with a Q8_0 activation row. One
// dequantize and one dot product serve every format through its unpack().

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstring>
#include <type_traits>

#include "backend/cpu/quant_ref_internal.h"

namespace tpinfer::cpu::ref {
namespace {

inline uint32_t load_u32(const uint8_t* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

inline void minmax(const float* x, int n, float* lo, float* hi) {
  *lo = FLT_MAX;
  *hi = -FLT_MAX;
  for (int j = 0; j < n; ++j) {
    *lo = std::min(*lo, x[j]);
    *hi = std::max(*hi, x[j]);
  }
}

// Integer sums of the 32-value formats against Q8_0: sum(q * a) and sum(a).
inline int qdot32(const int* q, const int8_t* a) {
  int s = 0;
  for (int j = 0; j < kQK; ++j) s += q[j] * a[j];
  return s;
}
inline int qsum32(const int8_t* a) {
  int s = 0;
  for (int j = 0; j < kQK; ++j) s += a[j];
  return s;
}

// Each format's block as integers: value j is q[j] * d (+ m for the formats
// with a minimum). Symmetric formats store q + 2^(bits-1); unpack subtracts it.
template <typename Block>
constexpr bool kHasMin = std::is_same_v<Block, BlockQ4_1> || std::is_same_v<Block, BlockQ5_1>;

inline void unpack4(const uint8_t* qs, int offset, int* q) {
  for (int j = 0; j < 16; ++j) {
    q[j] = (qs[j] & 15) - offset;
    q[j + 16] = (qs[j] >> 4) - offset;
  }
}
inline void unpack5(const uint8_t* qs, const uint8_t* qh_bytes, int offset, int* q) {
  const uint32_t qh = load_u32(qh_bytes);
  for (int j = 0; j < 16; ++j) {
    q[j] = ((qs[j] & 15) | static_cast<int>(((qh >> j) & 1) << 4)) - offset;
    q[j + 16] = ((qs[j] >> 4) | static_cast<int>(((qh >> (j + 16)) & 1) << 4)) - offset;
  }
}
inline void unpack(const BlockQ4_0& b, int* q) { unpack4(b.qs, 8, q); }
inline void unpack(const BlockQ4_1& b, int* q) { unpack4(b.qs, 0, q); }
inline void unpack(const BlockQ5_0& b, int* q) { unpack5(b.qs, b.qh, 16, q); }
inline void unpack(const BlockQ5_1& b, int* q) { unpack5(b.qs, b.qh, 0, q); }
inline void unpack(const BlockQ8_0& b, int* q) { std::copy_n(b.qs, kQK, q); }
inline void unpack(const BlockQ8_1& b, int* q) { std::copy_n(b.qs, kQK, q); }

// Stores values q[0..31] (already offset, 0 <= q < 2^bits) into a block.
inline void pack(const int* q, BlockQ4_0& b) {
  for (int j = 0; j < 16; ++j) b.qs[j] = static_cast<uint8_t>(q[j] | (q[j + 16] << 4));
}
inline void pack(const int* q, BlockQ4_1& b) {
  for (int j = 0; j < 16; ++j) b.qs[j] = static_cast<uint8_t>(q[j] | (q[j + 16] << 4));
}
inline void pack5(const int* q, uint8_t* qs, uint8_t* qh_bytes) {
  uint32_t qh = 0;
  for (int j = 0; j < 16; ++j) {
    qs[j] = static_cast<uint8_t>((q[j] & 15) | ((q[j + 16] & 15) << 4));
    qh |= static_cast<uint32_t>((q[j] >> 4) & 1) << j;
    qh |= static_cast<uint32_t>((q[j + 16] >> 4) & 1) << (j + 16);
  }
  std::memcpy(qh_bytes, &qh, 4);
}
inline void pack(const int* q, BlockQ5_0& b) { pack5(q, b.qs, b.qh); }
inline void pack(const int* q, BlockQ5_1& b) { pack5(q, b.qs, b.qh); }

// Q4_0 / Q5_0: d = the extreme value / -2^(bits-1), so the extreme maps to the
// one level without a positive twin; GGML rounds by truncating x / d + 0.5.
template <typename Block, int kBits>
void quantize_symmetric(const float* x, void* dst, int64_t n) {
  constexpr int kHalf = 1 << (kBits - 1), kTop = (1 << kBits) - 1;
  Block* b = static_cast<Block*>(dst);
  for (int64_t i = 0; i < n / kQK; ++i, x += kQK) {
    float vmax, amax;
    signed_absmax(x, kQK, &vmax, &amax);
    const float d = vmax / -static_cast<float>(kHalf);
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    b[i].d = f2h(d);
    int q[kQK];
    for (int j = 0; j < kQK; ++j)
      q[j] = std::min(kTop, static_cast<int>(x[j] * id + (static_cast<float>(kHalf) + 0.5f)));
    pack(q, b[i]);
  }
}

// Q4_1 / Q5_1: the block's range over 2^bits - 1 levels from its minimum.
template <typename Block, int kBits>
void quantize_with_min(const float* x, void* dst, int64_t n) {
  constexpr int kTop = (1 << kBits) - 1;
  Block* b = static_cast<Block*>(dst);
  for (int64_t i = 0; i < n / kQK; ++i, x += kQK) {
    float lo, hi;
    minmax(x, kQK, &lo, &hi);
    const float d = (hi - lo) / static_cast<float>(kTop);
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    b[i].d = f2h(d);
    b[i].m = f2h(lo);
    int q[kQK];
    for (int j = 0; j < kQK; ++j) q[j] = std::min(kTop, static_cast<int>((x[j] - lo) * id + 0.5f));
    pack(q, b[i]);
  }
}

}  // namespace

// ---------------------------------------------------------------- dequantize and dot

template <typename Block>
void deq_legacy(const void* src, float* dst, int64_t n) {
  const Block* b = static_cast<const Block*>(src);
  for (int64_t i = 0; i < n / kQK; ++i, dst += kQK) {
    int q[kQK];
    unpack(b[i], q);
    const float d = h2f(b[i].d);
    if constexpr (kHasMin<Block>) {
      const float m = h2f(b[i].m);
      for (int j = 0; j < kQK; ++j) dst[j] = static_cast<float>(q[j]) * d + m;
    } else {
      for (int j = 0; j < kQK; ++j) dst[j] = static_cast<float>(q[j]) * d;
    }
  }
}

template <typename Block>
double dot_legacy(int64_t n, const void* w, const void* a) {
  const Block* x = static_cast<const Block*>(w);
  const BlockQ8_0* y = static_cast<const BlockQ8_0*>(a);
  double s = 0.0;
  for (int64_t i = 0; i < n / kQK; ++i) {
    int q[kQK];
    unpack(x[i], q);
    const double da = h2f(y[i].d);
    double block = static_cast<double>(h2f(x[i].d)) * da * qdot32(q, y[i].qs);
    if constexpr (kHasMin<Block>) block += static_cast<double>(h2f(x[i].m)) * da * qsum32(y[i].qs);
    s += block;
  }
  return s;
}

#define TPINFER_LEGACY(Block)                                              \
  template void deq_legacy<Block>(const void* src, float* dst, int64_t n); \
  template double dot_legacy<Block>(int64_t n, const void* w, const void* a);
TPINFER_LEGACY(BlockQ4_0)
TPINFER_LEGACY(BlockQ4_1)
TPINFER_LEGACY(BlockQ5_0)
TPINFER_LEGACY(BlockQ5_1)
TPINFER_LEGACY(BlockQ8_0)
TPINFER_LEGACY(BlockQ8_1)
#undef TPINFER_LEGACY

// ---------------------------------------------------------------- quantize

void q_q4_0(const float* x, void* dst, int64_t n) { quantize_symmetric<BlockQ4_0, 4>(x, dst, n); }
void q_q4_1(const float* x, void* dst, int64_t n) { quantize_with_min<BlockQ4_1, 4>(x, dst, n); }
void q_q5_0(const float* x, void* dst, int64_t n) { quantize_symmetric<BlockQ5_0, 5>(x, dst, n); }
void q_q5_1(const float* x, void* dst, int64_t n) { quantize_with_min<BlockQ5_1, 5>(x, dst, n); }

void q_q8_0(const float* x, void* dst, int64_t n) {
  BlockQ8_0* b = static_cast<BlockQ8_0*>(dst);
  for (int64_t i = 0; i < n / kQK; ++i, x += kQK) {
    float vmax, amax;
    signed_absmax(x, kQK, &vmax, &amax);
    const float d = amax / 127.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    b[i].d = f2h(d);
    // roundf: half away from zero (GGML's choice for this format).
    for (int j = 0; j < kQK; ++j) b[i].qs[j] = static_cast<int8_t>(std::round(x[j] * id));
  }
}

void q_q8_1(const float* x, void* dst, int64_t n) {
  BlockQ8_1* b = static_cast<BlockQ8_1*>(dst);
  for (int64_t i = 0; i < n / kQK; ++i, x += kQK) {
    float vmax, amax;
    signed_absmax(x, kQK, &vmax, &amax);
    const float d = amax / 127.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    b[i].d = f2h(d);
    int sum = 0;
    for (int j = 0; j < kQK; ++j) {
      b[i].qs[j] = static_cast<int8_t>(std::round(x[j] * id));
      sum += b[i].qs[j];
    }
    b[i].s = f2h(static_cast<float>(sum) * d);
  }
}

}  // namespace tpinfer::cpu::ref
