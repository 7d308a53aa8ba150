#include "comm/cuda/compress.h"

#include "backend/cuda/runtime.h"
#include "comm/cuda/codec.h"
#include "core/error.h"

namespace tpinfer::cuda {
namespace {

constexpr int kThreads = 256;
constexpr unsigned kFullMask = 0xffffffffu;

// Grid for a grid-stride loop over `items` items, kThreads per block.
unsigned grid_for(size_t items) {
  const size_t blocks = (items + kThreads - 1) / kThreads;
  return static_cast<unsigned>(blocks < 4096 ? (blocks > 0 ? blocks : 1) : 4096);
}

__global__ void encode_bf16_kernel(const float* __restrict__ x, size_t n, uint8_t* __restrict__ out) {
  for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<size_t>(gridDim.x) * blockDim.x) {
    const uint16_t h = codec::bf16_encode(x[i]);
    out[2 * i] = static_cast<uint8_t>(h & 0xffu);  // little-endian, byte stores: no alignment needed
    out[2 * i + 1] = static_cast<uint8_t>(h >> 8);
  }
}

// One warp per block of 32 values: lane l holds value l of the block. Every
// warp of the launch runs whole (blocks of kThreads are whole warps and the
// loop bound is per warp), so the full-mask shuffles are safe.
__global__ void encode_block_kernel(const float* __restrict__ x, size_t n, bool fp8, uint8_t* __restrict__ out) {
  const size_t blocks = codec::blocks_of(n);
  const size_t warps_per_grid = static_cast<size_t>(gridDim.x) * (blockDim.x / 32);
  const unsigned lane = threadIdx.x & 31u;
  uint8_t* codes = out + 2 * blocks;
  for (size_t b = blockIdx.x * static_cast<size_t>(blockDim.x / 32) + threadIdx.x / 32; b < blocks;
       b += warps_per_grid) {
    const size_t i = b * 32 + lane;
    const bool in = i < n;
    const float v = in ? x[i] : 0.0f;
    uint32_t amax = codec::abs_bits(v);
    for (int offset = 16; offset > 0; offset >>= 1) {
      const uint32_t other = __shfl_xor_sync(kFullMask, amax, offset);
      amax = other > amax ? other : amax;
    }
    const uint32_t scale = codec::block_scale(amax, fp8 ? codec::kQFp8 : codec::kQInt8);
    if (lane == 0) {
      out[2 * b] = static_cast<uint8_t>(scale & 0xffu);
      out[2 * b + 1] = static_cast<uint8_t>(scale >> 8);
    }
    if (in) codes[i] = codec::encode_code(fp8, scale, codec::inverse_scale(scale), v);
  }
}

struct Sources {
  const uint8_t* p[kMaxSumSources];
};

template <Compression C>
__device__ __forceinline__ float decode_one(const uint8_t* __restrict__ in, size_t n, size_t i) {
  if constexpr (C == Compression::None) {
    return reinterpret_cast<const float*>(in)[i];
  } else if constexpr (C == Compression::BF16) {
    return codec::bf16_decode(static_cast<uint32_t>(in[2 * i]) | (static_cast<uint32_t>(in[2 * i + 1]) << 8));
  } else {
    const size_t b = i / 32;
    const uint32_t scale = static_cast<uint32_t>(in[2 * b]) | (static_cast<uint32_t>(in[2 * b + 1]) << 8);
    return codec::decode_code(C == Compression::FP8, scale, in[2 * codec::blocks_of(n) + i]);
  }
}

template <Compression C>
__global__ void decode_sum_kernel(Sources sources, int count, size_t n, float* __restrict__ out, bool accumulate) {
  for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<size_t>(gridDim.x) * blockDim.x) {
    float acc = accumulate ? out[i] : decode_one<C>(sources.p[0], n, i);
    for (int r = accumulate ? 0 : 1; r < count; ++r) acc = codec::add(acc, decode_one<C>(sources.p[r], n, i));
    out[i] = acc;
  }
}

}  // namespace

size_t device_chunk_bytes(Compression c, size_t n) { return (encoded_size(c, n) + 15) / 16 * 16; }

void encode_on_device(Compression c, const float* x, size_t n, uint8_t* out, cudaStream_t stream) {
  if (n == 0) return;
  switch (c) {
    case Compression::None:
      check(cudaMemcpyAsync(out, x, 4 * n, cudaMemcpyDeviceToDevice, stream), "cudaMemcpyAsync (encode none)");
      return;
    case Compression::BF16:
      encode_bf16_kernel<<<grid_for(n), kThreads, 0, stream>>>(x, n, out);
      break;
    case Compression::FP8:
    case Compression::INT8:
      // kThreads / 32 blocks of values per CUDA block.
      encode_block_kernel<<<grid_for(codec::blocks_of(n) * 32), kThreads, 0, stream>>>(x, n, c == Compression::FP8,
                                                                                         out);
      break;
  }
  check(cudaGetLastError(), "encode kernel launch");
}

void decode_sum_on_device(Compression c, const uint8_t* const* sources, int count, size_t n, float* out,
                          bool accumulate, cudaStream_t stream) {
  if (n == 0) return;
  if (count < 1) throw Error(cat("decode_sum_on_device: ", count, " sources"));
  for (int first = 0; first < count; first += kMaxSumSources) {
    const int batch = count - first < kMaxSumSources ? count - first : kMaxSumSources;
    Sources s{};
    for (int r = 0; r < batch; ++r) s.p[r] = sources[first + r];
    const bool acc = accumulate || first > 0;
    switch (c) {
      case Compression::None:
        decode_sum_kernel<Compression::None><<<grid_for(n), kThreads, 0, stream>>>(s, batch, n, out, acc);
        break;
      case Compression::BF16:
        decode_sum_kernel<Compression::BF16><<<grid_for(n), kThreads, 0, stream>>>(s, batch, n, out, acc);
        break;
      case Compression::FP8:
        decode_sum_kernel<Compression::FP8><<<grid_for(n), kThreads, 0, stream>>>(s, batch, n, out, acc);
        break;
      case Compression::INT8:
        decode_sum_kernel<Compression::INT8><<<grid_for(n), kThreads, 0, stream>>>(s, batch, n, out, acc);
        break;
    }
    check(cudaGetLastError(), "decode_sum kernel launch");
  }
}

}  // namespace tpinfer::cuda
