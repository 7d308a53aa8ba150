// Device kernels of the device communicators (internal to comm/cuda): encoding
// in compressed_comm.h's wire format (codec.h, bit-identical to the CPU codecs),
// and the rank-ordered sum of several ranks' encodings (or plain f32 vectors),
// which is how both device back ends finish an all-reduce: every rank sums the
// same bytes in the same order, so every rank's result is bit-identical.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "comm/compressed_comm.h"

namespace tpinfer::cuda {

// Ranks whose vectors one decode_sum launch takes (more are summed in batches,
// still in rank order).
inline constexpr int kMaxSumSources = 16;

// Bytes one rank's encoding of n values takes in device buffers: encoded_size()
// rounded up to 16, so that every rank's chunk of a gathered buffer starts
// aligned (None: 4n, rounded the same way).
size_t device_chunk_bytes(Compression c, size_t n);

// out[0, encoded_size(c, n)) <- encoding of x[0, n) (None: a copy), on `stream`.
void encode_on_device(Compression c, const float* x, size_t n, uint8_t* out, cudaStream_t stream);

// out[i] <- sum over r = 0, 1, ..., count - 1, in that order, of the decoding of
// sources[r] (each an encoding of n values; None: n floats, 4-byte aligned).
// With `accumulate`, out[i] is the first addend. The first source's value is
// taken as is (no 0 + x), then each next one is added with one f32 rounding.
void decode_sum_on_device(Compression c, const uint8_t* const* sources, int count, size_t n, float* out,
                          bool accumulate, cudaStream_t stream);

}  // namespace tpinfer::cuda
