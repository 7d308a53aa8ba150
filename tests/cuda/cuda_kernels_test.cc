// Every kernel of backend/cuda/kernels.h against a plain CPU computation on
// random inputs. Needs a GPU; without one each test skips, saying why.
//
// Tolerances follow from the numerics each kernel documents:
//  - matmul F32: f32 accumulation only; F16 / BF16: x rounded to the weight's
//    type (unit roundoff u), so |y - ref| <= ~u * sum|w x|; quantized GEMV
//    (n <= 8): the 8-bit activation error, sum |w_c| * 0.6 * amax_c / 127
//    (half a step, plus the step's rounding to f16); quantized GEMM (n > 8):
//    weights and x both rounded to BF16, ~2^-7 * sum|w x|.
//  - embed and kv_store: bit-exact (the same decoders / roundings as the CPU).
//  - the rest: a few f32 ulps of the result's scale.
#include "backend/cuda/kernels.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "../backend/backend_test_util.h"
#include "backend/cpu/matmul.h"
#include "backend/cpu/quant.h"
#include "core/error.h"
#include "core/half.h"

namespace tpinfer::cuda {
namespace {

class CudaKernels : public ::testing::Test {
 protected:
  void SetUp() override {
    if (device_count() == 0) GTEST_SKIP() << "no CUDA device: " << unavailable_reason();
  }
};

template <typename T>
DeviceBuffer to_device(const std::vector<T>& v) {
  DeviceBuffer b(std::max<size_t>(v.size() * sizeof(T), 16));
  b.upload(v.data(), v.size() * sizeof(T));
  return b;
}

template <typename T>
std::vector<T> to_host(const DeviceBuffer& b, size_t n) {
  std::vector<T> v(n);
  b.download(v.data(), n * sizeof(T));
  return v;
}

std::vector<float> normal_floats(size_t n, std::mt19937& rng, float sigma = 1.0f) {
  std::normal_distribution<float> d(0.0f, sigma);
  std::vector<float> v(n);
  for (float& x : v) x = d(rng);
  return v;
}

// ---------------------------------------------------------------- matmul

struct HostMatrix {
  DType type;
  int64_t rows, cols;
  std::vector<uint8_t> bytes;
  std::vector<float> values;  // dequantized, [rows][cols]
};

HostMatrix random_matrix(DType t, int64_t rows, int64_t cols, std::mt19937& rng) {
  HostMatrix m{t, rows, cols, {}, {}};
  const uint64_t rb = row_bytes(t, static_cast<uint64_t>(cols));
  m.bytes.resize(rb * static_cast<uint64_t>(rows));
  m.values.resize(static_cast<size_t>(rows * cols));
  for (int64_t r = 0; r < rows; ++r) {
    const std::vector<uint8_t> row = cpu::testing::random_weights(t, cols, rng);
    std::copy(row.begin(), row.end(), m.bytes.begin() + static_cast<int64_t>(rb) * r);
    cpu::dequantize_row_ref(t, row.data(), m.values.data() + r * cols, cols);
  }
  return m;
}

double unit_roundoff(DType t) {
  switch (t) {
    case DType::F32:
      return 0.0;
    case DType::F16:
      return std::ldexp(1.0, -11);
    default:
      return std::ldexp(1.0, -8);  // BF16
  }
}

void check_matmul(DType t, int64_t rows, int64_t cols, int64_t n, uint64_t seed) {
  SCOPED_TRACE(::testing::Message() << dtype_name(t) << " rows " << rows << " cols " << cols << " n " << n);
  std::mt19937 rng(static_cast<uint32_t>(seed));
  const HostMatrix w = random_matrix(t, rows, cols, rng);
  const std::vector<float> x = cpu::testing::random_floats(n * cols, rng);
  std::vector<float> want(static_cast<size_t>(n * rows));
  cpu::matmul_ref({t, rows, cols, w.bytes.data(), row_bytes(t, static_cast<uint64_t>(cols))}, x.data(), n,
                  want.data());

  Stream stream;
  MatmulContext ctx(stream.get());
  DeviceBuffer dw = to_device(w.bytes), dx = to_device(x);
  DeviceBuffer dy(static_cast<size_t>(n * rows) * sizeof(float));
  matmul(ctx, {t, rows, cols, dw.data()}, dx.as<float>(), n, dy.as<float>());
  stream.synchronize();
  const std::vector<float> got = to_host<float>(dy, static_cast<size_t>(n * rows));

  const bool quantized = dtype_info(t).quantized;
  const bool gemv = quantized && n <= 8;
  for (int64_t tok = 0; tok < n; ++tok) {
    const float* xt = x.data() + tok * cols;
    std::vector<double> act_err(static_cast<size_t>(cols), 0.0);
    for (int64_t b = 0; gemv && b < cols; b += 32) {
      double amax = 0.0;
      for (int64_t c = b; c < b + 32; ++c) amax = std::max(amax, std::fabs(static_cast<double>(xt[c])));
      for (int64_t c = b; c < b + 32; ++c) act_err[static_cast<size_t>(c)] = 0.6 * amax / 127.0;
    }
    for (int64_t r = 0; r < rows; ++r) {
      const float* wr = w.values.data() + r * cols;
      double mag = 0.0, qerr = 0.0;
      for (int64_t c = 0; c < cols; ++c) {
        mag += std::fabs(static_cast<double>(wr[c]) * xt[c]);
        qerr += std::fabs(static_cast<double>(wr[c])) * act_err[static_cast<size_t>(c)];
      }
      const double rel = quantized ? (gemv ? 1e-4 : 1.05 * std::ldexp(1.0, -7)) : 1.05 * unit_roundoff(t) + 1e-5;
      const double tol = rel * mag + qerr + 1e-6;
      const size_t i = static_cast<size_t>(tok * rows + r);
      ASSERT_LE(std::fabs(static_cast<double>(got[i]) - want[i]), tol)
          << "token " << tok << " row " << r << ": " << got[i] << " vs " << want[i] << " (sum|wx| " << mag << ")";
    }
  }
}

TEST_F(CudaKernels, MatmulEveryTypeGemvAndGemm) {
  const DType types[] = {DType::F32, DType::F16, DType::BF16, DType::Q8_0, DType::Q4_0, DType::Q4_K};
  uint64_t seed = 1;
  for (DType t : types) {
    // Columns that leave a partial warp step (13 blocks of 32, 3 super-blocks),
    // rows that leave a partial thread block of 4 warps.
    const int64_t cols = t == DType::Q4_K ? 3 * 256 : 13 * 32;
    for (int64_t n : {1, 3, 8, 33}) check_matmul(t, 67, cols, n, seed++);
  }
}

TEST_F(CudaKernels, MatmulRejectsBadWeights) {
  Stream stream;
  MatmulContext ctx(stream.get());
  DeviceBuffer buf(1 << 16);
  EXPECT_THROW(matmul(ctx, {DType::Q6_K, 4, 256, buf.data()}, buf.as<float>(), 1, buf.as<float>()), Error);
  EXPECT_THROW(matmul(ctx, {DType::Q8_0, 4, 48, buf.data()}, buf.as<float>(), 1, buf.as<float>()), Error);
  EXPECT_TRUE(supported_weight_type(DType::Q4_K));
  EXPECT_FALSE(supported_weight_type(DType::Q5_K));
}

// ---------------------------------------------------------------- embed

TEST_F(CudaKernels, EmbedEveryTypeWithOutOfRangeIds) {
  const DType types[] = {DType::F32, DType::F16, DType::BF16, DType::Q8_0, DType::Q4_0, DType::Q4_K};
  const int64_t rows = 10, cols = 512, row_begin = 100;
  const std::vector<int32_t> ids = {100, 105, 99, 109, 110, -1, 103};
  std::mt19937 rng(5);
  Stream stream;
  for (DType t : types) {
    SCOPED_TRACE(dtype_name(t));
    const HostMatrix w = random_matrix(t, rows, cols, rng);
    DeviceBuffer dw = to_device(w.bytes), dids = to_device(ids);
    DeviceBuffer dout(ids.size() * cols * sizeof(float));
    embed({t, rows, cols, dw.data()}, dids.as<int32_t>(), static_cast<int64_t>(ids.size()), row_begin,
          dout.as<float>(), stream.get());
    stream.synchronize();
    const std::vector<float> got = to_host<float>(dout, ids.size() * cols);
    for (size_t i = 0; i < ids.size(); ++i) {
      const int64_t r = ids[i] - row_begin;
      for (int64_t c = 0; c < cols; ++c) {
        const float want = r >= 0 && r < rows ? w.values[static_cast<size_t>(r * cols + c)] : 0.0f;
        ASSERT_EQ(got[i * cols + static_cast<size_t>(c)], want) << "id " << ids[i] << " col " << c;
      }
    }
  }
}

// ---------------------------------------------------------------- row ops

TEST_F(CudaKernels, RmsNormStridedAndInPlace) {
  std::mt19937 rng(11);
  for (int64_t dim : {64, 1000, 4101}) {
    const int64_t rows = 3, stride = dim + 3;
    std::vector<float> x = normal_floats(static_cast<size_t>(rows * stride), rng, 3.0f);
    const std::vector<float> w = normal_floats(static_cast<size_t>(dim), rng);
    const float eps = 1e-5f;
    Stream stream;
    DeviceBuffer dx = to_device(x), dw = to_device(w), dy(static_cast<size_t>(rows * dim) * sizeof(float));
    rms_norm(dx.as<float>(), stride, dw.as<float>(), rows, dim, eps, dy.as<float>(), dim, stream.get());
    rms_norm(dx.as<float>(), stride, dw.as<float>(), rows, dim, eps, dx.as<float>(), stride, stream.get());
    stream.synchronize();
    const std::vector<float> y = to_host<float>(dy, static_cast<size_t>(rows * dim));
    const std::vector<float> inplace = to_host<float>(dx, static_cast<size_t>(rows * stride));
    for (int64_t r = 0; r < rows; ++r) {
      double ss = 0.0;
      for (int64_t i = 0; i < dim; ++i) ss += static_cast<double>(x[r * stride + i]) * x[r * stride + i];
      const double scale = 1.0 / std::sqrt(ss / static_cast<double>(dim) + eps);
      for (int64_t i = 0; i < dim; ++i) {
        const double want = x[r * stride + i] * scale * w[i];
        ASSERT_NEAR(y[r * dim + i], want, 1e-5 * (std::fabs(want) + 1.0)) << "dim " << dim << " row " << r;
        ASSERT_EQ(inplace[r * stride + i], y[r * dim + i]);
      }
    }
  }
}

TEST_F(CudaKernels, RopeBothStyles) {
  const int n_tokens = 5, n_heads = 3, head_dim = 64;
  const int64_t stride = n_heads * head_dim + 16;
  std::mt19937 rng(12);
  const std::vector<int32_t> positions = {0, 1, 17, 900, 4000};
  std::vector<float> inv_freq(head_dim / 2);
  for (int i = 0; i < head_dim / 2; ++i) {
    inv_freq[i] = static_cast<float>(std::pow(500000.0, -2.0 * i / head_dim));
  }
  for (bool neox : {false, true}) {
    SCOPED_TRACE(neox ? "neox" : "interleaved");
    const std::vector<float> x = normal_floats(static_cast<size_t>(n_tokens * stride), rng);
    Stream stream;
    DeviceBuffer dx = to_device(x), dp = to_device(positions), df = to_device(inv_freq);
    rope(dx.as<float>(), n_tokens, stride, n_heads, head_dim, dp.as<int32_t>(), df.as<float>(), neox, stream.get());
    stream.synchronize();
    const std::vector<float> got = to_host<float>(dx, x.size());
    std::vector<float> want = x;
    for (int t = 0; t < n_tokens; ++t) {
      for (int h = 0; h < n_heads; ++h) {
        float* head = want.data() + t * stride + h * head_dim;
        for (int i = 0; i < head_dim / 2; ++i) {
          // The kernel's angle: the f32 product; cos / sin of it in double.
          const float angle = static_cast<float>(positions[t]) * inv_freq[i];
          const double c = std::cos(static_cast<double>(angle)), s = std::sin(static_cast<double>(angle));
          const int a = neox ? i : 2 * i, b = neox ? i + head_dim / 2 : 2 * i + 1;
          const double x0 = head[a], x1 = head[b];
          head[a] = static_cast<float>(x0 * c - x1 * s);
          head[b] = static_cast<float>(x0 * s + x1 * c);
        }
      }
    }
    for (size_t i = 0; i < got.size(); ++i) ASSERT_NEAR(got[i], want[i], 2e-5) << "element " << i;
  }
}

TEST_F(CudaKernels, SwigluAddBiasGatherConvert) {
  std::mt19937 rng(13);
  const int64_t n = 5, ffn = 300;
  const std::vector<float> gu = normal_floats(static_cast<size_t>(n * 2 * ffn), rng, 2.0f);
  const std::vector<float> bias = normal_floats(static_cast<size_t>(ffn), rng);
  const std::vector<int32_t> rows = {4, 0, 2, 2};
  Stream stream;
  DeviceBuffer dgu = to_device(gu), dbias = to_device(bias), drows = to_device(rows);
  DeviceBuffer dout(static_cast<size_t>(n * ffn) * sizeof(float));
  DeviceBuffer dsum(static_cast<size_t>(n * ffn) * sizeof(float));
  DeviceBuffer dgather(rows.size() * ffn * sizeof(float));
  DeviceBuffer d16(static_cast<size_t>(n * ffn) * 2), dback(static_cast<size_t>(n * ffn) * sizeof(float));
  swiglu(dgu.as<float>(), n, ffn, dout.as<float>(), stream.get());
  check(cudaMemcpyAsync(dsum.data(), dout.data(), dout.bytes(), cudaMemcpyDeviceToDevice, stream.get()), "copy");
  add(dsum.as<float>(), dout.as<float>(), n * ffn, stream.get());  // 2 * out
  add_bias(dsum.as<float>(), dbias.as<float>(), n, ffn, stream.get());
  gather_rows(dout.as<float>(), drows.as<int32_t>(), static_cast<int64_t>(rows.size()), ffn, dgather.as<float>(),
              stream.get());
  stream.synchronize();
  const std::vector<float> out = to_host<float>(dout, static_cast<size_t>(n * ffn));
  const std::vector<float> sum = to_host<float>(dsum, static_cast<size_t>(n * ffn));
  const std::vector<float> gathered = to_host<float>(dgather, rows.size() * ffn);
  for (int64_t t = 0; t < n; ++t) {
    for (int64_t i = 0; i < ffn; ++i) {
      const double g = gu[t * 2 * ffn + i], u = gu[t * 2 * ffn + ffn + i];
      const double want = g / (1.0 + std::exp(-g)) * u;
      const size_t k = static_cast<size_t>(t * ffn + i);
      ASSERT_NEAR(out[k], want, 1e-5 * (std::fabs(want) + 1.0));
      ASSERT_EQ(sum[k], (out[k] + out[k]) + bias[i]);
    }
  }
  for (size_t r = 0; r < rows.size(); ++r) {
    for (int64_t i = 0; i < ffn; ++i) ASSERT_EQ(gathered[r * ffn + i], out[rows[r] * ffn + i]);
  }
  for (DType t : {DType::F16, DType::BF16}) {
    convert(dout.as<float>(), n * ffn, t, d16.data(), stream.get());
    convert_to_f32(d16.data(), t, n * ffn, dback.as<float>(), stream.get());
    stream.synchronize();
    const std::vector<uint16_t> bits = to_host<uint16_t>(d16, static_cast<size_t>(n * ffn));
    const std::vector<float> back = to_host<float>(dback, static_cast<size_t>(n * ffn));
    for (size_t k = 0; k < out.size(); ++k) {
      const uint16_t want = t == DType::F16 ? f32_to_f16(out[k]) : f32_to_bf16(out[k]);
      ASSERT_EQ(bits[k], want);
      ASSERT_EQ(back[k], t == DType::F16 ? f16_to_f32(want) : bf16_to_f32(want));
    }
  }
}

// ---------------------------------------------------------------- attention

// Two sequences of different lengths in a hand-made, non-contiguous block
// table; the query heads are a tensor-parallel shard (q_begin 4, kv_begin 2).
struct AttnCase {
  DType type;
  int head_dim;
};

float round16(DType t, float x) { return t == DType::F16 ? f16_to_f32(f32_to_f16(x)) : bf16_to_f32(f32_to_bf16(x)); }

void check_attention(const AttnCase& ac) {
  SCOPED_TRACE(::testing::Message() << dtype_name(ac.type) << " head_dim " << ac.head_dim);
  const int hd = ac.head_dim, n_kv = 2, heads_per_kv = 2, n_heads = 4, q_begin = 4, kv_begin = 2;
  const int block_size = 16, n_blocks = 8, max_blocks = 4;
  const std::vector<int> lengths = {37, 21};  // prefill lengths; decode adds one token each
  const std::vector<int32_t> tables = {5, 2, 7, 0, /* seq 1 */ 0, 6, 0, 0};
  const int64_t row_stride = static_cast<int64_t>(n_heads + 2 * n_kv) * hd;
  const int64_t k_off = static_cast<int64_t>(n_heads) * hd, v_off = k_off + static_cast<int64_t>(n_kv) * hd;
  const int64_t out_stride = static_cast<int64_t>(n_heads) * hd + 8;
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  std::mt19937 rng(static_cast<uint32_t>(hd));

  // Every token of both sequences, prefill then decode.
  struct Tok {
    int seq, pos;
  };
  std::vector<Tok> prefill, decode;
  for (int s = 0; s < 2; ++s) {
    for (int p = 0; p < lengths[static_cast<size_t>(s)]; ++p) prefill.push_back({s, p});
    decode.push_back({s, lengths[static_cast<size_t>(s)]});
  }
  const auto slot_of = [&](const Tok& t) { return tables[t.seq * max_blocks + t.pos / block_size] * block_size + t.pos % block_size; };

  const size_t cache_elems = static_cast<size_t>(n_blocks) * block_size * n_kv * hd;
  std::vector<float> host_k(cache_elems, 0.0f), host_v(cache_elems, 0.0f);  // the cache as the CPU sees it
  Stream stream;
  DeviceBuffer dk(cache_elems * 2), dv(cache_elems * 2), dtables = to_device(tables);
  check(cudaMemset(dk.data(), 0, dk.bytes()), "memset");
  check(cudaMemset(dv.data(), 0, dv.bytes()), "memset");
  const PagedKV kv{dk.data(), dv.data(), ac.type, block_size, n_kv, hd};

  for (const std::vector<Tok>* phase : {&prefill, &decode}) {
    const std::vector<Tok>& toks = *phase;
    const size_t n = toks.size();
    const std::vector<float> qkv = normal_floats(n * static_cast<size_t>(row_stride), rng);
    std::vector<int32_t> slots, positions, seqs;
    for (const Tok& t : toks) {
      slots.push_back(slot_of(t));
      positions.push_back(t.pos);
      seqs.push_back(t.seq);
    }
    DeviceBuffer dqkv = to_device(qkv), dslots = to_device(slots), dpos = to_device(positions), dseq = to_device(seqs);
    DeviceBuffer dout(n * static_cast<size_t>(out_stride) * sizeof(float));
    kv_store(kv, dqkv.as<float>(), row_stride, k_off, v_off, dslots.as<int32_t>(), static_cast<int64_t>(n),
             stream.get());
    const AttnBatch batch{dpos.as<int32_t>(), dseq.as<int32_t>(), dtables.as<int32_t>(), max_blocks,
                          static_cast<int64_t>(n)};
    paged_attention(dqkv.as<float>(), row_stride, kv, batch, n_heads, q_begin, heads_per_kv, kv_begin, scale,
                    dout.as<float>(), out_stride, stream.get());
    stream.synchronize();

    for (size_t i = 0; i < n; ++i) {
      for (int64_t e = 0; e < static_cast<int64_t>(n_kv) * hd; ++e) {
        const size_t c = static_cast<size_t>(slots[i]) * static_cast<size_t>(n_kv * hd) + static_cast<size_t>(e);
        host_k[c] = round16(ac.type, qkv[i * row_stride + k_off + e]);
        host_v[c] = round16(ac.type, qkv[i * row_stride + v_off + e]);
      }
    }
    // kv_store wrote exactly the rounded values.
    const std::vector<uint16_t> kbits = to_host<uint16_t>(dk, cache_elems);
    for (size_t c = 0; c < cache_elems; ++c) {
      const float k = ac.type == DType::F16 ? f16_to_f32(kbits[c]) : bf16_to_f32(kbits[c]);
      ASSERT_EQ(k, host_k[c]) << "cache element " << c;
    }

    const std::vector<float> got = to_host<float>(dout, n * static_cast<size_t>(out_stride));
    for (size_t i = 0; i < n; ++i) {
      for (int h = 0; h < n_heads; ++h) {
        const int kvh = (q_begin + h) / heads_per_kv - kv_begin;
        const float* q = qkv.data() + i * row_stride + static_cast<int64_t>(h) * hd;
        std::vector<double> scores;
        for (int p = 0; p <= toks[i].pos; ++p) {
          const size_t base = (static_cast<size_t>(slot_of({toks[i].seq, p})) * n_kv + kvh) * hd;
          double s = 0.0;
          for (int d = 0; d < hd; ++d) s += static_cast<double>(q[d]) * host_k[base + d];
          scores.push_back(s * scale);
        }
        const double mx = *std::max_element(scores.begin(), scores.end());
        double total = 0.0;
        for (double& s : scores) total += (s = std::exp(s - mx));
        for (int d = 0; d < hd; ++d) {
          double want = 0.0;
          for (int p = 0; p <= toks[i].pos; ++p) {
            const size_t base = (static_cast<size_t>(slot_of({toks[i].seq, p})) * n_kv + kvh) * hd;
            want += scores[static_cast<size_t>(p)] / total * host_v[base + d];
          }
          ASSERT_NEAR(got[i * out_stride + static_cast<size_t>(h) * hd + d], want, 1e-4)
              << (phase == &prefill ? "prefill" : "decode") << " token " << i << " (seq " << toks[i].seq << " pos "
              << toks[i].pos << ") head " << h << " d " << d;
        }
      }
    }
  }
}

TEST_F(CudaKernels, KvStoreAndPagedAttentionPrefillAndDecode) {
  for (const AttnCase& ac : {AttnCase{DType::F16, 128}, AttnCase{DType::BF16, 80}, AttnCase{DType::F16, 256},
                             AttnCase{DType::BF16, 64}}) {
    check_attention(ac);
  }
}

TEST_F(CudaKernels, PagedAttentionRejectsLargeHeads) {
  Stream stream;
  DeviceBuffer buf(1 << 12);
  const PagedKV kv{buf.data(), buf.data(), DType::F16, 16, 1, 512};
  const AttnBatch batch{buf.as<int32_t>(), buf.as<int32_t>(), buf.as<int32_t>(), 1, 1};
  EXPECT_THROW(paged_attention(buf.as<float>(), 512, kv, batch, 1, 0, 1, 0, 1.0f, buf.as<float>(), 512, stream.get()),
               Error);
}

}  // namespace
}  // namespace tpinfer::cuda
