// Mixture-of-experts models split over ranks, in two shapes:
// 8 experts top-2 (Mixtral-like) and 4 experts top-1 with a gated shared expert
// (Qwen2-MoE-like). Tensor-parallel and expert-parallel layouts at TP 2 and 4
// give the logits and greedy tokens of one rank, every rank of a group ends
// with the same bits, the expert load is counted, and expert parallelism moves
// fewer bytes than tensor-parallel experts.
#include <gtest/gtest.h>

#include <cmath>
#include <numeric>
#include <thread>

#include "comm/local_comm.h"
#include "core/error.h"
#include "engine/engine.h"
#include "engine/sampler.h"
#include "formats/model_source.h"
#include "parallel/cpu_device.h"
#include "parallel/moe.h"
#include "reference_model.h"
#include "test_util.h"

namespace tpinfer {
namespace {

using testing::TempDir;

struct MoeCase {
  const char* name;
  const char* preset;
};

const MoeCase kCases[] = {{"mixtral_8x_top2", "tiny-mixtral"}, {"qwen2moe_4x_top1_shared", "tiny-qwen2-moe"}};

SynthSpec spec_of(const MoeCase& c) {
  SynthSpec s = *synth_preset(c.preset);
  s.dtype = DType::F32;  // token identity: float weights (quantized ones flip near-ties)
  s.vocab = 512;
  s.context = 256;
  s.seed = 21;
  return s;
}

EngineOptions options(int tp, bool expert_parallel) {
  EngineOptions o = testing::f32_options(tp);
  o.parallel.expert_parallel = expert_parallel;
  return o;
}

// Greedy decoding by hand, with the margin of every choice, the driver's
// bytes moved and the expert load.
struct GreedyRun {
  std::vector<int32_t> tokens;
  std::vector<float> margins;
  uint64_t bytes = 0;
  std::vector<std::vector<uint64_t>> load;
};

GreedyRun greedy(const std::string& path, std::vector<int32_t> context, const EngineOptions& o, int n = 48) {
  Engine engine(path, o);
  engine.reset_comm_stats();
  testing::GreedyDecode g = testing::greedy_decode(engine, std::move(context), n);
  GreedyRun out;
  out.tokens = std::move(g.tokens);
  out.margins = std::move(g.margins);
  out.bytes = engine.comm_stats().total().bytes;
  out.load = engine.expert_load();
  return out;
}

class MoeParallel : public ::testing::TestWithParam<MoeCase> {};

TEST_P(MoeParallel, BothLayoutsMatchOneRank) {
  const MoeCase& c = GetParam();
  const SynthSpec spec = spec_of(c);
  TempDir dir;
  const std::string path = dir.file("m.gguf");
  write_synth_model(spec, path);
  const auto prompt = testing::random_tokens(24, spec.vocab, 17);
  const std::vector<float> base = testing::engine_logits(path, prompt, options(1, false));
  const GreedyRun one = greedy(path, prompt, options(1, false));
  // Every token is routed to k experts in every layer, prompt and generation.
  ASSERT_EQ(one.load.size(), static_cast<size_t>(spec.layers));
  const uint64_t routed = (prompt.size() + one.tokens.size() - 1) * static_cast<uint64_t>(spec.experts_used);
  for (const auto& layer : one.load) EXPECT_EQ(std::accumulate(layer.begin(), layer.end(), uint64_t{0}), routed);

  for (int tp : {2, 4}) {
    uint64_t bytes[2] = {0, 0};
    for (const bool ep : {false, true}) {
      SCOPED_TRACE(cat(c.name, " tp=", tp, ep ? " expert-parallel" : " tensor-parallel"));
      EXPECT_LT(reference::rel_l2(testing::engine_logits(path, prompt, options(tp, ep)), base), 1e-5);
      const GreedyRun r = greedy(path, prompt, options(tp, ep));
      size_t diverge = 0;
      while (diverge < r.tokens.size() && r.tokens[diverge] == one.tokens[diverge]) ++diverge;
      // Identical, except after a near-tie of TP=1's top two logits.
      if (diverge < one.tokens.size()) {
        EXPECT_LT(one.margins[diverge], 1e-3) << "tokens differ at step " << diverge;
      } else {
        EXPECT_EQ(r.load, one.load);  // the same tokens went to the same experts
      }
      bytes[ep ? 1 : 0] = r.bytes;
    }
    // The driver's bytes. With top-2 at tp=4 the driver alone could in
    // principle receive more (MoeParallelLayer below sums all ranks); these
    // models' routing leaves it well below.
    EXPECT_LT(bytes[1], bytes[0]) << c.name << " tp=" << tp << ": expert parallel " << bytes[1]
                                  << " bytes, tensor parallel " << bytes[0];
    std::printf("[ moe bytes ] %s tp=%d: tensor-parallel %llu, expert-parallel %llu (%.0f%%)\n", c.name, tp,
                static_cast<unsigned long long>(bytes[0]), static_cast<unsigned long long>(bytes[1]),
                100.0 * static_cast<double>(bytes[1]) / static_cast<double>(bytes[0]));
  }
}

INSTANTIATE_TEST_SUITE_P(Models, MoeParallel, ::testing::ValuesIn(kCases),
                         [](const auto& info) { return std::string(info.param.name); });

// The layer alone on a group of local ranks: every rank's output is bit-identical
// to every other's and within float rounding of one rank's, and summed over all
// ranks expert parallelism moves fewer bytes than tensor-parallel experts.
struct LayerRun {
  std::vector<std::vector<float>> out;  // per rank
  uint64_t bytes = 0;                   // all ranks
};

LayerRun run_layer(const ModelSource& src, int tp, bool ep, const std::vector<float>& h, int64_t n) {
  ParallelConfig p;
  p.tp = tp;
  p.expert_parallel = ep;
  const ShardPlan plan = ShardPlan::build(src.config(), p, shard_constraints(src));
  LocalGroup group(tp, std::chrono::milliseconds(60000));
  LayerRun run;
  run.out.resize(static_cast<size_t>(tp));
  std::vector<uint64_t> bytes(static_cast<size_t>(tp));
  std::vector<std::thread> threads;
  for (int r = 0; r < tp; ++r) {
    threads.emplace_back([&, r] {
      std::unique_ptr<Communicator> comm = group.communicator(r);
      ThreadPool pool(1);
      CpuDevice dev(*comm, pool);
      ParallelMoE moe(dev, src, plan, r, 0);
      std::vector<float>& out = run.out[static_cast<size_t>(r)];
      out.resize(h.size());
      moe.forward(dev, h.data(), n, out.data());
      bytes[static_cast<size_t>(r)] = comm->stats().total().bytes;
    });
  }
  for (std::thread& t : threads) t.join();
  run.bytes = std::accumulate(bytes.begin(), bytes.end(), uint64_t{0});
  return run;
}

TEST(MoeParallelLayer, RanksAgreeAndExpertParallelMovesFewerBytes) {
  for (const MoeCase& c : kCases) {
    TempDir dir;
    SynthSpec spec = spec_of(c);
    spec.layers = 1;
    write_synth_model(spec, dir.file("m.gguf"));
    const auto src = ModelSource::open(dir.file("m.gguf"));
    const int64_t n = 64;
    std::vector<float> h(static_cast<size_t>(n * spec.hidden));
    const auto ids = testing::random_tokens(static_cast<int>(h.size()), 2001, 3);
    for (size_t i = 0; i < h.size(); ++i) h[i] = static_cast<float>(ids[i] - 1000) / 500.0f;
    const std::vector<float> one = run_layer(*src, 1, false, h, n).out[0];
    for (int tp : {2, 4}) {
      uint64_t bytes[2];
      for (const bool ep : {false, true}) {
        SCOPED_TRACE(cat(c.name, " tp=", tp, ep ? " expert-parallel" : " tensor-parallel"));
        const LayerRun r = run_layer(*src, tp, ep, h, n);
        for (int k = 1; k < tp; ++k) EXPECT_EQ(r.out[static_cast<size_t>(k)], r.out[0]) << "rank " << k;
        EXPECT_LT(reference::rel_l2(r.out[0], one), 1e-5);
        bytes[ep ? 1 : 0] = r.bytes;
      }
      EXPECT_LT(bytes[1], bytes[0]) << c.name << " tp=" << tp;
      std::printf(
          "[ moe layer bytes, all ranks ] %s tp=%d, %lld tokens: tensor-parallel %llu, expert-parallel %llu (%.0f%%)\n",
          c.name, tp, static_cast<long long>(n), static_cast<unsigned long long>(bytes[0]),
          static_cast<unsigned long long>(bytes[1]),
          100.0 * static_cast<double>(bytes[1]) / static_cast<double>(bytes[0]));
      // Tensor parallel: one all-reduce of n x hidden floats, 2 (p-1)/p of it per rank.
      EXPECT_EQ(bytes[0], static_cast<uint64_t>(2 * (tp - 1) * n * spec.hidden * 4));
    }
  }
}

// The routing decides between the gather and the all-reduce the same way on
// every rank; with top-k = 4 of 8 experts over 4 ranks tokens reach more than
// two ranks on average, and the all-reduce (no more bytes than tensor
// parallelism) is chosen; the results still agree.
TEST(MoeParallelLayer, ManyExpertsPerTokenFallsBackToAllReduce) {
  TempDir dir;
  SynthSpec spec = spec_of(kCases[0]);
  spec.layers = 1;
  spec.experts_used = 4;
  write_synth_model(spec, dir.file("m.gguf"));
  const auto src = ModelSource::open(dir.file("m.gguf"));
  const int64_t n = 32;
  std::vector<float> h(static_cast<size_t>(n * spec.hidden));
  const auto ids = testing::random_tokens(static_cast<int>(h.size()), 2001, 4);
  for (size_t i = 0; i < h.size(); ++i) h[i] = static_cast<float>(ids[i] - 1000) / 500.0f;
  const std::vector<float> one = run_layer(*src, 1, false, h, n).out[0];
  const LayerRun tp = run_layer(*src, 4, false, h, n);
  const LayerRun ep = run_layer(*src, 4, true, h, n);
  EXPECT_EQ(ep.bytes, tp.bytes);
  EXPECT_LT(reference::rel_l2(ep.out[3], one), 1e-5);
  EXPECT_EQ(ep.out[3], ep.out[0]);
}

// Pipeline stages hold their layers' experts; each stage's routing counts
// travel with the micro-batch to the driver, so the load covers every layer.
TEST(MoePipeline, BothLayoutsOverStagesMatchOneRankAndCountEveryLayer) {
  const SynthSpec spec = spec_of(kCases[0]);
  TempDir dir;
  write_synth_model(spec, dir.file("m.gguf"));
  const auto prompt = testing::random_tokens(24, spec.vocab, 17);
  const GreedyRun one = greedy(dir.file("m.gguf"), prompt, options(1, false), 16);
  for (const bool ep : {false, true}) {
    SCOPED_TRACE(ep ? "expert-parallel" : "tensor-parallel");
    EngineOptions o = options(2, ep);
    o.parallel.pp = 2;
    const GreedyRun r = greedy(dir.file("m.gguf"), prompt, o, 16);
    EXPECT_EQ(r.tokens, one.tokens);
    ASSERT_EQ(r.load.size(), static_cast<size_t>(spec.layers));
    EXPECT_EQ(r.load, one.load);
  }
}

TEST(MoeParallelErrors, ExpertParallelNeedsAnExpertPerRankAndAMoeModel) {
  TempDir dir;
  write_synth_model(spec_of(kCases[1]), dir.file("moe.gguf"));  // 4 experts, 8 heads
  try {
    Engine e(dir.file("moe.gguf"), options(8, true));
    FAIL() << "8 ranks, 4 experts";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("valid with expert parallelism: 1, 2, 4"), std::string::npos) << e.what();
  }
  EXPECT_NO_THROW(Engine(dir.file("moe.gguf"), options(8, false)));  // tensor-parallel experts can take 8
  write_synth_model(testing::small_spec(Arch::Llama), dir.file("dense.gguf"));
  EXPECT_THROW(Engine(dir.file("dense.gguf"), options(2, true)), ConfigError);
}

// Expert parallelism holds each expert once in the group: the ranks together
// hold the routed experts' bytes once, not split-and-summed, and a rank holds
// only its own experts.
TEST(MoeParallelMemory, EachRankHoldsItsExperts) {
  TempDir dir;
  write_synth_model(spec_of(kCases[0]), dir.file("m.gguf"));
  const auto src = ModelSource::open(dir.file("m.gguf"));
  uint64_t experts = 0;
  for (const TensorInfo& t : src->tensors()) {
    int layer = 0, expert = 0;
    std::string_view base;
    if (parse_expert_tensor_name(t.name, &layer, &base, &expert)) experts += t.nbytes;
  }
  uint64_t tp_total = 0, ep_total = 0;
  {
    Engine e(dir.file("m.gguf"), options(4, false));
    for (const RankReport& r : e.rank_reports()) tp_total += r.weight_bytes;
  }
  {
    Engine e(dir.file("m.gguf"), options(4, true));
    for (int r = 0; r < 4; ++r)
      EXPECT_EQ(e.rank_reports()[static_cast<size_t>(r)].shard.experts, (Range{2 * r, 2 * r + 2}));
    for (const RankReport& r : e.rank_reports()) ep_total += r.weight_bytes;
  }
  // Same attention, embedding and router either way; the experts once either way.
  EXPECT_EQ(tp_total, ep_total);
  EXPECT_GT(experts, 0u);
}

}  // namespace
}  // namespace tpinfer
