// The SIMD kernels over the interleaved layout of repack.h, written once for
// AVX2 and AVX-512: included by kernels_avx2.cc and kernels_avx512.cc inside
// their target pragmas and anonymous namespaces (no include guard, no headers of
// its own: <immintrin.h>, <cstring>, repack.h and quant.h come before). `Ops`
// gives the two integer dot steps:
//   Ops::dpbusd(acc, u, a): acc + sum of 4 products u8 x s8 per 32-bit lane
//   Ops::dpwssd(acc, a, b): acc + sum of 2 products s16 x s16 per 32-bit lane
//   Ops::q8_prepare(v), Ops::q8_dot32(u, aq, seed): Q8_0's signed weight bytes
//     made ready, and their exact dot with 32 activation values (VNNI: the
//     weights made unsigned by + 128, removed again through seed = -128 sum(a);
//     AVX2: vpsignb moves the weights' signs onto the activations, seed unused)
// (VNNI instructions, or vpmaddubsw/vpmaddwd, which give the same integers here:
// nibbles <= 15, so pair sums stay far below int16 saturation).
//
// 256-bit vectors: 8 int32 lanes = the 8 rows of a group. Per x8 block and
// token the activation's 4-byte pieces are broadcast (a load-port operation)
// and meet the 8 rows' nibbles in one vpdpbusd. The float steps per row and
// token are exactly those of the scalar reference (repack.cc), in the same
// order whatever the token count: kTokens only sets how many tokens share one
// unpacking of the weights.

template <class Ops>
struct X8Kernels {
  static inline __m256i bcast32(const uint8_t* p) {
    int32_t v;
    std::memcpy(&v, p, 4);
    return _mm256_set1_epi32(v);
  }

  // The 128 nibble bytes of one 32-value column: u[c] = values 4c..4c+3 of each
  // row, u[4 + c] = values 16+4c..16+4c+3.
  static inline void unpack(const uint8_t* p, __m256i* u) {
    const __m256i low4 = _mm256_set1_epi8(0x0F);
#pragma GCC unroll 4
    for (int c = 0; c < 4; ++c) {
      const __m256i raw = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + 32 * c));
      u[c] = _mm256_and_si256(raw, low4);
      u[4 + c] = _mm256_and_si256(_mm256_srli_epi16(raw, 4), low4);
    }
  }

  // Integer dot of 32 activation values at aq with the 8 rows of u, plus seed.
  static inline __m256i dot32(const __m256i* u, const uint8_t* aq, __m256i seed) {
    __m256i s0 = seed, s1 = _mm256_setzero_si256();
#pragma GCC unroll 4
    for (int c = 0; c < 4; ++c) {
      s0 = Ops::dpbusd(s0, u[c], bcast32(aq + 4 * c));
      s1 = Ops::dpbusd(s1, u[4 + c], bcast32(aq + 16 + 4 * c));
    }
    return _mm256_add_epi32(s0, s1);
  }

  // Q4_0 (kQ8 false) or Q8_0 (kQ8 true) x8 blocks against Q8_0 activations.
  template <int T, bool kQ8>
  static void q32(int64_t nb, const uint8_t* w, const uint8_t* a, uint64_t as, const int32_t* sums, int64_t ss,
                  float* y, int64_t ys) {
    constexpr int kBytes = kQ8 ? kQ8_0x8Bytes : kQ4_0x8Bytes;
    // A group is one sequential stream. At one token (decode) the hardware
    // prefetchers alone read it fastest: prefetching 16 blocks ahead costs
    // 10-20% of DRAM read speed (GemvCold). With several tokens (prefill) the
    // weights are reused from cache and the prefetch gains 1-5%.
    constexpr int kPrefetchBlocks = 16;
    __m256 acc[T];
#pragma GCC unroll 8
    for (int t = 0; t < T; ++t) acc[t] = _mm256_setzero_ps();
    for (int64_t ib = 0; ib < nb; ++ib) {
      const uint8_t* blk = w + ib * kBytes;
      if constexpr (T > 1) {
#pragma GCC unroll 8
        for (int off = 0; off < kBytes; off += 64) {
          _mm_prefetch(reinterpret_cast<const char*>(blk + kPrefetchBlocks * kBytes + off), _MM_HINT_T0);
        }
      }
      const __m256 dw = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(blk)));
      __m256i u[8];
      if constexpr (kQ8) {
#pragma GCC unroll 8
        for (int k = 0; k < 8; ++k) {
          u[k] = Ops::q8_prepare(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk + 16 + 32 * k)));
        }
      } else {
        unpack(blk + 16, u);
      }
#pragma GCC unroll 8
      for (int t = 0; t < T; ++t) {
        const uint8_t* ab = a + t * as + ib * sizeof(BlockQ8_0);
        uint16_t dah;
        std::memcpy(&dah, ab, 2);
        const __m256i seed = _mm256_set1_epi32(sums[t * ss + ib]);
        __m256i s;
        if constexpr (kQ8) {
          s = Ops::q8_dot32(u, ab + 2, seed);
        } else {
          s = dot32(u, ab + 2, seed);
        }
        const __m256 scale = _mm256_mul_ps(dw, _mm256_set1_ps(_cvtsh_ss(dah)));
        acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), scale, acc[t]);
      }
    }
#pragma GCC unroll 8
    for (int t = 0; t < T; ++t) _mm256_storeu_ps(y + t * ys, acc[t]);
  }

  template <int T>
  static void q4_k(int64_t nb, const uint8_t* w, const uint8_t* a, uint64_t as, const int32_t* sums, int64_t ss,
                   float* y, int64_t ys) {
    __m256 acc[T];
#pragma GCC unroll 8
    for (int t = 0; t < T; ++t) acc[t] = _mm256_setzero_ps();
    for (int64_t ib = 0; ib < nb; ++ib) {
      const uint8_t* blk = w + ib * kQ4_Kx8Bytes;
      __m256i isum[T];
#pragma GCC unroll 8
      for (int t = 0; t < T; ++t) isum[t] = _mm256_setzero_si256();
#pragma GCC unroll 8
      for (int j = 0; j < 8; ++j) {
        const uint8_t* qs = blk + 160 + 128 * j;
        if constexpr (T > 1) {  // as in q32: decode streams best without it
          _mm_prefetch(reinterpret_cast<const char*>(qs + kQ4_Kx8Bytes), _MM_HINT_T0);
          _mm_prefetch(reinterpret_cast<const char*>(qs + kQ4_Kx8Bytes + 64), _MM_HINT_T0);
        }
        int64_t scales8;
        std::memcpy(&scales8, blk + 32 + 8 * j, 8);
        const __m256i sc = _mm256_cvtepu8_epi32(_mm_cvtsi64_si128(scales8));
        __m256i u[8];
        unpack(qs, u);
#pragma GCC unroll 8
        for (int t = 0; t < T; ++t) {
          const uint8_t* aq = a + t * as + ib * sizeof(BlockQ8_K) + 4 + 32 * j;
          isum[t] = _mm256_add_epi32(isum[t], _mm256_mullo_epi32(dot32(u, aq, _mm256_setzero_si256()), sc));
        }
      }
      const __m256 d = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(blk)));
      const __m256 dmin = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(blk + 16)));
      __m256i mins[4];
#pragma GCC unroll 4
      for (int k = 0; k < 4; ++k) {
        mins[k] = _mm256_cvtepu8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(blk + 96 + 16 * k)));
      }
#pragma GCC unroll 8
      for (int t = 0; t < T; ++t) {
        const int32_t* st = sums + t * ss + ib * 4;
        __m256i msum = _mm256_setzero_si256();
#pragma GCC unroll 4
        for (int k = 0; k < 4; ++k) msum = Ops::dpwssd(msum, mins[k], _mm256_set1_epi32(st[k]));
        float da;
        std::memcpy(&da, a + t * as + ib * sizeof(BlockQ8_K), 4);
        const __m256 vda = _mm256_set1_ps(da);
        acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum[t]), _mm256_mul_ps(d, vda), acc[t]);
        acc[t] = _mm256_fnmadd_ps(_mm256_cvtepi32_ps(msum), _mm256_mul_ps(dmin, vda), acc[t]);
      }
    }
#pragma GCC unroll 8
    for (int t = 0; t < T; ++t) _mm256_storeu_ps(y + t * ys, acc[t]);
  }

  // Gemm8Fn over kernel K (q32 or q4_k): groups outer, so a group's weights
  // stay in cache while every token of the call passes over them.
  template <int kTokens, void (*K1)(int64_t, const uint8_t*, const uint8_t*, uint64_t, const int32_t*, int64_t,
                                    float*, int64_t),
            void (*KT)(int64_t, const uint8_t*, const uint8_t*, uint64_t, const int32_t*, int64_t, float*, int64_t)>
  static void gemm8(int64_t n, const uint8_t* w, int64_t ng, const uint8_t* a, uint64_t as, const int32_t* sums,
                    int64_t ss, int64_t nt, float* y, int64_t ys, int64_t block_values, int64_t x8_bytes) {
    const int64_t nb = n / block_values;
    const uint64_t gb = static_cast<uint64_t>(nb * x8_bytes);
    for (int64_t g = 0; g < ng; ++g) {
      const uint8_t* wg = w + g * gb;
      float* yg = y + g * kInterleave;
      int64_t t = 0;
      for (; t + kTokens <= nt; t += kTokens) KT(nb, wg, a + t * as, as, sums + t * ss, ss, yg + t * ys, ys);
      for (; t < nt; ++t) K1(nb, wg, a + t * as, as, sums + t * ss, ss, yg + t * ys, ys);
    }
  }

  template <int kTokens>
  static void gemm8_q4_0(int64_t n, const uint8_t* w, int64_t ng, const uint8_t* a, uint64_t as, const int32_t* sums,
                         int64_t ss, int64_t nt, float* y, int64_t ys) {
    gemm8<kTokens, q32<1, false>, q32<kTokens, false>>(n, w, ng, a, as, sums, ss, nt, y, ys, kQK, kQ4_0x8Bytes);
  }
  template <int kTokens>
  static void gemm8_q8_0(int64_t n, const uint8_t* w, int64_t ng, const uint8_t* a, uint64_t as, const int32_t* sums,
                         int64_t ss, int64_t nt, float* y, int64_t ys) {
    gemm8<kTokens, q32<1, true>, q32<kTokens, true>>(n, w, ng, a, as, sums, ss, nt, y, ys, kQK, kQ8_0x8Bytes);
  }
  template <int kTokens>
  static void gemm8_q4_k(int64_t n, const uint8_t* w, int64_t ng, const uint8_t* a, uint64_t as, const int32_t* sums,
                         int64_t ss, int64_t nt, float* y, int64_t ys) {
    gemm8<kTokens, q4_k<1>, q4_k<kTokens>>(n, w, ng, a, as, sums, ss, nt, y, ys, kQKK, kQ4_Kx8Bytes);
  }
};
