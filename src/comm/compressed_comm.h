// CompressedCommunicator: a Communicator decorator whose all-reduce moves BF16,
// FP8 (E4M3) or INT8 blocks instead of f32, and accumulates in f32.
//
// all_reduce_sum(data, n) with p == 2 ranks: each rank encodes all of data,
// all_gather_bytes, and both decode the two encodings and sum them in rank
// order (bit-identical on both). As many bytes as the steps below, in one
// exchange instead of two (half the link latency), one quantization per value.
//
// all_reduce_sum(data, n) with p > 2 ranks and compression != None:
//   1. Split data into p slices, slice j = [n*j/p, n*(j+1)/p) (the local rule).
//   2. Encode every slice in the wire format below; all_to_all, so rank j holds
//      every rank's encoding of slice j (its own included).
//   3. Rank j decodes them and sums in f32 in rank order 0..p-1 (deterministic).
//   4. Rank j encodes its summed slice; all_gather_bytes.
//   5. Every rank decodes every slice, its own included, from the gathered bytes:
//      all ranks end with bit-identical results.
// Both halves of the all-reduce move compressed bytes. Each all_to_all /
// all_gather chunk is as long as the encoding of the longest slice (slices differ
// by at most one value), so only uneven splits pad.
// With one rank, n == 0, or Compression::None, all_reduce_sum is the inner one
// (exact). Every other collective passes straight through to the inner one.
//
// Wire format of a run of m values (blocks of kCompressBlock = 32 values, the last
// block may be shorter; nb = ceil(m / 32) blocks):
//   BF16: m bf16 values (round to nearest even), 2m bytes; no scales.
//   FP8:  nb bf16 block scales, then m E4M3 codes: value ~ fp8(code) * scale.
//   INT8: nb bf16 block scales, then m int8 codes in [-127, 127]: value ~ code * scale.
// FP8/INT8 block scale: s = amax / Q (Q = 448 for FP8, 127 for INT8; amax = the
// largest |value| in the block) rounded UP to a bf16, so no value of the block
// saturates; s is at least 2^-126 (kMinBlockScale; blocks of tiny values are
// quantised on that grid) and a block holding Inf or NaN gets a NaN scale, so all
// of it decodes to NaN. bf16 scales cost 2 bytes per 32 values (17/16 bytes per
// value) yet keep f32's exponent range, which an f16 scale would not (amax/448
// overflows f16 for amax beyond ~2.9e7, goes subnormal below ~2.7e-2 and to zero
// below ~2.7e-5); rounding the scale up costs at most 2^-7 of the code range.
// Bytes moved per rank for n values (n/p a multiple of 32), against f32's 8n(p-1)/p:
//   BF16 0.5x, FP8 and INT8 17/64 = 0.2656x (= 17/32 of BF16; with a scale per 32
//   values no format of 8-bit codes can reach 0.5x of BF16).
//
// Error bounds, per element i of block b (derived in tests/comm/compressed_comm_test.cc,
// which checks every element against them): with x_r rank r's value, M = sum_r |x_r|,
// A = sum_r max(amax of block b on rank r, Q * 2^-126), eps = (p + 16) * 2^-22
// (f32 rounding of the scaling, the sum and the saturation edge):
//   INT8: |result - sum_r x_r| <= (2c + c^2) A + eps (M + A),
//         c = (1 + 2^-7)(1/2 + 2^-16) / 127, so about A / 126: half a step per stage
//   FP8:  |result - sum_r x_r| <= (2^-3 + 2^-8) M + 2.2 k A + eps (M + A),
//         k = 2^-10 (1 + 2^-7) / 448: E4M3 is good to 2^-4 relative per stage,
//         and to 2^-10 scale for values in its subnormal range
//   BF16: |result - sum_r x_r| <= (2^-7 + 2^-16) M + (p + 1) 2^-134 + eps M
// (inputs finite, sums below f32 overflow). The worst element of 100003 Gaussian
// values reaches 0.8 to 0.9 of these bounds, so they are tight.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string_view>
#include <vector>

#include "comm/communicator.h"

namespace tpinfer {

enum class Compression { None, BF16, FP8, INT8 };

// "none", "bf16", "fp8", "int8" (case-sensitive); anything else throws ConfigError
// naming the valid choices.
Compression parse_compression(std::string_view name);
const char* compression_name(Compression c);

inline constexpr size_t kCompressBlock = 32;
inline constexpr float kMinBlockScale = 1.1754943508222875e-38f;  // 2^-126

// Bytes of the wire encoding of `n` values (None: 4n, plain f32).
size_t encoded_size(Compression c, size_t n);

// Block codecs. Every implementation gives bit-identical output; Reference is the
// plain per-element one (core/fp8.h, half.h), Portable the vectorisable loops for
// baseline x86-64, Avx512 the same loops compiled for AVX-512 (only where the CPU
// has it). The default, best_codec(), is what CompressedCommunicator uses.
enum class CodecImpl { Reference, Portable, Avx512 };
bool codec_available(CodecImpl impl);
CodecImpl best_codec();
const char* codec_name(CodecImpl impl);

// out[0, encoded_size(c, n)) <- encoding of x[0, n).
void encode_values(Compression c, const float* x, size_t n, uint8_t* out, CodecImpl impl = best_codec());
// out[0, n) <- decoding of in.
void decode_values(Compression c, const uint8_t* in, size_t n, float* out, CodecImpl impl = best_codec());
// acc[i] <- acc[i] + decoded value i (each decoded value is exact in f32, so the
// only rounding is the one f32 add).
void decode_add_values(Compression c, const uint8_t* in, size_t n, float* acc, CodecImpl impl = best_codec());

class CompressedCommunicator final : public Communicator {
 public:
  CompressedCommunicator(std::unique_ptr<Communicator> inner, Compression compression);

  int rank() const override { return inner_->rank(); }
  int size() const override { return inner_->size(); }
  // The inner back end's name: compression changes the payload, not the transport.
  const char* backend() const override { return inner_->backend(); }
  Compression compression() const { return compression_; }

  // This communicator's stats() count every call made through it, with the bytes
  // the inner one moved for it: for a compressed all-reduce, the encoded bytes of
  // both halves (block scales and padding included) under AllReduce. The inner
  // stats show the same traffic by primitive (AllToAll + AllGather).
  Communicator& inner() { return *inner_; }
  const CommStats& inner_stats() const { return inner_->stats(); }

  void all_reduce_sum(float* data, size_t n) override;
  void all_gather(const float* send, std::span<const size_t> counts, float* recv) override;
  void broadcast(void* data, size_t bytes, int root) override;
  void broadcast_wait(void* data, size_t bytes, int root) override;
  void all_gather_bytes(const void* send, size_t bytes, void* recv) override;
  void all_to_all(const void* send, size_t bytes, void* recv) override;
  void send(const void* data, size_t bytes, int dst) override;
  void recv(void* data, size_t bytes, int src) override;
  void recv_wait(void* data, size_t bytes, int src) override;
  void barrier() override;
  bool measures_wait() const override { return inner_->measures_wait(); }
  void resynchronize_clocks() override { inner_->resynchronize_clocks(); }

 private:
  void compressed_all_reduce(float* data, size_t n);

  std::unique_ptr<Communicator> inner_;
  Compression compression_;
  CodecImpl codec_;
  std::vector<uint8_t> send_buf_, recv_buf_, own_buf_;
  std::vector<float> acc_;
};

}  // namespace tpinfer
