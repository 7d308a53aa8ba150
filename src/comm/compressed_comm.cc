// The codes are defined on the f32 product x * (1/scale), rounded once: a fused
// multiply-add into the integer rounding (C++ contracts by default, and the
// AVX-512 wrappers have FMA) would round differently near ties, and codec
// implementations, hence ranks on different CPUs, would disagree.
#pragma GCC optimize("fp-contract=off")

#include "comm/compressed_comm.h"

#include <algorithm>
#include <bit>
#include <chrono>
#include <cmath>
#include <cstring>

#if defined(__x86_64__)
// GCC 12 flags the intrinsics' own _mm*_undefined_* placeholders as maybe
// uninitialised once they are inlined; the warning points into these headers.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>
#pragma GCC diagnostic pop
#endif

#include "core/enum_names.h"
#include "core/error.h"
#include "core/fp8.h"
#include "core/half.h"

namespace tpinfer {

constexpr EnumNames<Compression, 4> kCompressions{{"none", "bf16", "fp8", "int8"}};

Compression parse_compression(std::string_view name) {
  if (const auto c = kCompressions.find(name)) return *c;
  throw ConfigError(cat("unknown communication compression '", name, "'; valid: ", kCompressions.valid()));
}

const char* compression_name(Compression c) { return kCompressions[c]; }

size_t encoded_size(Compression c, size_t n) {
  const size_t blocks = (n + kCompressBlock - 1) / kCompressBlock;
  switch (c) {
    case Compression::None:
      return 4 * n;
    case Compression::BF16:
      return 2 * n;
    case Compression::FP8:
    case Compression::INT8:
      return 2 * blocks + n;
  }
  return 0;
}

namespace {

constexpr uint16_t kScaleNaN = 0x7fc0;      // bf16 quiet NaN
constexpr uint16_t kMinScaleBits = 0x0080;  // bf16 2^-126

float quant_max(Compression c) { return c == Compression::FP8 ? kFp8E4M3Max : 127.0f; }

// The reference's bf16 block scale: the smallest bf16 >= amax / q, at least
// 2^-126; NaN when the block holds Inf or NaN (amax_bits is the largest |x| as
// f32 bits). The fast codecs use block_scale_branchless, which must agree.
uint16_t block_scale(uint32_t amax_bits, float q) {
  if (amax_bits >= 0x7f800000u) return kScaleNaN;
  const float amax = std::bit_cast<float>(amax_bits);
  uint16_t h = static_cast<uint16_t>(std::bit_cast<uint32_t>(amax / q) >> 16);  // rounds down
  // bf16 * q (8 + 9 significant bits) is exact in f32, so the test is exact; the
  // quotient was rounded once, so at most one step up is ever needed.
  while (bf16_to_f32(h) * q < amax) ++h;
  return std::max(h, kMinScaleBits);
}

uint16_t load_scale(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return h;
}
void store_scale(uint8_t* p, uint16_t h) { std::memcpy(p, &h, 2); }

// ---- Reference: one value at a time, through core/fp8.h and core/half.h. ----

void encode_reference(Compression c, const float* x, size_t n, uint8_t* out) {
  if (c == Compression::None) {
    std::memcpy(out, x, 4 * n);
    return;
  }
  if (c == Compression::BF16) {
    for (size_t i = 0; i < n; ++i) {
      const uint16_t h = f32_to_bf16(x[i]);
      std::memcpy(out + 2 * i, &h, 2);
    }
    return;
  }
  const size_t blocks = (n + kCompressBlock - 1) / kCompressBlock;
  uint8_t* codes = out + 2 * blocks;
  const float q = quant_max(c);
  for (size_t b = 0; b < blocks; ++b) {
    const size_t begin = b * kCompressBlock, end = std::min(n, begin + kCompressBlock);
    float amax = 0.0f;
    bool finite = true;
    for (size_t i = begin; i < end; ++i) {
      finite = finite && std::isfinite(x[i]);
      amax = std::max(amax, std::fabs(x[i]));
    }
    const uint16_t h = finite ? block_scale(std::bit_cast<uint32_t>(amax), q) : kScaleNaN;
    store_scale(out + 2 * b, h);
    const float inv = 1.0f / bf16_to_f32(h);
    for (size_t i = begin; i < end; ++i) {
      if (!finite) {
        codes[i] = 0;
      } else if (c == Compression::FP8) {
        codes[i] = f32_to_fp8_e4m3(x[i] * inv);
      } else {
        const float r = std::clamp(std::nearbyint(x[i] * inv), -127.0f, 127.0f);
        codes[i] = static_cast<uint8_t>(static_cast<int8_t>(r));
      }
    }
  }
}

template <bool Add>
void decode_reference(Compression c, const uint8_t* in, size_t n, float* out) {
  auto put = [&](size_t i, float v) { out[i] = Add ? out[i] + v : v; };
  if (c == Compression::None) {
    for (size_t i = 0; i < n; ++i) {
      float v;
      std::memcpy(&v, in + 4 * i, 4);
      put(i, v);
    }
    return;
  }
  if (c == Compression::BF16) {
    for (size_t i = 0; i < n; ++i) put(i, bf16_to_f32(load_scale(in + 2 * i)));
    return;
  }
  const size_t blocks = (n + kCompressBlock - 1) / kCompressBlock;
  const uint8_t* codes = in + 2 * blocks;
  for (size_t i = 0; i < n; ++i) {
    const float s = bf16_to_f32(load_scale(in + 2 * (i / kCompressBlock)));
    const float v =
        c == Compression::FP8 ? fp8_e4m3_to_f32(codes[i]) : static_cast<float>(static_cast<int8_t>(codes[i]));
    put(i, v * s);
  }
}

// ---- Fast: branch-free loops that compilers vectorise. ----
// Values go in groups of kGroupBlocks blocks: first every block's amax, then
// every block's scale (vectorised across blocks), then the codes, block by block
// with a fixed trip count. The bodies are always inlined into a baseline wrapper
// and an AVX-512 one, so the same source is vectorised once per instruction set.
#define TPINFER_INLINE inline __attribute__((always_inline))

constexpr size_t kGroupBlocks = 64;

// Masks rather than ?: where one side is a float result: with trapping math GCC
// turns such a select into a branch, and a branch stops the vectoriser.
TPINFER_INLINE uint32_t fp8_encode_branchless(float v) {
  const uint32_t u = std::bit_cast<uint32_t>(v);
  const uint32_t sign = (u >> 24) & 0x80u;
  const uint32_t a = u & 0x7fffffffu;
  uint32_t normal = a - 0x3c000000u;  // rebias 127 -> 7
  normal = (normal + 0x7ffffu + ((normal >> 20) & 1u)) >> 20;
  // below 2^-6: round(|v| * 2^9) to nearest even through the 2^23 add
  const uint32_t sub = std::bit_cast<uint32_t>(std::bit_cast<float>(a) * 512.0f + 8388608.0f) - 0x4b000000u;
  const uint32_t is_sub = 0u - static_cast<uint32_t>(a < 0x3c800000u);
  uint32_t r = (sub & is_sub) | (normal & ~is_sub);
  const uint32_t is_sat = 0u - static_cast<uint32_t>(a >= 0x43e00000u);  // 448 and beyond: 448
  const uint32_t is_nan = 0u - static_cast<uint32_t>(a > 0x7f800000u);
  r = (r & ~is_sat) | (0x7eu & is_sat);
  r = (r & ~is_nan) | (0x7fu & is_nan);
  return sign | r;
}

TPINFER_INLINE float fp8_decode_branchless(uint8_t c) {
  const uint32_t c7 = c & 0x7fu;
  const uint32_t normal = (c7 << 20) + (120u << 23);  // rebias 7 -> 127
  const uint32_t sub = std::bit_cast<uint32_t>(static_cast<float>(static_cast<int32_t>(c & 7u)) * 0.001953125f);
  const uint32_t is_sub = 0u - static_cast<uint32_t>(c7 < 8u);
  const uint32_t is_nan = 0u - static_cast<uint32_t>(c7 == 0x7fu);
  uint32_t bits = (sub & is_sub) | (normal & ~is_sub);
  bits = (0x7fc00000u & is_nan) | (bits & ~is_nan);
  return std::bit_cast<float>(bits | (static_cast<uint32_t>(c & 0x80u) << 24));
}

TPINFER_INLINE uint8_t int8_encode_branchless(float v) {
  // Round to nearest even (|v| < 2^22). |v| <= 127 (1 + 2^-24)^2 since the scale
  // is >= amax / 127, so the clamp never acts; it is there for the int8 range.
  const auto q = static_cast<int32_t>((v + 12582912.0f) - 12582912.0f);
  return static_cast<uint8_t>(std::clamp(q, -127, 127));
}

TPINFER_INLINE uint16_t bf16_encode_branchless(float f) {
  const uint32_t u = std::bit_cast<uint32_t>(f);
  const uint32_t rounded = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
  const uint32_t nan = (u >> 16) | 0x40u;
  return static_cast<uint16_t>((u & 0x7fffffffu) > 0x7f800000u ? nan : rounded);
}

// block_scale() without the loop: amax / q is rounded once, so one step up from
// its truncation to bf16 is always enough (the reference loops until it is).
// Inf or NaN amax gives a non-finite quotient, h >= 0x7f80, mapped to the NaN
// scale; deciding that from h rather than from amax keeps the division
// unconditional, so the loop over blocks stays free of branches.
TPINFER_INLINE uint32_t block_scale_branchless(uint32_t amax_bits, float q) {
  const float amax = std::bit_cast<float>(amax_bits);
  uint32_t h = std::bit_cast<uint32_t>(amax / q) >> 16;
  h += std::bit_cast<float>(h << 16) * q < amax ? 1u : 0u;
  h = h < kMinScaleBits ? kMinScaleBits : h;
  return h >= 0x7f80u ? kScaleNaN : h;
}

TPINFER_INLINE uint32_t block_amax_bits(const float* __restrict x, size_t len) {
  uint32_t amax = 0;
  for (size_t i = 0; i < len; ++i) {
    const uint32_t a = std::bit_cast<uint32_t>(x[i]) & 0x7fffffffu;
    amax = a > amax ? a : amax;
  }
  return amax;
}

#if defined(__x86_64__)
// fp8_encode_branchless on 16 lanes with AVX-512 intrinsics: GCC's own
// vectorisation of it narrows to 8/16-bit lanes early, with many shuffles; this
// encodes a 1M-float vector about 20% faster.
__attribute__((target("avx512f,avx512bw,avx512vl"))) inline void fp8_encode16_avx512(const float* x, __m512 inv,
                                                                                     uint8_t* codes) {
  const __m512i u = _mm512_castps_si512(_mm512_mul_ps(_mm512_loadu_ps(x), inv));
  const __m512i sign = _mm512_and_si512(_mm512_srli_epi32(u, 24), _mm512_set1_epi32(0x80));
  const __m512i a = _mm512_and_si512(u, _mm512_set1_epi32(0x7fffffff));
  __m512i normal = _mm512_sub_epi32(a, _mm512_set1_epi32(0x3c000000));
  const __m512i odd = _mm512_and_si512(_mm512_srli_epi32(normal, 20), _mm512_set1_epi32(1));
  normal = _mm512_srli_epi32(_mm512_add_epi32(_mm512_add_epi32(normal, _mm512_set1_epi32(0x7ffff)), odd), 20);
  const __m512 scaled = _mm512_mul_ps(_mm512_castsi512_ps(a), _mm512_set1_ps(512.0f));
  const __m512i sub = _mm512_sub_epi32(_mm512_castps_si512(_mm512_add_ps(scaled, _mm512_set1_ps(8388608.0f))),
                                       _mm512_set1_epi32(0x4b000000));
  __m512i r = _mm512_mask_blend_epi32(_mm512_cmplt_epu32_mask(a, _mm512_set1_epi32(0x3c800000)), normal, sub);
  r = _mm512_mask_mov_epi32(r, _mm512_cmpge_epu32_mask(a, _mm512_set1_epi32(0x43e00000)), _mm512_set1_epi32(0x7e));
  r = _mm512_mask_mov_epi32(r, _mm512_cmpgt_epu32_mask(a, _mm512_set1_epi32(0x7f800000)), _mm512_set1_epi32(0x7f));
  _mm_storeu_si128(reinterpret_cast<__m128i*>(codes), _mm512_cvtepi32_epi8(_mm512_or_si512(r, sign)));
}

__attribute__((target("avx512f,avx512bw,avx512vl"))) inline void fp8_encode32_avx512(const float* x, float inv,
                                                                                     uint8_t* codes) {
  const __m512 vinv = _mm512_set1_ps(inv);
  fp8_encode16_avx512(x, vinv, codes);
  fp8_encode16_avx512(x + 16, vinv, codes + 16);
}
#endif

template <Compression C, bool Avx512 = false>
TPINFER_INLINE void encode_codes(const float* __restrict x, size_t len, float inv, uint8_t* __restrict codes) {
#if defined(__x86_64__)
  if constexpr (C == Compression::FP8 && Avx512) {
    if (len == kCompressBlock) {
      fp8_encode32_avx512(x, inv, codes);
      return;
    }
  }
#endif
  if constexpr (C == Compression::FP8) {
    // Codes are computed at 32 bits and narrowed in a second loop: narrowed in
    // one loop, GCC shrinks the bit twiddling to 8/16-bit lanes with costly shuffles.
    uint32_t wide[kCompressBlock];
    for (size_t i = 0; i < len; ++i) wide[i] = fp8_encode_branchless(x[i] * inv);
    for (size_t i = 0; i < len; ++i) codes[i] = static_cast<uint8_t>(wide[i]);
  } else {
    for (size_t i = 0; i < len; ++i) codes[i] = int8_encode_branchless(x[i] * inv);
  }
}

template <Compression C, bool Add>
TPINFER_INLINE void decode_codes(const uint8_t* __restrict codes, size_t len, float s, float* __restrict out) {
  for (size_t i = 0; i < len; ++i) {
    float v;
    if constexpr (C == Compression::FP8) {
      v = fp8_decode_branchless(codes[i]) * s;
    } else {
      v = static_cast<float>(static_cast<int8_t>(codes[i])) * s;
    }
    out[i] = Add ? out[i] + v : v;
  }
}

template <Compression C, bool Avx512>
TPINFER_INLINE void encode_fast(const float* __restrict x, size_t n, uint8_t* __restrict out) {
  if constexpr (C == Compression::None) {
    std::memcpy(out, x, 4 * n);
  } else if constexpr (C == Compression::BF16) {
    for (size_t i = 0; i < n; ++i) {
      const uint16_t h = bf16_encode_branchless(x[i]);
      std::memcpy(out + 2 * i, &h, 2);
    }
  } else {
    constexpr float q = C == Compression::FP8 ? kFp8E4M3Max : 127.0f;
    const size_t blocks = (n + kCompressBlock - 1) / kCompressBlock;
    uint8_t* __restrict codes = out + 2 * blocks;
    for (size_t g = 0; g < blocks; g += kGroupBlocks) {
      const size_t gb = std::min(kGroupBlocks, blocks - g);
      const bool whole = (g + gb) * kCompressBlock <= n;  // no short block in this group
      uint32_t amax[kGroupBlocks], scale32[kGroupBlocks];
      uint16_t scale[kGroupBlocks];
      float inv[kGroupBlocks];
      for (size_t b = 0; b < gb; ++b) {
        const size_t at = (g + b) * kCompressBlock;
        amax[b] =
            whole ? block_amax_bits(x + at, kCompressBlock) : block_amax_bits(x + at, std::min(kCompressBlock, n - at));
      }
      for (size_t b = 0; b < gb; ++b) scale32[b] = block_scale_branchless(amax[b], q);
      for (size_t b = 0; b < gb; ++b) {
        const uint32_t inverse = std::bit_cast<uint32_t>(1.0f / std::bit_cast<float>(scale32[b] << 16));
        inv[b] = std::bit_cast<float>(scale32[b] == kScaleNaN ? 0u : inverse);  // unused then
        scale[b] = static_cast<uint16_t>(scale32[b]);
      }
      std::memcpy(out + 2 * g, scale, 2 * gb);
      for (size_t b = 0; b < gb; ++b) {
        const size_t at = (g + b) * kCompressBlock;
        if (scale[b] == kScaleNaN) {
          std::memset(codes + at, 0, std::min(kCompressBlock, n - at));
        } else if (whole) {
          encode_codes<C, Avx512>(x + at, kCompressBlock, inv[b], codes + at);
        } else {
          encode_codes<C, Avx512>(x + at, std::min(kCompressBlock, n - at), inv[b], codes + at);
        }
      }
    }
  }
}

template <Compression C, bool Add>
TPINFER_INLINE void decode_fast(const uint8_t* __restrict in, size_t n, float* __restrict out) {
  if constexpr (C == Compression::None) {
    if constexpr (!Add) {
      std::memcpy(out, in, 4 * n);
    } else {
      for (size_t i = 0; i < n; ++i) {
        float v;
        std::memcpy(&v, in + 4 * i, 4);
        out[i] += v;
      }
    }
  } else if constexpr (C == Compression::BF16) {
    for (size_t i = 0; i < n; ++i) {
      uint16_t h;
      std::memcpy(&h, in + 2 * i, 2);
      const float v = std::bit_cast<float>(static_cast<uint32_t>(h) << 16);
      out[i] = Add ? out[i] + v : v;
    }
  } else {
    const size_t blocks = (n + kCompressBlock - 1) / kCompressBlock;
    const uint8_t* __restrict codes = in + 2 * blocks;
    const size_t full = n / kCompressBlock;
    for (size_t b = 0; b < full; ++b) {
      decode_codes<C, Add>(codes + b * kCompressBlock, kCompressBlock, bf16_to_f32(load_scale(in + 2 * b)),
                           out + b * kCompressBlock);
    }
    if (full < blocks) {
      decode_codes<C, Add>(codes + full * kCompressBlock, n - full * kCompressBlock,
                           bf16_to_f32(load_scale(in + 2 * full)), out + full * kCompressBlock);
    }
  }
}

#define TPINFER_CODEC_SWITCH(c, call_tmpl) \
  switch (c) {                             \
    case Compression::None:                \
      call_tmpl(Compression::None);        \
      break;                               \
    case Compression::BF16:                \
      call_tmpl(Compression::BF16);        \
      break;                               \
    case Compression::FP8:                 \
      call_tmpl(Compression::FP8);         \
      break;                               \
    case Compression::INT8:                \
      call_tmpl(Compression::INT8);        \
      break;                               \
  }

#define TPINFER_DECODE(C) decode_fast<C, false>(in, n, out)
#define TPINFER_DECODE_ADD(C) decode_fast<C, true>(in, n, out)

#define TPINFER_ENCODE(C) encode_fast<C, false>(x, n, out)
void encode_portable(Compression c, const float* x, size_t n, uint8_t* out) { TPINFER_CODEC_SWITCH(c, TPINFER_ENCODE) }
#undef TPINFER_ENCODE
void decode_portable(Compression c, const uint8_t* in, size_t n, float* out) { TPINFER_CODEC_SWITCH(c, TPINFER_DECODE) }
void decode_add_portable(Compression c, const uint8_t* in, size_t n,
                         float* out){TPINFER_CODEC_SWITCH(c, TPINFER_DECODE_ADD)}
#if defined(__x86_64__)
#define TPINFER_AVX512 __attribute__((target("avx2,avx512f,avx512bw,avx512vl,avx512dq,prefer-vector-width=512")))
#define TPINFER_ENCODE(C) encode_fast<C, true>(x, n, out)
TPINFER_AVX512
    void encode_avx512(Compression c, const float* x, size_t n, uint8_t* out){TPINFER_CODEC_SWITCH(c, TPINFER_ENCODE)}
#undef TPINFER_ENCODE
TPINFER_AVX512 void decode_avx512(Compression c, const uint8_t* in, size_t n,
                                  float* out){TPINFER_CODEC_SWITCH(c, TPINFER_DECODE)} TPINFER_AVX512
    void decode_add_avx512(Compression c, const uint8_t* in, size_t n, float* out) {
  TPINFER_CODEC_SWITCH(c, TPINFER_DECODE_ADD)
}
#endif

void require(CodecImpl impl) {
  if (!codec_available(impl)) throw ConfigError(cat("codec ", codec_name(impl), " is not available on this CPU"));
}

}  // namespace

bool codec_available(CodecImpl impl) {
  if (impl != CodecImpl::Avx512) return true;
#if defined(__x86_64__)
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
         __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
#else
  return false;
#endif
}

CodecImpl best_codec() { return codec_available(CodecImpl::Avx512) ? CodecImpl::Avx512 : CodecImpl::Portable; }

const char* codec_name(CodecImpl impl) {
  switch (impl) {
    case CodecImpl::Reference:
      return "reference";
    case CodecImpl::Portable:
      return "portable";
    case CodecImpl::Avx512:
      return "avx512";
  }
  return "unknown";
}

void encode_values(Compression c, const float* x, size_t n, uint8_t* out, CodecImpl impl) {
  switch (impl) {
    case CodecImpl::Reference:
      return encode_reference(c, x, n, out);
    case CodecImpl::Portable:
      return encode_portable(c, x, n, out);
    case CodecImpl::Avx512:
      require(impl);
#if defined(__x86_64__)
      return encode_avx512(c, x, n, out);
#endif
      break;
  }
}

void decode_values(Compression c, const uint8_t* in, size_t n, float* out, CodecImpl impl) {
  switch (impl) {
    case CodecImpl::Reference:
      return decode_reference<false>(c, in, n, out);
    case CodecImpl::Portable:
      return decode_portable(c, in, n, out);
    case CodecImpl::Avx512:
      require(impl);
#if defined(__x86_64__)
      return decode_avx512(c, in, n, out);
#endif
      break;
  }
}

void decode_add_values(Compression c, const uint8_t* in, size_t n, float* acc, CodecImpl impl) {
  switch (impl) {
    case CodecImpl::Reference:
      return decode_reference<true>(c, in, n, acc);
    case CodecImpl::Portable:
      return decode_add_portable(c, in, n, acc);
    case CodecImpl::Avx512:
      require(impl);
#if defined(__x86_64__)
      return decode_add_avx512(c, in, n, acc);
#endif
      break;
  }
}

// ---- CompressedCommunicator ----

namespace {

// Adds one call of `kind` to `mine`, with the bytes the inner communicator moved
// meanwhile, the wall time, and as wait the inner collectives' wait (the ranks
// encode alike, so a late rank is as late at the inner collective), when it
// goes out of scope (exceptions included).
class InnerTally {
 public:
  InnerTally(CommStats& mine, const Communicator& inner, Collective kind)
      : mine_(mine),
        inner_(inner),
        kind_(kind),
        bytes_before_(inner.stats().total().bytes),
        wait_before_(inner.stats().total().wait_nanos),
        start_(std::chrono::steady_clock::now()) {}
  ~InnerTally() {
    CollectiveCounter& c = mine_[kind_];
    const uint64_t after = inner_.stats().total().bytes;
    c.calls += 1;
    c.bytes += after >= bytes_before_ ? after - bytes_before_ : 0;  // 0 if someone reset the inner stats
    const auto nanos = static_cast<uint64_t>(
        std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - start_).count());
    const uint64_t wait_after = inner_.stats().total().wait_nanos;
    c.nanos += nanos;
    c.wait_nanos += std::min(nanos, wait_after >= wait_before_ ? wait_after - wait_before_ : 0);
  }
  InnerTally(const InnerTally&) = delete;
  InnerTally& operator=(const InnerTally&) = delete;

 private:
  CommStats& mine_;
  const Communicator& inner_;
  Collective kind_;
  uint64_t bytes_before_;
  uint64_t wait_before_;
  std::chrono::steady_clock::time_point start_;
};

}  // namespace

CompressedCommunicator::CompressedCommunicator(std::unique_ptr<Communicator> inner, Compression compression)
    : inner_(std::move(inner)), compression_(compression), codec_(best_codec()) {
  if (!inner_) throw ConfigError("CompressedCommunicator needs an inner communicator");
}

void CompressedCommunicator::all_reduce_sum(float* data, size_t n) {
  InnerTally tally(stats_, *inner_, Collective::AllReduce);
  const size_t p = static_cast<size_t>(inner_->size());
  if (compression_ == Compression::None || p == 1 || n == 0) {
    inner_->all_reduce_sum(data, n);
    return;
  }
  try {
    compressed_all_reduce(data, n);
  } catch (const CommError& e) {
    throw CommError(
        cat(compression_name(compression_), " all_reduce of ", n, " values on rank ", inner_->rank(), ": ", e.what()));
  }
}

void CompressedCommunicator::compressed_all_reduce(float* data, size_t n) {
  const Compression c = compression_;
  const size_t p = static_cast<size_t>(inner_->size());
  const size_t rank = static_cast<size_t>(inner_->rank());
  if (p == 2) {
    // Two ranks: each sends its whole contribution once and both sum the two
    // decoded vectors in rank order (identical results on both). The same
    // bytes as reduce-scatter + all-gather (two halves each way), in one
    // exchange instead of two, so half the link latency; and each value is
    // quantized once, not twice.
    const size_t bytes = encoded_size(c, n);
    send_buf_.resize(bytes);
    recv_buf_.resize(2 * bytes);
    encode_values(c, data, n, send_buf_.data(), codec_);
    inner_->all_gather_bytes(send_buf_.data(), bytes, recv_buf_.data());
    decode_values(c, recv_buf_.data(), n, data, codec_);
    decode_add_values(c, recv_buf_.data() + bytes, n, data, codec_);
    return;
  }
  auto slice_begin = [&](size_t j) { return n * j / p; };
  const size_t chunk = encoded_size(c, (n + p - 1) / p);  // the longest slice
  send_buf_.resize(p * chunk);
  recv_buf_.resize(p * chunk);
  own_buf_.resize(chunk);

  // Reduce-scatter in the compressed format.
  for (size_t j = 0; j < p; ++j) {
    const size_t b = slice_begin(j), e = slice_begin(j + 1);
    encode_values(c, data + b, e - b, send_buf_.data() + j * chunk, codec_);
  }
  inner_->all_to_all(send_buf_.data(), chunk, recv_buf_.data());
  const size_t mine = slice_begin(rank + 1) - slice_begin(rank);
  acc_.resize(mine);
  decode_values(c, recv_buf_.data(), mine, acc_.data(), codec_);
  for (size_t r = 1; r < p; ++r) decode_add_values(c, recv_buf_.data() + r * chunk, mine, acc_.data(), codec_);

  // All-gather in the compressed format; every slice, this rank's too, is decoded
  // from the same bytes on every rank.
  encode_values(c, acc_.data(), mine, own_buf_.data(), codec_);
  inner_->all_gather_bytes(own_buf_.data(), chunk, recv_buf_.data());
  for (size_t j = 0; j < p; ++j) {
    const size_t b = slice_begin(j), e = slice_begin(j + 1);
    decode_values(c, recv_buf_.data() + j * chunk, e - b, data + b, codec_);
  }
}

void CompressedCommunicator::all_gather(const float* send, std::span<const size_t> counts, float* recv) {
  InnerTally tally(stats_, *inner_, Collective::AllGather);
  inner_->all_gather(send, counts, recv);
}

void CompressedCommunicator::broadcast(void* data, size_t bytes, int root) {
  InnerTally tally(stats_, *inner_, Collective::Broadcast);
  inner_->broadcast(data, bytes, root);
}

void CompressedCommunicator::broadcast_wait(void* data, size_t bytes, int root) {
  InnerTally tally(stats_, *inner_, Collective::Broadcast);
  inner_->broadcast_wait(data, bytes, root);
}

void CompressedCommunicator::all_gather_bytes(const void* send, size_t bytes, void* recv) {
  InnerTally tally(stats_, *inner_, Collective::AllGather);
  inner_->all_gather_bytes(send, bytes, recv);
}

void CompressedCommunicator::all_to_all(const void* send, size_t bytes, void* recv) {
  InnerTally tally(stats_, *inner_, Collective::AllToAll);
  inner_->all_to_all(send, bytes, recv);
}

void CompressedCommunicator::send(const void* data, size_t bytes, int dst) {
  InnerTally tally(stats_, *inner_, Collective::SendRecv);
  inner_->send(data, bytes, dst);
}

void CompressedCommunicator::recv(void* data, size_t bytes, int src) {
  InnerTally tally(stats_, *inner_, Collective::SendRecv);
  inner_->recv(data, bytes, src);
}

void CompressedCommunicator::recv_wait(void* data, size_t bytes, int src) {
  InnerTally tally(stats_, *inner_, Collective::SendRecv);
  inner_->recv_wait(data, bytes, src);
}

void CompressedCommunicator::barrier() {
  InnerTally tally(stats_, *inner_, Collective::Barrier);
  inner_->barrier();
}

}  // namespace tpinfer
