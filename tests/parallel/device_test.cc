// The operations of the Device interface (parallel/device.h) against plain
// double-precision references on fresh random inputs, for every device this
// machine has: the CPU always, a GPU when there is one (CudaDevice, the same
// tests). The model is written once over these operations, so what holds here
// for a device holds for the forward pass on it.
#include <gtest/gtest.h>

#include <cmath>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "backend/cpu/quant.h"
#include "comm/local_comm.h"
#include "core/thread_pool.h"
#include "formats/model_source.h"
#include "model/synth.h"
#include "parallel/cpu_device.h"
#include "test_util.h"

#ifdef TPINFER_HAVE_CUDA
#include "backend/cuda/runtime.h"
#include "parallel/cuda/cuda_device.h"
#endif

namespace tpinfer {
namespace {

std::vector<float> random_floats(size_t n, uint32_t seed, float scale = 1.0f) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> d(-scale, scale);
  std::vector<float> v(n);
  for (float& x : v) x = d(rng);
  return v;
}

void expect_close(const std::vector<float>& got, const std::vector<double>& want, double tol, const char* what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  for (size_t i = 0; i < got.size(); ++i) {
    ASSERT_NEAR(got[i], want[i], tol * (1.0 + std::fabs(want[i]))) << what << " at " << i;
  }
}

std::vector<std::string> device_kinds() {
  std::vector<std::string> kinds{"cpu"};
#ifdef TPINFER_HAVE_CUDA
  kinds.push_back("cuda");
#endif
  return kinds;
}

class DeviceOps : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    if (GetParam() == "cpu") {
      group_ = std::make_unique<LocalGroup>(1, std::chrono::milliseconds(60000));
      comm_ = group_->communicator(0);
      pool_ = std::make_unique<ThreadPool>(2);
      dev_ = std::make_unique<CpuDevice>(*comm_, *pool_);
      return;
    }
#ifdef TPINFER_HAVE_CUDA
    if (cuda::device_count() == 0) GTEST_SKIP() << "no CUDA device: " << cuda::unavailable_reason();
    dev_ = std::make_unique<CudaDevice>(CudaDeviceOptions{0, false}, nullptr);
#endif
  }

  Device& dev() { return *dev_; }
  std::vector<float> read(const DeviceMemory& m, size_t n) {
    std::vector<float> v(n);
    dev_->read_to_host(m.f32(), n, v.data());
    return v;
  }

  // Two sequences: 0 prefills positions [0, 5), 1 decodes position 20 (its
  // earlier positions already in the cache), over blocks of 4 slots.
  static Batch two_sequences() {
    Batch b;
    b.sequences = {BatchSequence{{3, 1, 7}}, BatchSequence{{0, 2, 4, 5, 6, 8}}};
    for (int p = 0; p < 5; ++p) {
      b.tokens.push_back(10 + p);
      b.positions.push_back(p);
      b.seq.push_back(0);
      b.want_logits.push_back(p == 4 ? 1 : 0);
    }
    b.tokens.push_back(40);
    b.positions.push_back(20);
    b.seq.push_back(1);
    b.want_logits.push_back(1);
    return b;
  }

  std::unique_ptr<LocalGroup> group_;
  std::unique_ptr<Communicator> comm_;
  std::unique_ptr<ThreadPool> pool_;
  std::unique_ptr<Device> dev_;
};

TEST_P(DeviceOps, RmsNormWithStridesMatchesReference) {
  const int64_t rows = 5, dim = 48, xs = 64, ys = 56;
  const std::vector<float> x = random_floats(rows * xs, 1), w = random_floats(dim, 2);
  DeviceMemory dx = dev().upload(x), dw = dev().upload(w), dy = dev().upload(std::vector<float>(rows * ys, 0.0f));
  dev().rms_norm(dx.f32(), xs, dw.f32(), rows, dim, 1e-5f, dy.f32(), ys);
  const std::vector<float> got = read(dy, rows * ys);
  std::vector<double> want(rows * ys, 0.0);
  for (int64_t r = 0; r < rows; ++r) {
    double ss = 0;
    for (int64_t i = 0; i < dim; ++i) ss += static_cast<double>(x[r * xs + i]) * x[r * xs + i];
    const double scale = 1.0 / std::sqrt(ss / dim + 1e-5);
    for (int64_t i = 0; i < dim; ++i) want[r * ys + i] = x[r * xs + i] * scale * w[i];
  }
  expect_close(got, want, 1e-5, "rms_norm");
}

TEST_P(DeviceOps, RopeBothStylesMatchReference) {
  const Batch b = two_sequences();
  KvCacheShape kv{1, 1, 16, 4, 16, GetParam() == "cpu" ? DType::F32 : DType::F16};
  dev().allocate_kv(kv);
  for (const RopeStyle style : {RopeStyle::Interleaved, RopeStyle::NeoX}) {
    const StepShape s = dev().begin_step(b, false);
    const int heads = 3, hd = 16;
    const int64_t stride = heads * hd + 8;
    const std::vector<float> x = random_floats(s.n * stride, 3);
    std::vector<float> inv(hd / 2);
    for (int i = 0; i < hd / 2; ++i) inv[i] = static_cast<float>(1.0 / std::pow(10000.0, 2.0 * i / hd));
    DeviceMemory dx = dev().upload(x), dinv = dev().upload(inv);
    dev().rope(dx.f32(), stride, heads, hd, dinv.f32(), style);
    const std::vector<float> got = read(dx, x.size());
    dev().end_step();
    std::vector<double> want(x.begin(), x.end());
    for (int64_t t = 0; t < s.n; ++t) {
      for (int h = 0; h < heads; ++h) {
        for (int i = 0; i < hd / 2; ++i) {
          const double a = static_cast<double>(b.positions[t]) * inv[i];
          const int64_t p = t * stride + h * hd + (style == RopeStyle::Interleaved ? 2 * i : i);
          const int64_t q = t * stride + h * hd + (style == RopeStyle::Interleaved ? 2 * i + 1 : i + hd / 2);
          want[p] = x[p] * std::cos(a) - x[q] * std::sin(a);
          want[q] = x[p] * std::sin(a) + x[q] * std::cos(a);
        }
      }
    }
    expect_close(got, want, 2e-5, style == RopeStyle::Interleaved ? "rope interleaved" : "rope neox");
  }
}

TEST_P(DeviceOps, ElementwiseAndRowOpsMatchReference) {
  const int64_t n = 7, ffn = 33, dim = 20;
  const std::vector<float> gu = random_floats(n * 2 * ffn, 4, 3.0f);
  DeviceMemory dgu = dev().upload(gu), dact = dev().upload(std::vector<float>(n * ffn, 0.0f));
  dev().swiglu(dgu.f32(), n, ffn, dact.f32());
  std::vector<double> want(n * ffn);
  for (int64_t t = 0; t < n; ++t) {
    for (int64_t i = 0; i < ffn; ++i) {
      const double g = gu[t * 2 * ffn + i];
      want[t * ffn + i] = g / (1.0 + std::exp(-g)) * gu[t * 2 * ffn + ffn + i];
    }
  }
  expect_close(read(dact, n * ffn), want, 1e-5, "swiglu");

  const std::vector<float> y0 = random_floats(n * dim, 5), x = random_floats(n * dim, 6), bias = random_floats(dim, 7);
  DeviceMemory dy = dev().upload(y0), dx = dev().upload(x), db = dev().upload(bias);
  dev().add(dy.f32(), dx.f32(), n * dim);
  dev().add_bias(dy.f32(), db.f32(), n, dim);
  std::vector<double> sum(n * dim);
  for (int64_t i = 0; i < n * dim; ++i) sum[i] = static_cast<double>(y0[i]) + x[i] + bias[i % dim];
  expect_close(read(dy, n * dim), sum, 1e-6, "add, add_bias");
  dev().zero(dy.f32(), n * dim);
  expect_close(read(dy, n * dim), std::vector<double>(n * dim, 0.0), 0, "zero");

  // gather_rows, add_rows_scaled (a row twice), add_sigmoid_gated.
  const std::vector<int64_t> rows{4, 0, 6, 4};
  const std::vector<float> weights{0.25f, -1.5f, 2.0f, 0.75f};
  DeviceMemory dg = dev().upload(std::vector<float>(rows.size() * dim, 0.0f));
  dev().gather_rows(dx.f32(), rows, dim, dg.f32());
  std::vector<double> gathered(rows.size() * dim);
  for (size_t i = 0; i < rows.size(); ++i) {
    for (int64_t c = 0; c < dim; ++c) gathered[i * dim + c] = x[rows[i] * dim + c];
  }
  expect_close(read(dg, rows.size() * dim), gathered, 0, "gather_rows");

  const std::vector<float> out0 = random_floats(n * dim, 8), ys = random_floats(rows.size() * dim, 9);
  DeviceMemory dout = dev().upload(out0), dys = dev().upload(ys);
  dev().add_rows_scaled(dout.f32(), rows, weights, dys.f32(), dim);
  std::vector<double> scaled(out0.begin(), out0.end());
  for (size_t i = 0; i < rows.size(); ++i) {
    for (int64_t c = 0; c < dim; ++c) scaled[rows[i] * dim + c] += static_cast<double>(weights[i]) * ys[i * dim + c];
  }
  expect_close(read(dout, n * dim), scaled, 1e-6, "add_rows_scaled");

  const std::vector<float> h = random_floats(n * dim, 10), gw = random_floats(dim, 11),
                           ys2 = random_floats(n * dim, 12);
  DeviceMemory dh = dev().upload(h), dgw = dev().upload(gw), dys2 = dev().upload(ys2), dout2 = dev().upload(out0);
  dev().add_sigmoid_gated(dout2.f32(), dh.f32(), dgw.f32(), dys2.f32(), n, dim);
  std::vector<double> gated(out0.begin(), out0.end());
  for (int64_t t = 0; t < n; ++t) {
    double d = 0;
    for (int64_t c = 0; c < dim; ++c) d += static_cast<double>(h[t * dim + c]) * gw[c];
    const double g = 1.0 / (1.0 + std::exp(-d));
    for (int64_t c = 0; c < dim; ++c) gated[t * dim + c] += g * ys2[t * dim + c];
  }
  expect_close(read(dout2, n * dim), gated, 1e-5, "add_sigmoid_gated");
}

// Weights from a synth model: matmul against the dequantized rows, embed and
// the logit rows of a step.
TEST_P(DeviceOps, MatmulEmbedAndLogitRowsMatchReference) {
  testing::TempDir dir;
  SynthSpec spec = testing::small_spec(Arch::Llama);
  spec.dtype = DType::Q8_0;
  write_synth_model(spec, dir.file("m.gguf"));
  const auto src = ModelSource::open(dir.file("m.gguf"));
  const TensorInfo& t = src->get("blk.0.ffn_gate.weight");
  const TensorSlice all{};
  const ShardedTensor host = ShardedTensor::load(t, all);
  const int64_t rows = host.rows(), cols = host.cols(), n = 6;
  std::vector<float> plain(rows * cols);
  for (int64_t r = 0; r < rows; ++r) cpu::dequantize_row_ref(host.type(), host.row(r), &plain[r * cols], cols);

  const std::unique_ptr<DeviceWeight> w = dev().upload_weight(ShardedTensor::load(t, all), WeightUse::Matmul);
  const std::vector<float> x = random_floats(n * cols, 13);
  DeviceMemory dx = dev().upload(x), dy = dev().upload(std::vector<float>(n * rows, 0.0f));
  dev().matmul(*w, dx.f32(), n, dy.f32());
  std::vector<double> want(n * rows, 0.0);
  double scale = 0;
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t r = 0; r < rows; ++r) {
      double d = 0, a = 0;
      for (int64_t c = 0; c < cols; ++c) {
        d += static_cast<double>(x[i * cols + c]) * plain[r * cols + c];
        a += std::fabs(x[i * cols + c] * plain[r * cols + c]);
      }
      want[i * rows + r] = d;
      scale = std::max(scale, a);
    }
  }
  // Activations are quantized to 8 bits per 32 values for the quantized kernels.
  const std::vector<float> got = read(dy, n * rows);
  for (size_t i = 0; i < got.size(); ++i) ASSERT_NEAR(got[i], want[i], 1e-2 * scale) << "matmul at " << i;

  // Embedding rows [12, 12 + rows) of the table: tokens 10 and 11 fall outside and give zeros.
  const Batch b = two_sequences();
  KvCacheShape kv{1, 1, 16, 4, 16, GetParam() == "cpu" ? DType::F32 : DType::F16};
  dev().allocate_kv(kv);
  const StepShape s = dev().begin_step(b, false);
  const std::unique_ptr<DeviceWeight> table = dev().upload_weight(ShardedTensor::load(t, all), WeightUse::Rows);
  DeviceMemory de = dev().upload(std::vector<float>(s.n * cols, 1.0f));
  dev().embed(*table, 12, de.f32());
  std::vector<float> emb(s.n * cols);
  dev().download(de.f32(), s.n, cols, emb.data(), cols);
  DeviceMemory dl = dev().upload(std::vector<float>(s.n_out * cols, 0.0f));
  dev().gather_logit_rows(de.f32(), cols, dl.f32());
  std::vector<float> logit_rows(s.n_out * cols);
  dev().download(dl.f32(), s.n_out, cols, logit_rows.data(), cols);
  dev().end_step();
  ASSERT_EQ(s.n, b.size());
  ASSERT_EQ(s.n_out, 2);
  for (int64_t i = 0; i < s.n; ++i) {
    const int64_t r = b.tokens[i] - 12;
    for (int64_t c = 0; c < cols; ++c) {
      const float expect = r >= 0 && r < rows ? plain[r * cols + c] : 0.0f;
      ASSERT_EQ(emb[i * cols + c], expect) << "token " << i << " column " << c;
    }
  }
  for (int64_t c = 0; c < cols; ++c) {
    ASSERT_EQ(logit_rows[c], emb[4 * cols + c]);
    ASSERT_EQ(logit_rows[cols + c], emb[5 * cols + c]);
  }
}

// Attention over the paged cache: a prefill of sequence 0, then a decode step
// of it, against softmax(q k^T / sqrt(d)) v over every earlier position, with
// grouped query heads (4 query heads over 2 KV heads).
TEST_P(DeviceOps, PagedAttentionPrefillThenDecodeMatchesReference) {
  const int hd = 32, n_q = 4, n_kv = 2;
  const AttnHeads heads{n_q, 0, n_kv, 0, n_q / n_kv, hd};
  const DType type = GetParam() == "cpu" ? DType::F32 : DType::F16;
  const double tol = type == DType::F32 ? 1e-5 : 5e-3;
  dev().allocate_kv(KvCacheShape{2, n_kv, hd, 4, 16, type});
  const int64_t row = (n_q + 2 * n_kv) * hd;
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  std::vector<std::vector<float>> keys, values;  // per position, [n_kv * hd]
  uint32_t seed = 20;
  for (const int len : {9, 1}) {
    Batch b;
    b.sequences = {BatchSequence{{5, 2, 9, 0}}};
    const int first = static_cast<int>(keys.size());
    for (int p = first; p < first + len; ++p) {
      b.tokens.push_back(1);
      b.positions.push_back(p);
      b.seq.push_back(0);
      b.want_logits.push_back(0);
    }
    const StepShape s = dev().begin_step(b, false);
    const std::vector<float> qkv = random_floats(s.n * row, seed++);
    DeviceMemory dq = dev().upload(qkv), dout = dev().upload(std::vector<float>(s.n * n_q * hd, 0.0f));
    dev().attention(1, dq.f32(), row, heads, scale, dout.f32());
    std::vector<float> got(s.n * n_q * hd);
    dev().download(dout.f32(), s.n, n_q * hd, got.data(), n_q * hd);
    dev().end_step();
    for (int64_t t = 0; t < s.n; ++t) {
      keys.emplace_back(qkv.begin() + t * row + n_q * hd, qkv.begin() + t * row + (n_q + n_kv) * hd);
      values.emplace_back(qkv.begin() + t * row + (n_q + n_kv) * hd, qkv.begin() + (t + 1) * row);
    }
    std::vector<double> want(s.n * n_q * hd, 0.0);
    for (int64_t t = 0; t < s.n; ++t) {
      const int pos = b.positions[t];
      for (int h = 0; h < n_q; ++h) {
        const int j = h / heads.heads_per_kv;
        std::vector<double> sc(pos + 1);
        double mx = -1e300;
        for (int p = 0; p <= pos; ++p) {
          double d = 0;
          for (int i = 0; i < hd; ++i) d += static_cast<double>(qkv[t * row + h * hd + i]) * keys[p][j * hd + i];
          sc[p] = d * scale;
          mx = std::max(mx, sc[p]);
        }
        double z = 0;
        for (double& v : sc) z += (v = std::exp(v - mx));
        for (int p = 0; p <= pos; ++p) {
          for (int i = 0; i < hd; ++i) want[(t * n_q + h) * hd + i] += sc[p] / z * values[p][j * hd + i];
        }
      }
    }
    expect_close(got, want, tol, len > 1 ? "prefill" : "decode");
  }
}

TEST_P(DeviceOps, ReadAndDownloadWithStride) {
  const std::vector<float> v = random_floats(3 * 5, 30);
  DeviceMemory d = dev().upload(v);
  EXPECT_EQ(read(d, v.size()), v);
  const Batch b = two_sequences();
  dev().allocate_kv(KvCacheShape{1, 1, 16, 4, 16, GetParam() == "cpu" ? DType::F32 : DType::F16});
  dev().begin_step(b, false);
  std::vector<float> host(3 * 9, -1.0f);
  dev().download(d.f32(), 3, 5, host.data() + 2, 9);
  dev().end_step();
  for (int r = 0; r < 3; ++r) {
    for (int c = 0; c < 9; ++c) {
      const float want = c >= 2 && c < 7 ? v[r * 5 + c - 2] : -1.0f;
      EXPECT_EQ(host[r * 9 + c], want) << r << "," << c;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Devices, DeviceOps, ::testing::ValuesIn(device_kinds()),
                         [](const ::testing::TestParamInfo<std::string>& i) { return i.param; });

// The collectives of CPU devices over a local group of three ranks: the
// all-reduce sums, the all-gather of unequal counts lands rank after rank.
TEST(CpuDeviceCollectives, AllReduceAndUnevenAllGather) {
  constexpr int p = 3;
  LocalGroup group(p, std::chrono::milliseconds(60000));
  std::vector<std::vector<float>> reduced(p), gathered(p);
  std::vector<std::thread> threads;
  const std::vector<size_t> counts{4, 0, 7};
  for (int r = 0; r < p; ++r) {
    threads.emplace_back([&, r] {
      const std::unique_ptr<Communicator> comm = group.communicator(r);
      ThreadPool pool(1);
      CpuDevice dev(*comm, pool);
      DeviceMemory d = dev.upload(random_floats(10, 40 + r));
      dev.all_reduce_sum(d.f32(), 10);
      reduced[r].resize(10);
      dev.read_to_host(d.f32(), 10, reduced[r].data());
      DeviceMemory send = dev.upload(random_floats(std::max<size_t>(counts[r], 1), 50 + r));
      DeviceMemory recv = dev.alloc(11 * sizeof(float));
      dev.all_gather(send.f32(), counts, recv.f32());
      gathered[r].resize(11);
      dev.read_to_host(recv.f32(), 11, gathered[r].data());
    });
  }
  for (std::thread& t : threads) t.join();
  std::vector<double> sum(10, 0.0);
  for (int r = 0; r < p; ++r) {
    const std::vector<float> v = random_floats(10, 40 + r);
    for (int i = 0; i < 10; ++i) sum[i] += v[i];
  }
  std::vector<float> want;
  for (int r = 0; r < p; ++r) {
    const std::vector<float> v = random_floats(std::max<size_t>(counts[r], 1), 50 + r);
    want.insert(want.end(), v.begin(), v.begin() + static_cast<int64_t>(counts[r]));
  }
  for (int r = 0; r < p; ++r) {
    expect_close(reduced[r], sum, 1e-6, "all_reduce_sum");
    EXPECT_EQ(gathered[r], want) << "rank " << r;
  }
}

}  // namespace
}  // namespace tpinfer
