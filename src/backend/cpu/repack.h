// Internal to backend/cpu (and ShardedTensor, which calls repack_weights): the
// 8-row interleaved weight layout of Q4_0, Q4_K and Q8_0, made once at load so that
// the matmul kernels serve 8 weight rows with one activation load and one scale
// conversion, and yield the 8 row results in the 8 lanes of one vector (no
// horizontal sums).
//
// A WeightView with layout kInterleaved8 holds its first rows8 = rows / 8 * 8
// rows as rows8 / 8 groups, one after another at data, each group
// nb = cols / block values long in "x8 blocks"; the remaining rows - rows8 rows
// (a rank's slice can have any row count) follow in the plain layout, the first
// at data + interleaved_bytes(...), row_stride bytes apart.
//
// x8 block of Q4_0 (144 bytes: the 8 plain blocks of one block column):
//   [0, 16)    d[r], r = 0..7, f16
//   [16, 144)  4 chunks c of 32 bytes; byte 4r + i of chunk c holds
//              nibble (4c + i) of row r in its low half and nibble (16 + 4c + i)
//              in its high half (nibbles numbered as in BlockQ4_0).
// x8 block of Q8_0 (272 bytes):
//   [0, 16)    d[r] f16
//   [16, 272)  8 chunks k of 32 bytes; byte 4r + i of chunk k = qs[4k + i] of row r
// x8 block of Q4_K (1184 bytes, one super-block column):
//   [0, 16)    d[r] f16;  [16, 32) dmin[r] f16
//   [32, 96)   scale of sub-block j, row r at 32 + 8j + r (6-bit, one byte)
//   [96, 160)  mins as byte pairs: 96 + 16k + 2r + e = min of sub-block 2k + e, row r
//   [160, 1184) sub-block j at 160 + 128j, its 32 values laid out as a Q4_0 x8
//              block's 128 nibble bytes (values 0..15 low nibbles, 16..31 high)
//
// Arithmetic (every level, bit for bit the scalar reference's): per x8 block
// and token, the integer dot of each row is exact; then
//   Q4_0: acc = fma(float(dot - 8 * sum(a)), d_w * d_a, acc)   (dot of the nibbles)
//   Q8_0: acc = fma(float(dot), d_w * d_a, acc)
//   Q4_K: acc = fma(float(sum_j sc_j dot_j), d * d_a, acc);
//         acc = fma(-float(sum_j m_j asum_j), dmin * d_a, acc)
// in block order, per row and token, whatever the number of tokens in the call:
// a token's results do not depend on the other tokens of its batch.
#pragma once

#include <cstdint>

#include "backend/cpu/matmul.h"
#include "core/dtype.h"

namespace tpinfer::cpu {

constexpr int kInterleave = 8;
constexpr int kQ4_0x8Bytes = 144;
constexpr int kQ4_Kx8Bytes = 1184;
constexpr int kQ8_0x8Bytes = 272;

// Whether type t has an interleaved layout.
bool has_interleaved_layout(DType t);
// Bytes of one x8 block of t, and of one 8-row group of `cols` values.
uint64_t x8_block_bytes(DType t);
uint64_t x8_group_bytes(DType t, int64_t cols);
// Bytes of the interleaved part of a matrix with `rows` rows (rows / 8 groups).
uint64_t interleaved_bytes(DType t, int64_t rows, int64_t cols);

// Per-token activation sums the interleaved kernels need (int32 words, per
// token activation_sum_count(t, cols) of them), from an activation row of
// vec_dot_type(t):
//   Q4_0: per block, -8 * sum(a);  Q8_0: per block, -128 * sum(a)
//   Q4_K: per super-block, 4 words; word k = int16 pair (asum_2k, asum_2k+1),
//         asum_j = sum of the 32 values of sub-block j
int64_t activation_sum_count(DType t, int64_t cols);
void activation_sums(DType t, const uint8_t* act, int64_t cols, int32_t* out);

// One plain row r of an interleaved view (row_bytes(t, cols) bytes to dst).
void plain_row(const WeightView& w, int64_t r, uint8_t* dst);

}  // namespace tpinfer::cpu
