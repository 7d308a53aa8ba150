// AVX-512 kernels (F, BW, VL, DQ, VNNI; plus AVX2/FMA/F16C). Everything between
// the target pragmas is internal to this file and reached only through the
// table that fill_avx512_kernels() fills, which kernel_table() hands out only on
// CPUs that have these features. Standard headers are included before the
// pragmas so no inline library code is compiled for this target.
//
// Integer dot products use VNNI (vpdpbusd: u8 x s8, vpdpwssd: s16 x s16) with
// the weight side made unsigned (Q8_0: w xor 0x80 = w + 128; Q4_0/K-quants:
// the raw nibbles) and the offset removed through sums of the activations. Zen 4
// runs 512-bit operations as two 256-bit halves, so 512-bit vectors are used
// only where they save instructions (float rows, Q6_K's 64-byte parts, masked
// tails); Q8_0/Q4_0 blocks and Q4_K/Q5_K sub-blocks use 256-bit VNNI forms.
//
// Floating-point contraction is off in this file: dequantization must give the
// very bits of the scalar reference (a*b - c, never fused); fused multiply-adds
// are written out where they are wanted.

// GCC 12's AVX-512 headers start some intrinsics from _mm512_undefined_*(),
// which -Wuninitialized reports after inlining (GCC bug 105593). The warning
// is located in the header, so silencing it there leaves this file's own code
// checked.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>
#pragma GCC diagnostic pop

#include <array>
#include <cstdint>
#include <cstring>

#include "backend/cpu/kernels.h"
#include "backend/cpu/quant.h"
#include "backend/cpu/repack.h"
#include "core/half.h"

#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c,bmi,bmi2,avx512f,avx512bw,avx512vl,avx512dq,avx512vnni")
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
inline __m512i loadu512(const uint8_t* p) { return _mm512_loadu_si512(p); }

inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}
inline float hsum(__m512 v) { return _mm512_reduce_add_ps(v); }

// Weight rows of a tile are R short streams (one row each), too short for the
// hardware prefetchers to ramp up on. The rows of a matrix are adjacent, so
// while a tile is being computed, the kernels prefetch the next R rows
// linearly into L1: block ib of the loop touches the stretch of the next tile
// that is ib/nb of the way through it. Kernels that compute faster than memory
// delivers (kDeep: Q8_0, Q6_K, float weights) also pull the tile after that
// into L2, so more lines are in flight than the L1 miss buffers allow; for the
// kernels that are about as fast as memory the extra instructions cost more
// than they bring. (Beyond the last row this prefetches bytes that are never
// used, which is harmless.)
template <int R, bool kDeep>
inline void prefetch_next_tile(const uint8_t* w, uint64_t ws, int64_t ib, int block_bytes) {
  const uint8_t* next = w + R * ws + static_cast<uint64_t>(ib) * R * static_cast<uint64_t>(block_bytes);
  for (int off = 0; off < R * block_bytes; off += 64) {
    _mm_prefetch(reinterpret_cast<const char*>(next + off), _MM_HINT_T0);
    if (kDeep) _mm_prefetch(reinterpret_cast<const char*>(next + R * ws + off), _MM_HINT_T1);
  }
}

// Tiles a weight-rows x tokens product into K's micro-kernels. Rows are the
// outer loop, so each group of rows is read from memory once and reused from
// L1 for every token. Single-token calls (GEMV) use the taller kGemvRows tile.
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

// Widening loads of 16 weights (all, or the first `count` under a mask).
struct LoadF32 {
  static __m512 load(const uint8_t* p) { return _mm512_loadu_ps(p); }
  static __m512 load_masked(const uint8_t* p, __mmask16 m) { return _mm512_maskz_loadu_ps(m, p); }
  static constexpr int kBytes = 4;
};
struct LoadF16 {
  static __m512 load(const uint8_t* p) { return _mm512_cvtph_ps(loadu256(p)); }
  static __m512 load_masked(const uint8_t* p, __mmask16 m) { return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, p)); }
  static constexpr int kBytes = 2;
};
struct LoadBF16 {
  static __m512 widen(__m256i h) { return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16)); }
  static __m512 load(const uint8_t* p) { return widen(loadu256(p)); }
  static __m512 load_masked(const uint8_t* p, __mmask16 m) { return widen(_mm256_maskz_loadu_epi16(m, p)); }
  static constexpr int kBytes = 2;
};

template <class L>
struct FloatKernel {
  static constexpr int kGemvRows = 4, kRows = 4, kTokens = 3;
  template <int R, int T>
  static void run(int64_t n, const uint8_t* w, uint64_t ws, const uint8_t* a, uint64_t as, float* y, int64_t ys) {
    __m512 acc[R][T];
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r)
#pragma GCC unroll 16
      for (int t = 0; t < T; ++t) acc[r][t] = _mm512_setzero_ps();
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
      prefetch_next_tile<R, true>(w, ws, i / 16, 16 * L::kBytes);
      __m512 av[T];
#pragma GCC unroll 16
      for (int t = 0; t < T; ++t) av[t] = _mm512_loadu_ps(a + t * as + i * 4);
#pragma GCC unroll 16
      for (int r = 0; r < R; ++r) {
        const __m512 wv = L::load(w + r * ws + i * L::kBytes);
#pragma GCC unroll 16
        for (int t = 0; t < T; ++t) acc[r][t] = _mm512_fmadd_ps(wv, av[t], acc[r][t]);
      }
    }
    if (i < n) {
      const __mmask16 m = static_cast<__mmask16>((1u << (n - i)) - 1);
      __m512 av[T];
#pragma GCC unroll 16
      for (int t = 0; t < T; ++t) av[t] = _mm512_maskz_loadu_ps(m, a + t * as + i * 4);
#pragma GCC unroll 16
      for (int r = 0; r < R; ++r) {
        const __m512 wv = L::load_masked(w + r * ws + i * L::kBytes, m);
#pragma GCC unroll 16
        for (int t = 0; t < T; ++t) acc[r][t] = _mm512_fmadd_ps(wv, av[t], acc[r][t]);
      }
    }
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r)
#pragma GCC unroll 16
      for (int t = 0; t < T; ++t) y[t * ys + r] = hsum(acc[r][t]);
  }
};

// ------------------------------------------------------------ Q8_0 / Q4_0 x Q8_0

// Both formats: 32-value blocks, f16 scale first; the activation is Q8_0 (34 bytes).
// Per block, the weight side yields 32 unsigned bytes u with u = q + offset, and
// the dot is vpdpbusd(u, a) - offset * sum(a); the correction depends only on the
// activation, so it is computed once per token and block and seeds the dpbusd.
// (Q4_0 scales its upper lanes by 16; see Q4_0Weights.)
template <class W>
struct Q32Kernel {
  static constexpr int kGemvRows = 4, kRows = 4, kTokens = 2;
  template <int R, int T>
  static void run(int64_t n, const uint8_t* w, uint64_t ws, const uint8_t* a, uint64_t as, float* y, int64_t ys) {
    const int64_t nb = n / kQK;
    __m256 acc[R][T];
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r)
#pragma GCC unroll 16
      for (int t = 0; t < T; ++t) acc[r][t] = _mm256_setzero_ps();
    const __m256i offset = W::offsets();
    for (int64_t ib = 0; ib < nb; ++ib) {
      prefetch_next_tile<R, W::kDeepPrefetch>(w, ws, ib, W::kBlockBytes);
      __m256i av[T], seed[T];
      float da[T];
#pragma GCC unroll 16
      for (int t = 0; t < T; ++t) {
        const uint8_t* p = a + t * as + ib * sizeof(BlockQ8_0);
        da[t] = load_f16(p);
        av[t] = loadu256(p + 2);
        seed[t] = _mm256_sub_epi32(_mm256_setzero_si256(), _mm256_dpbusd_epi32(_mm256_setzero_si256(), offset, av[t]));
      }
#pragma GCC unroll 16
      for (int r = 0; r < R; ++r) {
        const uint8_t* p = w + r * ws + ib * W::kBlockBytes;
        const float dw = load_f16(p);
        const __m256i u = W::unsigned_values(p + 2);
#pragma GCC unroll 16
        for (int t = 0; t < T; ++t) {
          const __m256i s = _mm256_dpbusd_epi32(seed[t], u, av[t]);
          acc[r][t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), _mm256_set1_ps(dw * da[t]), acc[r][t]);
        }
      }
    }
    const __m256 lane_scale = W::lane_scales();
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r)
#pragma GCC unroll 16
      for (int t = 0; t < T; ++t) y[t * ys + r] = hsum(_mm256_mul_ps(acc[r][t], lane_scale));
  }
};

// The weight side of Q32Kernel: the 32 unsigned bytes of a block, the byte
// offsets they carry (removed through the seed), and a final per-lane factor.
struct Q8_0Weights {
  static constexpr int kBlockBytes = sizeof(BlockQ8_0);
  static constexpr bool kDeepPrefetch = true;
  static __m256i offsets() { return _mm256_set1_epi8(static_cast<char>(0x80)); }
  static __m256 lane_scales() { return _mm256_set1_ps(1.0f); }
  static __m256i unsigned_values(const uint8_t* qs) {
    return _mm256_xor_si256(loadu256(qs), _mm256_set1_epi8(static_cast<char>(0x80)));
  }
};

// Values 0..15 are the low nibbles of qs, values 16..31 the high nibbles.
// Instead of shifting the high nibbles down, the 16 bytes are loaded into both
// halves and masked: the upper half then holds 16 * nibble (<= 240, still a u8),
// and its offset is 16 * 8. Every block has the same layout, so the factor 16
// is taken out of the upper accumulator lanes once, at the end (exactly: it is
// a power of two).
struct Q4_0Weights {
  static constexpr int kBlockBytes = sizeof(BlockQ4_0);
  static constexpr bool kDeepPrefetch = false;
  static __m256i offsets() { return _mm256_set_m128i(_mm_set1_epi8(static_cast<char>(128)), _mm_set1_epi8(8)); }
  static __m256 lane_scales() { return _mm256_set_m128(_mm_set1_ps(1.0f / 16), _mm_set1_ps(1.0f)); }
  static __m256i unsigned_values(const uint8_t* qs) {
    const __m256i both = _mm256_broadcastsi128_si256(loadu128(qs));
    return _mm256_and_si256(both, _mm256_set_m128i(_mm_set1_epi8(static_cast<char>(0xF0)), _mm_set1_epi8(0x0F)));
  }
};

// ------------------------------------------------------------ K-quants x Q8_K

// Activation super-block parts: d at 0, qs at 4, bsums at 260.
constexpr int kQ8KQs = 4;
constexpr int kQ8KBsums = 4 + kQKK;

// Unpacks the 12 packed bytes of Q4_K/Q5_K into 8 scales and 8 mins (one byte
// each, j = 0..7 from the low byte up).
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

// Index vector for vpermw: int16 lane k takes element base + k / group.
inline __m512i lane_groups(int base, int group) {
  alignas(64) int16_t idx[32];
  for (int k = 0; k < 32; ++k) idx[k] = static_cast<int16_t>(base + k / group);
  return _mm512_load_si512(idx);
}

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

// 256-bit vectors here: on Zen 4 the 512-bit form of this kernel (which needs
// a cross-lane insert and vpermw per 64 values) was no faster, as 512-bit
// operations run as two halves anyway.
template <bool kFiveBit>
struct Q45KKernel {
  static constexpr int kGemvRows = 4, kRows = 4, kTokens = 2;
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
      prefetch_next_tile<R, false>(w, ws, ib, kBlockBytes);
      float da[T];
      __m256i bsums[T];
#pragma GCC unroll 16
      for (int t = 0; t < T; ++t) {
        const uint8_t* p = a + t * as + ib * sizeof(BlockQ8_K);
        da[t] = load_f32(p);
        bsums[t] = loadu256(p + kQ8KBsums);
      }
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
          // 64 values: sub-block 2c in the low nibbles, 2c+1 in the high ones.
          const __m256i raw = loadu256(p + kQsOffset + 32 * c);
          __m256i lo = _mm256_and_si256(raw, low4);
          __m256i hi = _mm256_and_si256(_mm256_srli_epi16(raw, 4), low4);
          if constexpr (kFiveBit) {
            // Fifth bits: bit 2c of qh[l] for value l, bit 2c+1 for value 32+l.
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
            isum[t] = _mm256_dpwssd_epi32(isum[t], _mm256_maddubs_epi16(lo, loadu256(aq)), sv_lo);
            isum[t] = _mm256_dpwssd_epi32(isum[t], _mm256_maddubs_epi16(hi, loadu256(aq + 32)), sv_hi);
          }
        }
#pragma GCC unroll 16
        for (int t = 0; t < T; ++t) {
          const __m256i msum = _mm256_madd_epi16(bsums[t], mpairs);
          acc[r][t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum[t]), _mm256_set1_ps(d * da[t]), acc[r][t]);
          acc[r][t] = _mm256_fnmadd_ps(_mm256_cvtepi32_ps(msum), _mm256_set1_ps(dmin * da[t]), acc[r][t]);
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
  static constexpr int kGemvRows = 4, kRows = 4, kTokens = 2;
  template <int R, int T>
  static void run(int64_t n, const uint8_t* w, uint64_t ws, const uint8_t* a, uint64_t as, float* y, int64_t ys) {
    const int64_t nb = n / kQKK;
    __m512 acc[R][T];
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r)
#pragma GCC unroll 16
      for (int t = 0; t < T; ++t) acc[r][t] = _mm512_setzero_ps();
    // 64 values 64g..64g+63 cover sub-blocks 4g..4g+3 (8 maddubs lanes each).
    __m512i scale_idx[4];
#pragma GCC unroll 4
    for (int g = 0; g < 4; ++g) scale_idx[g] = lane_groups(4 * g, 8);
    const __m512i low4 = _mm512_set1_epi8(0x0F);
    const __m512i bits01 = _mm512_set1_epi8(0x03);
    const __m512i bits45 = _mm512_set1_epi8(0x30);
    for (int64_t ib = 0; ib < nb; ++ib) {
      prefetch_next_tile<R, true>(w, ws, ib, sizeof(BlockQ6_K));
      float da[T];
      __m256i bsums[T];
#pragma GCC unroll 16
      for (int t = 0; t < T; ++t) {
        const uint8_t* p = a + t * as + ib * sizeof(BlockQ8_K);
        da[t] = load_f32(p);
        bsums[t] = loadu256(p + kQ8KBsums);
      }
#pragma GCC unroll 16
      for (int r = 0; r < R; ++r) {
        const uint8_t* p = w + r * ws + ib * sizeof(BlockQ6_K);
        const uint8_t* ql = p;
        const uint8_t* qhp = p + 128;
        const float d = load_f16(p + 208);
        const __m256i sc16 = _mm256_cvtepi8_epi16(loadu128(p + 192));
        const __m512i sc512 = _mm512_zextsi256_si512(sc16);
        // Values are stored as q + 32: seed each sum with -32 * sum_j sc_j * bsum_j.
        __m512i isum[T];
#pragma GCC unroll 16
        for (int t = 0; t < T; ++t) {
          const __m256i corr = _mm256_slli_epi32(_mm256_madd_epi16(bsums[t], sc16), 5);
          isum[t] = _mm512_sub_epi32(_mm512_setzero_si512(), _mm512_zextsi256_si512(corr));
        }
#pragma GCC unroll 2
        for (int h = 0; h < 2; ++h) {
          const __m512i l64 = loadu512(ql + 64 * h);
          const __m256i h32 = loadu256(qhp + 32 * h);
          const __m512i h64 = _mm512_inserti64x4(_mm512_castsi256_si512(h32), _mm256_srli_epi16(h32, 2), 1);
          // Values 128h + 0..63 and 128h + 64..127.
          const __m512i qa =
              _mm512_or_si512(_mm512_and_si512(l64, low4), _mm512_slli_epi16(_mm512_and_si512(h64, bits01), 4));
          const __m512i qb =
              _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(l64, 4), low4), _mm512_and_si512(h64, bits45));
          const __m512i sva = _mm512_permutexvar_epi16(scale_idx[2 * h], sc512);
          const __m512i svb = _mm512_permutexvar_epi16(scale_idx[2 * h + 1], sc512);
#pragma GCC unroll 16
          for (int t = 0; t < T; ++t) {
            const uint8_t* aq = a + t * as + ib * sizeof(BlockQ8_K) + kQ8KQs + 128 * h;
            isum[t] = _mm512_dpwssd_epi32(isum[t], _mm512_maddubs_epi16(qa, loadu512(aq)), sva);
            isum[t] = _mm512_dpwssd_epi32(isum[t], _mm512_maddubs_epi16(qb, loadu512(aq + 64)), svb);
          }
        }
#pragma GCC unroll 16
        for (int t = 0; t < T; ++t) {
          acc[r][t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum[t]), _mm512_set1_ps(d * da[t]), acc[r][t]);
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

// roundf() semantics (half away from zero) for 16 floats, exactly.
inline __m512i round_half_away(__m512 v) {
  const __m512 t = _mm512_roundscale_ps(v, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
  const __m512 frac = _mm512_sub_ps(v, t);  // exact
  const __mmask16 up = _mm512_cmp_ps_mask(_mm512_abs_ps(frac), _mm512_set1_ps(0.5f), _CMP_GE_OQ);
  const __m512 one = _mm512_or_ps(_mm512_set1_ps(1.0f), _mm512_and_ps(v, _mm512_set1_ps(-0.0f)));
  return _mm512_cvttps_epi32(_mm512_mask_add_ps(t, up, t, one));
}

void quantize_q8_0(const float* x, void* dst, int64_t n) {
  BlockQ8_0* b = static_cast<BlockQ8_0*>(dst);
  for (int64_t i = 0; i < n / kQK; ++i, x += kQK) {
    const __m512 v0 = _mm512_loadu_ps(x), v1 = _mm512_loadu_ps(x + 16);
    const float amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(v0), _mm512_abs_ps(v1)));
    const float d = amax / 127.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    b[i].d = f32_to_f16(d);
    const __m512 vid = _mm512_set1_ps(id);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(b[i].qs),
                     _mm512_cvtepi32_epi8(round_half_away(_mm512_mul_ps(v0, vid))));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(b[i].qs + 16),
                     _mm512_cvtepi32_epi8(round_half_away(_mm512_mul_ps(v1, vid))));
  }
}

void quantize_q8_k(const float* x, void* dst, int64_t n) {
  BlockQ8_K* b = static_cast<BlockQ8_K*>(dst);
  for (int64_t i = 0; i < n / kQKK; ++i, x += kQKK) {
    __m512 m = _mm512_setzero_ps();
    for (int j = 0; j < kQKK; j += 16) m = _mm512_max_ps(m, _mm512_abs_ps(_mm512_loadu_ps(x + j)));
    const float amax = _mm512_reduce_max_ps(m);
    if (amax == 0.0f) {
      std::memset(&b[i], 0, sizeof(BlockQ8_K));
      continue;
    }
    // The reference keeps the first value of largest magnitude (its sign matters).
    float vmax = 0.0f;
    for (int j = 0; j < kQKK; j += 16) {
      const __mmask16 hit = _mm512_cmp_ps_mask(_mm512_abs_ps(_mm512_loadu_ps(x + j)), _mm512_set1_ps(amax), _CMP_EQ_OQ);
      if (hit) {
        vmax = x[j + __builtin_ctz(hit)];
        break;
      }
    }
    const float iscale = -127.0f / vmax;
    const __m512 vs = _mm512_set1_ps(iscale);
    for (int j = 0; j < 16; ++j) {
      // cvtps rounds half to even, as the reference's nearest_int.
      __m512i q = _mm512_cvtps_epi32(_mm512_mul_ps(vs, _mm512_loadu_ps(x + 16 * j)));
      q = _mm512_min_epi32(q, _mm512_set1_epi32(127));
      _mm_storeu_si128(reinterpret_cast<__m128i*>(b[i].qs + 16 * j), _mm512_cvtepi32_epi8(q));
      b[i].bsums[j] = static_cast<int16_t>(_mm512_reduce_add_epi32(q));
    }
    b[i].d = 1.0f / iscale;
  }
}

// ------------------------------------------------------------ dequantizers

void dequantize_f16(const void* src, float* dst, int64_t n) {
  const uint8_t* s = static_cast<const uint8_t*>(src);
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) _mm512_storeu_ps(dst + i, LoadF16::load(s + 2 * i));
  if (i < n) {
    const __mmask16 m = static_cast<__mmask16>((1u << (n - i)) - 1);
    _mm512_mask_storeu_ps(dst + i, m, LoadF16::load_masked(s + 2 * i, m));
  }
}

void dequantize_bf16(const void* src, float* dst, int64_t n) {
  const uint8_t* s = static_cast<const uint8_t*>(src);
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) _mm512_storeu_ps(dst + i, LoadBF16::load(s + 2 * i));
  if (i < n) {
    const __mmask16 m = static_cast<__mmask16>((1u << (n - i)) - 1);
    _mm512_mask_storeu_ps(dst + i, m, LoadBF16::load_masked(s + 2 * i, m));
  }
}

void dequantize_q8_0(const void* src, float* dst, int64_t n) {
  const BlockQ8_0* b = static_cast<const BlockQ8_0*>(src);
  for (int64_t i = 0; i < n / kQK; ++i, dst += kQK) {
    const __m512 d = _mm512_set1_ps(f16_to_f32(b[i].d));
    const __m128i lo = loadu128(reinterpret_cast<const uint8_t*>(b[i].qs));
    const __m128i hi = loadu128(reinterpret_cast<const uint8_t*>(b[i].qs + 16));
    _mm512_storeu_ps(dst, _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(lo)), d));
    _mm512_storeu_ps(dst + 16, _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(hi)), d));
  }
}

void dequantize_q4_0(const void* src, float* dst, int64_t n) {
  const BlockQ4_0* b = static_cast<const BlockQ4_0*>(src);
  const __m512i eight = _mm512_set1_epi32(8);
  for (int64_t i = 0; i < n / kQK; ++i, dst += kQK) {
    const __m512 d = _mm512_set1_ps(f16_to_f32(b[i].d));
    const __m512i q = _mm512_cvtepu8_epi32(loadu128(b[i].qs));
    const __m512i lo = _mm512_sub_epi32(_mm512_and_si512(q, _mm512_set1_epi32(15)), eight);
    const __m512i hi = _mm512_sub_epi32(_mm512_srli_epi32(q, 4), eight);
    _mm512_storeu_ps(dst, _mm512_mul_ps(_mm512_cvtepi32_ps(lo), d));
    _mm512_storeu_ps(dst + 16, _mm512_mul_ps(_mm512_cvtepi32_ps(hi), d));
  }
}

void dequantize_q4_k(const void* src, float* dst, int64_t n) {
  const BlockQ4_K* b = static_cast<const BlockQ4_K*>(src);
  for (int64_t i = 0; i < n / kQKK; ++i, dst += kQKK) {
    const float d = f16_to_f32(b[i].d), dmin = f16_to_f32(b[i].dmin);
    __m128i sc16;
    __m256i mpairs;
    k4_unpack_scales(b[i].scales, &sc16, &mpairs);
    alignas(16) uint16_t sc[8];
    alignas(32) uint16_t mins[16];
    _mm_store_si128(reinterpret_cast<__m128i*>(sc), sc16);
    _mm256_store_si256(reinterpret_cast<__m256i*>(mins), mpairs);
    for (int j = 0; j < 8; ++j) {
      const __m512 dl = _mm512_set1_ps(d * static_cast<float>(sc[j]));
      const __m512 ml = _mm512_set1_ps(dmin * static_cast<float>(mins[2 * j]));
      const uint8_t* q = b[i].qs + 32 * (j / 2);
      const int shift = 4 * (j % 2);
      for (int h = 0; h < 2; ++h) {
        const __m512i v = _mm512_and_si512(_mm512_srli_epi32(_mm512_cvtepu8_epi32(loadu128(q + 16 * h)), shift),
                                           _mm512_set1_epi32(15));
        _mm512_storeu_ps(dst + 32 * j + 16 * h, _mm512_sub_ps(_mm512_mul_ps(dl, _mm512_cvtepi32_ps(v)), ml));
      }
    }
  }
}

void dequantize_q6_k(const void* src, float* dst, int64_t n) {
  const BlockQ6_K* b = static_cast<const BlockQ6_K*>(src);
  for (int64_t i = 0; i < n / kQKK; ++i, dst += kQKK) {
    const float d = f16_to_f32(b[i].d);
    for (int h = 0; h < 2; ++h) {
      for (int g = 0; g < 4; ++g) {
        for (int part = 0; part < 2; ++part) {
          const int l0 = 16 * part;
          const __m512i lbytes = _mm512_cvtepu8_epi32(loadu128(b[i].ql + 64 * h + 32 * (g & 1) + l0));
          const __m512i hbytes = _mm512_cvtepu8_epi32(loadu128(b[i].qh + 32 * h + l0));
          const __m512i low = _mm512_and_si512(_mm512_srli_epi32(lbytes, g < 2 ? 0 : 4), _mm512_set1_epi32(15));
          const __m512i high = _mm512_and_si512(_mm512_srli_epi32(hbytes, 2 * g), _mm512_set1_epi32(3));
          const __m512i q = _mm512_sub_epi32(_mm512_or_si512(low, _mm512_slli_epi32(high, 4)), _mm512_set1_epi32(32));
          const int e = 128 * h + 32 * g + l0;
          const __m512 dl = _mm512_set1_ps(d * static_cast<float>(b[i].scales[e / 16]));
          _mm512_storeu_ps(dst + e, _mm512_mul_ps(dl, _mm512_cvtepi32_ps(q)));
        }
      }
    }
  }
}

// VNNI forms of the integer steps of the interleaved kernels.
struct VnniOps {
  static __m256i dpbusd(__m256i acc, __m256i u, __m256i a) { return _mm256_dpbusd_epi32(acc, u, a); }
  static __m256i dpwssd(__m256i acc, __m256i a, __m256i b) { return _mm256_dpwssd_epi32(acc, a, b); }
  static __m256i q8_prepare(__m256i w) { return _mm256_xor_si256(w, _mm256_set1_epi8(static_cast<char>(0x80))); }
  static __m256i q8_dot32(const __m256i* u, const uint8_t* aq, __m256i seed) {
    __m256i s0 = seed, s1 = _mm256_setzero_si256();
    for (int k = 0; k < 8; k += 2) {
      int32_t v0, v1;
      std::memcpy(&v0, aq + 4 * k, 4);
      std::memcpy(&v1, aq + 4 * k + 4, 4);
      s0 = _mm256_dpbusd_epi32(s0, u[k], _mm256_set1_epi32(v0));
      s1 = _mm256_dpbusd_epi32(s1, u[k + 1], _mm256_set1_epi32(v1));
    }
    return _mm256_add_epi32(s0, s1);
  }
};
#include "backend/cpu/repack_kernels_inl.h"
using X8 = X8Kernels<VnniOps>;

}  // namespace
}  // namespace tpinfer::cpu

#pragma GCC pop_options

namespace tpinfer::cpu {

void fill_avx512_kernels(KernelTable& table) {
  table.at(DType::Q4_0).gemm8 = X8::gemm8_q4_0<4>;
  table.at(DType::Q4_K).gemm8 = X8::gemm8_q4_k<4>;
  table.at(DType::Q8_0).gemm8 = X8::gemm8_q8_0<4>;
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
  table.at(DType::Q4_K).dequantize = dequantize_q4_k;
  table.at(DType::Q6_K).dequantize = dequantize_q6_k;
}

}  // namespace tpinfer::cpu
