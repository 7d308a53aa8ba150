// Scalar references for the K-quants Q2_K, Q3_K, Q4_K, Q5_K, Q6_K and Q8_K
// (256-value super-blocks of 16- or 32-value sub-blocks with their own scales;
// layouts in core/quant_blocks.h): dequantize, quantize with GGML's reference
// search for sub-block scales and mins, and the dot product with a Q8_K
// activation row.
//
// Float expressions in the quantizers keep the evaluation order of GGML's
// reference quantizers (left to right, float accumulation in element order), so
// that rounding decisions and hence the bytes written agree with files made by
// GGML tools.

#include <algorithm>
#include <cmath>
#include <cstring>
#include <type_traits>

#include "backend/cpu/quant_ref_internal.h"

namespace tpinfer::cpu::ref {
namespace {

// Round half to even, as GGML's nearest_int (valid for |x| < 2^22, which every
// caller guarantees by construction of its scale).
inline int nearest_int(float x) { return static_cast<int>(std::lrint(x)); }

// 6-bit scale and min j of a Q4_K / Q5_K block (layout in quant.h).
inline void k4_scale_min(const uint8_t* s, int j, int* sc, int* m) {
  if (j < 4) {
    *sc = s[j] & 63;
    *m = s[j + 4] & 63;
  } else {
    *sc = (s[j + 4] & 15) | ((s[j - 4] >> 6) << 4);
    *m = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
  }
}

inline void k4_pack_scale_min(uint8_t* s, int j, int sc, int m) {
  if (j < 4) {
    s[j] = static_cast<uint8_t>(sc);
    s[j + 4] = static_cast<uint8_t>(m);
  } else {
    s[j + 4] = static_cast<uint8_t>((sc & 15) | ((m & 15) << 4));
    s[j - 4] |= static_cast<uint8_t>((sc >> 4) << 6);
    s[j] |= static_cast<uint8_t>((m >> 4) << 6);
  }
}

// Signed 6-bit scale j of a Q3_K block, minus its offset 32.
inline int k3_scale(const uint8_t* s, int j) {
  const int low = j < 8 ? (s[j] & 15) : (s[j - 8] >> 4);
  const int high = (s[8 + j % 4] >> (2 * (j / 4))) & 3;
  return (low | (high << 4)) - 32;
}

// 2-bit field of element e (0..255) in the qs array shared by Q2_K and Q3_K.
inline int k2_bits(const uint8_t* qs, int e) {
  const int h = e / 128, k = e % 128;
  return (qs[32 * h + k % 32] >> (2 * (k / 32))) & 3;
}

inline void k2_pack(uint8_t* qs, const uint8_t* L) {
  for (int h = 0; h < 2; ++h) {
    for (int l = 0; l < 32; ++l) {
      const uint8_t* q = L + 128 * h + l;
      qs[32 * h + l] = static_cast<uint8_t>(q[0] | (q[32] << 2) | (q[64] << 4) | (q[96] << 6));
    }
  }
}

// Element e of a Q6_K block as an unsigned 6-bit value (layout in quant.h).
inline int q6_value(const BlockQ6_K& b, int e) {
  const int h = e / 128, k = e % 128, l = k % 32, g = k / 32;
  const uint8_t lbyte = b.ql[64 * h + l + 32 * (g & 1)];
  const int low = g < 2 ? (lbyte & 15) : (lbyte >> 4);
  const int high = (b.qh[32 * h + l] >> (2 * g)) & 3;
  return low | (high << 4);
}

// Best symmetric scale for n values on the signed grid [-nmax, nmax): tries the
// plain max-based scale and 18 neighbours, each refined by weighted least squares
// (weights x^2), and keeps the one with the largest sum(w*x*l)^2 / sum(w*l^2)
// (the least-squares error is minimal there). L gets the levels offset by nmax.
float symmetric_scale_search(const float* x, int n, int nmax, int8_t* L) {
  float vmax, amax;
  signed_absmax(x, n, &vmax, &amax);
  if (amax < 1e-15f) {
    std::fill(L, L + n, int8_t{0});
    return 0.0f;
  }
  auto evaluate = [&](float iscale, float* sumlx, float* suml2, bool store) {
    *sumlx = 0.0f;
    *suml2 = 0.0f;
    for (int i = 0; i < n; ++i) {
      const int l = std::clamp(nearest_int(iscale * x[i]), -nmax, nmax - 1);
      const float w = x[i] * x[i];
      *sumlx += w * x[i] * static_cast<float>(l);
      *suml2 += w * static_cast<float>(l) * static_cast<float>(l);
      if (store) L[i] = static_cast<int8_t>(l + nmax);
    }
  };
  float sumlx, suml2;
  evaluate(static_cast<float>(-nmax) / vmax, &sumlx, &suml2, true);
  float scale = suml2 != 0.0f ? sumlx / suml2 : 0.0f;
  float best = scale * sumlx;
  for (int step = -9; step <= 9; ++step) {
    if (step == 0) continue;
    const float iscale = -(static_cast<float>(nmax) + 0.1f * static_cast<float>(step)) / vmax;
    evaluate(iscale, &sumlx, &suml2, false);
    if (suml2 > 0.0f && sumlx * sumlx > best * suml2) {
      evaluate(iscale, &sumlx, &suml2, true);
      scale = sumlx / suml2;
      best = scale * sumlx;
    }
  }
  return scale;
}

// Q3_K's sub-block search: start from the max-based levels on [-nmax, nmax), then
// coordinate descent: move single levels to their least-squares optimum (weights
// x^2) while that lowers the error, at most 5 sweeps. L gets levels + nmax.
float q3_scale_search(const float* x, int n, int nmax, int8_t* L) {
  float vmax, amax;
  signed_absmax(x, n, &vmax, &amax);
  if (amax < 1e-15f) {
    std::fill(L, L + n, int8_t{0});
    return 0.0f;
  }
  const float iscale = static_cast<float>(-nmax) / vmax;
  float sumlx = 0.0f, suml2 = 0.0f;
  for (int i = 0; i < n; ++i) {
    const int l = std::clamp(nearest_int(iscale * x[i]), -nmax, nmax - 1);
    L[i] = static_cast<int8_t>(l);
    const float w = x[i] * x[i];
    sumlx += w * x[i] * static_cast<float>(l);
    suml2 += w * static_cast<float>(l) * static_cast<float>(l);
  }
  for (int sweep = 0; sweep < 5; ++sweep) {
    int changed = 0;
    for (int i = 0; i < n; ++i) {
      const float w = x[i] * x[i];
      float slx = sumlx - w * x[i] * static_cast<float>(L[i]);
      if (slx <= 0.0f) continue;
      float sl2 = suml2 - w * static_cast<float>(L[i]) * static_cast<float>(L[i]);
      const int l = std::clamp(nearest_int(x[i] * sl2 / slx), -nmax, nmax - 1);
      if (l == L[i]) continue;
      slx += w * x[i] * static_cast<float>(l);
      sl2 += w * static_cast<float>(l) * static_cast<float>(l);
      if (sl2 > 0.0f && slx * slx * suml2 > sumlx * sumlx * sl2) {
        L[i] = static_cast<int8_t>(l);
        sumlx = slx;
        suml2 = sl2;
        ++changed;
      }
    }
    if (changed == 0) break;
  }
  for (int i = 0; i < n; ++i) L[i] = static_cast<int8_t>(L[i] + nmax);
  return suml2 > 0.0f ? sumlx / suml2 : 0.0f;
}

// Affine grid search for the K formats with mins: values ~ scale * l - min_out,
// l in [0, nmax]. Starts from the min/max grid, then for nstep+1 candidate
// inverse scales (rmin + rdelta*k + nmax) / range solves the weighted least
// squares for scale and offset (offset capped at 0, i.e. min >= 0) and keeps the
// candidate with the smallest weighted error (squared, or absolute if use_mad).
// Returns the scale; *min_out gets the (non-negative) min.
float affine_scale_search(const float* x, const float* weights, int n, int nmax, uint8_t* L, float* min_out, float rmin,
                          float rdelta, int nstep, bool use_mad) {
  float lo = x[0], hi = x[0];
  float sum_w = weights[0];
  float sum_x = sum_w * x[0];
  for (int i = 1; i < n; ++i) {
    lo = std::min(lo, x[i]);
    hi = std::max(hi, x[i]);
    sum_w += weights[i];
    sum_x += weights[i] * x[i];
  }
  if (lo > 0.0f) lo = 0.0f;
  if (hi == lo) {
    std::fill(L, L + n, uint8_t{0});
    *min_out = -lo;
    return 0.0f;
  }
  auto error_of = [&](float scale, float offset, const uint8_t* levels) {
    float err = 0.0f;
    for (int i = 0; i < n; ++i) {
      float diff = scale * static_cast<float>(levels[i]) + offset - x[i];
      diff = use_mad ? std::fabs(diff) : diff * diff;
      err += weights[i] * diff;
    }
    return err;
  };
  float iscale = static_cast<float>(nmax) / (hi - lo);
  float scale = 1.0f / iscale;
  for (int i = 0; i < n; ++i) {
    L[i] = static_cast<uint8_t>(std::clamp(nearest_int(iscale * (x[i] - lo)), 0, nmax));
  }
  float best_error = error_of(scale, lo, L);
  float offset = lo;
  uint8_t cand[kQKK];
  for (int k = 0; k <= nstep && nstep >= 1; ++k) {
    iscale = (rmin + rdelta * static_cast<float>(k) + static_cast<float>(nmax)) / (hi - lo);
    float sum_l = 0.0f, sum_l2 = 0.0f, sum_xl = 0.0f;
    for (int i = 0; i < n; ++i) {
      const int l = std::clamp(nearest_int(iscale * (x[i] - lo)), 0, nmax);
      cand[i] = static_cast<uint8_t>(l);
      const float w = weights[i];
      sum_l += w * static_cast<float>(l);
      sum_l2 += w * static_cast<float>(l) * static_cast<float>(l);
      sum_xl += w * static_cast<float>(l) * x[i];
    }
    const float det = sum_w * sum_l2 - sum_l * sum_l;
    if (det <= 0.0f) continue;
    float this_scale = (sum_w * sum_xl - sum_x * sum_l) / det;
    float this_offset = (sum_l2 * sum_x - sum_l * sum_xl) / det;
    if (this_offset > 0.0f) {
      this_offset = 0.0f;
      this_scale = sum_xl / sum_l2;
    }
    const float err = error_of(this_scale, this_offset, cand);
    if (err < best_error) {
      std::copy(cand, cand + n, L);
      best_error = err;
      scale = this_scale;
      offset = this_offset;
    }
  }
  *min_out = -offset;
  return scale;
}

// Q4_K and Q5_K share the scale/min search and packing; only nmax (15 / 31) and
// the search parameters differ.
template <int kNmax>
void k_affine_quantize(const float* x, uint8_t* L, uint16_t* d_out, uint16_t* dmin_out, uint8_t* packed) {
  float scales[8], mins[8], weights[32];
  float max_scale = 0.0f, max_min = 0.0f;
  for (int j = 0; j < 8; ++j) {
    const float* xs = x + 32 * j;
    float sum_x2 = 0.0f;
    for (int l = 0; l < 32; ++l) sum_x2 += xs[l] * xs[l];
    const float av_x = std::sqrt(sum_x2 / 32.0f);
    for (int l = 0; l < 32; ++l) weights[l] = av_x + std::fabs(xs[l]);
    if (kNmax == 15) {
      scales[j] = affine_scale_search(xs, weights, 32, kNmax, L + 32 * j, &mins[j], -1.0f, 0.1f, 20, false);
    } else {
      scales[j] = affine_scale_search(xs, weights, 32, kNmax, L + 32 * j, &mins[j], -0.5f, 0.1f, 15, false);
    }
    max_scale = std::max(max_scale, scales[j]);
    max_min = std::max(max_min, mins[j]);
  }
  const float inv_scale = max_scale > 0.0f ? 63.0f / max_scale : 0.0f;
  const float inv_min = max_min > 0.0f ? 63.0f / max_min : 0.0f;
  std::memset(packed, 0, 12);
  for (int j = 0; j < 8; ++j) {
    const int ls = std::min(63, nearest_int(inv_scale * scales[j]) & 255);
    const int lm = std::min(63, nearest_int(inv_min * mins[j]) & 255);
    k4_pack_scale_min(packed, j, ls, lm);
  }
  *d_out = f2h(max_scale / 63.0f);
  *dmin_out = f2h(max_min / 63.0f);
  for (int j = 0; j < 8; ++j) {
    int sc, m;
    k4_scale_min(packed, j, &sc, &m);
    const float d = h2f(*d_out) * static_cast<float>(sc);
    if (d == 0.0f) continue;
    const float dm = h2f(*dmin_out) * static_cast<float>(m);
    for (int l = 0; l < 32; ++l) {
      L[32 * j + l] = static_cast<uint8_t>(std::clamp(nearest_int((x[32 * j + l] + dm) / d), 0, kNmax));
    }
  }
}

// Sum over the 16-value sub-block j of a Q8_K block of q[e] * a[e].
inline int qdot16(const int* q, const int8_t* a) {
  int s = 0;
  for (int l = 0; l < 16; ++l) s += q[l] * a[l];
  return s;
}

}  // namespace

// ---------------------------------------------------------------- dequantize

void deq_q2_k(const void* src, float* dst, int64_t n) {
  const BlockQ2_K* b = static_cast<const BlockQ2_K*>(src);
  for (int64_t i = 0; i < n / kQKK; ++i, dst += kQKK) {
    const float d = h2f(b[i].d), dmin = h2f(b[i].dmin);
    for (int j = 0; j < 16; ++j) {
      const float dl = d * static_cast<float>(b[i].scales[j] & 15);
      const float ml = dmin * static_cast<float>(b[i].scales[j] >> 4);
      for (int l = 0; l < 16; ++l) {
        const int e = 16 * j + l;
        dst[e] = dl * static_cast<float>(k2_bits(b[i].qs, e)) - ml;
      }
    }
  }
}

void deq_q3_k(const void* src, float* dst, int64_t n) {
  const BlockQ3_K* b = static_cast<const BlockQ3_K*>(src);
  for (int64_t i = 0; i < n / kQKK; ++i, dst += kQKK) {
    const float d = h2f(b[i].d);
    for (int j = 0; j < 16; ++j) {
      const float dl = d * static_cast<float>(k3_scale(b[i].scales, j));
      for (int l = 0; l < 16; ++l) {
        const int e = 16 * j + l;
        const bool high = (b[i].hmask[e % 32] >> (e / 32)) & 1;
        dst[e] = dl * static_cast<float>(k2_bits(b[i].qs, e) - (high ? 0 : 4));
      }
    }
  }
}

void deq_q4_k(const void* src, float* dst, int64_t n) {
  const BlockQ4_K* b = static_cast<const BlockQ4_K*>(src);
  for (int64_t i = 0; i < n / kQKK; ++i, dst += kQKK) {
    const float d = h2f(b[i].d), dmin = h2f(b[i].dmin);
    for (int j = 0; j < 8; ++j) {
      int sc, m;
      k4_scale_min(b[i].scales, j, &sc, &m);
      const float dl = d * static_cast<float>(sc), ml = dmin * static_cast<float>(m);
      const uint8_t* q = b[i].qs + 32 * (j / 2);
      const int shift = (j % 2) * 4;
      for (int l = 0; l < 32; ++l) dst[32 * j + l] = dl * static_cast<float>((q[l] >> shift) & 15) - ml;
    }
  }
}

void deq_q5_k(const void* src, float* dst, int64_t n) {
  const BlockQ5_K* b = static_cast<const BlockQ5_K*>(src);
  for (int64_t i = 0; i < n / kQKK; ++i, dst += kQKK) {
    const float d = h2f(b[i].d), dmin = h2f(b[i].dmin);
    for (int j = 0; j < 8; ++j) {
      int sc, m;
      k4_scale_min(b[i].scales, j, &sc, &m);
      const float dl = d * static_cast<float>(sc), ml = dmin * static_cast<float>(m);
      const uint8_t* q = b[i].qs + 32 * (j / 2);
      const int shift = (j % 2) * 4;
      for (int l = 0; l < 32; ++l) {
        const int v = ((q[l] >> shift) & 15) | (((b[i].qh[l] >> j) & 1) << 4);
        dst[32 * j + l] = dl * static_cast<float>(v) - ml;
      }
    }
  }
}

void deq_q6_k(const void* src, float* dst, int64_t n) {
  const BlockQ6_K* b = static_cast<const BlockQ6_K*>(src);
  for (int64_t i = 0; i < n / kQKK; ++i, dst += kQKK) {
    const float d = h2f(b[i].d);
    for (int j = 0; j < 16; ++j) {
      const float dl = d * static_cast<float>(b[i].scales[j]);
      for (int l = 0; l < 16; ++l) dst[16 * j + l] = dl * static_cast<float>(q6_value(b[i], 16 * j + l) - 32);
    }
  }
}

void deq_q8_k(const void* src, float* dst, int64_t n) {
  const BlockQ8_K* b = static_cast<const BlockQ8_K*>(src);
  for (int64_t i = 0; i < n / kQKK; ++i, dst += kQKK) {
    for (int j = 0; j < kQKK; ++j) dst[j] = b[i].d * static_cast<float>(b[i].qs[j]);
  }
}

// ---------------------------------------------------------------- quantize

void q_q2_k(const float* x, void* dst, int64_t n) {
  BlockQ2_K* b = static_cast<BlockQ2_K*>(dst);
  for (int64_t i = 0; i < n / kQKK; ++i, x += kQKK) {
    uint8_t L[kQKK];
    float scales[16], mins[16], weights[16];
    float max_scale = 0.0f, max_min = 0.0f;
    for (int j = 0; j < 16; ++j) {
      for (int l = 0; l < 16; ++l) weights[l] = std::fabs(x[16 * j + l]);
      scales[j] = affine_scale_search(x + 16 * j, weights, 16, 3, L + 16 * j, &mins[j], -0.5f, 0.1f, 15, true);
      max_scale = std::max(max_scale, scales[j]);
      max_min = std::max(max_min, mins[j]);
    }
    // Scales and mins as 4-bit multiples of d and dmin.
    if (max_scale > 0.0f) {
      const float iscale = 15.0f / max_scale;
      for (int j = 0; j < 16; ++j) b[i].scales[j] = static_cast<uint8_t>(nearest_int(iscale * scales[j]));
      b[i].d = f2h(max_scale / 15.0f);
    } else {
      std::memset(b[i].scales, 0, 16);
      b[i].d = f2h(0.0f);
    }
    if (max_min > 0.0f) {
      const float iscale = 15.0f / max_min;
      for (int j = 0; j < 16; ++j) b[i].scales[j] |= static_cast<uint8_t>(nearest_int(iscale * mins[j]) << 4);
      b[i].dmin = f2h(max_min / 15.0f);
    } else {
      b[i].dmin = f2h(0.0f);
    }
    // Requantize against the scales actually stored.
    for (int j = 0; j < 16; ++j) {
      const float d = h2f(b[i].d) * static_cast<float>(b[i].scales[j] & 15);
      if (d == 0.0f) continue;
      const float dm = h2f(b[i].dmin) * static_cast<float>(b[i].scales[j] >> 4);
      for (int l = 0; l < 16; ++l) {
        L[16 * j + l] = static_cast<uint8_t>(std::clamp(nearest_int((x[16 * j + l] + dm) / d), 0, 3));
      }
    }
    k2_pack(b[i].qs, L);
  }
}

void q_q3_k(const float* x, void* dst, int64_t n) {
  BlockQ3_K* b = static_cast<BlockQ3_K*>(dst);
  for (int64_t i = 0; i < n / kQKK; ++i, x += kQKK) {
    int8_t L[kQKK];
    float scales[16];
    float max_scale = 0.0f, amax = 0.0f;
    for (int j = 0; j < 16; ++j) {
      scales[j] = q3_scale_search(x + 16 * j, 16, 4, L + 16 * j);
      if (std::fabs(scales[j]) > amax) {
        amax = std::fabs(scales[j]);
        max_scale = scales[j];
      }
    }
    std::memset(b[i].scales, 0, 12);
    if (max_scale != 0.0f) {
      const float iscale = -32.0f / max_scale;
      for (int j = 0; j < 16; ++j) {
        const int l = std::clamp(static_cast<int>(static_cast<int8_t>(nearest_int(iscale * scales[j]))), -32, 31) + 32;
        if (j < 8) {
          b[i].scales[j] = static_cast<uint8_t>(l & 15);
        } else {
          b[i].scales[j - 8] |= static_cast<uint8_t>((l & 15) << 4);
        }
        b[i].scales[8 + j % 4] |= static_cast<uint8_t>((l >> 4) << (2 * (j / 4)));
      }
      b[i].d = f2h(1.0f / iscale);
    } else {
      b[i].d = f2h(0.0f);
    }
    for (int j = 0; j < 16; ++j) {
      const float d = h2f(b[i].d) * static_cast<float>(k3_scale(b[i].scales, j));
      if (d == 0.0f) continue;
      for (int l = 0; l < 16; ++l) {
        L[16 * j + l] = static_cast<int8_t>(std::clamp(nearest_int(x[16 * j + l] / d), -4, 3) + 4);
      }
    }
    // Level 0..7: bit 2 goes to hmask (element e: byte e % 32, bit e / 32).
    std::memset(b[i].hmask, 0, 32);
    uint8_t low[kQKK];
    for (int e = 0; e < kQKK; ++e) {
      int l = L[e];
      if (l > 3) {
        b[i].hmask[e % 32] |= static_cast<uint8_t>(1 << (e / 32));
        l -= 4;
      }
      low[e] = static_cast<uint8_t>(l);
    }
    k2_pack(b[i].qs, low);
  }
}

void q_q4_k(const float* x, void* dst, int64_t n) {
  BlockQ4_K* b = static_cast<BlockQ4_K*>(dst);
  for (int64_t i = 0; i < n / kQKK; ++i, x += kQKK) {
    uint8_t L[kQKK];
    k_affine_quantize<15>(x, L, &b[i].d, &b[i].dmin, b[i].scales);
    for (int c = 0; c < 4; ++c) {
      for (int l = 0; l < 32; ++l) {
        b[i].qs[32 * c + l] = static_cast<uint8_t>(L[64 * c + l] | (L[64 * c + 32 + l] << 4));
      }
    }
  }
}

void q_q5_k(const float* x, void* dst, int64_t n) {
  BlockQ5_K* b = static_cast<BlockQ5_K*>(dst);
  for (int64_t i = 0; i < n / kQKK; ++i, x += kQKK) {
    uint8_t L[kQKK];
    k_affine_quantize<31>(x, L, &b[i].d, &b[i].dmin, b[i].scales);
    std::memset(b[i].qh, 0, 32);
    for (int c = 0; c < 4; ++c) {
      for (int l = 0; l < 32; ++l) {
        const int lo = L[64 * c + l], hi = L[64 * c + 32 + l];
        b[i].qs[32 * c + l] = static_cast<uint8_t>((lo & 15) | ((hi & 15) << 4));
        b[i].qh[l] |= static_cast<uint8_t>(((lo >> 4) << (2 * c)) | ((hi >> 4) << (2 * c + 1)));
      }
    }
  }
}

void q_q6_k(const float* x, void* dst, int64_t n) {
  BlockQ6_K* b = static_cast<BlockQ6_K*>(dst);
  for (int64_t i = 0; i < n / kQKK; ++i, x += kQKK) {
    int8_t L[kQKK];
    float scales[16];
    float max_scale = 0.0f, max_abs_scale = 0.0f;
    for (int j = 0; j < 16; ++j) {
      scales[j] = symmetric_scale_search(x + 16 * j, 16, 32, L + 16 * j);
      if (std::fabs(scales[j]) > max_abs_scale) {
        max_abs_scale = std::fabs(scales[j]);
        max_scale = scales[j];
      }
    }
    if (max_abs_scale < 1e-15f) {
      std::memset(&b[i], 0, sizeof(BlockQ6_K));
      continue;
    }
    const float iscale = -128.0f / max_scale;
    b[i].d = f2h(1.0f / iscale);
    for (int j = 0; j < 16; ++j) b[i].scales[j] = static_cast<int8_t>(std::min(127, nearest_int(iscale * scales[j])));
    for (int j = 0; j < 16; ++j) {
      const float d = h2f(b[i].d) * static_cast<float>(b[i].scales[j]);
      if (d == 0.0f) continue;
      for (int l = 0; l < 16; ++l) {
        L[16 * j + l] = static_cast<int8_t>(std::clamp(nearest_int(x[16 * j + l] / d), -32, 31) + 32);
      }
    }
    for (int h = 0; h < 2; ++h) {
      for (int l = 0; l < 32; ++l) {
        const int8_t* q = L + 128 * h + l;
        b[i].ql[64 * h + l] = static_cast<uint8_t>((q[0] & 15) | ((q[64] & 15) << 4));
        b[i].ql[64 * h + l + 32] = static_cast<uint8_t>((q[32] & 15) | ((q[96] & 15) << 4));
        b[i].qh[32 * h + l] =
            static_cast<uint8_t>((q[0] >> 4) | ((q[32] >> 4) << 2) | ((q[64] >> 4) << 4) | ((q[96] >> 4) << 6));
      }
    }
  }
}

void q_q8_k(const float* x, void* dst, int64_t n) {
  BlockQ8_K* b = static_cast<BlockQ8_K*>(dst);
  for (int64_t i = 0; i < n / kQKK; ++i, x += kQKK) {
    float vmax, amax;
    signed_absmax(x, kQKK, &vmax, &amax);
    if (amax == 0.0f) {
      std::memset(&b[i], 0, sizeof(BlockQ8_K));
      continue;
    }
    // The extreme value maps to -127 exactly; nothing can reach -128.
    const float iscale = -127.0f / vmax;
    for (int j = 0; j < kQKK; ++j) b[i].qs[j] = static_cast<int8_t>(std::min(127, nearest_int(iscale * x[j])));
    for (int j = 0; j < 16; ++j) {
      int sum = 0;
      for (int l = 0; l < 16; ++l) sum += b[i].qs[16 * j + l];
      b[i].bsums[j] = static_cast<int16_t>(sum);
    }
    b[i].d = 1.0f / iscale;
  }
}

// ---------------------------------------------------------------- dot products

double dot_q2_k(int64_t n, const void* w, const void* a) {
  const BlockQ2_K* x = static_cast<const BlockQ2_K*>(w);
  const BlockQ8_K* y = static_cast<const BlockQ8_K*>(a);
  double s = 0.0;
  for (int64_t i = 0; i < n / kQKK; ++i) {
    int q[kQKK];
    for (int e = 0; e < kQKK; ++e) q[e] = k2_bits(x[i].qs, e);
    int64_t sum_scaled = 0, sum_mins = 0;
    for (int j = 0; j < 16; ++j) {
      sum_scaled += (x[i].scales[j] & 15) * qdot16(q + 16 * j, y[i].qs + 16 * j);
      sum_mins += (x[i].scales[j] >> 4) * y[i].bsums[j];
    }
    s += static_cast<double>(y[i].d) *
         (static_cast<double>(h2f(x[i].d)) * sum_scaled - static_cast<double>(h2f(x[i].dmin)) * sum_mins);
  }
  return s;
}

double dot_q3_k(int64_t n, const void* w, const void* a) {
  const BlockQ3_K* x = static_cast<const BlockQ3_K*>(w);
  const BlockQ8_K* y = static_cast<const BlockQ8_K*>(a);
  double s = 0.0;
  for (int64_t i = 0; i < n / kQKK; ++i) {
    int q[kQKK];
    for (int e = 0; e < kQKK; ++e) {
      const bool high = (x[i].hmask[e % 32] >> (e / 32)) & 1;
      q[e] = k2_bits(x[i].qs, e) - (high ? 0 : 4);
    }
    int64_t sum = 0;
    for (int j = 0; j < 16; ++j) sum += k3_scale(x[i].scales, j) * qdot16(q + 16 * j, y[i].qs + 16 * j);
    s += static_cast<double>(y[i].d) * h2f(x[i].d) * static_cast<double>(sum);
  }
  return s;
}

template <bool kFiveBit>
double dot_q45_k(int64_t n, const void* w, const void* a) {
  using Block = std::conditional_t<kFiveBit, BlockQ5_K, BlockQ4_K>;
  const Block* x = static_cast<const Block*>(w);
  const BlockQ8_K* y = static_cast<const BlockQ8_K*>(a);
  double s = 0.0;
  for (int64_t i = 0; i < n / kQKK; ++i) {
    int64_t sum_scaled = 0, sum_mins = 0;
    for (int j = 0; j < 8; ++j) {
      int sc, m;
      k4_scale_min(x[i].scales, j, &sc, &m);
      const uint8_t* qs = x[i].qs + 32 * (j / 2);
      int q[32];
      for (int l = 0; l < 32; ++l) {
        q[l] = (qs[l] >> (4 * (j % 2))) & 15;
        if constexpr (kFiveBit) q[l] |= ((x[i].qh[l] >> j) & 1) << 4;
      }
      sum_scaled += sc * (qdot16(q, y[i].qs + 32 * j) + qdot16(q + 16, y[i].qs + 32 * j + 16));
      sum_mins += m * (y[i].bsums[2 * j] + y[i].bsums[2 * j + 1]);
    }
    s += static_cast<double>(y[i].d) *
         (static_cast<double>(h2f(x[i].d)) * sum_scaled - static_cast<double>(h2f(x[i].dmin)) * sum_mins);
  }
  return s;
}

double dot_q6_k(int64_t n, const void* w, const void* a) {
  const BlockQ6_K* x = static_cast<const BlockQ6_K*>(w);
  const BlockQ8_K* y = static_cast<const BlockQ8_K*>(a);
  double s = 0.0;
  for (int64_t i = 0; i < n / kQKK; ++i) {
    int q[kQKK];
    for (int e = 0; e < kQKK; ++e) q[e] = q6_value(x[i], e) - 32;
    int64_t sum = 0;
    for (int j = 0; j < 16; ++j) sum += x[i].scales[j] * qdot16(q + 16 * j, y[i].qs + 16 * j);
    s += static_cast<double>(y[i].d) * h2f(x[i].d) * static_cast<double>(sum);
  }
  return s;
}

double dot_q8_k(int64_t n, const void* w, const void* a) {
  const BlockQ8_K* x = static_cast<const BlockQ8_K*>(w);
  const BlockQ8_K* y = static_cast<const BlockQ8_K*>(a);
  double s = 0.0;
  for (int64_t i = 0; i < n / kQKK; ++i) {
    int64_t sum = 0;
    for (int e = 0; e < kQKK; ++e) sum += x[i].qs[e] * y[i].qs[e];
    s += static_cast<double>(x[i].d) * y[i].d * static_cast<double>(sum);
  }
  return s;
}

template double dot_q45_k<false>(int64_t n, const void* w, const void* a);
template double dot_q45_k<true>(int64_t n, const void* w, const void* a);

}  // namespace tpinfer::cpu::ref
