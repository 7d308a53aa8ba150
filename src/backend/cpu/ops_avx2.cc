// AVX2 versions of the row operations of ops.h. Same rules as kernels_avx2.cc.

#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "backend/cpu/kernels.h"

#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c")

namespace tpinfer::cpu {
namespace {

// e^x as in ops_avx512.cc, with 2^n built in the exponent bits. x is clamped to
// [-87, 88] so that n stays in the normal range: below -87 the result is 0
// (true value < 1.7e-38), above 88 it saturates at e^88 (1.65e38). NaN stays NaN.
inline __m256 exp_ps(__m256 x) {
  const __m256 tiny = _mm256_cmp_ps(x, _mm256_set1_ps(-87.0f), _CMP_LT_OQ);
  x = _mm256_min_ps(_mm256_set1_ps(88.0f), _mm256_max_ps(_mm256_set1_ps(-87.0f), x));
  const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693145751953125f), x);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(1.42860682030941723212e-6f), r);
  __m256 p = _mm256_set1_ps(1.0f / 5040.0f);
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 720.0f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 120.0f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 24.0f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 6.0f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.5f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
  const __m256i pow2n = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
  return _mm256_andnot_ps(tiny, _mm256_mul_ps(p, _mm256_castsi256_ps(pow2n)));
}

inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

inline float hmax(__m256 v) {
  __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_max_ps(s, _mm_movehl_ps(s, s));
  s = _mm_max_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// The tails (n % 8 values) run through the same vector code on a padded copy.
inline __m256 load_tail(const float* p, int64_t left, float fill) {
  alignas(32) float buf[8];
  for (int k = 0; k < 8; ++k) buf[k] = k < left ? p[k] : fill;
  return _mm256_load_ps(buf);
}
inline void store_tail(float* p, int64_t left, __m256 v) {
  alignas(32) float buf[8];
  _mm256_store_ps(buf, v);
  for (int64_t k = 0; k < left; ++k) p[k] = buf[k];
}

void rms_norm_avx2(const float* x, const float* weight, int64_t n, float eps, float* out) {
  __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m256 a = _mm256_loadu_ps(x + i), b = _mm256_loadu_ps(x + i + 8);
    s0 = _mm256_fmadd_ps(a, a, s0);
    s1 = _mm256_fmadd_ps(b, b, s1);
  }
  for (; i + 8 <= n; i += 8) {
    const __m256 a = _mm256_loadu_ps(x + i);
    s0 = _mm256_fmadd_ps(a, a, s0);
  }
  if (i < n) {
    const __m256 a = load_tail(x + i, n - i, 0.0f);
    s1 = _mm256_fmadd_ps(a, a, s1);
  }
  const float sum = hsum(_mm256_add_ps(s0, s1));
  const __m256 scale = _mm256_set1_ps(1.0f / std::sqrt(sum / static_cast<float>(n) + eps));
  for (i = 0; i + 8 <= n; i += 8) {
    __m256 v = _mm256_mul_ps(_mm256_loadu_ps(x + i), scale);
    if (weight) v = _mm256_mul_ps(v, _mm256_loadu_ps(weight + i));
    _mm256_storeu_ps(out + i, v);
  }
  if (i < n) {
    __m256 v = _mm256_mul_ps(load_tail(x + i, n - i, 0.0f), scale);
    if (weight) v = _mm256_mul_ps(v, load_tail(weight + i, n - i, 0.0f));
    store_tail(out + i, n - i, v);
  }
}

void softmax_avx2(const float* x, int64_t n, float* out) {
  const float neg_inf = -INFINITY;
  __m256 mx = _mm256_set1_ps(neg_inf);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) mx = _mm256_max_ps(mx, _mm256_loadu_ps(x + i));
  if (i < n) mx = _mm256_max_ps(mx, load_tail(x + i, n - i, neg_inf));
  const __m256 vmax = _mm256_set1_ps(hmax(mx));
  __m256 sum = _mm256_setzero_ps();
  for (i = 0; i + 8 <= n; i += 8) {
    const __m256 e = exp_ps(_mm256_sub_ps(_mm256_loadu_ps(x + i), vmax));
    sum = _mm256_add_ps(sum, e);
    _mm256_storeu_ps(out + i, e);
  }
  if (i < n) {
    // Padding with -inf gives e = 0 (exp_ps maps everything below -87 to 0).
    const __m256 e = exp_ps(_mm256_sub_ps(load_tail(x + i, n - i, neg_inf), vmax));
    sum = _mm256_add_ps(sum, e);
    store_tail(out + i, n - i, e);
  }
  const __m256 inv = _mm256_set1_ps(1.0f / hsum(sum));
  for (i = 0; i + 8 <= n; i += 8) _mm256_storeu_ps(out + i, _mm256_mul_ps(_mm256_loadu_ps(out + i), inv));
  for (; i < n; ++i) out[i] *= _mm256_cvtss_f32(inv);
}

inline __m256 silu_mul8(__m256 g, __m256 u) {
  const __m256 e = exp_ps(_mm256_sub_ps(_mm256_setzero_ps(), g));
  return _mm256_mul_ps(_mm256_div_ps(g, _mm256_add_ps(_mm256_set1_ps(1.0f), e)), u);
}

void silu_mul_avx2(const float* gate, const float* up, int64_t n, float* out) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(out + i, silu_mul8(_mm256_loadu_ps(gate + i), _mm256_loadu_ps(up + i)));
  if (i < n) store_tail(out + i, n - i, silu_mul8(load_tail(gate + i, n - i, 0.0f), load_tail(up + i, n - i, 0.0f)));
}

void add_avx2(const float* a, const float* b, int64_t n, float* out) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(out + i, _mm256_add_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i)));
  for (; i < n; ++i) out[i] = a[i] + b[i];
}

// Four dot products of 8-float chunks reduced at once: lane i of the result is
// the sum of the 8 lanes of a_i.
inline __m128 hsum4(__m256 a0, __m256 a1, __m256 a2, __m256 a3) {
  const __m256 h = _mm256_hadd_ps(_mm256_hadd_ps(a0, a1), _mm256_hadd_ps(a2, a3));
  return _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
}

// Keys in groups of four per query, so one reduction serves four scores. A
// last group of fewer keys repeats its last key and keeps only the valid lanes:
// every score is then computed by the very same operations wherever its key
// falls, so a query's result does not depend on which other queries (and
// context lengths) share its call.
void attn_scores_avx2(const float* const* q, int m, const float* k, int n, int64_t hd, float scale, float* s,
                      int64_t s_stride) {
  const int64_t hd8 = hd / 8 * 8;
  const __m128 vscale = _mm_set1_ps(scale);
  for (int i = 0; i < m; ++i) {
    const float* qi = q[i];
    float* si = s + i * s_stride;
    for (int j = 0; j < n; j += 4) {
      const float* kr[4];
      for (int u = 0; u < 4; ++u) kr[u] = k + std::min(j + u, n - 1) * hd;
      __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
      for (int64_t c = 0; c < hd8; c += 8) {
        const __m256 qv = _mm256_loadu_ps(qi + c);
        a0 = _mm256_fmadd_ps(qv, _mm256_loadu_ps(kr[0] + c), a0);
        a1 = _mm256_fmadd_ps(qv, _mm256_loadu_ps(kr[1] + c), a1);
        a2 = _mm256_fmadd_ps(qv, _mm256_loadu_ps(kr[2] + c), a2);
        a3 = _mm256_fmadd_ps(qv, _mm256_loadu_ps(kr[3] + c), a3);
      }
      __m128 r = hsum4(a0, a1, a2, a3);
      if (hd8 < hd) {
        alignas(16) float tail[4] = {0, 0, 0, 0};
        for (int u = 0; u < 4; ++u)
          for (int64_t c = hd8; c < hd; ++c) tail[u] += qi[c] * kr[u][c];
        r = _mm_add_ps(r, _mm_load_ps(tail));
      }
      r = _mm_mul_ps(r, vscale);
      if (j + 4 <= n) {
        _mm_storeu_ps(si + j, r);
      } else {
        alignas(16) float out[4];
        _mm_store_ps(out, r);
        for (int u = 0; j + u < n; ++u) si[j + u] = out[u];
      }
    }
  }
}

// Each query's output row is read and written once per call; the value rows
// (a KV block, in L1) are streamed once per query.
void attn_accumulate_avx2(const float* w, int64_t w_stride, int m, const float* v, int n, int64_t hd,
                          float* const* out) {
  const int64_t hd8 = hd / 8 * 8;
  for (int i = 0; i < m; ++i) {
    const float* wi = w + i * w_stride;
    float* oi = out[i];
    int64_t c = 0;
    // Four output chunks in registers at a time.
    for (; c + 32 <= hd8; c += 32) {
      __m256 o0 = _mm256_loadu_ps(oi + c), o1 = _mm256_loadu_ps(oi + c + 8);
      __m256 o2 = _mm256_loadu_ps(oi + c + 16), o3 = _mm256_loadu_ps(oi + c + 24);
      for (int j = 0; j < n; ++j) {
        const __m256 wj = _mm256_set1_ps(wi[j]);
        const float* vj = v + j * hd + c;
        o0 = _mm256_fmadd_ps(wj, _mm256_loadu_ps(vj), o0);
        o1 = _mm256_fmadd_ps(wj, _mm256_loadu_ps(vj + 8), o1);
        o2 = _mm256_fmadd_ps(wj, _mm256_loadu_ps(vj + 16), o2);
        o3 = _mm256_fmadd_ps(wj, _mm256_loadu_ps(vj + 24), o3);
      }
      _mm256_storeu_ps(oi + c, o0);
      _mm256_storeu_ps(oi + c + 8, o1);
      _mm256_storeu_ps(oi + c + 16, o2);
      _mm256_storeu_ps(oi + c + 24, o3);
    }
    for (; c < hd8; c += 8) {
      __m256 o = _mm256_loadu_ps(oi + c);
      for (int j = 0; j < n; ++j) o = _mm256_fmadd_ps(_mm256_set1_ps(wi[j]), _mm256_loadu_ps(v + j * hd + c), o);
      _mm256_storeu_ps(oi + c, o);
    }
    for (; c < hd; ++c) {
      float o = oi[c];
      for (int j = 0; j < n; ++j) o += wi[j] * v[j * hd + c];
      oi[c] = o;
    }
  }
}

}  // namespace
}  // namespace tpinfer::cpu

#pragma GCC pop_options

namespace tpinfer::cpu {

void fill_avx2_ops(OpKernels& ops) {
  ops.rms_norm = rms_norm_avx2;
  ops.softmax = softmax_avx2;
  ops.silu_mul = silu_mul_avx2;
  ops.add = add_avx2;
  // Also the AVX-512 level's: Zen 4 splits 512-bit FMAs into two 256-bit halves,
  // and these loops are bound by loads and reductions, not by vector width.
  ops.attn_scores = attn_scores_avx2;
  ops.attn_accumulate = attn_accumulate_avx2;
}

}  // namespace tpinfer::cpu
