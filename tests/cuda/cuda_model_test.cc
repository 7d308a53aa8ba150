// The GPU model against the CPU engine: logits of the bible model (BF16 within
// 1e-2 relative L2; Q8_0 and a synth Q4_K model within their quantization
// bound), greedy tokens at TP = 1 and TP = 2 (streams of one GPU when there is
// one GPU, NCCL with two), prefill-then-decode against one long prefill, and
// CUDA-graph replay against kernel-by-kernel launches. Without a GPU every
// test but the configuration checks skips, saying why.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <string>
#include <vector>

#include "backend/cuda/runtime.h"
#include "core/error.h"
#include "engine/engine.h"
#include "model/rank_model.h"
#include "parallel/cuda/cuda_device.h"
#include "test_util.h"

namespace tpinfer {
namespace {

std::string bible(const std::string& name) { return testing::shared_dir() + "/models/bible/" + name; }

class CudaModel : public ::testing::Test {
 protected:
  void SetUp() override {
    if (cuda::device_count() == 0) GTEST_SKIP() << "no CUDA device: " << cuda::unavailable_reason();
  }
};

EngineOptions cuda_options(int tp) {
  EngineOptions o = testing::f32_options(tp);
  o.kv_type = DType::F16;
  o.device = DeviceKind::Cuda;
  return o;
}

EngineOptions cpu_options(int tp) {
  EngineOptions o = testing::f32_options(tp);
  o.kv_type = DType::F16;
  return o;
}

double rel_l2(const std::vector<float>& a, const std::vector<float>& b) {
  EXPECT_EQ(a.size(), b.size());
  double num = 0, den = 0;
  for (size_t i = 0; i < a.size() && i < b.size(); ++i) {
    num += (static_cast<double>(a[i]) - b[i]) * (static_cast<double>(a[i]) - b[i]);
    den += static_cast<double>(b[i]) * b[i];
  }
  return std::sqrt(num / std::max(den, 1e-30));
}

void expect_logits_close(const std::string& model, double bound, int tp = 1) {
  ASSERT_TRUE(std::filesystem::exists(model)) << model;
  const auto src = ModelSource::open(model);
  const std::vector<int32_t> tokens = testing::random_tokens(40, static_cast<int>(src->config().vocab), 11);
  const std::vector<float> cpu = testing::engine_logits(model, tokens, cpu_options(1));
  const std::vector<float> gpu = testing::engine_logits(model, tokens, cuda_options(tp));
  EXPECT_LT(rel_l2(gpu, cpu), bound) << model << " tp " << tp;
}

// MoE models run on the GPU through the same layers as on the CPU; what the
// GPU cannot hold is a KV cache other than f16 / bf16, or a weight type its
// kernels lack.
TEST(CudaModelChecks, AcceptsMoeRejectsKvTypesWithoutAGpu) {
  testing::TempDir dir;
  const std::string moe = dir.file("moe.gguf");
  write_synth_model(*synth_preset("tiny-mixtral"), moe);
  EXPECT_NO_THROW(CudaDevice::check_supported(*ModelSource::open(moe), DType::F16));
  const std::string dense = dir.file("dense.gguf");
  write_synth_model(testing::small_spec(Arch::Llama), dense);
  EXPECT_NO_THROW(CudaDevice::check_supported(*ModelSource::open(dense), DType::BF16));
  try {
    CudaDevice::check_supported(*ModelSource::open(dense), DType::Q8_0);
    ADD_FAILURE() << "a q8_0 KV cache passed";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("valid: f16, bf16"), std::string::npos) << e.what();
  }
}

TEST_F(CudaModel, BibleBf16LogitsMatchCpu) { expect_logits_close(bible("bible-bf16.gguf"), 1e-2); }

TEST_F(CudaModel, BibleBf16LogitsMatchCpuTp2) { expect_logits_close(bible("bible-bf16.gguf"), 1e-2, 2); }

// Mixture of experts through the same layers as the CPU (routing read back to
// the host, experts gathered and combined on the device), tensor-parallel
// and expert-parallel.
TEST_F(CudaModel, MoeLogitsMatchCpu) {
  testing::TempDir dir;
  const std::string moe = dir.file("moe.gguf");
  write_synth_model(*synth_preset("tiny-mixtral"), moe);
  expect_logits_close(moe, 1e-2);
  expect_logits_close(moe, 1e-2, 2);
}

TEST_F(CudaModel, QuantizedLogitsWithinQuantizationBound) {
  // Both sides quantize activations to 8 bits for the quantized matmuls, in
  // different orders of summation: a few percent, not bit equality.
  expect_logits_close(bible("bible-q8_0.gguf"), 3e-2);
  testing::TempDir dir;
  SynthSpec spec;  // hidden 256: rows of whole Q4_K blocks
  spec.dtype = DType::Q4_K;
  spec.ffn = 512;
  spec.vocab = 512;
  spec.kv_heads = 4;
  const std::string q4k = dir.file("q4k.gguf");
  write_synth_model(spec, q4k);
  expect_logits_close(q4k, 5e-2);
}

// Greedy tokens equal the CPU's up to the first step where the CPU's top two
// logits are so close that rounding may legitimately pick the other.
void expect_same_greedy(const std::string& model, int tp) {
  const auto src = ModelSource::open(model);
  const std::vector<int32_t> prompt = testing::random_tokens(12, static_cast<int>(src->config().vocab), 5);
  Engine cpu(model, cpu_options(1));
  Engine gpu(model, cuda_options(tp));
  const testing::GreedyDecode want = testing::greedy_decode(cpu, prompt, 24);
  const testing::GreedyDecode got = testing::greedy_decode(gpu, prompt, 24);
  for (size_t i = 0; i < want.tokens.size(); ++i) {
    ASSERT_EQ(got.tokens[i], want.tokens[i]) << model << " tp " << tp << " step " << i;
    if (want.margins[i] < 0.05f) break;
  }
}

TEST_F(CudaModel, GreedyTokensMatchCpuTp1AndTp2) {
  for (const std::string& model : {bible("bible-bf16.gguf"), bible("bible-q8_0.gguf")}) {
    expect_same_greedy(model, 1);
    expect_same_greedy(model, 2);
  }
}

TEST_F(CudaModel, PipelineStagesThroughTheHost) {
  const std::string model = bible("bible-bf16.gguf");
  const auto src = ModelSource::open(model);
  const std::vector<int32_t> tokens = testing::random_tokens(20, static_cast<int>(src->config().vocab), 3);
  EngineOptions pp = cuda_options(1);
  pp.parallel.pp = 2;
  EXPECT_LT(rel_l2(testing::engine_logits(model, tokens, pp), testing::engine_logits(model, tokens, cuda_options(1))),
            1e-4);
}

// A model on a CudaDevice alone (tp = 1), for what the engine does not show:
// the graph counters.
struct Direct {
  std::unique_ptr<ModelSource> src;
  ShardPlan plan;
  CudaDevice* device = nullptr;
  std::unique_ptr<RankModel> model;
  Direct(const std::string& path, bool graphs) : src(ModelSource::open(path)) {
    plan = ShardPlan::build(src->config(), ParallelConfig{}, shard_constraints(*src));
    auto dev = std::make_unique<CudaDevice>(CudaDeviceOptions{0, graphs}, nullptr);
    device = dev.get();
    KvCacheShape kv;
    kv.n_blocks = 64;
    kv.block_size = 16;
    kv.type = DType::F16;
    auto llama = std::make_unique<LlamaModel>(*dev, *src, plan, 0, LayerRange{0, src->config().n_layers}, kv);
    model = std::make_unique<RankModel>(std::move(dev), std::move(llama));
  }
};

// Sequences s = 0..n-1 use blocks [8 s, 8 s + 8): 128 positions each.
Batch sequences_batch(int n_seqs) {
  Batch b;
  for (int s = 0; s < n_seqs; ++s) {
    BatchSequence seq;
    for (int k = 0; k < 8; ++k) seq.block_table.push_back(8 * s + k);
    b.sequences.push_back(seq);
  }
  return b;
}

std::vector<float> run(RankModel& m, const Batch& b, int64_t vocab) {
  std::vector<float> logits(static_cast<size_t>(b.n_logits() * vocab));
  m.forward(b, logits.data());
  return logits;
}

TEST_F(CudaModel, PrefillThenDecodeEqualsOneLongPrefill) {
  const std::string path = bible("bible-bf16.gguf");
  Direct one(path, false), steps(path, true);
  const int64_t vocab = one.src->config().vocab;
  const std::vector<int32_t> tokens = testing::random_tokens(30, static_cast<int>(vocab), 9);
  Batch all = sequences_batch(1);
  for (size_t i = 0; i < tokens.size(); ++i) {
    all.tokens.push_back(tokens[i]);
    all.positions.push_back(static_cast<int32_t>(i));
    all.seq.push_back(0);
    all.want_logits.push_back(1);
  }
  const std::vector<float> want = run(*one.model, all, vocab);
  const size_t prefill = 22;
  Batch first = sequences_batch(1);
  for (size_t i = 0; i < prefill; ++i) {
    first.tokens.push_back(tokens[i]);
    first.positions.push_back(static_cast<int32_t>(i));
    first.seq.push_back(0);
    first.want_logits.push_back(1);
  }
  std::vector<float> got = run(*steps.model, first, vocab);
  for (size_t i = prefill; i < tokens.size(); ++i) {
    Batch d = sequences_batch(1);
    d.tokens = {tokens[i]};
    d.positions = {static_cast<int32_t>(i)};
    d.seq = {0};
    d.want_logits = {1};
    const std::vector<float> l = run(*steps.model, d, vocab);
    got.insert(got.end(), l.begin(), l.end());
  }
  EXPECT_LT(rel_l2(got, want), 1e-2);
  EXPECT_GT(steps.device->graph_replays(), 0u) << steps.device->graph_error();
}

TEST_F(CudaModel, GraphReplayEqualsNoGraph) {
  const std::string path = bible("bible-bf16.gguf");
  Direct graph(path, true), plain(path, false);
  const int64_t vocab = graph.src->config().vocab;
  // Three sequences of different lengths prefilled together, then decoded together (a padded bucket of 4).
  const int lens[3] = {5, 9, 14};
  Batch pre = sequences_batch(3);
  std::vector<int32_t> last(3), pos(3);
  for (int s = 0; s < 3; ++s) {
    const std::vector<int32_t> t = testing::random_tokens(lens[s], static_cast<int>(vocab), 100 + s);
    for (int i = 0; i < lens[s]; ++i) {
      pre.tokens.push_back(t[static_cast<size_t>(i)]);
      pre.positions.push_back(i);
      pre.seq.push_back(s);
      pre.want_logits.push_back(i + 1 == lens[s] ? 1 : 0);
    }
    pos[static_cast<size_t>(s)] = lens[s];
  }
  std::vector<float> a = run(*graph.model, pre, vocab), b = run(*plain.model, pre, vocab);
  ASSERT_LT(rel_l2(a, b), 1e-6);
  for (int step = 0; step < 6; ++step) {
    Batch d = sequences_batch(3);
    for (int s = 0; s < 3; ++s) {
      // The plain model's greedy choice drives both.
      const float* row = b.data() + static_cast<size_t>(s) * static_cast<size_t>(vocab);
      d.tokens.push_back(static_cast<int32_t>(std::max_element(row, row + vocab) - row));
      d.positions.push_back(pos[static_cast<size_t>(s)]++);
      d.seq.push_back(s);
      d.want_logits.push_back(1);
    }
    a = run(*graph.model, d, vocab);
    b = run(*plain.model, d, vocab);
    ASSERT_LT(rel_l2(a, b), 1e-4) << "decode step " << step;
  }
  EXPECT_EQ(graph.device->graph_error(), "");
  EXPECT_GE(graph.device->graph_captures(), 1u);
  EXPECT_GE(graph.device->graph_replays(), 4u);
  EXPECT_EQ(plain.device->graph_replays(), 0u);
}

}  // namespace
}  // namespace tpinfer
