// Scalar references for the 32-value block formats Q4_0, Q4_1, Q5_0, Q5_1, Q8_0
// and Q8_1 (layouts in core/quant_blocks.h): dequantize, quantize with GGML's
// reference rounding, and the dot product with a Q8_0 activation row.

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstring>

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

// Shared by Q5_0 / Q5_1: stores 5-bit values q[0..31] into qs and qh.
inline void pack5(const int* q, uint8_t* qs, uint8_t* qh_bytes) {
  uint32_t qh = 0;
  for (int j = 0; j < 16; ++j) {
    qs[j] = static_cast<uint8_t>((q[j] & 15) | ((q[j + 16] & 15) << 4));
    qh |= static_cast<uint32_t>((q[j] >> 4) & 1) << j;
    qh |= static_cast<uint32_t>((q[j + 16] >> 4) & 1) << (j + 16);
  }
  std::memcpy(qh_bytes, &qh, 4);
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

inline void unpack5(const uint8_t* qs, const uint8_t* qh_bytes, int* q) {
  const uint32_t qh = load_u32(qh_bytes);
  for (int j = 0; j < 16; ++j) {
    q[j] = (qs[j] & 15) | static_cast<int>(((qh >> j) & 1) << 4);
    q[j + 16] = (qs[j] >> 4) | static_cast<int>(((qh >> (j + 16)) & 1) << 4);
  }
}

}  // namespace

// ---------------------------------------------------------------- dequantize

void deq_q4_0(const void* src, float* dst, int64_t n) {
  const BlockQ4_0* b = static_cast<const BlockQ4_0*>(src);
  for (int64_t i = 0; i < n / kQK; ++i, dst += kQK) {
    const float d = h2f(b[i].d);
    for (int j = 0; j < 16; ++j) {
      dst[j] = static_cast<float>((b[i].qs[j] & 15) - 8) * d;
      dst[j + 16] = static_cast<float>((b[i].qs[j] >> 4) - 8) * d;
    }
  }
}

void deq_q4_1(const void* src, float* dst, int64_t n) {
  const BlockQ4_1* b = static_cast<const BlockQ4_1*>(src);
  for (int64_t i = 0; i < n / kQK; ++i, dst += kQK) {
    const float d = h2f(b[i].d), m = h2f(b[i].m);
    for (int j = 0; j < 16; ++j) {
      dst[j] = static_cast<float>(b[i].qs[j] & 15) * d + m;
      dst[j + 16] = static_cast<float>(b[i].qs[j] >> 4) * d + m;
    }
  }
}

void deq_q5_0(const void* src, float* dst, int64_t n) {
  const BlockQ5_0* b = static_cast<const BlockQ5_0*>(src);
  for (int64_t i = 0; i < n / kQK; ++i, dst += kQK) {
    const float d = h2f(b[i].d);
    const uint32_t qh = load_u32(b[i].qh);
    for (int j = 0; j < 16; ++j) {
      const int lo = (b[i].qs[j] & 15) | static_cast<int>(((qh >> j) & 1) << 4);
      const int hi = (b[i].qs[j] >> 4) | static_cast<int>(((qh >> (j + 16)) & 1) << 4);
      dst[j] = static_cast<float>(lo - 16) * d;
      dst[j + 16] = static_cast<float>(hi - 16) * d;
    }
  }
}

void deq_q5_1(const void* src, float* dst, int64_t n) {
  const BlockQ5_1* b = static_cast<const BlockQ5_1*>(src);
  for (int64_t i = 0; i < n / kQK; ++i, dst += kQK) {
    const float d = h2f(b[i].d), m = h2f(b[i].m);
    const uint32_t qh = load_u32(b[i].qh);
    for (int j = 0; j < 16; ++j) {
      const int lo = (b[i].qs[j] & 15) | static_cast<int>(((qh >> j) & 1) << 4);
      const int hi = (b[i].qs[j] >> 4) | static_cast<int>(((qh >> (j + 16)) & 1) << 4);
      dst[j] = static_cast<float>(lo) * d + m;
      dst[j + 16] = static_cast<float>(hi) * d + m;
    }
  }
}

void deq_q8_0(const void* src, float* dst, int64_t n) {
  const BlockQ8_0* b = static_cast<const BlockQ8_0*>(src);
  for (int64_t i = 0; i < n / kQK; ++i, dst += kQK) {
    const float d = h2f(b[i].d);
    for (int j = 0; j < kQK; ++j) dst[j] = static_cast<float>(b[i].qs[j]) * d;
  }
}

void deq_q8_1(const void* src, float* dst, int64_t n) {
  const BlockQ8_1* b = static_cast<const BlockQ8_1*>(src);
  for (int64_t i = 0; i < n / kQK; ++i, dst += kQK) {
    const float d = h2f(b[i].d);
    for (int j = 0; j < kQK; ++j) dst[j] = static_cast<float>(b[i].qs[j]) * d;
  }
}

// ---------------------------------------------------------------- quantize

void q_q4_0(const float* x, void* dst, int64_t n) {
  BlockQ4_0* b = static_cast<BlockQ4_0*>(dst);
  for (int64_t i = 0; i < n / kQK; ++i, x += kQK) {
    float vmax, amax;
    signed_absmax(x, kQK, &vmax, &amax);
    // The extreme value maps to -8, the one level without a positive twin.
    const float d = vmax / -8.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    b[i].d = f2h(d);
    for (int j = 0; j < 16; ++j) {
      const int lo = std::min(15, static_cast<int>(x[j] * id + 8.5f));
      const int hi = std::min(15, static_cast<int>(x[j + 16] * id + 8.5f));
      b[i].qs[j] = static_cast<uint8_t>(lo | (hi << 4));
    }
  }
}

void q_q4_1(const float* x, void* dst, int64_t n) {
  BlockQ4_1* b = static_cast<BlockQ4_1*>(dst);
  for (int64_t i = 0; i < n / kQK; ++i, x += kQK) {
    float lo, hi;
    minmax(x, kQK, &lo, &hi);
    const float d = (hi - lo) / 15.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    b[i].d = f2h(d);
    b[i].m = f2h(lo);
    for (int j = 0; j < 16; ++j) {
      const int q0 = std::min(15, static_cast<int>((x[j] - lo) * id + 0.5f));
      const int q1 = std::min(15, static_cast<int>((x[j + 16] - lo) * id + 0.5f));
      b[i].qs[j] = static_cast<uint8_t>(q0 | (q1 << 4));
    }
  }
}

void q_q5_0(const float* x, void* dst, int64_t n) {
  BlockQ5_0* b = static_cast<BlockQ5_0*>(dst);
  for (int64_t i = 0; i < n / kQK; ++i, x += kQK) {
    float vmax, amax;
    signed_absmax(x, kQK, &vmax, &amax);
    const float d = vmax / -16.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    b[i].d = f2h(d);
    int q[kQK];
    for (int j = 0; j < kQK; ++j) q[j] = std::min(31, static_cast<int>(x[j] * id + 16.5f));
    pack5(q, b[i].qs, b[i].qh);
  }
}

void q_q5_1(const float* x, void* dst, int64_t n) {
  BlockQ5_1* b = static_cast<BlockQ5_1*>(dst);
  for (int64_t i = 0; i < n / kQK; ++i, x += kQK) {
    float lo, hi;
    minmax(x, kQK, &lo, &hi);
    const float d = (hi - lo) / 31.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    b[i].d = f2h(d);
    b[i].m = f2h(lo);
    int q[kQK];
    for (int j = 0; j < kQK; ++j) q[j] = std::min(31, static_cast<int>((x[j] - lo) * id + 0.5f));
    pack5(q, b[i].qs, b[i].qh);
  }
}

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

// ---------------------------------------------------------------- dot products

double dot_q4_0(int64_t n, const void* w, const void* a) {
  const BlockQ4_0* x = static_cast<const BlockQ4_0*>(w);
  const BlockQ8_0* y = static_cast<const BlockQ8_0*>(a);
  double s = 0.0;
  for (int64_t i = 0; i < n / kQK; ++i) {
    int q[kQK];
    for (int j = 0; j < 16; ++j) {
      q[j] = (x[i].qs[j] & 15) - 8;
      q[j + 16] = (x[i].qs[j] >> 4) - 8;
    }
    s += static_cast<double>(h2f(x[i].d)) * h2f(y[i].d) * qdot32(q, y[i].qs);
  }
  return s;
}

double dot_q4_1(int64_t n, const void* w, const void* a) {
  const BlockQ4_1* x = static_cast<const BlockQ4_1*>(w);
  const BlockQ8_0* y = static_cast<const BlockQ8_0*>(a);
  double s = 0.0;
  for (int64_t i = 0; i < n / kQK; ++i) {
    int q[kQK];
    for (int j = 0; j < 16; ++j) {
      q[j] = x[i].qs[j] & 15;
      q[j + 16] = x[i].qs[j] >> 4;
    }
    const double da = h2f(y[i].d);
    s += static_cast<double>(h2f(x[i].d)) * da * qdot32(q, y[i].qs) +
         static_cast<double>(h2f(x[i].m)) * da * qsum32(y[i].qs);
  }
  return s;
}

double dot_q5_0(int64_t n, const void* w, const void* a) {
  const BlockQ5_0* x = static_cast<const BlockQ5_0*>(w);
  const BlockQ8_0* y = static_cast<const BlockQ8_0*>(a);
  double s = 0.0;
  for (int64_t i = 0; i < n / kQK; ++i) {
    int q[kQK];
    unpack5(x[i].qs, x[i].qh, q);
    for (int& v : q) v -= 16;
    s += static_cast<double>(h2f(x[i].d)) * h2f(y[i].d) * qdot32(q, y[i].qs);
  }
  return s;
}

double dot_q5_1(int64_t n, const void* w, const void* a) {
  const BlockQ5_1* x = static_cast<const BlockQ5_1*>(w);
  const BlockQ8_0* y = static_cast<const BlockQ8_0*>(a);
  double s = 0.0;
  for (int64_t i = 0; i < n / kQK; ++i) {
    int q[kQK];
    unpack5(x[i].qs, x[i].qh, q);
    const double da = h2f(y[i].d);
    s += static_cast<double>(h2f(x[i].d)) * da * qdot32(q, y[i].qs) +
         static_cast<double>(h2f(x[i].m)) * da * qsum32(y[i].qs);
  }
  return s;
}

template <typename Block>
double dot_q8_like(int64_t n, const void* w, const void* a) {
  const Block* x = static_cast<const Block*>(w);
  const BlockQ8_0* y = static_cast<const BlockQ8_0*>(a);
  double s = 0.0;
  for (int64_t i = 0; i < n / kQK; ++i) {
    int q[kQK];
    for (int j = 0; j < kQK; ++j) q[j] = x[i].qs[j];
    s += static_cast<double>(h2f(x[i].d)) * h2f(y[i].d) * qdot32(q, y[i].qs);
  }
  return s;
}

template double dot_q8_like<BlockQ8_0>(int64_t n, const void* w, const void* a);
template double dot_q8_like<BlockQ8_1>(int64_t n, const void* w, const void* a);

}  // namespace tpinfer::cpu::ref
