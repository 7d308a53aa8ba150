// AVX2 kernels (with FMA and F16C). Same structure and rules as
// kernels_avx512.cc: internal to this file, reached only through the table that
// fill_avx2_kernels() fills, standard headers before the target pragmas, no
// floating-point contraction.
//
// Without VNNI, integer dots use vpmaddubsw (u8 x s8 -> s16 pairs) and vpmaddwd.
// vpmaddubsw saturates at 32767, so every use below bounds its pair sums:
// Q8_0 |w| <= 128 with activations in [-127, 127] (2*128*127 = 32512), nibbles
// <= 15, 5-bit values <= 31 and 6-bit values <= 63 (2*63*127 = 16002).

#include <immintrin.h>

#include <array>
#include <cstdint>
#include <cstring>

#include "backend/cpu/kernels.h"
#include "backend/cpu/quant.h"
#include "backend/cpu/repack.h"
#include "core/half.h"

#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c,bmi,bmi2")
#pragma GCC optimize("fp-contract=off")

namespace tpinfer::cpu {
namespace {

inline float load_f16(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return _cvtsh_ss(h);
}

inline float load_f32(const uint8_t* p) {
  float f;
  std::memcpy(&f, p, 4);
  return f;
}

inline uint32_t load_u32(const uint8_t* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

inline __m256i loadu256(const uint8_t* p) { return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)); }
inline __m128i loadu128(const uint8_t* p) { return _mm_loadu_si128(reinterpret_cast<const __m128i*>(p)); }

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

inline __m256 abs_ps(__m256 v) { return _mm256_andnot_ps(_mm256_set1_ps(-0.0f), v); }

// Prefetches the next tile's rows while this one is computed; see
// kernels_avx512.cc for why.
template <int R>
inline void prefetch_next_tile(const uint8_t* w, uint64_t ws, int64_t ib, int block_bytes) {
  const uint8_t* next = w + R * ws + static_cast<uint64_t>(ib) * R * static_cast<uint64_t>(block_bytes);
  for (int off = 0; off < R * block_bytes; off += 64) {
    _mm_prefetch(reinterpret_cast<const char*>(next + off), _MM_HINT_T0);
  }
}

// See kernels_avx512.cc: rows outer, tokens inner; GEMV uses the taller tile.
template <class K>
void gemm_tiles(int64_t n, const uint8_t* w, uint64_t ws, int64_t nr, const uint8_t* a, uint64_t as, int64_t nt,
                float* y, int64_t ys) {
  if (nt == 1) {
    constexpr int R = K::kGemvRows;
    int64_t r = 0;
    for (; r + R <= nr; r += R) K::template run<R, 1>(n, w + r * ws, ws, a, as, y + r, ys);
    for (; r < nr; ++r) K::template run<1, 1>(n, w + r * ws, ws, a, as, y + r, ys);
    return;
  }
  constexpr int R = K::kRows, T = K::kTokens;
  int64_t r = 0;
  for (; r + R <= nr; r += R) {
    int64_t t = 0;
    for (; t + T <= nt; t += T) K::template run<R, T>(n, w + r * ws, ws, a + t * as, as, y + t * ys + r, ys);
    for (; t < nt; ++t) K::template run<R, 1>(n, w + r * ws, ws, a + t * as, as, y + t * ys + r, ys);
  }
  for (; r < nr; ++r) {
    int64_t t = 0;
    for (; t + T <= nt; t += T) K::template run<1, T>(n, w + r * ws, ws, a + t * as, as, y + t * ys + r, ys);
    for (; t < nt; ++t) K::template run<1, 1>(n, w + r * ws, ws, a + t * as, as, y + t * ys + r, ys);
  }
}

// ------------------------------------------------------------ float weights

struct LoadF32 {
  static __m256 load(const uint8_t* p) { return _mm256_loadu_ps(reinterpret_cast<const float*>(p)); }
  static float scalar(const uint8_t* p, int64_t i) { return load_f32(p + 4 * i); }
  static constexpr int kBytes = 4;
};
struct LoadF16 {
  static __m256 load(const uint8_t* p) { return _mm256_cvtph_ps(loadu128(p)); }
  static float scalar(const uint8_t* p, int64_t i) { return load_f16(p + 2 * i); }
  static constexpr int kBytes = 2;
};
struct LoadBF16 {
  static __m256 load(const uint8_t* p) {
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(loadu128(p)), 16));
  }
  static float scalar(const uint8_t* p, int64_t i) {
    uint16_t h;
    std::memcpy(&h, p + 2 * i, 2);
    return bf16_to_f32(h);
  }
  static constexpr int kBytes = 2;
};

template <class L>
struct FloatKernel {
  static constexpr int kGemvRows = 4, kRows = 4, kTokens = 2;
  template <int R, int T>
  static void run(int64_t n, const uint8_t* w, uint64_t ws, const uint8_t* a, uint64_t as, float* y, int64_t ys) {
    __m256 acc[R][T];
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r)
#pragma GCC unroll 16
      for (int t = 0; t < T; ++t) acc[r][t] = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
      if (i % 16 == 0) prefetch_next_tile<R>(w, ws, i / 16, 16 * L::kBytes);
      __m256 av[T];
#pragma GCC unroll 16
      for (int t = 0; t < T; ++t) av[t] = _mm256_loadu_ps(reinterpret_cast<const float*>(a + t * as) + i);
#pragma GCC unroll 16
      for (int r = 0; r < R; ++r) {
        const __m256 wv = L::load(w + r * ws + i * L::kBytes);
#pragma GCC unroll 16
        for (int t = 0; t < T; ++t) acc[r][t] = _mm256_fmadd_ps(wv, av[t], acc[r][t]);
      }
    }
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r) {
#pragma GCC unroll 16
      for (int t = 0; t < T; ++t) {
        float s = hsum(acc[r][t]);
        const float* at = reinterpret_cast<const float*>(a + t * as);
        for (int64_t j = i; j < n; ++j) s += L::scalar(w + r * ws, j) * at[j];
        y[t * ys + r] = s;
      }
    }
  }
};

// ------------------------------------------------------------ Q8_0 / Q4_0 x Q8_0

// Per block and token, W::dot gives 8 int32 partial sums of q * a.
template <class W>
struct Q32Kernel {
  static constexpr int kGemvRows = 4, kRows = 2, kTokens = 2;
  template <int R, int T>
  static void run(int64_t n, const uint8_t* w, uint64_t ws, const uint8_t* a, uint64_t as, float* y, int64_t ys) {
    const int64_t nb = n / kQK;
    __m256 acc[R][T];
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r)
#pragma GCC unroll 16
      for (int t = 0; t < T; ++t) acc[r][t] = _mm256_setzero_ps();
    for (int64_t ib = 0; ib < nb; ++ib) {
      prefetch_next_tile<R>(w, ws, ib, W::kBlockBytes);
      __m256i av[T], corr[T];
      float da[T];
#pragma GCC unroll 16
      for (int t = 0; t < T; ++t) {
        const uint8_t* p = a + t * as + ib * sizeof(BlockQ8_0);
        da[t] = load_f16(p);
        av[t] = loadu256(p + 2);
        corr[t] = W::activation_correction(av[t]);
      }
#pragma GCC unroll 16
      for (int r = 0; r < R; ++r) {
        const uint8_t* p = w + r * ws + ib * W::kBlockBytes;
        const float dw = load_f16(p);
        const __m256i q = W::values(p + 2);
#pragma GCC unroll 16
        for (int t = 0; t < T; ++t) {
          acc[r][t] =
              _mm256_fmadd_ps(_mm256_cvtepi32_ps(W::dot(q, av[t], corr[t])), _mm256_set1_ps(dw * da[t]), acc[r][t]);
        }
      }
    }
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r)
#pragma GCC unroll 16
      for (int t = 0; t < T; ++t) y[t * ys + r] = hsum(acc[r][t]);
  }
};

struct Q8_0Weights {
  static constexpr int kBlockBytes = sizeof(BlockQ8_0);
  static __m256i values(const uint8_t* qs) { return loadu256(qs); }
  static __m256i activation_correction(__m256i) { return _mm256_setzero_si256(); }
  // |w| * (a with w's sign): the unsigned operand maddubs needs.
  static __m256i dot(__m256i w, __m256i a, __m256i) {
    const __m256i p = _mm256_maddubs_epi16(_mm256_sign_epi8(w, w), _mm256_sign_epi8(a, w));
    return _mm256_madd_epi16(p, _mm256_set1_epi16(1));
  }
};

struct Q4_0Weights {
  static constexpr int kBlockBytes = sizeof(BlockQ4_0);
  static __m256i values(const uint8_t* qs) {
    const __m128i q = loadu128(qs);
    return _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(q, 4), q), _mm256_set1_epi8(0x0F));
  }
  // Nibbles are stored as q + 8: subtract 8 * a, pairwise, once per token.
  static __m256i activation_correction(__m256i a) { return _mm256_maddubs_epi16(_mm256_set1_epi8(8), a); }
  static __m256i dot(__m256i u, __m256i a, __m256i corr) {
    const __m256i p = _mm256_sub_epi16(_mm256_maddubs_epi16(u, a), corr);
    return _mm256_madd_epi16(p, _mm256_set1_epi16(1));
  }
};

// ------------------------------------------------------------ K-quants x Q8_K

constexpr int kQ8KQs = 4;
constexpr int kQ8KBsums = 4 + kQKK;

// vpshufb patterns that broadcast int16 lane j of a 128-bit lane to all 8 lanes.
constexpr std::array<std::array<uint8_t, 32>, 8> make_word_broadcasts() {
  std::array<std::array<uint8_t, 32>, 8> out{};
  for (int j = 0; j < 8; ++j) {
    for (int k = 0; k < 32; k += 2) {
      out[j][k] = static_cast<uint8_t>(2 * j);
      out[j][k + 1] = static_cast<uint8_t>(2 * j + 1);
    }
  }
  return out;
}
alignas(32) constexpr std::array<std::array<uint8_t, 32>, 8> kWordBroadcast = make_word_broadcasts();

inline __m256i word_broadcast(__m256i v, int j) {
  return _mm256_shuffle_epi8(v, _mm256_load_si256(reinterpret_cast<const __m256i*>(kWordBroadcast[j].data())));
}

// Unpacks the 12 packed bytes of Q4_K/Q5_K scales and mins (layout in quant.h)
// with vector operations on the three little-endian words w0, w1, w2:
//   sc0..3 = w0 & 0x3f..,  m0..3 = w1 & 0x3f..,
//   sc4..7 = (w2 & 0x0f..) | ((w0 >> 2) & 0x30..),
//   m4..7  = ((w2 >> 4) & 0x0f..) | ((w1 >> 2) & 0x30..).
// Reads 16 bytes at s (the 4 after the scales are the block's next field).
// Returns the 8 scales as int16 and, for vpmaddwd with the 16 bsums, each min
// twice as int16 (m0, m0, m1, m1, ...).
inline void k4_unpack_scales(const uint8_t* s, __m128i* scales16, __m256i* min_pairs) {
  const __m128i v = loadu128(s);
  const __m128i x = _mm_srlv_epi32(_mm_shuffle_epi32(v, _MM_SHUFFLE(2, 2, 1, 0)), _mm_setr_epi32(0, 0, 0, 4));
  const __m128i y = _mm_srli_epi32(_mm_shuffle_epi32(v, _MM_SHUFFLE(1, 0, 1, 0)), 2);
  const __m128i low_mask = _mm_setr_epi32(0x3f3f3f3f, 0x3f3f3f3f, 0x0f0f0f0f, 0x0f0f0f0f);
  const __m128i high_mask = _mm_setr_epi32(0, 0, 0x30303030, 0x30303030);
  // Bytes: sc0..3, m0..3, sc4..7, m4..7.
  const __m128i r = _mm_or_si128(_mm_and_si128(x, low_mask), _mm_and_si128(y, high_mask));
  *scales16 =
      _mm_cvtepu8_epi16(_mm_shuffle_epi8(r, _mm_setr_epi8(0, 1, 2, 3, 8, 9, 10, 11, -1, -1, -1, -1, -1, -1, -1, -1)));
  *min_pairs =
      _mm256_cvtepu8_epi16(_mm_shuffle_epi8(r, _mm_setr_epi8(4, 4, 5, 5, 6, 6, 7, 7, 12, 12, 13, 13, 14, 14, 15, 15)));
}

template <bool kFiveBit>
struct Q45KKernel {
  static constexpr int kGemvRows = 2, kRows = 2, kTokens = 2;
  static constexpr int kBlockBytes = kFiveBit ? sizeof(BlockQ5_K) : sizeof(BlockQ4_K);
  static constexpr int kQsOffset = kFiveBit ? 48 : 16;
  template <int R, int T>
  static void run(int64_t n, const uint8_t* w, uint64_t ws, const uint8_t* a, uint64_t as, float* y, int64_t ys) {
    const int64_t nb = n / kQKK;
    __m256 acc[R][T];
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r)
#pragma GCC unroll 16
      for (int t = 0; t < T; ++t) acc[r][t] = _mm256_setzero_ps();
    const __m256i low4 = _mm256_set1_epi8(0x0F);
    for (int64_t ib = 0; ib < nb; ++ib) {
      prefetch_next_tile<R>(w, ws, ib, kBlockBytes);
#pragma GCC unroll 16
      for (int r = 0; r < R; ++r) {
        const uint8_t* p = w + r * ws + ib * kBlockBytes;
        const float d = load_f16(p), dmin = load_f16(p + 2);
        __m128i sc16;
        __m256i mpairs;
        k4_unpack_scales(p + 4, &sc16, &mpairs);
        const __m256i sc_both = _mm256_broadcastsi128_si256(sc16);
        __m256i isum[T];
#pragma GCC unroll 16
        for (int t = 0; t < T; ++t) isum[t] = _mm256_setzero_si256();
#pragma GCC unroll 4
        for (int c = 0; c < 4; ++c) {
          const __m256i raw = loadu256(p + kQsOffset + 32 * c);
          __m256i lo = _mm256_and_si256(raw, low4);
          __m256i hi = _mm256_and_si256(_mm256_srli_epi16(raw, 4), low4);
          if constexpr (kFiveBit) {
            const __m256i qh = loadu256(p + 16);
            const __m256i one = _mm256_set1_epi8(1);
            lo = _mm256_or_si256(lo, _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 2 * c), one), 4));
            hi = _mm256_or_si256(hi, _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 2 * c + 1), one), 4));
          }
          const __m256i sv_lo = word_broadcast(sc_both, 2 * c);
          const __m256i sv_hi = word_broadcast(sc_both, 2 * c + 1);
#pragma GCC unroll 16
          for (int t = 0; t < T; ++t) {
            const uint8_t* aq = a + t * as + ib * sizeof(BlockQ8_K) + kQ8KQs + 64 * c;
            const __m256i plo = _mm256_madd_epi16(_mm256_maddubs_epi16(lo, loadu256(aq)), sv_lo);
            const __m256i phi = _mm256_madd_epi16(_mm256_maddubs_epi16(hi, loadu256(aq + 32)), sv_hi);
            isum[t] = _mm256_add_epi32(isum[t], _mm256_add_epi32(plo, phi));
          }
        }
#pragma GCC unroll 16
        for (int t = 0; t < T; ++t) {
          const uint8_t* pa = a + t * as + ib * sizeof(BlockQ8_K);
          const float da = load_f32(pa);
          const __m256i msum = _mm256_madd_epi16(loadu256(pa + kQ8KBsums), mpairs);
          acc[r][t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum[t]), _mm256_set1_ps(d * da), acc[r][t]);
          acc[r][t] = _mm256_fnmadd_ps(_mm256_cvtepi32_ps(msum), _mm256_set1_ps(dmin * da), acc[r][t]);
        }
      }
    }
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r)
#pragma GCC unroll 16
      for (int t = 0; t < T; ++t) y[t * ys + r] = hsum(acc[r][t]);
  }
};

struct Q6KKernel {
  static constexpr int kGemvRows = 2, kRows = 2, kTokens = 2;
  template <int R, int T>
  static void run(int64_t n, const uint8_t* w, uint64_t ws, const uint8_t* a, uint64_t as, float* y, int64_t ys) {
    const int64_t nb = n / kQKK;
    __m256 acc[R][T];
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r)
#pragma GCC unroll 16
      for (int t = 0; t < T; ++t) acc[r][t] = _mm256_setzero_ps();
    const __m256i low4 = _mm256_set1_epi8(0x0F);
    const __m256i bits01 = _mm256_set1_epi8(0x03);
    const __m256i bits45 = _mm256_set1_epi8(0x30);
    // Spreads the int16 pair (s_2P, s_2P+1) held in every int32 lane: lane 0 of
    // the result gets s_2P eight times, lane 1 gets s_2P+1.
    const __m256i split = _mm256_setr_epi8(0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3,
                                           2, 3, 2, 3, 2, 3);
    for (int64_t ib = 0; ib < nb; ++ib) {
      prefetch_next_tile<R>(w, ws, ib, sizeof(BlockQ6_K));
#pragma GCC unroll 16
      for (int r = 0; r < R; ++r) {
        const uint8_t* p = w + r * ws + ib * sizeof(BlockQ6_K);
        const float d = load_f16(p + 208);
        const __m256i sc16 = _mm256_cvtepi8_epi16(loadu128(p + 192));
        __m256i isum[T];
#pragma GCC unroll 16
        for (int t = 0; t < T; ++t) {
          const __m256i bs = loadu256(a + t * as + ib * sizeof(BlockQ8_K) + kQ8KBsums);
          isum[t] = _mm256_sub_epi32(_mm256_setzero_si256(), _mm256_slli_epi32(_mm256_madd_epi16(bs, sc16), 5));
        }
#pragma GCC unroll 2
        for (int h = 0; h < 2; ++h) {
          const __m256i ql0 = loadu256(p + 64 * h);
          const __m256i ql1 = loadu256(p + 64 * h + 32);
          const __m256i qh = loadu256(p + 128 + 32 * h);
          const __m256i qh2 = _mm256_srli_epi16(qh, 2);
          __m256i q[4];
          q[0] = _mm256_or_si256(_mm256_and_si256(ql0, low4), _mm256_slli_epi16(_mm256_and_si256(qh, bits01), 4));
          q[1] = _mm256_or_si256(_mm256_and_si256(ql1, low4), _mm256_slli_epi16(_mm256_and_si256(qh2, bits01), 4));
          q[2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql0, 4), low4), _mm256_and_si256(qh, bits45));
          q[3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql1, 4), low4), _mm256_and_si256(qh2, bits45));
#pragma GCC unroll 4
          for (int k = 0; k < 4; ++k) {
            const __m256i pair = _mm256_permutevar8x32_epi32(sc16, _mm256_set1_epi32(4 * h + k));
            const __m256i sv = _mm256_shuffle_epi8(pair, split);
#pragma GCC unroll 16
            for (int t = 0; t < T; ++t) {
              const uint8_t* aq = a + t * as + ib * sizeof(BlockQ8_K) + kQ8KQs + 128 * h + 32 * k;
              isum[t] = _mm256_add_epi32(isum[t], _mm256_madd_epi16(_mm256_maddubs_epi16(q[k], loadu256(aq)), sv));
            }
          }
        }
#pragma GCC unroll 16
        for (int t = 0; t < T; ++t) {
          const float da = load_f32(a + t * as + ib * sizeof(BlockQ8_K));
          acc[r][t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum[t]), _mm256_set1_ps(d * da), acc[r][t]);
        }
      }
    }
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r)
#pragma GCC unroll 16
      for (int t = 0; t < T; ++t) y[t * ys + r] = hsum(acc[r][t]);
  }
};

// ------------------------------------------------------------ activation quantizers

// 32 int32 values in [-128, 127] (four vectors, in order) to 32 int8.
inline __m256i pack_to_i8(__m256i v0, __m256i v1, __m256i v2, __m256i v3) {
  const __m256i p01 = _mm256_packs_epi32(v0, v1);
  const __m256i p23 = _mm256_packs_epi32(v2, v3);
  const __m256i b = _mm256_packs_epi16(p01, p23);
  return _mm256_permutevar8x32_epi32(b, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

// roundf() semantics (half away from zero), exactly.
inline __m256i round_half_away(__m256 v) {
  const __m256 t = _mm256_round_ps(v, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
  const __m256 frac = _mm256_sub_ps(v, t);  // exact
  const __m256 up = _mm256_cmp_ps(abs_ps(frac), _mm256_set1_ps(0.5f), _CMP_GE_OQ);
  const __m256 one = _mm256_or_ps(_mm256_set1_ps(1.0f), _mm256_and_ps(v, _mm256_set1_ps(-0.0f)));
  return _mm256_cvttps_epi32(_mm256_add_ps(t, _mm256_and_ps(up, one)));
}

void quantize_q8_0(const float* x, void* dst, int64_t n) {
  BlockQ8_0* b = static_cast<BlockQ8_0*>(dst);
  for (int64_t i = 0; i < n / kQK; ++i, x += kQK) {
    __m256 v[4];
    __m256 m = _mm256_setzero_ps();
    for (int k = 0; k < 4; ++k) {
      v[k] = _mm256_loadu_ps(x + 8 * k);
      m = _mm256_max_ps(m, abs_ps(v[k]));
    }
    const float amax = hmax(m);
    const float d = amax / 127.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    b[i].d = f32_to_f16(d);
    const __m256 vid = _mm256_set1_ps(id);
    __m256i q[4];
    for (int k = 0; k < 4; ++k) q[k] = round_half_away(_mm256_mul_ps(v[k], vid));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(b[i].qs), pack_to_i8(q[0], q[1], q[2], q[3]));
  }
}

void quantize_q8_k(const float* x, void* dst, int64_t n) {
  BlockQ8_K* b = static_cast<BlockQ8_K*>(dst);
  for (int64_t i = 0; i < n / kQKK; ++i, x += kQKK) {
    __m256 m = _mm256_setzero_ps();
    for (int j = 0; j < kQKK; j += 8) m = _mm256_max_ps(m, abs_ps(_mm256_loadu_ps(x + j)));
    const float amax = hmax(m);
    if (amax == 0.0f) {
      std::memset(&b[i], 0, sizeof(BlockQ8_K));
      continue;
    }
    float vmax = 0.0f;
    for (int j = 0; j < kQKK; j += 8) {
      const int hit =
          _mm256_movemask_ps(_mm256_cmp_ps(abs_ps(_mm256_loadu_ps(x + j)), _mm256_set1_ps(amax), _CMP_EQ_OQ));
      if (hit) {
        vmax = x[j + __builtin_ctz(static_cast<unsigned>(hit))];
        break;
      }
    }
    const float iscale = -127.0f / vmax;
    const __m256 vs = _mm256_set1_ps(iscale);
    const __m256i cap = _mm256_set1_epi32(127);
    for (int j = 0; j < kQKK; j += 32) {
      __m256i q[4];
      for (int k = 0; k < 4; ++k) {
        q[k] = _mm256_min_epi32(_mm256_cvtps_epi32(_mm256_mul_ps(vs, _mm256_loadu_ps(x + j + 8 * k))), cap);
      }
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(b[i].qs + j), pack_to_i8(q[0], q[1], q[2], q[3]));
    }
    for (int j = 0; j < 16; ++j) {
      int sum = 0;
      for (int l = 0; l < 16; ++l) sum += b[i].qs[16 * j + l];
      b[i].bsums[j] = static_cast<int16_t>(sum);
    }
    b[i].d = 1.0f / iscale;
  }
}

// ------------------------------------------------------------ dequantizers

void dequantize_f16(const void* src, float* dst, int64_t n) {
  const uint8_t* s = static_cast<const uint8_t*>(src);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(dst + i, LoadF16::load(s + 2 * i));
  for (; i < n; ++i) dst[i] = LoadF16::scalar(s, i);
}

void dequantize_bf16(const void* src, float* dst, int64_t n) {
  const uint8_t* s = static_cast<const uint8_t*>(src);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(dst + i, LoadBF16::load(s + 2 * i));
  for (; i < n; ++i) dst[i] = LoadBF16::scalar(s, i);
}

void dequantize_q8_0(const void* src, float* dst, int64_t n) {
  const BlockQ8_0* b = static_cast<const BlockQ8_0*>(src);
  for (int64_t i = 0; i < n / kQK; ++i, dst += kQK) {
    const __m256 d = _mm256_set1_ps(f16_to_f32(b[i].d));
    for (int k = 0; k < 4; ++k) {
      const __m128i q = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(b[i].qs + 8 * k));
      _mm256_storeu_ps(dst + 8 * k, _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q)), d));
    }
  }
}

void dequantize_q4_0(const void* src, float* dst, int64_t n) {
  const BlockQ4_0* b = static_cast<const BlockQ4_0*>(src);
  const __m256i eight = _mm256_set1_epi32(8);
  for (int64_t i = 0; i < n / kQK; ++i, dst += kQK) {
    const __m256 d = _mm256_set1_ps(f16_to_f32(b[i].d));
    for (int k = 0; k < 2; ++k) {
      const __m256i q = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(b[i].qs + 8 * k)));
      const __m256i lo = _mm256_sub_epi32(_mm256_and_si256(q, _mm256_set1_epi32(15)), eight);
      const __m256i hi = _mm256_sub_epi32(_mm256_srli_epi32(q, 4), eight);
      _mm256_storeu_ps(dst + 8 * k, _mm256_mul_ps(_mm256_cvtepi32_ps(lo), d));
      _mm256_storeu_ps(dst + 16 + 8 * k, _mm256_mul_ps(_mm256_cvtepi32_ps(hi), d));
    }
  }
}

// The two integer steps of the interleaved kernels without VNNI (the same
// integers: pair sums of nibbles x int8 stay below 2 * 15 * 128).
struct Avx2Ops {
  static __m256i dpbusd(__m256i acc, __m256i u, __m256i a) {
    return _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(u, a), _mm256_set1_epi16(1)));
  }
  static __m256i dpwssd(__m256i acc, __m256i a, __m256i b) { return _mm256_add_epi32(acc, _mm256_madd_epi16(a, b)); }
  static __m256i q8_prepare(__m256i w) { return w; }
  // |w| <= 128 and |a| <= 127: pair sums stay within int16 (2 * 128 * 127).
  static __m256i q8_dot32(const __m256i* u, const uint8_t* aq, __m256i /*seed*/) {
    const __m256i ones = _mm256_set1_epi16(1);
    __m256i s0 = _mm256_setzero_si256(), s1 = _mm256_setzero_si256();
    for (int k = 0; k < 8; k += 2) {
      int32_t v0, v1;
      std::memcpy(&v0, aq + 4 * k, 4);
      std::memcpy(&v1, aq + 4 * k + 4, 4);
      const __m256i p0 = _mm256_maddubs_epi16(_mm256_abs_epi8(u[k]), _mm256_sign_epi8(_mm256_set1_epi32(v0), u[k]));
      const __m256i p1 =
          _mm256_maddubs_epi16(_mm256_abs_epi8(u[k + 1]), _mm256_sign_epi8(_mm256_set1_epi32(v1), u[k + 1]));
      s0 = _mm256_add_epi32(s0, _mm256_madd_epi16(p0, ones));
      s1 = _mm256_add_epi32(s1, _mm256_madd_epi16(p1, ones));
    }
    return _mm256_add_epi32(s0, s1);
  }
};
#include "backend/cpu/repack_kernels_inl.h"
using X8 = X8Kernels<Avx2Ops>;

}  // namespace
}  // namespace tpinfer::cpu

#pragma GCC pop_options

namespace tpinfer::cpu {

void fill_avx2_kernels(KernelTable& table) {
  table.at(DType::Q4_0).gemm8 = X8::gemm8_q4_0<2>;
  table.at(DType::Q4_K).gemm8 = X8::gemm8_q4_k<2>;
  table.at(DType::Q8_0).gemm8 = X8::gemm8_q8_0<2>;
  table.at(DType::F32).gemm = gemm_tiles<FloatKernel<LoadF32>>;
  table.at(DType::F16).gemm = gemm_tiles<FloatKernel<LoadF16>>;
  table.at(DType::BF16).gemm = gemm_tiles<FloatKernel<LoadBF16>>;
  table.at(DType::Q8_0).gemm = gemm_tiles<Q32Kernel<Q8_0Weights>>;
  table.at(DType::Q4_0).gemm = gemm_tiles<Q32Kernel<Q4_0Weights>>;
  table.at(DType::Q4_K).gemm = gemm_tiles<Q45KKernel<false>>;
  table.at(DType::Q5_K).gemm = gemm_tiles<Q45KKernel<true>>;
  table.at(DType::Q6_K).gemm = gemm_tiles<Q6KKernel>;

  table.at(DType::Q8_0).quantize = quantize_q8_0;
  table.at(DType::Q8_K).quantize = quantize_q8_k;

  table.at(DType::F16).dequantize = dequantize_f16;
  table.at(DType::BF16).dequantize = dequantize_bf16;
  table.at(DType::Q8_0).dequantize = dequantize_q8_0;
  table.at(DType::Q4_0).dequantize = dequantize_q4_0;
}

}  // namespace tpinfer::cpu
