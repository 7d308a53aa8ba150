// Elementwise and row operations of the transformer forward pass, on float rows.
// Each has a plain reference (`*_ref`, double internally) and a dispatching
// version (AVX-512 / AVX2 / scalar, see isa.h) tested against it; the overloads
// taking an Isa run that level's code and throw Error if the CPU lacks it.
// Unless stated otherwise `out` may alias an input; n >= 0.
//
// Accuracy of the dispatching versions against the references: rms_norm and
// add within a few float ulps; softmax and silu_mul use a polynomial exp with
// relative error below 2e-7 before rounding.
#pragma once

#include <cstdint>

#include "backend/cpu/isa.h"

namespace tpinfer::cpu {

// out[i] = x[i] / sqrt(mean(x^2) + eps) * weight[i]; weight may be null (no
// scaling). n must be > 0.
void rms_norm(const float* x, const float* weight, int64_t n, float eps, float* out);
void rms_norm(Isa isa, const float* x, const float* weight, int64_t n, float eps, float* out);
void rms_norm_ref(const float* x, const float* weight, int64_t n, float eps, float* out);

// out[i] = exp(x[i] - max(x)) / sum_j exp(x[j] - max(x)). n must be > 0.
void softmax(const float* x, int64_t n, float* out);
void softmax(Isa isa, const float* x, int64_t n, float* out);
void softmax_ref(const float* x, int64_t n, float* out);

// SwiGLU: out[i] = silu(gate[i]) * up[i], silu(g) = g / (1 + exp(-g)).
void silu_mul(const float* gate, const float* up, int64_t n, float* out);
void silu_mul(Isa isa, const float* gate, const float* up, int64_t n, float* out);
void silu_mul_ref(const float* gate, const float* up, int64_t n, float* out);

// out[i] = a[i] + b[i].
void add(const float* a, const float* b, int64_t n, float* out);
void add(Isa isa, const float* a, const float* b, int64_t n, float* out);
void add_ref(const float* a, const float* b, int64_t n, float* out);

// Rotary position embedding of one token's [n_heads, head_dim] block, in place.
// Pair i (i < rot_dim / 2) is rotated by the angle
//   position * freq_scale * theta^(-2i / rot_dim) / freq_factors[i]
// (freq_factors: null, or rot_dim / 2 divisors, e.g. GGUF's rope_freqs).
// Interleaved pairs are (2i, 2i+1) (GGUF "llama" order); NeoX pairs are
// (i, i + rot_dim/2) (Hugging Face rotate-half order). Dimensions from rot_dim
// to head_dim are left as they are.
enum class RopeStyle { kInterleaved, kNeox };

struct RopeParams {
  RopeStyle style = RopeStyle::kInterleaved;
  float theta = 10000.0f;
  int64_t rot_dim = 0;  // 0: head_dim; else even and <= head_dim
  const float* freq_factors = nullptr;
  float freq_scale = 1.0f;
};

// Angles are computed in double, the rotation in float. Throws Error on an odd
// or oversized rot_dim.
void rope(float* x, int64_t n_heads, int64_t head_dim, int64_t position, const RopeParams& params);
void rope_ref(float* x, int64_t n_heads, int64_t head_dim, int64_t position, const RopeParams& params);

}  // namespace tpinfer::cpu
