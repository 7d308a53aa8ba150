// The interleaved layout of repack.h: packing at load, unpacking one row (for
// matmul_ref and tests), the activation sums, and the scalar kernels (the
// reference the SIMD ones must match bit for bit).

#include "backend/cpu/repack.h"

#include <cmath>
#include <cstring>

#include "backend/cpu/kernels.h"
#include "backend/cpu/quant.h"
#include "core/error.h"
#include "core/half.h"

namespace tpinfer::cpu {
namespace {

int64_t blocks_per_row(DType t, int64_t cols) { return cols / static_cast<int64_t>(dtype_info(t).block_size); }

inline void k4_scales_mins(const uint8_t* s, int* sc, int* m) {
  for (int j = 0; j < 4; ++j) {
    sc[j] = s[j] & 63;
    m[j] = s[j + 4] & 63;
    sc[j + 4] = (s[j + 8] & 15) | ((s[j] >> 6) << 4);
    m[j + 4] = (s[j + 8] >> 4) | ((s[j + 4] >> 6) << 4);
  }
}

inline void k4_pack_scales_mins(const int* sc, const int* m, uint8_t* s) {
  for (int j = 0; j < 4; ++j) {
    s[j] = static_cast<uint8_t>((sc[j] & 63) | ((sc[j + 4] >> 4) << 6));
    s[j + 4] = static_cast<uint8_t>((m[j] & 63) | ((m[j + 4] >> 4) << 6));
    s[j + 8] = static_cast<uint8_t>((sc[j + 4] & 15) | ((m[j + 4] & 15) << 4));
  }
}

// Value i (0..31) of row r from 128 nibble bytes.
inline int packed_nibble(const uint8_t* p, int r, int i) {
  const int k = i % 16;
  const uint8_t b = p[32 * (k / 4) + 4 * r + k % 4];
  return i < 16 ? b & 15 : b >> 4;
}

// Byte k of a Q4_0 block's qs holds values k and k + 16, the same pair a byte
// of the interleaved layout holds: packing is a copy of 4-byte pieces.
void pack_q4_0(const uint8_t* const* rows, uint8_t* out) {
  for (int r = 0; r < kInterleave; ++r) {
    std::memcpy(out + 2 * r, rows[r], 2);
    for (int c = 0; c < 4; ++c) std::memcpy(out + 16 + 32 * c + 4 * r, rows[r] + 2 + 4 * c, 4);
  }
}

void pack_q8_0(const uint8_t* const* rows, uint8_t* out) {
  for (int r = 0; r < kInterleave; ++r) {
    std::memcpy(out + 2 * r, rows[r], 2);
    for (int k = 0; k < 8; ++k) std::memcpy(out + 16 + 32 * k + 4 * r, rows[r] + 2 + 4 * k, 4);
  }
}

void unpack_q8_0(const uint8_t* x8, int r, uint8_t* block) {
  std::memcpy(block, x8 + 2 * r, 2);
  for (int k = 0; k < 8; ++k) std::memcpy(block + 2 + 4 * k, x8 + 16 + 32 * k + 4 * r, 4);
}

void pack_q4_k(const uint8_t* const* rows, uint8_t* out) {
  int sc[kInterleave][8], m[kInterleave][8];
  for (int r = 0; r < kInterleave; ++r) {
    std::memcpy(out + 2 * r, rows[r], 2);
    std::memcpy(out + 16 + 2 * r, rows[r] + 2, 2);
    k4_scales_mins(rows[r] + 4, sc[r], m[r]);
  }
  for (int j = 0; j < 8; ++j) {
    for (int r = 0; r < kInterleave; ++r) {
      out[32 + 8 * j + r] = static_cast<uint8_t>(sc[r][j]);
      out[96 + 16 * (j / 2) + 2 * r + j % 2] = static_cast<uint8_t>(m[r][j]);
    }
  }
  // Sub-block j is the low (j even) or high (j odd) nibbles of qs bytes
  // 32 (j / 2) .. + 31; an interleaved byte pairs values i and i + 16 of it.
  for (int j = 0; j < 8; ++j) {
    uint8_t* o = out + 160 + 128 * j;
    for (int r = 0; r < kInterleave; ++r) {
      const uint8_t* q = rows[r] + 16 + 32 * (j / 2);
      for (int c = 0; c < 4; ++c) {
        for (int i = 0; i < 4; ++i) {
          const uint8_t b0 = q[4 * c + i], b1 = q[16 + 4 * c + i];
          o[32 * c + 4 * r + i] = j % 2 == 0 ? static_cast<uint8_t>((b0 & 15) | ((b1 & 15) << 4))
                                             : static_cast<uint8_t>((b0 >> 4) | (b1 & 0xF0));
        }
      }
    }
  }
}

void unpack_q4_0(const uint8_t* x8, int r, uint8_t* block) {
  std::memcpy(block, x8 + 2 * r, 2);
  for (int i = 0; i < 16; ++i) {
    block[2 + i] = static_cast<uint8_t>(packed_nibble(x8 + 16, r, i) | (packed_nibble(x8 + 16, r, i + 16) << 4));
  }
}

void unpack_q4_k(const uint8_t* x8, int r, uint8_t* block) {
  std::memcpy(block, x8 + 2 * r, 2);
  std::memcpy(block + 2, x8 + 16 + 2 * r, 2);
  int sc[8], m[8];
  for (int j = 0; j < 8; ++j) {
    sc[j] = x8[32 + 8 * j + r];
    m[j] = x8[96 + 16 * (j / 2) + 2 * r + j % 2];
  }
  k4_pack_scales_mins(sc, m, block + 4);
  uint8_t* qs = block + 16;
  for (int c = 0; c < 4; ++c) {
    for (int l = 0; l < 32; ++l) {
      const int lo = packed_nibble(x8 + 160 + 128 * (2 * c), r, l);
      const int hi = packed_nibble(x8 + 160 + 128 * (2 * c + 1), r, l);
      qs[32 * c + l] = static_cast<uint8_t>(lo | (hi << 4));
    }
  }
}

// ---- Scalar kernels (see repack.h for the arithmetic they fix).

inline int32_t nibble_dot(const uint8_t* p, int r, const int8_t* a) {
  int32_t s = 0;
  for (int c = 0; c < 4; ++c) {
    for (int i = 0; i < 4; ++i) {
      const uint8_t b = p[32 * c + 4 * r + i];
      s += (b & 15) * a[4 * c + i] + (b >> 4) * a[16 + 4 * c + i];
    }
  }
  return s;
}

inline int32_t byte_dot(const uint8_t* p, int r, const int8_t* a) {
  int32_t s = 0;
  for (int k = 0; k < 8; ++k) {
    for (int i = 0; i < 4; ++i) s += static_cast<int8_t>(p[32 * k + 4 * r + i]) * a[4 * k + i];
  }
  return s;
}

// Q4_0 (kQ8 false) or Q8_0 (kQ8 true).
template <bool kQ8>
void gemm8_q32_scalar(int64_t n, const uint8_t* w, int64_t ng, const uint8_t* a, uint64_t as, const int32_t* sums,
                      int64_t ss, int64_t nt, float* y, int64_t ys) {
  const int64_t nb = n / kQK;
  constexpr int kBytes = kQ8 ? kQ8_0x8Bytes : kQ4_0x8Bytes;
  const uint64_t gb = x8_group_bytes(kQ8 ? DType::Q8_0 : DType::Q4_0, n);
  for (int64_t g = 0; g < ng; ++g) {
    for (int64_t t = 0; t < nt; ++t) {
      float acc[kInterleave] = {};
      for (int64_t ib = 0; ib < nb; ++ib) {
        const uint8_t* blk = w + g * gb + ib * kBytes;
        const uint8_t* ab = a + t * as + ib * sizeof(BlockQ8_0);
        uint16_t dah;
        std::memcpy(&dah, ab, 2);
        const float da = f16_to_f32(dah);
        const int8_t* aq = reinterpret_cast<const int8_t*>(ab + 2);
        for (int r = 0; r < kInterleave; ++r) {
          uint16_t dh;
          std::memcpy(&dh, blk + 2 * r, 2);
          const int32_t s = kQ8 ? byte_dot(blk + 16, r, aq) : sums[t * ss + ib] + nibble_dot(blk + 16, r, aq);
          acc[r] = std::fma(static_cast<float>(s), f16_to_f32(dh) * da, acc[r]);
        }
      }
      for (int r = 0; r < kInterleave; ++r) y[t * ys + g * kInterleave + r] = acc[r];
    }
  }
}

void gemm8_q4_k_scalar(int64_t n, const uint8_t* w, int64_t ng, const uint8_t* a, uint64_t as, const int32_t* sums,
                       int64_t ss, int64_t nt, float* y, int64_t ys) {
  const int64_t nb = n / kQKK;
  const uint64_t gb = x8_group_bytes(DType::Q4_K, n);
  for (int64_t g = 0; g < ng; ++g) {
    for (int64_t t = 0; t < nt; ++t) {
      float acc[kInterleave] = {};
      for (int64_t ib = 0; ib < nb; ++ib) {
        const uint8_t* blk = w + g * gb + ib * kQ4_Kx8Bytes;
        const uint8_t* ab = a + t * as + ib * sizeof(BlockQ8_K);
        float da;
        std::memcpy(&da, ab, 4);
        const int8_t* aq = reinterpret_cast<const int8_t*>(ab + 4);
        for (int r = 0; r < kInterleave; ++r) {
          int32_t isum = 0, msum = 0;
          for (int j = 0; j < 8; ++j) isum += blk[32 + 8 * j + r] * nibble_dot(blk + 160 + 128 * j, r, aq + 32 * j);
          for (int k = 0; k < 4; ++k) {
            const uint32_t pair = static_cast<uint32_t>(sums[t * ss + ib * 4 + k]);
            const int16_t lo = static_cast<int16_t>(pair & 0xFFFF), hi = static_cast<int16_t>(pair >> 16);
            msum += blk[96 + 16 * k + 2 * r] * lo + blk[96 + 16 * k + 2 * r + 1] * hi;
          }
          uint16_t dh, mh;
          std::memcpy(&dh, blk + 2 * r, 2);
          std::memcpy(&mh, blk + 16 + 2 * r, 2);
          acc[r] = std::fma(static_cast<float>(isum), f16_to_f32(dh) * da, acc[r]);
          acc[r] = std::fma(-static_cast<float>(msum), f16_to_f32(mh) * da, acc[r]);
        }
      }
      for (int r = 0; r < kInterleave; ++r) y[t * ys + g * kInterleave + r] = acc[r];
    }
  }
}

}  // namespace

bool has_interleaved_layout(DType t) { return t == DType::Q4_0 || t == DType::Q4_K || t == DType::Q8_0; }

uint64_t x8_block_bytes(DType t) {
  switch (t) {
    case DType::Q4_0:
      return kQ4_0x8Bytes;
    case DType::Q4_K:
      return kQ4_Kx8Bytes;
    case DType::Q8_0:
      return kQ8_0x8Bytes;
    default:
      throw Error(cat("no interleaved layout for ", dtype_name(t)));
  }
}

uint64_t x8_group_bytes(DType t, int64_t cols) {
  return x8_block_bytes(t) * static_cast<uint64_t>(blocks_per_row(t, cols));
}

uint64_t interleaved_bytes(DType t, int64_t rows, int64_t cols) {
  return x8_group_bytes(t, cols) * static_cast<uint64_t>(rows / kInterleave);
}

bool can_interleave(const WeightView& w) {
  return w.layout == WeightLayout::kRows && has_interleaved_layout(w.type) && w.rows >= kInterleave && w.cols > 0 &&
         w.cols % dtype_info(w.type).block_size == 0 && w.data != nullptr;
}

uint64_t interleaved_size(const WeightView& w) {
  if (!can_interleave(w)) throw Error(cat("interleaved_size: no interleaved layout for this ", dtype_name(w.type),
                                          " matrix [", w.rows, ", ", w.cols, "]"));
  const uint64_t rb = row_bytes(w.type, static_cast<uint64_t>(w.cols));
  return interleaved_bytes(w.type, w.rows, w.cols) + rb * static_cast<uint64_t>(w.rows % kInterleave);
}

WeightView interleave_rows(const WeightView& w, uint8_t* dst) {
  const uint64_t total = interleaved_size(w);  // checks can_interleave
  (void)total;
  const uint64_t rb = row_bytes(w.type, static_cast<uint64_t>(w.cols));
  const int64_t nb = blocks_per_row(w.type, w.cols);
  const uint64_t plain_block = dtype_info(w.type).type_size;
  const uint64_t xb = x8_block_bytes(w.type);
  const int64_t groups = w.rows / kInterleave;
  uint8_t* out = dst;
  for (int64_t g = 0; g < groups; ++g) {
    for (int64_t ib = 0; ib < nb; ++ib, out += xb) {
      const uint8_t* rows[kInterleave];
      for (int r = 0; r < kInterleave; ++r) {
        rows[r] = w.data + static_cast<uint64_t>(g * kInterleave + r) * w.row_stride +
                  static_cast<uint64_t>(ib) * plain_block;
      }
      if (w.type == DType::Q4_0) {
        pack_q4_0(rows, out);
      } else if (w.type == DType::Q8_0) {
        pack_q8_0(rows, out);
      } else {
        pack_q4_k(rows, out);
      }
    }
  }
  for (int64_t r = groups * kInterleave; r < w.rows; ++r, out += rb) {
    std::memcpy(out, w.data + static_cast<uint64_t>(r) * w.row_stride, rb);
  }
  return {w.type, w.rows, w.cols, dst, rb, WeightLayout::kInterleaved8};
}

void plain_row(const WeightView& w, int64_t r, uint8_t* dst) {
  const uint64_t rb = row_bytes(w.type, static_cast<uint64_t>(w.cols));
  const int64_t rows8 = w.rows / kInterleave * kInterleave;
  if (w.layout == WeightLayout::kRows || r >= rows8) {
    const uint64_t base = w.layout == WeightLayout::kRows ? 0 : interleaved_bytes(w.type, w.rows, w.cols);
    const int64_t i = w.layout == WeightLayout::kRows ? r : r - rows8;
    std::memcpy(dst, w.data + base + static_cast<uint64_t>(i) * w.row_stride, rb);
    return;
  }
  const int64_t nb = blocks_per_row(w.type, w.cols);
  const uint64_t plain_block = dtype_info(w.type).type_size;
  const uint8_t* group = w.data + x8_group_bytes(w.type, w.cols) * static_cast<uint64_t>(r / kInterleave);
  for (int64_t ib = 0; ib < nb; ++ib) {
    const uint8_t* x8 = group + static_cast<uint64_t>(ib) * x8_block_bytes(w.type);
    uint8_t* block = dst + static_cast<uint64_t>(ib) * plain_block;
    if (w.type == DType::Q4_0) {
      unpack_q4_0(x8, static_cast<int>(r % kInterleave), block);
    } else if (w.type == DType::Q8_0) {
      unpack_q8_0(x8, static_cast<int>(r % kInterleave), block);
    } else {
      unpack_q4_k(x8, static_cast<int>(r % kInterleave), block);
    }
  }
}

int64_t activation_sum_count(DType t, int64_t cols) {
  return t == DType::Q4_K ? cols / kQKK * 4 : cols / kQK;
}

void activation_sums(DType t, const uint8_t* act, int64_t cols, int32_t* out) {
  if (t != DType::Q4_K) {
    const int32_t offset = t == DType::Q4_0 ? 8 : 128;
    for (int64_t ib = 0; ib < cols / kQK; ++ib) {
      const int8_t* q = reinterpret_cast<const int8_t*>(act + ib * sizeof(BlockQ8_0) + 2);
      int32_t s = 0;
      for (int i = 0; i < kQK; ++i) s += q[i];
      out[ib] = -offset * s;
    }
    return;
  }
  for (int64_t ib = 0; ib < cols / kQKK; ++ib) {
    const int8_t* q = reinterpret_cast<const int8_t*>(act + ib * sizeof(BlockQ8_K) + 4);
    int32_t sub[8] = {};
    for (int i = 0; i < kQKK; ++i) sub[i / 32] += q[i];
    for (int k = 0; k < 4; ++k) {
      const uint32_t lo = static_cast<uint16_t>(static_cast<int16_t>(sub[2 * k]));
      const uint32_t hi = static_cast<uint16_t>(static_cast<int16_t>(sub[2 * k + 1]));
      out[ib * 4 + k] = static_cast<int32_t>(lo | (hi << 16));
    }
  }
}

void fill_scalar_x8_kernels(KernelTable& table) {
  table.at(DType::Q4_0).gemm8 = gemm8_q32_scalar<false>;
  table.at(DType::Q8_0).gemm8 = gemm8_q32_scalar<true>;
  table.at(DType::Q4_K).gemm8 = gemm8_q4_k_scalar;
}

}  // namespace tpinfer::cpu
