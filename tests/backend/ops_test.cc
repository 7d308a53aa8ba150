// Row operations of backend/cpu/ops.h on every instruction-set level against
// plain float64 formulas written out here, and the library's *_ref against the
// same formulas.
#include "backend/cpu/ops.h"

#include <gtest/gtest.h>

#include <cmath>
#include <complex>
#include <random>
#include <vector>

#include "backend_test_util.h"
#include "core/error.h"

namespace tpinfer::cpu {
namespace {

std::vector<float> uniform(int64_t n, float lo, float hi, std::mt19937& rng) {
  std::uniform_real_distribution<float> u(lo, hi);
  std::vector<float> v(static_cast<size_t>(n));
  for (float& x : v) x = u(rng);
  return v;
}

// Lengths around every vector width and tail case.
const std::vector<int64_t> kLengths = {1, 3, 7, 8, 9, 15, 16, 17, 31, 32, 33, 100, 256, 1000, 4097};

// |got - want| <= rel * |want| + abs, element by element.
void expect_close(const std::vector<float>& got, const std::vector<double>& want, double rel, double abs,
                  const std::string& what) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i) {
    ASSERT_NEAR(got[i], want[i], rel * std::fabs(want[i]) + abs) << what << " i=" << i << " n=" << got.size();
  }
}

TEST(Ops, RmsNormMatchesFormula) {
  std::mt19937 rng(31);
  for (int64_t n : kLengths) {
    const std::vector<float> x = testing::random_floats(n, rng);
    const std::vector<float> w = uniform(n, -2.0f, 2.0f, rng);
    const float eps = 1e-5f;
    double ss = 0.0;
    for (float v : x) ss += static_cast<double>(v) * v;
    const double scale = 1.0 / std::sqrt(ss / static_cast<double>(n) + eps);
    std::vector<double> want(static_cast<size_t>(n)), want_unweighted(static_cast<size_t>(n));
    for (size_t i = 0; i < want.size(); ++i) {
      want_unweighted[i] = x[i] * scale;
      want[i] = want_unweighted[i] * w[i];
    }
    std::vector<float> out(static_cast<size_t>(n));
    rms_norm_ref(x.data(), w.data(), n, eps, out.data());
    expect_close(out, want, 1e-6, 0.0, "ref");
    for (Isa isa : supported_isas()) {
      rms_norm(isa, x.data(), w.data(), n, eps, out.data());
      expect_close(out, want, 2e-6, 0.0, isa_name(isa));
      rms_norm(isa, x.data(), nullptr, n, eps, out.data());
      expect_close(out, want_unweighted, 2e-6, 0.0, std::string(isa_name(isa)) + " unweighted");
      std::vector<float> inplace = x;
      rms_norm(isa, inplace.data(), w.data(), n, eps, inplace.data());
      expect_close(inplace, want, 2e-6, 0.0, std::string(isa_name(isa)) + " in place");
    }
  }
}

// exp(x_i - max) in float carries the rounding of the float difference x_i - max,
// relative error up to |x_i - max| * 2^-24: the condition of the problem, not of
// the code. The bounds add that to the rounding of the exp and the division.
TEST(Ops, SoftmaxMatchesFormula) {
  std::mt19937 rng(32);
  for (int64_t n : kLengths) {
    for (float spread : {1.0f, 30.0f, 300.0f}) {
      const std::vector<float> x = uniform(n, -spread, spread / 3, rng);
      double mx = -INFINITY;
      for (float v : x) mx = std::max<double>(mx, v);
      double sum = 0.0;
      for (float v : x) sum += std::exp(v - mx);
      std::vector<double> want(static_cast<size_t>(n)), rel(static_cast<size_t>(n));
      for (size_t i = 0; i < want.size(); ++i) {
        want[i] = std::exp(x[i] - mx) / sum;
        rel[i] = 2e-6 + std::fabs(x[i] - mx) * 0x1p-24;
      }
      auto check = [&](const std::vector<float>& got, const std::string& what) {
        for (size_t i = 0; i < got.size(); ++i) {
          ASSERT_NEAR(got[i], want[i], rel[i] * want[i] + 1e-37) << what << " i=" << i << " n=" << n;
        }
      };
      std::vector<float> out(static_cast<size_t>(n));
      softmax_ref(x.data(), n, out.data());
      expect_close(out, want, 1e-6, 1e-44, "ref");  // double inside: no conditioning term
      for (Isa isa : supported_isas()) {
        softmax(isa, x.data(), n, out.data());
        check(out, isa_name(isa));
        double total = 0.0;
        for (float v : out) total += v;
        EXPECT_NEAR(total, 1.0, 1e-5);
      }
    }
  }
}

TEST(Ops, SiluMulMatchesFormula) {
  std::mt19937 rng(33);
  for (int64_t n : kLengths) {
    std::vector<float> g = uniform(n, -20.0f, 20.0f, rng);
    if (n > 4) {  // saturated tails of the sigmoid
      g[0] = -120.0f;
      g[1] = 95.0f;
      g[2] = -88.5f;
      g[3] = 0.0f;
    }
    const std::vector<float> u = uniform(n, -3.0f, 3.0f, rng);
    std::vector<double> want(static_cast<size_t>(n));
    for (size_t i = 0; i < want.size(); ++i) want[i] = g[i] / (1.0 + std::exp(-static_cast<double>(g[i]))) * u[i];
    std::vector<float> out(static_cast<size_t>(n));
    silu_mul_ref(g.data(), u.data(), n, out.data());
    expect_close(out, want, 1e-6, 1e-44, "ref");  // below that, float underflow
    for (Isa isa : supported_isas()) {
      silu_mul(isa, g.data(), u.data(), n, out.data());
      expect_close(out, want, 2e-6, 1e-35, isa_name(isa));
    }
  }
}

TEST(Ops, AddMatchesFormula) {
  std::mt19937 rng(34);
  for (int64_t n : kLengths) {
    const std::vector<float> a = testing::random_floats(n, rng);
    const std::vector<float> b = testing::random_floats(n, rng);
    std::vector<double> want(static_cast<size_t>(n));
    for (size_t i = 0; i < want.size(); ++i) want[i] = static_cast<double>(a[i]) + b[i];
    std::vector<float> out(static_cast<size_t>(n));
    add_ref(a.data(), b.data(), n, out.data());
    expect_close(out, want, 0x1p-24, 0.0, "ref");
    for (Isa isa : supported_isas()) {
      add(isa, a.data(), b.data(), n, out.data());
      expect_close(out, want, 0x1p-24, 0.0, isa_name(isa));
    }
  }
}

// RoPE written as complex multiplication: pair (x_a, x_b) is the number
// x_a + i x_b, multiplied by e^(i * angle).
std::vector<double> rope_formula(const std::vector<float>& x, int64_t n_heads, int64_t head_dim, int64_t pos,
                                 const RopeParams& p) {
  const int64_t rot = p.rot_dim == 0 ? head_dim : p.rot_dim;
  std::vector<double> out(x.begin(), x.end());
  for (int64_t h = 0; h < n_heads; ++h) {
    for (int64_t i = 0; i < rot / 2; ++i) {
      const int64_t a = h * head_dim + (p.style == RopeStyle::kInterleaved ? 2 * i : i);
      const int64_t b = h * head_dim + (p.style == RopeStyle::kInterleaved ? 2 * i + 1 : i + rot / 2);
      double freq = std::pow(static_cast<double>(p.theta), -static_cast<double>(2 * i) / static_cast<double>(rot));
      if (p.freq_factors) freq /= p.freq_factors[i];
      const std::complex<double> z(x[static_cast<size_t>(a)], x[static_cast<size_t>(b)]);
      const std::complex<double> r = z * std::polar(1.0, static_cast<double>(pos) * p.freq_scale * freq);
      out[static_cast<size_t>(a)] = r.real();
      out[static_cast<size_t>(b)] = r.imag();
    }
  }
  return out;
}

TEST(Ops, RopeMatchesComplexRotation) {
  std::mt19937 rng(35);
  std::vector<float> factors = uniform(64, 1.0f, 8.0f, rng);
  for (RopeStyle style : {RopeStyle::kInterleaved, RopeStyle::kNeox}) {
    for (int64_t head_dim : {2, 32, 64, 128}) {
      for (int64_t rot : {int64_t{0}, head_dim / 2 - (head_dim / 2) % 2}) {
        for (int64_t pos : {0, 1, 17, 4095, 131071}) {
          for (bool use_factors : {false, true}) {
            RopeParams p;
            p.style = style;
            p.theta = 500000.0f;
            p.rot_dim = rot;
            p.freq_factors = use_factors ? factors.data() : nullptr;
            p.freq_scale = use_factors ? 0.25f : 1.0f;
            const int64_t n_heads = 3;
            const std::vector<float> x = uniform(n_heads * head_dim, -2.0f, 2.0f, rng);
            const std::vector<double> want = rope_formula(x, n_heads, head_dim, pos, p);
            std::vector<float> got = x, got_ref = x;
            rope(got.data(), n_heads, head_dim, pos, p);
            rope_ref(got_ref.data(), n_heads, head_dim, pos, p);
            const std::string what = std::string(style == RopeStyle::kNeox ? "neox" : "interleaved") +
                                     " d=" + std::to_string(head_dim) + " rot=" + std::to_string(rot) +
                                     " pos=" + std::to_string(pos);
            expect_close(got_ref, want, 0.0, 1e-6, what + " ref");
            expect_close(got, want, 0.0, 4e-6, what);
          }
        }
      }
    }
  }
}

// Position 0 is the identity; head size 2 at position 1 turns (1, 0) by 1 radian.
TEST(Ops, RopeKnownAnswers) {
  std::vector<float> x = {0.25f, -1.5f, 3.0f, 7.0f};
  std::vector<float> y = x;
  rope(y.data(), 1, 4, 0, RopeParams{});
  EXPECT_EQ(x, y);
  std::vector<float> v = {1.0f, 0.0f};
  rope(v.data(), 1, 2, 1, RopeParams{});
  EXPECT_NEAR(v[0], std::cos(1.0), 1e-7);
  EXPECT_NEAR(v[1], std::sin(1.0), 1e-7);
  // NeoX on a vector permuted to rotate-half order equals interleaved on the
  // original: the relation between Hugging Face and GGUF "llama" Q/K rows.
  std::mt19937 rng(36);
  const int64_t d = 16;
  const std::vector<float> a = uniform(d, -1.0f, 1.0f, rng);
  std::vector<float> halves(d);
  for (int64_t i = 0; i < d / 2; ++i) {
    halves[static_cast<size_t>(i)] = a[static_cast<size_t>(2 * i)];
    halves[static_cast<size_t>(i + d / 2)] = a[static_cast<size_t>(2 * i + 1)];
  }
  std::vector<float> inter = a;
  RopeParams p;
  rope(inter.data(), 1, d, 9, p);
  p.style = RopeStyle::kNeox;
  rope(halves.data(), 1, d, 9, p);
  for (int64_t i = 0; i < d / 2; ++i) {
    EXPECT_FLOAT_EQ(halves[static_cast<size_t>(i)], inter[static_cast<size_t>(2 * i)]);
    EXPECT_FLOAT_EQ(halves[static_cast<size_t>(i + d / 2)], inter[static_cast<size_t>(2 * i + 1)]);
  }
}

TEST(Ops, RejectBadArguments) {
  std::vector<float> x(8);
  RopeParams p;
  p.rot_dim = 3;
  EXPECT_THROW(rope(x.data(), 1, 8, 1, p), Error);
  p.rot_dim = 10;
  EXPECT_THROW(rope(x.data(), 1, 8, 1, p), Error);
  EXPECT_THROW(rms_norm(x.data(), nullptr, 0, 1e-5f, x.data()), Error);
  EXPECT_THROW(softmax(x.data(), 0, x.data()), Error);
}

}  // namespace
}  // namespace tpinfer::cpu
