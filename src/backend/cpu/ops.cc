#include "backend/cpu/ops.h"

#include <array>
#include <cmath>
#include <vector>

#include "backend/cpu/kernels.h"
#include "core/error.h"

namespace tpinfer::cpu {
namespace {

// ---- Scalar versions: float arithmetic, the fallback when no SIMD level is
// usable (the references below use double).

void rms_norm_scalar(const float* x, const float* weight, int64_t n, float eps, float* out) {
  float sum = 0.0f;
  for (int64_t i = 0; i < n; ++i) sum += x[i] * x[i];
  const float scale = 1.0f / std::sqrt(sum / static_cast<float>(n) + eps);
  for (int64_t i = 0; i < n; ++i) out[i] = weight ? x[i] * scale * weight[i] : x[i] * scale;
}

void softmax_scalar(const float* x, int64_t n, float* out) {
  float mx = x[0];
  for (int64_t i = 1; i < n; ++i) mx = std::max(mx, x[i]);
  float sum = 0.0f;
  for (int64_t i = 0; i < n; ++i) {
    out[i] = std::exp(x[i] - mx);
    sum += out[i];
  }
  const float inv = 1.0f / sum;
  for (int64_t i = 0; i < n; ++i) out[i] *= inv;
}

void silu_mul_scalar(const float* gate, const float* up, int64_t n, float* out) {
  for (int64_t i = 0; i < n; ++i) out[i] = gate[i] / (1.0f + std::exp(-gate[i])) * up[i];
}

void add_scalar(const float* a, const float* b, int64_t n, float* out) {
  for (int64_t i = 0; i < n; ++i) out[i] = a[i] + b[i];
}

void attn_scores_scalar(const float* const* q, int m, const float* k, int n, int64_t hd, float scale, float* s,
                      int64_t s_stride) {
  for (int i = 0; i < m; ++i) {
    for (int j = 0; j < n; ++j) {
      float dot = 0.0f;
      for (int64_t c = 0; c < hd; ++c) dot += q[i][c] * k[j * hd + c];
      s[i * s_stride + j] = scale * dot;
    }
  }
}

void attn_accumulate_scalar(const float* w, int64_t w_stride, int m, const float* v, int n, int64_t hd,
                          float* const* out) {
  for (int i = 0; i < m; ++i) {
    for (int j = 0; j < n; ++j) {
      const float wj = w[i * w_stride + j];
      for (int64_t c = 0; c < hd; ++c) out[i][c] += wj * v[j * hd + c];
    }
  }
}

std::array<OpKernels, 3> build_op_tables() {
  std::array<OpKernels, 3> t;
  t[0].attn_scores = attn_scores_scalar;
  t[0].attn_accumulate = attn_accumulate_scalar;
  t[0].rms_norm = rms_norm_scalar;
  t[0].softmax = softmax_scalar;
  t[0].silu_mul = silu_mul_scalar;
  t[0].add = add_scalar;
  // Each level starts from the one below and replaces what it has.
  t[1] = t[0];
  fill_avx2_ops(t[1]);
  t[2] = t[1];
  fill_avx512_ops(t[2]);
  return t;
}

void check_positive(int64_t n, const char* what) {
  if (n <= 0) throw Error(cat(what, ": length ", n, " must be positive"));
}

int64_t rotary_dims(int64_t head_dim, const RopeParams& p) {
  const int64_t rot = p.rot_dim == 0 ? head_dim : p.rot_dim;
  if (rot <= 0 || rot % 2 != 0 || rot > head_dim) {
    throw Error(cat("rope: rotary dimensions ", rot, " must be even and at most the head size ", head_dim));
  }
  return rot;
}

// Angle of pair i, in double.
double rope_angle(int64_t position, int64_t i, int64_t rot, const RopeParams& p) {
  double a = static_cast<double>(position) * p.freq_scale *
             std::pow(static_cast<double>(p.theta), -2.0 * static_cast<double>(i) / static_cast<double>(rot));
  if (p.freq_factors) a /= p.freq_factors[i];
  return a;
}

// Indices of the two members of pair i.
inline void rope_pair(RopeStyle style, int64_t i, int64_t rot, int64_t* a, int64_t* b) {
  if (style == RopeStyle::kInterleaved) {
    *a = 2 * i;
    *b = 2 * i + 1;
  } else {
    *a = i;
    *b = i + rot / 2;
  }
}

}  // namespace

const OpKernels& op_kernels(Isa isa) {
  if (!isa_supported(isa)) {
    throw Error(
        cat("instruction set ", isa_name(isa), " is not supported by this CPU (best: ", isa_name(cpu_isa()), ")"));
  }
  static const std::array<OpKernels, 3> tables = build_op_tables();
  return tables[static_cast<size_t>(isa)];
}

void rms_norm(Isa isa, const float* x, const float* weight, int64_t n, float eps, float* out) {
  check_positive(n, "rms_norm");
  op_kernels(isa).rms_norm(x, weight, n, eps, out);
}
void rms_norm(const float* x, const float* weight, int64_t n, float eps, float* out) {
  rms_norm(dispatch_isa(), x, weight, n, eps, out);
}
void rms_norm_ref(const float* x, const float* weight, int64_t n, float eps, float* out) {
  check_positive(n, "rms_norm_ref");
  double sum = 0.0;
  for (int64_t i = 0; i < n; ++i) sum += static_cast<double>(x[i]) * x[i];
  const double scale = 1.0 / std::sqrt(sum / static_cast<double>(n) + eps);
  for (int64_t i = 0; i < n; ++i) out[i] = static_cast<float>(x[i] * scale * (weight ? weight[i] : 1.0));
}

void softmax(Isa isa, const float* x, int64_t n, float* out) {
  check_positive(n, "softmax");
  op_kernels(isa).softmax(x, n, out);
}
void softmax(const float* x, int64_t n, float* out) { softmax(dispatch_isa(), x, n, out); }
void softmax_ref(const float* x, int64_t n, float* out) {
  check_positive(n, "softmax_ref");
  double mx = x[0];
  for (int64_t i = 1; i < n; ++i) mx = std::max<double>(mx, x[i]);
  std::vector<double> e(static_cast<size_t>(n));
  double sum = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    e[static_cast<size_t>(i)] = std::exp(static_cast<double>(x[i]) - mx);
    sum += e[static_cast<size_t>(i)];
  }
  for (int64_t i = 0; i < n; ++i) out[i] = static_cast<float>(e[static_cast<size_t>(i)] / sum);
}

void silu_mul(Isa isa, const float* gate, const float* up, int64_t n, float* out) {
  if (n < 0) throw Error(cat("silu_mul: negative length ", n));
  op_kernels(isa).silu_mul(gate, up, n, out);
}
void silu_mul(const float* gate, const float* up, int64_t n, float* out) { silu_mul(dispatch_isa(), gate, up, n, out); }
void silu_mul_ref(const float* gate, const float* up, int64_t n, float* out) {
  for (int64_t i = 0; i < n; ++i) {
    const double g = gate[i];
    out[i] = static_cast<float>(g / (1.0 + std::exp(-g)) * up[i]);
  }
}

void add(Isa isa, const float* a, const float* b, int64_t n, float* out) {
  if (n < 0) throw Error(cat("add: negative length ", n));
  op_kernels(isa).add(a, b, n, out);
}
void add(const float* a, const float* b, int64_t n, float* out) { add(dispatch_isa(), a, b, n, out); }
void add_ref(const float* a, const float* b, int64_t n, float* out) {
  for (int64_t i = 0; i < n; ++i) out[i] = static_cast<float>(static_cast<double>(a[i]) + b[i]);
}

void rope(float* x, int64_t n_heads, int64_t head_dim, int64_t position, const RopeParams& params) {
  const int64_t rot = rotary_dims(head_dim, params);
  // One table of cos/sin per call, shared by all heads. Small: rot/2 <= 256
  // entries for any head size in use; larger heads fall back to the heap.
  constexpr int64_t kStack = 256;
  float cs_stack[2 * kStack];
  std::vector<float> cs_heap;
  float* cs = cs_stack;
  if (rot / 2 > kStack) {
    cs_heap.resize(static_cast<size_t>(rot));
    cs = cs_heap.data();
  }
  for (int64_t i = 0; i < rot / 2; ++i) {
    const double a = rope_angle(position, i, rot, params);
    cs[2 * i] = static_cast<float>(std::cos(a));
    cs[2 * i + 1] = static_cast<float>(std::sin(a));
  }
  for (int64_t h = 0; h < n_heads; ++h) {
    float* v = x + h * head_dim;
    for (int64_t i = 0; i < rot / 2; ++i) {
      int64_t ia, ib;
      rope_pair(params.style, i, rot, &ia, &ib);
      const float c = cs[2 * i], s = cs[2 * i + 1];
      const float x0 = v[ia], x1 = v[ib];
      v[ia] = x0 * c - x1 * s;
      v[ib] = x0 * s + x1 * c;
    }
  }
}

void rope_ref(float* x, int64_t n_heads, int64_t head_dim, int64_t position, const RopeParams& params) {
  const int64_t rot = rotary_dims(head_dim, params);
  for (int64_t h = 0; h < n_heads; ++h) {
    float* v = x + h * head_dim;
    for (int64_t i = 0; i < rot / 2; ++i) {
      int64_t ia, ib;
      rope_pair(params.style, i, rot, &ia, &ib);
      const double a = rope_angle(position, i, rot, params);
      const double x0 = v[ia], x1 = v[ib];
      v[ia] = static_cast<float>(x0 * std::cos(a) - x1 * std::sin(a));
      v[ib] = static_cast<float>(x0 * std::sin(a) + x1 * std::cos(a));
    }
  }
}

}  // namespace tpinfer::cpu
