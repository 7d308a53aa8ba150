#include "reference_model.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "backend/cpu/quant.h"
#include "core/error.h"

namespace tpinfer::reference {
namespace {

using Mat = std::vector<double>;  // row-major

// The whole tensor as doubles.
Mat load(const ModelSource& src, const std::string& name) {
  const TensorInfo& t = src.get(name);
  const int64_t rows = t.rows(), cols = t.cols();
  const uint64_t rb = row_bytes(t.type, static_cast<uint64_t>(cols));
  std::vector<float> row(static_cast<size_t>(cols));
  Mat out(static_cast<size_t>(rows * cols));
  for (int64_t r = 0; r < rows; ++r) {
    cpu::dequantize_row_ref(t.type, t.data + static_cast<uint64_t>(r) * rb, row.data(), cols);
    for (int64_t c = 0; c < cols; ++c) out[static_cast<size_t>(r * cols + c)] = row[static_cast<size_t>(c)];
  }
  return out;
}

// y[out] = W[out, in] x[in] (+ b)
std::vector<double> linear(const Mat& w, const std::vector<double>& x, const Mat* bias = nullptr) {
  const size_t in = x.size(), out = w.size() / in;
  std::vector<double> y(out, 0.0);
  for (size_t o = 0; o < out; ++o) {
    double s = 0;
    for (size_t i = 0; i < in; ++i) s += w[o * in + i] * x[i];
    y[o] = s + (bias ? (*bias)[o] : 0.0);
  }
  return y;
}

std::vector<double> rms_norm(const std::vector<double>& x, const Mat& w, double eps, size_t off = 0, size_t n = 0) {
  if (n == 0) n = x.size();
  double ss = 0;
  for (size_t i = 0; i < n; ++i) ss += x[off + i] * x[off + i];
  const double scale = 1.0 / std::sqrt(ss / static_cast<double>(n) + eps);
  std::vector<double> y(n);
  for (size_t i = 0; i < n; ++i) y[i] = x[off + i] * scale * w[i];
  return y;
}

void rope(double* v, int hd, int pos, const ModelConfig& c) {
  const int half = hd / 2;
  for (int i = 0; i < half; ++i) {
    double freq = 1.0 / std::pow(static_cast<double>(c.rope_theta), 2.0 * i / hd);
    if (!c.rope_freq_factors.empty()) freq /= c.rope_freq_factors[static_cast<size_t>(i)];
    const double a = pos * freq;
    const int x0 = c.rope_style == RopeStyle::Interleaved ? 2 * i : i;
    const int x1 = c.rope_style == RopeStyle::Interleaved ? 2 * i + 1 : i + half;
    const double p = v[x0], q = v[x1];
    v[x0] = p * std::cos(a) - q * std::sin(a);
    v[x1] = p * std::sin(a) + q * std::cos(a);
  }
}

struct Ffn {
  Mat gate, up, down;
};

// down(silu(gate h) * up h)
std::vector<double> swiglu(const Ffn& f, const std::vector<double>& h) {
  std::vector<double> g = linear(f.gate, h);
  const std::vector<double> u = linear(f.up, h);
  for (size_t i = 0; i < g.size(); ++i) g[i] = g[i] / (1.0 + std::exp(-g[i])) * u[i];
  return linear(f.down, g);
}

struct Moe {
  Mat router;
  std::vector<Ffn> experts;
  Ffn shared;  // empty without a shared expert
  Mat shared_gate;  // [hidden], empty without a gate
};

Moe load_moe(const ModelSource& src, int l) {
  const ModelConfig& c = src.config();
  const std::string p = "blk." + std::to_string(l) + ".";
  Moe m;
  m.router = load(src, p + "ffn_gate_inp.weight");
  for (int e = 0; e < c.n_experts; ++e) {
    m.experts.push_back({load(src, expert_tensor_name(l, "ffn_gate", e)), load(src, expert_tensor_name(l, "ffn_up", e)),
                         load(src, expert_tensor_name(l, "ffn_down", e))});
  }
  if (c.shared_expert_ffn > 0) {
    m.shared = {load(src, p + "ffn_gate_shexp.weight"), load(src, p + "ffn_up_shexp.weight"),
                load(src, p + "ffn_down_shexp.weight")};
  }
  if (c.shared_expert_gate) m.shared_gate = load(src, p + "ffn_gate_inp_shexp.weight");
  return m;
}

// Softmax over all experts' router logits; the k most probable (ties: lower
// index); their probabilities, renormalized over the k when norm_topk_prob;
// the weighted sum of their SwiGLU outputs; plus the shared expert scaled by
// sigmoid(h . w).
std::vector<double> moe_mlp(const Moe& m, const ModelConfig& c, const std::vector<double>& h) {
  const std::vector<double> logits = linear(m.router, h);
  const double mx = *std::max_element(logits.begin(), logits.end());
  std::vector<double> prob(logits.size());
  double sum = 0;
  for (size_t e = 0; e < logits.size(); ++e) sum += (prob[e] = std::exp(logits[e] - mx));
  for (double& q : prob) q /= sum;
  std::vector<size_t> order(prob.size());
  for (size_t e = 0; e < order.size(); ++e) order[e] = e;
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return prob[a] > prob[b]; });
  order.resize(static_cast<size_t>(c.n_experts_used));
  double chosen = 0;
  for (size_t e : order) chosen += prob[e];
  std::vector<double> out(h.size(), 0.0);
  for (size_t e : order) {
    const double w = c.norm_topk_prob ? prob[e] / chosen : prob[e];
    const std::vector<double> y = swiglu(m.experts[e], h);
    for (size_t i = 0; i < out.size(); ++i) out[i] += w * y[i];
  }
  if (!m.shared.gate.empty()) {
    double g = 1.0;
    if (!m.shared_gate.empty()) {
      double d = 0;
      for (size_t i = 0; i < h.size(); ++i) d += h[i] * m.shared_gate[i];
      g = 1.0 / (1.0 + std::exp(-d));
    }
    const std::vector<double> y = swiglu(m.shared, h);
    for (size_t i = 0; i < out.size(); ++i) out[i] += g * y[i];
  }
  return out;
}

}  // namespace

std::vector<double> forward(const ModelSource& src, const std::vector<int32_t>& tokens) {
  const ModelConfig& c = src.config();
  const size_t n = tokens.size(), H = static_cast<size_t>(c.hidden), hd = static_cast<size_t>(c.head_dim);
  const size_t nh = static_cast<size_t>(c.n_heads), nkv = static_cast<size_t>(c.n_kv_heads);
  const Mat embd = load(src, "token_embd.weight");
  std::vector<std::vector<double>> x(n);
  for (size_t t = 0; t < n; ++t) {
    x[t].assign(embd.begin() + static_cast<std::ptrdiff_t>(static_cast<size_t>(tokens[t]) * H),
                embd.begin() + static_cast<std::ptrdiff_t>((static_cast<size_t>(tokens[t]) + 1) * H));
  }
  for (int l = 0; l < c.n_layers; ++l) {
    const std::string p = "blk." + std::to_string(l) + ".";
    const Mat wq = load(src, p + "attn_q.weight"), wk = load(src, p + "attn_k.weight"),
              wv = load(src, p + "attn_v.weight"), wo = load(src, p + "attn_output.weight");
    const Mat an = load(src, p + "attn_norm.weight"), fn = load(src, p + "ffn_norm.weight");
    Mat bq, bk, bv, qn, kn;
    if (c.qkv_bias) {
      bq = load(src, p + "attn_q.bias");
      bk = load(src, p + "attn_k.bias");
      bv = load(src, p + "attn_v.bias");
    }
    if (c.qk_norm) {
      qn = load(src, p + "attn_q_norm.weight");
      kn = load(src, p + "attn_k_norm.weight");
    }
    std::vector<std::vector<double>> q(n), k(n), v(n);
    for (size_t t = 0; t < n; ++t) {
      const std::vector<double> h = rms_norm(x[t], an, c.rms_eps);
      q[t] = linear(wq, h, c.qkv_bias ? &bq : nullptr);
      k[t] = linear(wk, h, c.qkv_bias ? &bk : nullptr);
      v[t] = linear(wv, h, c.qkv_bias ? &bv : nullptr);
      for (size_t hh = 0; hh < nh; ++hh) {
        if (c.qk_norm) {
          const auto y = rms_norm(q[t], qn, c.rms_eps, hh * hd, hd);
          std::copy(y.begin(), y.end(), q[t].begin() + static_cast<std::ptrdiff_t>(hh * hd));
        }
        rope(&q[t][hh * hd], c.head_dim, static_cast<int>(t), c);
      }
      for (size_t hh = 0; hh < nkv; ++hh) {
        if (c.qk_norm) {
          const auto y = rms_norm(k[t], kn, c.rms_eps, hh * hd, hd);
          std::copy(y.begin(), y.end(), k[t].begin() + static_cast<std::ptrdiff_t>(hh * hd));
        }
        rope(&k[t][hh * hd], c.head_dim, static_cast<int>(t), c);
      }
    }
    for (size_t t = 0; t < n; ++t) {
      std::vector<double> attn(nh * hd, 0.0);
      for (size_t hh = 0; hh < nh; ++hh) {
        const size_t kvh = hh / (nh / nkv);
        std::vector<double> s(t + 1);
        double mx = -INFINITY;
        for (size_t u = 0; u <= t; ++u) {
          double d = 0;
          for (size_t i = 0; i < hd; ++i) d += q[t][hh * hd + i] * k[u][kvh * hd + i];
          s[u] = d / std::sqrt(static_cast<double>(hd));
          mx = std::max(mx, s[u]);
        }
        double sum = 0;
        for (double& e : s) sum += (e = std::exp(e - mx));
        for (size_t u = 0; u <= t; ++u) {
          for (size_t i = 0; i < hd; ++i) attn[hh * hd + i] += s[u] / sum * v[u][kvh * hd + i];
        }
      }
      const std::vector<double> o = linear(wo, attn);
      for (size_t i = 0; i < H; ++i) x[t][i] += o[i];
    }
    if (c.is_moe()) {
      const Moe moe = load_moe(src, l);
      for (size_t t = 0; t < n; ++t) {
        const std::vector<double> d = moe_mlp(moe, c, rms_norm(x[t], fn, c.rms_eps));
        for (size_t i = 0; i < H; ++i) x[t][i] += d[i];
      }
      continue;
    }
    const Ffn ffn{load(src, p + "ffn_gate.weight"), load(src, p + "ffn_up.weight"), load(src, p + "ffn_down.weight")};
    for (size_t t = 0; t < n; ++t) {
      const std::vector<double> d = swiglu(ffn, rms_norm(x[t], fn, c.rms_eps));
      for (size_t i = 0; i < H; ++i) x[t][i] += d[i];
    }
  }
  const Mat on = load(src, "output_norm.weight");
  const Mat head = load(src, c.tied_embeddings ? "token_embd.weight" : "output.weight");
  std::vector<double> logits;
  logits.reserve(n * static_cast<size_t>(c.vocab));
  for (size_t t = 0; t < n; ++t) {
    const std::vector<double> y = linear(head, rms_norm(x[t], on, c.rms_eps));
    logits.insert(logits.end(), y.begin(), y.end());
  }
  return logits;
}

double rel_l2(const std::vector<float>& a, const std::vector<double>& b) {
  if (a.size() != b.size()) throw Error(cat("rel_l2 of ", a.size(), " and ", b.size(), " values"));
  double num = 0, den = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    num += (a[i] - b[i]) * (a[i] - b[i]);
    den += b[i] * b[i];
  }
  return std::sqrt(num / den);
}

double rel_l2(const std::vector<float>& a, const std::vector<float>& b) {
  return rel_l2(a, std::vector<double>(b.begin(), b.end()));
}

}  // namespace tpinfer::reference
