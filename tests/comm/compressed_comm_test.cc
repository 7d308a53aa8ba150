#include "comm/compressed_comm.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <chrono>
#include <cmath>
#include <cstring>
#include <iostream>
#include <limits>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "comm/local_comm.h"
#include "core/enum_names.h"
#include "core/error.h"
#include "core/fp8.h"
#include "core/half.h"
#include "test_util.h"

namespace tpinfer {
namespace {

using namespace std::chrono_literals;

constexpr double kU = 0x1p-24;  // f32 unit roundoff

const Compression kLossy[] = {Compression::BF16, Compression::FP8, Compression::INT8};

std::vector<CodecImpl> available_codecs() {
  std::vector<CodecImpl> out;
  for (CodecImpl c : {CodecImpl::Reference, CodecImpl::Portable, CodecImpl::Avx512}) {
    if (codec_available(c)) out.push_back(c);
  }
  return out;
}

// ---- Test data ----

enum class Dist { Normal, StudentT, Cauchy, Outliers, AllEqual, Zeros, Denormals, MixedSigns, WideRange };
const Dist kDists[] = {Dist::Normal, Dist::StudentT,  Dist::Cauchy,     Dist::Outliers, Dist::AllEqual,
                       Dist::Zeros,  Dist::Denormals, Dist::MixedSigns, Dist::WideRange};

constexpr EnumNames<Dist, 9> kDistNames{
    {"normal", "student_t2", "cauchy", "outliers", "all_equal", "zeros", "denormals", "mixed_signs", "wide_range"}};
const char* dist_name(Dist d) { return kDistNames[d]; }

std::vector<float> make_data(Dist d, size_t n, int rank, uint64_t seed) {
  std::mt19937_64 rng(seed * 1000003u + static_cast<uint64_t>(rank) * 7919u + static_cast<uint64_t>(d));
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> x(n);
  for (size_t i = 0; i < n; ++i) {
    switch (d) {
      case Dist::Normal:
        x[i] = normal(rng);
        break;
      case Dist::StudentT:
        x[i] = std::student_t_distribution<float>(2.0f)(rng);
        break;
      case Dist::Cauchy:
        x[i] = std::cauchy_distribution<float>(0.0f, 1.0f)(rng);
        break;
      case Dist::Outliers:  // a few values 1000x the rest
        x[i] = normal(rng) * (rng() % 500 == 0 ? 1000.0f : 1.0f);
        break;
      case Dist::AllEqual:
        x[i] = 0.7431f;
        break;
      case Dist::Zeros:
        x[i] = 0.0f;
        break;
      case Dist::Denormals: {  // f32 subnormals, random sign and mantissa
        const uint32_t man = static_cast<uint32_t>(rng() % 0x7fffffu) + 1u;
        x[i] = std::bit_cast<float>(man | (rng() % 2 ? 0x80000000u : 0u));
        break;
      }
      case Dist::MixedSigns:  // ranks of opposite sign: the sum cancels
        x[i] = (rank % 2 ? -1.0f : 1.0f) * (50.0f + normal(rng));
        break;
      case Dist::WideRange:  // magnitudes 1e-6 .. 1e6 side by side
        x[i] = normal(rng) * std::pow(10.0f, std::uniform_real_distribution<float>(-6.0f, 6.0f)(rng));
        break;
    }
  }
  return x;
}

// ---- Running an all-reduce on p rank threads ----

// outputs[r] = rank r's data after one all_reduce_sum of inputs[r].
std::vector<std::vector<float>> run_all_reduce(Compression c, const std::vector<std::vector<float>>& inputs,
                                               std::vector<CommStats>* stats = nullptr,
                                               std::vector<CommStats>* inner_stats = nullptr) {
  const int p = static_cast<int>(inputs.size());
  LocalGroup group(p, 60s);
  std::vector<std::vector<float>> out(inputs);
  std::vector<std::string> errors(static_cast<size_t>(p));
  if (stats) stats->assign(static_cast<size_t>(p), CommStats{});
  if (inner_stats) inner_stats->assign(static_cast<size_t>(p), CommStats{});
  std::vector<std::thread> threads;
  for (int r = 0; r < p; ++r) {
    threads.emplace_back([&, r] {
      const size_t ri = static_cast<size_t>(r);
      try {
        CompressedCommunicator comm(group.communicator(r), c);
        comm.all_reduce_sum(out[ri].data(), out[ri].size());
        if (stats) (*stats)[ri] = comm.stats();
        if (inner_stats) (*inner_stats)[ri] = comm.inner_stats();
      } catch (const std::exception& e) {
        errors[ri] = e.what();
      }
    });
  }
  for (auto& t : threads) t.join();
  for (int r = 0; r < p; ++r) EXPECT_EQ(errors[static_cast<size_t>(r)], "") << "rank " << r;
  return out;
}

// ---- The stated error bounds (see compressed_comm.h for the derivation's terms) ----

double quant_max(Compression c) { return c == Compression::FP8 ? 448.0 : 127.0; }

// Per element: the bound on |result - exact sum| given M = sum_r |x_r| and
// A = sum_r max(block amax_r, Q 2^-126).
//
// Derivation. Rank r's block scale s_r is the smallest bf16 >= amax_r / Q, so
// amax_r / Q <= s_r <= (1 + 2^-7) a_r / Q. The encoder computes v = fl(x * fl(1/s)) =
// (x / s)(1 + t), |t| <= 2u + u^2.
//  INT8: code q = round(v) clamped to 127, |q - x/s| <= 1/2 + 127|t| <= 1/2 + 2^-16,
//    and q * s is exact, so |y_r - x_r| <= c a_r, c = (1 + 2^-7)(1/2 + 2^-16)/127.
//    The f32 sum S of p decoded values errs by <= gamma_{p-1} sum|y_r|. Stage 2
//    quantises S with a block amax <= A (1 + c)(1 + gamma), adding <= c A (1 + c)(1 + gamma).
//    Total <= (2c + c^2) A + gamma (M + A) with gamma <= p u.
//  FP8: E4M3 rounding errs by <= 2^-4 |v| (normal) or 2^-10 (subnormal), so
//    |y_r - x_r| <= (2^-4 + 2t)|x_r| + 2^-10 s_r <= (2^-4 + 2t)|x_r| + k a_r,
//    k = 2^-10 (1 + 2^-7)/448. Stage 1 errs by E1 <= 2^-4 M + k A (+ rounding),
//    stage 2 by 2^-4 |S| + k A (1 + 2^-4 + k) with |S| <= M + E1; the sum is
//    (2^-4 (2 + 2^-4)) M + (2 + 2^-3 + k) k A = (2^-3 + 2^-8) M + 2.13 k A.
//  BF16: |bf16(x) - x| <= 2^-8 |x| + 2^-134 (subnormal bf16 spacing 2^-133), per
//    stage: (2^-7 + 2^-16) M + (p + 1) 2^-134.
//  All f32 rounding (t, gamma, saturation by 448 t) is covered by (p + 16) 2^-22 (M + A).
double error_bound(Compression c, int p, double M, double A) {
  const double eps = (p + 16) * 0x1p-22;
  switch (c) {
    case Compression::INT8: {
      const double k = (1 + 0x1p-7) * (0.5 + 0x1p-16) / 127.0;
      return (2 * k + k * k) * A + eps * (M + A);
    }
    case Compression::FP8: {
      const double k = 0x1p-10 * (1 + 0x1p-7) / 448.0;
      return (0x1p-3 + 0x1p-8) * M + 2.2 * k * A + eps * (M + A);
    }
    case Compression::BF16:
      return (0x1p-7 + 0x1p-16) * M + (p + 1) * 0x1p-134 + eps * M;
    case Compression::None:
      return 0;
  }
  return 0;
}

struct Check {
  double worst_ratio = 0;   // max over elements of |err| / bound
  double max_rel_to_a = 0;  // max over elements of |err| / A
  std::string failure;      // first element over its bound
};

// Checks every element of `result` against the exact (double) sum of `inputs`.
Check check_against_bound(Compression c, const std::vector<std::vector<float>>& inputs,
                          const std::vector<float>& result) {
  const size_t p = inputs.size(), n = result.size();
  const double floor_a = quant_max(c) * 0x1p-126;
  Check out;
  // Blocks start at each rank's slice; with two ranks the whole vector is
  // encoded at once (one exchange), so they start at 0.
  const size_t slices = p == 2 ? 1 : p;
  for (size_t j = 0; j < slices; ++j) {
    const size_t sb = n * j / slices, se = n * (j + 1) / slices;
    for (size_t bb = sb; bb < se; bb += kCompressBlock) {
      const size_t be = std::min(se, bb + kCompressBlock);
      double A = 0;
      for (size_t r = 0; r < p; ++r) {
        double amax = 0;
        for (size_t i = bb; i < be; ++i) amax = std::max(amax, std::fabs(static_cast<double>(inputs[r][i])));
        A += std::max(amax, floor_a);
      }
      for (size_t i = bb; i < be; ++i) {
        double exact = 0, M = 0;
        for (size_t r = 0; r < p; ++r) {
          exact += inputs[r][i];
          M += std::fabs(static_cast<double>(inputs[r][i]));
        }
        const double err = std::fabs(static_cast<double>(result[i]) - exact);
        const double bound = error_bound(c, static_cast<int>(p), M, A);
        if (!(err <= bound) && out.failure.empty()) {
          out.failure = cat("element ", i, ": got ", result[i], ", exact ", exact, ", |err| ", err, " > bound ", bound,
                            " (M ", M, ", A ", A, ")");
        }
        if (bound > 0) out.worst_ratio = std::max(out.worst_ratio, err / bound);
        out.max_rel_to_a = std::max(out.max_rel_to_a, err / A);
      }
    }
  }
  return out;
}

// ---- Parsing ----

TEST(CompressedComm, ParseCompression) {
  EXPECT_EQ(parse_compression("none"), Compression::None);
  EXPECT_EQ(parse_compression("bf16"), Compression::BF16);
  EXPECT_EQ(parse_compression("fp8"), Compression::FP8);
  EXPECT_EQ(parse_compression("int8"), Compression::INT8);
  for (Compression c : {Compression::None, Compression::BF16, Compression::FP8, Compression::INT8}) {
    EXPECT_EQ(parse_compression(compression_name(c)), c);
  }
  try {
    parse_compression("fp4");
    FAIL() << "fp4 accepted";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("'fp4'"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("none, bf16, fp8, int8"), std::string::npos) << e.what();
  }
  EXPECT_THROW(parse_compression("FP8"), ConfigError);
}

// ---- Codecs ----

TEST(CompressedComm, EncodedSize) {
  EXPECT_EQ(encoded_size(Compression::None, 33), 132u);
  EXPECT_EQ(encoded_size(Compression::BF16, 33), 66u);
  EXPECT_EQ(encoded_size(Compression::FP8, 0), 0u);
  EXPECT_EQ(encoded_size(Compression::FP8, 1), 3u);
  EXPECT_EQ(encoded_size(Compression::FP8, 32), 34u);
  EXPECT_EQ(encoded_size(Compression::INT8, 33), 37u);
  EXPECT_EQ(encoded_size(Compression::INT8, 4096), 4096u + 256u);
}

// Every fast codec is bit-identical to the reference: encodings byte for byte,
// decodings and decode-adds bit for bit, on fresh random inputs of every kind.
TEST(CompressedComm, FastCodecsMatchReference) {
  const std::vector<CodecImpl> impls = available_codecs();
  ASSERT_GE(impls.size(), 2u);
  std::cout << "codecs tested:";
  for (CodecImpl i : impls) std::cout << ' ' << codec_name(i);
  std::cout << " (best: " << codec_name(best_codec()) << ")\n";
  std::mt19937_64 rng(77);
  const size_t lengths[] = {1, 5, 31, 32, 33, 64, 100, 1000, 4097};
  for (Compression c : {Compression::None, Compression::BF16, Compression::FP8, Compression::INT8}) {
    for (Dist d : kDists) {
      if (d == Dist::Zeros) continue;  // never zeros: they would hide a broken path
      for (size_t n : lengths) {
        const std::vector<float> x = make_data(d, n, 0, rng());
        std::vector<float> acc0 = make_data(Dist::Normal, n, 1, rng());
        const size_t bytes = encoded_size(c, n);
        std::vector<uint8_t> want(bytes + 1, 0xAB);  // the byte past the end must stay untouched
        encode_values(c, x.data(), n, want.data(), CodecImpl::Reference);
        ASSERT_EQ(want[bytes], 0xAB);
        std::vector<float> want_dec(n), want_acc(acc0);
        decode_values(c, want.data(), n, want_dec.data(), CodecImpl::Reference);
        decode_add_values(c, want.data(), n, want_acc.data(), CodecImpl::Reference);
        for (CodecImpl impl : impls) {
          if (impl == CodecImpl::Reference) continue;
          const std::string where = cat(compression_name(c), " ", dist_name(d), " n=", n, " ", codec_name(impl));
          std::vector<uint8_t> got(bytes + 1, 0xAB);
          encode_values(c, x.data(), n, got.data(), impl);
          ASSERT_EQ(got, want) << where;
          std::vector<float> dec(n, -1.0f), acc(acc0);
          decode_values(c, want.data(), n, dec.data(), impl);
          decode_add_values(c, want.data(), n, acc.data(), impl);
          ASSERT_EQ(std::memcmp(dec.data(), want_dec.data(), 4 * n), 0) << where;
          ASSERT_EQ(std::memcmp(acc.data(), want_acc.data(), 4 * n), 0) << where;
        }
      }
    }
  }
}

// The fast FP8 element encoder against core/fp8.h on every code, every midpoint
// between codes and its neighbours, and random floats of all magnitudes, through
// the block codec with scale 1 (blocks whose amax is exactly 448).
TEST(CompressedComm, Fp8BlockCodesMatchScalarEncoder) {
  std::vector<float> probes;
  for (int c = 0; c < 256; ++c) {
    const float v = fp8_e4m3_to_f32(static_cast<uint8_t>(c));
    if (std::isnan(v)) continue;
    probes.push_back(v);
    probes.push_back(std::nextafter(v, 1e9f));
    probes.push_back(std::nextafter(v, -1e9f));
    const float next = fp8_e4m3_to_f32(static_cast<uint8_t>(c + 1));
    if ((c & 0x7f) < 0x7e) probes.push_back(v + (next - v) / 2);
  }
  std::mt19937 rng(5);
  for (int i = 0; i < 20000; ++i) {
    const float v = std::ldexp(std::uniform_real_distribution<float>(1.0f, 2.0f)(rng),
                               std::uniform_int_distribution<int>(-40, 8)(rng));
    probes.push_back(rng() % 2 ? v : -v);
  }
  std::erase_if(probes, [](float v) { return !(std::fabs(v) <= 448.0f); });
  for (CodecImpl impl : available_codecs()) {
    for (size_t at = 0; at < probes.size(); at += 31) {
      // 31 probes and 448 per block: the scale is exactly 1, codes are the plain encoder's.
      std::vector<float> block(probes.begin() + static_cast<std::ptrdiff_t>(at),
                               probes.begin() + static_cast<std::ptrdiff_t>(std::min(probes.size(), at + 31)));
      block.push_back(448.0f);
      std::vector<uint8_t> enc(encoded_size(Compression::FP8, block.size()));
      encode_values(Compression::FP8, block.data(), block.size(), enc.data(), impl);
      ASSERT_EQ(bf16_to_f32(static_cast<uint16_t>(enc[0] | enc[1] << 8)), 1.0f);
      for (size_t k = 0; k < block.size(); ++k) {
        ASSERT_EQ(enc[2 + k], f32_to_fp8_e4m3(block[k])) << codec_name(impl) << " value " << block[k];
      }
    }
  }
}

// INT8 codes round the f32 product x * fl(1/s) once, to nearest even. Values whose
// exact product lies just off a half-integer while the f32 product is exactly on
// it tell a single rounding from a fused multiply-add (which rounds the exact
// product): every codec must give the same codes as the plain definition.
TEST(CompressedComm, Int8CodesRoundTheF32ProductOnce) {
  const float s = 1.5f;  // the scale of a block whose amax is 127 * 1.5
  const float inv = 1.0f / s;
  std::vector<float> ties;
  for (int k = -126; k <= 125; ++k) {
    const float t = static_cast<float>(k) + 0.5f;
    float x = t * s;
    for (int step = 0; step < 40; ++step) x = std::nextafter(x, -1e9f);
    for (int step = 0; step < 80; ++step, x = std::nextafter(x, 1e9f)) {
      const double exact = static_cast<double>(x) * static_cast<double>(inv);
      if (x * inv == t && exact != static_cast<double>(t)) ties.push_back(x);
    }
  }
  ASSERT_GT(ties.size(), 100u) << "no near-tie inputs found";
  for (size_t at = 0; at < ties.size(); at += 31) {
    std::vector<float> block(ties.begin() + static_cast<std::ptrdiff_t>(at),
                             ties.begin() + static_cast<std::ptrdiff_t>(std::min(ties.size(), at + 31)));
    block.push_back(127.0f * s);
    for (CodecImpl impl : available_codecs()) {
      std::vector<uint8_t> enc(encoded_size(Compression::INT8, block.size()));
      encode_values(Compression::INT8, block.data(), block.size(), enc.data(), impl);
      ASSERT_EQ(bf16_to_f32(static_cast<uint16_t>(enc[0] | enc[1] << 8)), s);
      for (size_t k = 0; k < block.size(); ++k) {
        const auto want = static_cast<int8_t>(std::nearbyint(block[k] * inv));
        ASSERT_EQ(static_cast<int8_t>(enc[2 + k]), want) << codec_name(impl) << " x=" << block[k];
      }
    }
  }
}

// Block scales are the smallest bf16 >= amax/Q (or 2^-126), and one encode +
// decode stays within the per-stage bound used by the all-reduce bounds.
TEST(CompressedComm, BlockScalesAndSingleStageError) {
  std::mt19937_64 rng(99);
  for (Compression c : {Compression::FP8, Compression::INT8}) {
    const double q = quant_max(c);
    for (Dist d : kDists) {
      for (size_t n : {size_t{1}, size_t{33}, size_t{1000}}) {
        const std::vector<float> x = make_data(d, n, 3, rng());
        std::vector<uint8_t> enc(encoded_size(c, n));
        encode_values(c, x.data(), n, enc.data());
        std::vector<float> y(n);
        decode_values(c, enc.data(), n, y.data());
        const size_t blocks = (n + 31) / 32;
        for (size_t b = 0; b < blocks; ++b) {
          uint16_t h;
          std::memcpy(&h, enc.data() + 2 * b, 2);
          const double s = bf16_to_f32(h);
          double amax = 0;
          for (size_t i = b * 32; i < std::min(n, b * 32 + 32); ++i) amax = std::max(amax, std::fabs(double{x[i]}));
          const std::string where = cat(compression_name(c), " ", dist_name(d), " n=", n, " block ", b);
          ASSERT_GE(s * q, amax) << where;
          if (s != 0x1p-126) {
            ASSERT_LT(static_cast<double>(bf16_to_f32(static_cast<uint16_t>(h - 1))) * q, amax) << where;
          } else {
            ASSERT_LE(amax, 0x1p-126 * q) << where;
          }
          for (size_t i = b * 32; i < std::min(n, b * 32 + 32); ++i) {
            const double err = std::fabs(double{y[i]} - double{x[i]});
            const double bound = c == Compression::INT8 ? s * (0.5 + 0x1p-16)
                                                        : 0x1p-4 * std::fabs(double{x[i]}) + 0x1p-10 * s +
                                                              0x1p-21 * (std::fabs(double{x[i]}) + 448 * s);
            ASSERT_LE(err, bound) << where << " i=" << i << " x=" << x[i] << " y=" << y[i];
            if (c == Compression::INT8) {
              ASSERT_NE(enc[2 * blocks + i], 0x80) << "code -128 is never used";
            }
          }
        }
      }
    }
  }
}

// A block holding Inf or NaN decodes to NaN as a whole; its neighbours are untouched.
TEST(CompressedComm, NonFiniteBlockBecomesNaN) {
  for (Compression c : {Compression::FP8, Compression::INT8}) {
    for (float bad : {std::numeric_limits<float>::infinity(), -std::numeric_limits<float>::infinity(),
                      std::numeric_limits<float>::quiet_NaN()}) {
      for (CodecImpl impl : available_codecs()) {
        std::vector<float> x = make_data(Dist::Normal, 96, 0, 4);
        x[40] = bad;
        std::vector<uint8_t> enc(encoded_size(c, x.size()));
        encode_values(c, x.data(), x.size(), enc.data(), impl);
        std::vector<float> y(x.size());
        decode_values(c, enc.data(), x.size(), y.data(), impl);
        for (size_t i = 0; i < x.size(); ++i) {
          if (i >= 32 && i < 64) {
            EXPECT_TRUE(std::isnan(y[i])) << codec_name(impl) << " i=" << i;
          } else {
            EXPECT_TRUE(std::isfinite(y[i])) << codec_name(impl) << " i=" << i;
            EXPECT_LE(std::fabs(y[i] - x[i]), 0.1f * std::fabs(x[i]) + 0.05f) << codec_name(impl) << " i=" << i;
          }
        }
      }
    }
  }
}

// ---- The all-reduce ----

// Every distribution x ranks 2..8 x lengths x format: every element within its
// stated bound of the exact sum, every rank's result bit-identical.
TEST(CompressedComm, AllReduceWithinBoundAndBitIdentical) {
  const size_t lengths[] = {1, 31, 32, 33, 4096, 100003};
  double worst_normal[3] = {0, 0, 0};
  for (int p = 2; p <= 8; ++p) {
    for (Dist d : kDists) {
      for (size_t n : lengths) {
        std::vector<std::vector<float>> inputs;
        for (int r = 0; r < p; ++r) inputs.push_back(make_data(d, n, r, 1000 + n));
        for (size_t ci = 0; ci < 3; ++ci) {
          const Compression c = kLossy[ci];
          const std::string where = cat(compression_name(c), " ", dist_name(d), " p=", p, " n=", n);
          const auto out = run_all_reduce(c, inputs);
          for (int r = 1; r < p; ++r) {
            ASSERT_EQ(std::memcmp(out[0].data(), out[static_cast<size_t>(r)].data(), 4 * n), 0)
                << where << ": rank " << r << " differs from rank 0";
          }
          const Check chk = check_against_bound(c, inputs, out[0]);
          ASSERT_EQ(chk.failure, "") << where;
          if (d == Dist::Zeros) {
            for (float v : out[0]) ASSERT_EQ(v, 0.0f) << where;
          }
          if (d == Dist::Normal && n == 100003) worst_normal[ci] = std::max(worst_normal[ci], chk.worst_ratio);
        }
      }
    }
  }
  // The bounds are tight enough to mean something: on 100003 Gaussian values the
  // worst element reaches a good fraction of its bound.
  for (size_t ci = 0; ci < 3; ++ci) {
    std::cout << compression_name(kLossy[ci]) << ": worst |err|/bound on normal data " << worst_normal[ci] << "\n";
    EXPECT_GT(worst_normal[ci], 0.25) << compression_name(kLossy[ci]);
  }
}

// Typical (not worst-case) accuracy, for the report: relative RMS error against
// the exact sum, 4 ranks, 100003 Gaussian values. Loose ceilings only.
TEST(CompressedComm, AllReduceTypicalError) {
  const int p = 4;
  const size_t n = 100003;
  std::vector<std::vector<float>> inputs;
  for (int r = 0; r < p; ++r) inputs.push_back(make_data(Dist::Normal, n, r, 17));
  const double ceiling[3] = {0.004, 0.06, 0.02};
  for (size_t ci = 0; ci < 3; ++ci) {
    const auto out = run_all_reduce(kLossy[ci], inputs);
    double se = 0, ss = 0;
    for (size_t i = 0; i < n; ++i) {
      double exact = 0;
      for (int r = 0; r < p; ++r) exact += inputs[static_cast<size_t>(r)][i];
      se += (out[0][i] - exact) * (out[0][i] - exact);
      ss += exact * exact;
    }
    const double rel_rms = std::sqrt(se / ss);
    std::cout << compression_name(kLossy[ci]) << ": relative RMS error " << rel_rms << " (p=4, normal)\n";
    EXPECT_LT(rel_rms, ceiling[ci]);
    EXPECT_GT(rel_rms, 0.0);  // lossy: an exact result would mean nothing was compressed
  }
}

// n = 4096 k: the bytes each rank moved, block scales included, against the f32
// (uncompressed local) all-reduce and bf16.
TEST(CompressedComm, AllReduceBytesMoved) {
  for (int p = 2; p <= 8; ++p) {
    for (size_t k : {size_t{1}, size_t{2}, size_t{3}, size_t{64}}) {
      const size_t n = 4096 * k;
      std::vector<std::vector<float>> inputs;
      for (int r = 0; r < p; ++r) inputs.push_back(make_data(Dist::Normal, n, r, 5));
      double bytes[4] = {};
      for (Compression c : {Compression::None, Compression::BF16, Compression::FP8, Compression::INT8}) {
        std::vector<CommStats> stats, inner;
        run_all_reduce(c, inputs, &stats, &inner);
        for (int r = 0; r < p; ++r) {
          const CommStats& s = stats[static_cast<size_t>(r)];
          const CommStats& in = inner[static_cast<size_t>(r)];
          ASSERT_EQ(s[Collective::AllReduce].calls, 1u);
          ASSERT_EQ(s.total().calls, 1u);
          // The decorator's count is exactly what the inner one moved.
          ASSERT_EQ(s[Collective::AllReduce].bytes, in.total().bytes);
          if (c != Compression::None && p == 2) {
            // One exchange: each rank sends its whole encoded vector.
            ASSERT_EQ(in[Collective::AllReduce].calls, 0u);
            ASSERT_EQ(in[Collective::AllToAll].calls, 0u);
            ASSERT_EQ(in[Collective::AllGather].calls, 1u);
            ASSERT_EQ(s[Collective::AllReduce].bytes, encoded_size(c, n));
          } else if (c != Compression::None) {
            ASSERT_EQ(in[Collective::AllReduce].calls, 0u);
            ASSERT_EQ(in[Collective::AllToAll].calls, 1u);
            ASSERT_EQ(in[Collective::AllGather].calls, 1u);
            // Each half moves (p - 1) chunks as long as the longest slice's encoding.
            const size_t chunk = encoded_size(c, (n + static_cast<size_t>(p) - 1) / static_cast<size_t>(p));
            ASSERT_EQ(s[Collective::AllReduce].bytes, 2 * chunk * static_cast<size_t>(p - 1));
          }
        }
        bytes[static_cast<int>(c)] = static_cast<double>(stats[0][Collective::AllReduce].bytes);
      }
      const double f32 = bytes[0], bf16 = bytes[1], fp8 = bytes[2], int8 = bytes[3];
      const std::string where = cat("p=", p, " n=", n);
      EXPECT_EQ(f32, static_cast<double>(2 * 4 * n * static_cast<size_t>(p - 1) / static_cast<size_t>(p))) << where;
      EXPECT_LE(bf16, 0.5 * f32 * 1.002) << where;  // padding of uneven slices only
      for (double b : {fp8, int8}) {
        EXPECT_LE(b, 0.27 * f32) << where;
        // 32 codes + a 2-byte scale per 32 values, against 64 bf16 bytes.
        EXPECT_LE(b, 17.0 / 32.0 * bf16 * 1.004) << where;
      }
      if ((n / static_cast<size_t>(p)) % kCompressBlock == 0 && n % static_cast<size_t>(p) == 0) {
        EXPECT_EQ(fp8 * 64, f32 * 17) << where;   // exactly 17/64 of f32
        EXPECT_EQ(fp8 * 32, bf16 * 17) << where;  // exactly 17/32 of bf16
        EXPECT_EQ(int8, fp8) << where;
      }
      if (k == 1 && (p == 2 || p == 4 || p == 8)) {
        std::cout << where << ": bytes f32 " << f32 << ", bf16 " << bf16 / f32 << "x, fp8 " << fp8 / f32 << "x, int8 "
                  << int8 / f32 << "x of f32; fp8/bf16 " << fp8 / bf16 << "\n";
      }
    }
  }
}

// One rank, Compression::None, and n == 0 are the inner all-reduce: exact.
TEST(CompressedComm, PassThroughCasesAreExact) {
  for (Compression c : {Compression::None, Compression::BF16, Compression::FP8, Compression::INT8}) {
    const std::vector<float> x = make_data(Dist::WideRange, 1000, 0, 8);
    auto one = run_all_reduce(c, {x});
    EXPECT_EQ(std::memcmp(one[0].data(), x.data(), 4 * x.size()), 0) << compression_name(c);
    auto empty = run_all_reduce(c, {{}, {}, {}});
    EXPECT_TRUE(empty[0].empty());
  }
  // None on 3 ranks: bit-identical to the plain local all-reduce.
  std::vector<std::vector<float>> inputs;
  for (int r = 0; r < 3; ++r) inputs.push_back(make_data(Dist::Normal, 777, r, 9));
  const auto got = run_all_reduce(Compression::None, inputs);
  LocalGroup group(3, 30s);
  std::vector<std::vector<float>> plain(inputs);
  std::vector<std::thread> threads;
  for (int r = 0; r < 3; ++r) {
    threads.emplace_back([&, r] { group.communicator(r)->all_reduce_sum(plain[static_cast<size_t>(r)].data(), 777); });
  }
  for (auto& t : threads) t.join();
  for (int r = 0; r < 3; ++r) {
    EXPECT_EQ(std::memcmp(got[static_cast<size_t>(r)].data(), plain[static_cast<size_t>(r)].data(), 4 * 777), 0);
  }
}

// One communicator across many all-reduces of changing sizes and formats gives
// the same bits as a fresh one each time (buffers reused correctly).
TEST(CompressedComm, RepeatedCallsMatchFreshOnes) {
  const int p = 3;
  const std::vector<size_t> sizes = {100003, 1, 33, 4096, 0, 2, 70000, 31};
  for (Compression c : kLossy) {
    std::vector<std::vector<std::vector<float>>> inputs;  // [call][rank]
    for (size_t k = 0; k < sizes.size(); ++k) {
      inputs.emplace_back();
      for (int r = 0; r < p; ++r) inputs.back().push_back(make_data(Dist::StudentT, sizes[k], r, 50 + k));
    }
    std::vector<std::vector<std::vector<float>>> seq(inputs);
    LocalGroup group(p, 60s);
    std::vector<std::thread> threads;
    for (int r = 0; r < p; ++r) {
      threads.emplace_back([&, r] {
        CompressedCommunicator comm(group.communicator(r), c);
        for (auto& call : seq)
          comm.all_reduce_sum(call[static_cast<size_t>(r)].data(), call[static_cast<size_t>(r)].size());
        EXPECT_EQ(comm.stats()[Collective::AllReduce].calls, sizes.size());
      });
    }
    for (auto& t : threads) t.join();
    for (size_t k = 0; k < sizes.size(); ++k) {
      const auto fresh = run_all_reduce(c, inputs[k]);
      for (int r = 0; r < p; ++r) {
        ASSERT_EQ(seq[k][static_cast<size_t>(r)], fresh[static_cast<size_t>(r)])
            << compression_name(c) << " call " << k << " rank " << r;
      }
    }
  }
}

// The other collectives pass through unchanged and are counted with the inner's bytes.
TEST(CompressedComm, OtherCollectivesPassThrough) {
  const int n = 4;
  LocalGroup group(n, 30s);
  std::vector<std::string> errors(n);
  std::vector<std::thread> threads;
  for (int r = 0; r < n; ++r) {
    threads.emplace_back([&, r] {
      try {
        CompressedCommunicator comm(group.communicator(r), Compression::FP8);
        EXPECT_EQ(comm.rank(), r);
        EXPECT_EQ(comm.size(), n);
        EXPECT_STREQ(comm.backend(), "local");
        EXPECT_EQ(comm.compression(), Compression::FP8);
        const std::vector<size_t> counts = {1, 2, 3, 4};
        std::vector<float> mine(counts[static_cast<size_t>(r)], 0.1f * static_cast<float>(r) + 0.123f);
        std::vector<float> all(10);
        comm.all_gather(mine.data(), counts, all.data());
        size_t at = 0;
        for (int q = 0; q < n; ++q) {
          for (size_t k = 0; k < counts[static_cast<size_t>(q)]; ++k) {
            EXPECT_EQ(all[at++], 0.1f * static_cast<float>(q) + 0.123f);  // exact: not compressed
          }
        }
        double v = r == 2 ? 3.14159 : 0.0;
        comm.broadcast(&v, sizeof(v), 2);
        EXPECT_EQ(v, 3.14159);
        int w = r == 0 ? 99 : 0;
        comm.broadcast_wait(&w, sizeof(w), 0);
        EXPECT_EQ(w, 99);
        std::vector<uint8_t> gathered(3 * n), a2a(2 * n), a2a_out(2 * n);
        const uint8_t three[3] = {static_cast<uint8_t>(r), 7, static_cast<uint8_t>(r * 2)};
        comm.all_gather_bytes(three, 3, gathered.data());
        for (int q = 0; q < n; ++q) EXPECT_EQ(gathered[static_cast<size_t>(3 * q + 2)], 2 * q);
        for (int q = 0; q < n; ++q) a2a[static_cast<size_t>(2 * q)] = static_cast<uint8_t>(10 * r + q);
        comm.all_to_all(a2a.data(), 2, a2a_out.data());
        for (int q = 0; q < n; ++q) EXPECT_EQ(a2a_out[static_cast<size_t>(2 * q)], 10 * q + r);
        const int next = (r + 1) % n, prev = (r + n - 1) % n;
        int64_t payload = 1000 + r, got = 0;
        comm.send(&payload, sizeof(payload), next);
        comm.recv(&got, sizeof(got), prev);
        EXPECT_EQ(got, 1000 + prev);
        comm.barrier();
        const CommStats& s = comm.stats();
        const CommStats& in = comm.inner_stats();
        for (int kind = 0; kind < kCollectiveKinds; ++kind) {
          const auto k = static_cast<Collective>(kind);
          EXPECT_EQ(s[k].calls, in[k].calls) << collective_name(k);
          EXPECT_EQ(s[k].bytes, in[k].bytes) << collective_name(k);
        }
        EXPECT_EQ(s[Collective::Broadcast].calls, 2u);
        EXPECT_EQ(s[Collective::SendRecv].bytes, 16u);
      } catch (const std::exception& e) {
        errors[static_cast<size_t>(r)] = e.what();
      }
    });
  }
  for (auto& t : threads) t.join();
  for (const auto& e : errors) EXPECT_EQ(e, "");
}

// A stalled peer still turns into an error, not a hang, through the decorator.
// The stalled rank holds its communicator until rank 0's deadline has aborted
// the group (it waits for that event, up to 60 s, not for a fixed sleep).
TEST(CompressedComm, TimeoutPropagates) {
  LocalGroup group(2, 300ms);
  std::vector<std::string> errors(2);
  std::vector<std::thread> threads;
  for (int r = 0; r < 2; ++r) {
    threads.emplace_back([&, r] {
      try {
        CompressedCommunicator comm(group.communicator(r), Compression::INT8);
        std::vector<float> buf(4096, 1.0f);
        if (r == 0) {
          comm.all_reduce_sum(buf.data(), buf.size());
        } else if (!testing::wait_until([&] { return group.aborted(); })) {
          errors[1] = "rank 0's deadline did not abort the group within 60 s";
        }
      } catch (const CommError& e) {
        errors[static_cast<size_t>(r)] = e.what();
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_NE(errors[0].find("int8 all_reduce of 4096 values on rank 0"), std::string::npos) << errors[0];
  EXPECT_NE(errors[0].find("timed out"), std::string::npos) << errors[0];
  EXPECT_NE(errors[0].find("rank(s) 1 did not arrive"), std::string::npos) << errors[0];
  EXPECT_EQ(errors[1], "");
}

}  // namespace
}  // namespace tpinfer
