// Pipeline parallelism end to end: the stage plan (layer ranges, errors that
// name the valid choices), micro-batches, and engines of TP x PP ranks whose
// logits equal those of the same TP without stages bit for bit when the batch
// is not cut (a stage runs the same kernels on the same rows; only where they
// run changes) and to 1e-6 when it is, so greedy tokens equal TP=1's, on synth
// models of the shapes that matter and on the bible model. Then what the driver measures (stage times, bubble, traffic per
// dimension), what each rank loads against the planner, and the scheduler
// keeping one batch per stage in flight: many requests together, with
// preemption and cancellation, give each the tokens it gets alone.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <map>
#include <random>

#include "core/error.h"
#include "engine/generator.h"
#include "engine/sampler.h"
#include "engine/scheduler.h"
#include "formats/model_source.h"
#include "parallel/pipeline_plan.h"
#include "planner/model_shape.h"
#include "planner/planner.h"
#include "reference_model.h"
#include "server/kv_budget.h"
#include "test_util.h"

namespace tpinfer {
namespace {

using testing::TempDir;

struct Layout {
  int tp;
  int pp;
};

std::string name_of(Layout l) { return "tp" + std::to_string(l.tp) + "xpp" + std::to_string(l.pp); }

EngineOptions options(Layout l) {
  EngineOptions o = testing::f32_options(l.tp);
  o.parallel.pp = l.pp;
  return o;
}

// --- PipelinePlan -----------------------------------------------------------

TEST(PipelinePlan, EvenSplitGivesTheFirstStagesTheRemainder) {
  const PipelinePlan p = PipelinePlan::build(8, 3);
  EXPECT_EQ(p.layer_counts(), (std::vector<int>{3, 3, 2}));
  EXPECT_EQ(p.stage(0), (LayerRange{0, 3}));
  EXPECT_EQ(p.stage(1), (LayerRange{3, 6}));
  EXPECT_EQ(p.stage(2), (LayerRange{6, 8}));
  EXPECT_EQ(p.max_stage_layers(), 3);
  for (int l = 0; l < 8; ++l) EXPECT_EQ(p.stage_of_layer(l), l < 3 ? 0 : l < 6 ? 1 : 2);
  EXPECT_EQ(PipelinePlan::build(8, 8).layer_counts(), std::vector<int>(8, 1));
  EXPECT_EQ(PipelinePlan::build(5, 1).layer_counts(), std::vector<int>{5});
}

TEST(PipelinePlan, ExplicitSplit) {
  const PipelinePlan p = PipelinePlan::build(8, 2, {1, 7});
  EXPECT_EQ(p.stage(0), (LayerRange{0, 1}));
  EXPECT_EQ(p.stage(1), (LayerRange{1, 8}));
}

// The same rule as the planner's, so `tpinfer plan` describes what runs.
TEST(PipelinePlan, MatchesThePlannersStages) {
  const planner::ModelShape m = *planner::named_shape("llama-3.1-8b");
  for (int pp : {1, 2, 3, 5, 7}) {
    const auto loads = planner::rank_loads(m, 1, pp);
    const PipelinePlan p = PipelinePlan::build(m.config.n_layers, pp);
    ASSERT_EQ(loads.size(), static_cast<size_t>(pp));
    for (int s = 0; s < pp; ++s) EXPECT_EQ(loads[static_cast<size_t>(s)][0].layers, p.stage(s).size()) << pp;
  }
}

std::string config_error(const std::function<void()>& f) {
  try {
    f();
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "(no error)";
}

TEST(PipelinePlan, ErrorsNameTheValidChoices) {
  EXPECT_NE(config_error([] { PipelinePlan::build(8, 9); }).find("valid: 1 to 8"), std::string::npos);
  EXPECT_NE(config_error([] { PipelinePlan::build(8, 0); }).find("valid: 1 to 8"), std::string::npos);
  const std::string sum = config_error([] { PipelinePlan::build(8, 2, {3, 4}); });
  EXPECT_NE(sum.find("sum to the model's 8 layers (it sums to 7)"), std::string::npos) << sum;
  const std::string zero = config_error([] { PipelinePlan::build(8, 2, {0, 8}); });
  EXPECT_NE(zero.find("at least one layer"), std::string::npos) << zero;
  const std::string count = config_error([] { PipelinePlan::build(8, 3, {4, 4}); });
  EXPECT_NE(count.find("has 2 layer counts for pipeline-parallel-size 3"), std::string::npos) << count;
}

// Every tensor of a model is held by some stage; a layer's by exactly one.
TEST(PipelinePlan, EveryTensorHasAStage) {
  TempDir dir;
  SynthSpec spec = testing::small_spec(Arch::Qwen2);
  spec.layers = 5;
  spec.tied_embeddings = true;
  write_synth_model(spec, dir.file("m.gguf"));
  const auto src = ModelSource::open(dir.file("m.gguf"));
  const PipelinePlan p = PipelinePlan::build(5, 3);
  for (const TensorInfo& t : src->tensors()) {
    int holders = 0;
    for (int s = 0; s < 3; ++s) holders += p.holds(t.name, s, true) ? 1 : 0;
    EXPECT_GE(holders, 1) << t.name;
    if (t.name.rfind("blk.", 0) == 0) { EXPECT_EQ(holders, 1) << t.name; }
  }
  EXPECT_TRUE(p.holds("token_embd.weight", 2, /*tied=*/true));
  EXPECT_FALSE(p.holds("token_embd.weight", 2, /*tied=*/false));
  EXPECT_FALSE(p.holds("output.weight", 0, false));
  EXPECT_TRUE(p.holds("blk.4.ffn_down.weight", 2, false));
  EXPECT_FALSE(p.holds("blk.4.ffn_down.weight", 1, false));
}

TEST(PipelineRanks, TensorParallelGroupsAreContiguous) {
  // tp 2 x pp 3: ranks 0,1 stage 0; 2,3 stage 1; 4,5 stage 2.
  for (int w = 0; w < 6; ++w) {
    const RankPlace at = rank_place(w, 2);
    EXPECT_EQ(at.stage, w / 2);
    EXPECT_EQ(at.tp_rank, w % 2);
    EXPECT_EQ(world_rank_of(at.stage, at.tp_rank, 2), w);
  }
}

// --- Micro-batches ------------------------------------------------------------

TEST(MicroBatches, SplitKeepsEveryTokenInOrderWithItsSequence) {
  Batch b;
  b.sequences = {{{0, 1}}, {{2}}, {{3, 4, 5}}};
  const std::vector<int32_t> seq = {0, 0, 0, 1, 2, 2, 2, 2, 1, 0};
  for (size_t i = 0; i < seq.size(); ++i) {
    b.tokens.push_back(static_cast<int32_t>(100 + i));
    b.positions.push_back(static_cast<int32_t>(i));
    b.seq.push_back(seq[i]);
    b.want_logits.push_back(i % 3 == 0 ? 1 : 0);
  }
  for (int parts : {1, 2, 3, 4, 10, 50}) {
    const std::vector<Batch> split = b.split(parts);
    EXPECT_EQ(split.size(), static_cast<size_t>(std::min(parts, 10)));
    std::vector<int32_t> tokens, positions, owners;
    int64_t logits = 0;
    size_t smallest = 100, largest = 0;
    for (const Batch& p : split) {
      smallest = std::min(smallest, p.tokens.size());
      largest = std::max(largest, p.tokens.size());
      logits += p.n_logits();
      for (int64_t t = 0; t < p.size(); ++t) {
        tokens.push_back(p.tokens[static_cast<size_t>(t)]);
        positions.push_back(p.positions[static_cast<size_t>(t)]);
        // The sequence is identified by its block table.
        owners.push_back(p.sequences[static_cast<size_t>(p.seq[static_cast<size_t>(t)])].block_table[0]);
      }
      for (const BatchSequence& s : p.sequences) EXPECT_FALSE(s.block_table.empty());
    }
    EXPECT_EQ(tokens, b.tokens) << parts;
    EXPECT_EQ(positions, b.positions) << parts;
    for (size_t i = 0; i < seq.size(); ++i) EXPECT_EQ(owners[i], b.sequences[static_cast<size_t>(seq[i])].block_table[0]);
    EXPECT_EQ(logits, b.n_logits());
    EXPECT_LE(largest - smallest, 1u) << parts;
  }
}

// --- Engines: logits and greedy tokens ----------------------------------------

struct PpCase {
  const char* name;
  SynthSpec spec;
};

SynthSpec shape(Arch arch, int layers, int heads, int kv, int vocab, const char* dtype) {
  SynthSpec s = testing::small_spec(arch);
  s.layers = layers;
  s.heads = heads;
  s.kv_heads = kv;
  s.hidden = heads * 32;
  s.ffn = 512;
  s.vocab = vocab;
  s.dtype = *parse_dtype(dtype);
  s.seed = 33;
  return s;
}

std::vector<PpCase> pp_cases() {
  std::vector<PpCase> c;
  c.push_back({"llama_f32", shape(Arch::Llama, 4, 8, 4, 512, "f32")});
  c.push_back({"five_layers_uneven_stages", shape(Arch::Llama, 5, 8, 2, 515, "f32")});
  c.push_back({"q8_0", shape(Arch::Llama, 4, 8, 4, 512, "q8_0")});
  SynthSpec tied = shape(Arch::Qwen2, 4, 8, 4, 1001, "f32");
  tied.tied_embeddings = true;
  c.push_back({"qwen2_bias_tied_embeddings", tied});
  c.push_back({"qwen3_qk_norm", shape(Arch::Qwen3, 4, 8, 4, 512, "f32")});
  return c;
}

const std::vector<Layout> kLayouts = {{1, 2}, {2, 2}, {1, 4}, {2, 1}};

// Greedy decoding by hand: the context as one step (micro-batched when pp > 1),
// then one token per step.
std::vector<int32_t> greedy(const std::string& path, std::vector<int32_t> context, const EngineOptions& o, int n) {
  Engine engine(path, o);
  return testing::greedy_decode(engine, std::move(context), n).tokens;
}

class PipelineParallel : public ::testing::TestWithParam<PpCase> {};

TEST_P(PipelineParallel, LogitsEqualSameTpWithoutStagesAndGreedyTokensEqualTp1) {
  const PpCase& c = GetParam();
  TempDir dir;
  const std::string path = dir.file("m.gguf");
  write_synth_model(c.spec, path);
  const auto tokens = testing::random_tokens(24, c.spec.vocab, 5);
  std::map<int, std::vector<float>> by_tp;
  for (int tp : {1, 2}) by_tp[tp] = testing::engine_logits(path, tokens, testing::f32_options(tp));
  const std::vector<int32_t> base = greedy(path, tokens, testing::f32_options(1), 48);
  const std::vector<int32_t> base_tp2 = greedy(path, tokens, testing::f32_options(2), 48);
  for (const Layout l : kLayouts) {
    for (int micro : {1, 0, 3}) {
      EngineOptions o = options(l);
      o.parallel.micro_batches = micro;
      // Every logit of every position, in one step (cut into micro-batches unless micro is 1).
      const std::vector<float> got = testing::engine_logits(path, tokens, o);
      ASSERT_EQ(got.size(), by_tp[l.tp].size());
      if (micro == 1 || l.pp == 1) {
        EXPECT_EQ(got, by_tp[l.tp]) << c.name << " " << name_of(l) << ": pipeline stages must not change a single bit";
      } else {
        // Micro-batches regroup a prompt's tokens into other attention tiles,
        // whose keys are scored four at a time up to the tile's longest
        // context (backend/cpu/attention.cc): the last bits may move.
        EXPECT_LT(reference::rel_l2(got, by_tp[l.tp]), 1e-6) << c.name << " " << name_of(l) << " micro-batches " << micro;
      }
    }
    // TP=2 may part from TP=1 at a near-tie of the top two logits
    // (tensor_parallel_test.cc bounds that); stages add nothing to it.
    const std::vector<int32_t> g = greedy(path, tokens, options(l), 48);
    EXPECT_EQ(g, l.tp == 1 ? base : base_tp2) << c.name << " " << name_of(l);
    if (l.tp == 2) { EXPECT_EQ(base_tp2, base) << c.name << ": TP=2 parted from TP=1 (a near-tie?)"; }
  }
}

INSTANTIATE_TEST_SUITE_P(Shapes, PipelineParallel, ::testing::ValuesIn(pp_cases()),
                         [](const auto& info) { return std::string(info.param.name); });

// The trained model: greedy text at every layout equals TP=1's, from both GGUF
// files, through generate() (prefill as micro-batches, decode one token a step).
TEST(PipelineParallelBible, GreedyTokensEqualTp1) {
  const std::string prompt = "And God said, Let there be light: and";
  for (const char* file : {"bible-q8_0.gguf", "bible-bf16.gguf"}) {
    const std::string model = testing::shared_dir() + "/models/bible/" + file;
    std::vector<int32_t> base;
    for (const Layout l : std::vector<Layout>{{1, 1}, {1, 2}, {2, 2}, {1, 4}, {2, 1}, {1, 8}}) {
      EngineOptions o = options(l);
      o.kv_type = DType::F16;
      Engine engine(model, o);
      SamplingParams p;
      p.temperature = 0;
      GenerateOptions g;
      g.max_tokens = 40;
      g.stop_at_eog = false;
      const auto ids = engine.tokenizer().encode(prompt, true, false);
      const std::vector<int32_t> got = generate(engine, ids, p, g, [](int32_t) { return true; });
      if (l.tp == 1 && l.pp == 1) {
        base = got;
        EXPECT_NE(engine.tokenizer().decode(got).find(" let him go"), std::string::npos) << engine.tokenizer().decode(got);
      } else {
        EXPECT_EQ(got, base) << file << " " << name_of(l);
      }
    }
  }
}

TEST(PipelineParallelErrors, BadSizesAreCleanErrors) {
  TempDir dir;
  SynthSpec s = testing::small_spec(Arch::Llama);
  s.layers = 3;
  write_synth_model(s, dir.file("m.gguf"));
  EngineOptions o = options({1, 4});
  const std::string too_deep = config_error([&] { Engine e(dir.file("m.gguf"), o); });
  EXPECT_NE(too_deep.find("pipeline-parallel-size 4 does not fit the model's 3 layers"), std::string::npos) << too_deep;
  EXPECT_NE(too_deep.find("valid: 1 to 3"), std::string::npos) << too_deep;
  o = options({1, 2});
  o.parallel.pipeline_split = {2, 2};
  EXPECT_NE(config_error([&] { Engine e(dir.file("m.gguf"), o); }).find("sum to the model's 3 layers"), std::string::npos);
  o.parallel.pipeline_split = {1, 2};
  EXPECT_NO_THROW(Engine(dir.file("m.gguf"), o));
}

// --- What each rank holds --------------------------------------------------------

TEST(PipelineMemory, StagesHoldTheirLayersAndTheirKvOnly) {
  TempDir dir;
  SynthSpec s = shape(Arch::Llama, 5, 8, 4, 777, "q8_0");
  write_synth_model(s, dir.file("m.gguf"));
  const auto src = ModelSource::open(dir.file("m.gguf"));
  uint64_t model_bytes = 0;
  for (const TensorInfo& t : src->tensors()) model_bytes += t.nbytes;
  const Engine one(dir.file("m.gguf"), options({1, 1}));
  for (const Layout l : std::vector<Layout>{{1, 2}, {1, 5}, {2, 2}}) {
    const Engine e(dir.file("m.gguf"), options(l));
    ASSERT_EQ(e.rank_reports().size(), static_cast<size_t>(l.tp * l.pp));
    uint64_t sum = 0;
    for (size_t w = 0; w < e.rank_reports().size(); ++w) {
      const RankReport& r = e.rank_reports()[w];
      EXPECT_EQ(r.stage, static_cast<int>(w) / l.tp);
      EXPECT_EQ(r.tp_rank, static_cast<int>(w) % l.tp);
      EXPECT_EQ(r.layers, e.pipeline().stage(r.stage));
      // KV for the stage's layers only: the whole model's share of them.
      EXPECT_EQ(r.kv_bytes * static_cast<uint64_t>(s.layers) * static_cast<uint64_t>(l.tp),
                one.rank_reports()[0].kv_bytes * static_cast<uint64_t>(r.layers.size()))
          << name_of(l) << " rank " << w;
      sum += r.weight_bytes;
    }
    // Untied, no KV head replicated: the ranks hold the model once, plus the
    // norms every tensor-parallel rank of a stage holds.
    if (l.tp == 1) { EXPECT_EQ(sum, model_bytes) << name_of(l); }
  }
}

// serve --kv-cache-memory is per rank: a rank holds KV for its stage's layers
// only, so the fullest stage decides how many tokens fit.
TEST(PipelineMemory, KvBudgetCountsTheFullestStagesLayers) {
  TempDir dir;
  const SynthSpec s = shape(Arch::Llama, 5, 8, 4, 512, "f32");
  write_synth_model(s, dir.file("m.gguf"));
  const auto src = ModelSource::open(dir.file("m.gguf"));
  for (const Layout l : std::vector<Layout>{{1, 2}, {2, 3}}) {
    EngineOptions o = options(l);
    o.kv_type = DType::F16;
    const ShardPlan plan = ShardPlan::build(src->config(), o.parallel, shard_constraints(*src));
    const PipelinePlan pipeline = PipelinePlan::build(s.layers, l.pp);
    const uint64_t per_token = server::kv_bytes_per_token(src->config(), plan, o.kv_type, pipeline.max_stage_layers());
    const uint64_t budget = per_token * 16 * 5 + 7;
    o.kv_tokens = server::kv_tokens_for_budget(budget, src->config(), plan, o.kv_type, 16, pipeline.max_stage_layers());
    EXPECT_EQ(o.kv_tokens, 16 * 5);
    const Engine e(dir.file("m.gguf"), o);
    uint64_t busiest = 0;
    for (const RankReport& r : e.rank_reports()) busiest = std::max(busiest, r.kv_bytes);
    EXPECT_EQ(busiest, per_token * static_cast<uint64_t>(o.kv_tokens)) << name_of(l);
    EXPECT_LE(busiest, budget);
  }
}

// The planner (tpinfer plan) predicts each rank's weights from the same plans.
TEST(PipelineMemory, WeightBytesPerRankMatchThePlanner) {
  TempDir dir;
  for (const bool tied : {false, true}) {
    SynthSpec s = shape(tied ? Arch::Qwen2 : Arch::Llama, 5, 8, 2, 1001, "q8_0");
    s.tied_embeddings = tied;
    const std::string path = dir.file(tied ? "tied.gguf" : "m.gguf");
    write_synth_model(s, path);
    const planner::ModelShape shape = planner::load_shape(path);
    for (const Layout l : std::vector<Layout>{{1, 2}, {2, 2}, {1, 3}, {4, 2}}) {
      const Engine e(path, options(l));
      const auto loads = planner::rank_loads(shape, l.tp, l.pp);
      for (const RankReport& r : e.rank_reports()) {
        const double predicted =
            static_cast<double>(loads[static_cast<size_t>(r.stage)][static_cast<size_t>(r.tp_rank)].weight_bytes);
        EXPECT_NEAR(predicted / static_cast<double>(r.weight_bytes), 1.0, 0.02)
            << name_of(l) << " stage " << r.stage << " rank " << r.tp_rank << (tied ? " tied" : "");
      }
    }
  }
}

// --- What the driver measures -------------------------------------------------

TEST(PipelineStats, StageTimesBubbleAndTrafficPerDimension) {
  TempDir dir;
  const SynthSpec s = shape(Arch::Llama, 4, 8, 4, 512, "f32");
  write_synth_model(s, dir.file("m.gguf"));
  for (const Layout l : std::vector<Layout>{{1, 1}, {1, 2}, {2, 2}}) {
    Engine e(dir.file("m.gguf"), options(l));
    std::vector<int32_t> table;
    ASSERT_TRUE(e.blocks().reserve(table, 64));
    Batch b;
    b.sequences.push_back({table});
    const int n = 40;
    for (int i = 0; i < n; ++i) {
      b.tokens.push_back(i + 1);
      b.positions.push_back(i);
      b.seq.push_back(0);
      b.want_logits.push_back(i + 1 == n ? 1 : 0);
    }
    e.reset_comm_stats();
    e.step(b);
    const ParallelStats p = e.parallel_stats();
    ASSERT_EQ(p.stage_busy_seconds.size(), static_cast<size_t>(l.pp));
    EXPECT_EQ(p.micro_batches, static_cast<uint64_t>(e.micro_batches()));
    EXPECT_EQ(e.micro_batches(), l.pp);
    for (double busy : p.stage_busy_seconds) {
      EXPECT_GT(busy, 0) << name_of(l);
      // A stage works only while the driver has the micro-batch in flight.
      EXPECT_LE(busy, p.pipeline_seconds * 1.001 + 1e-4) << name_of(l);
    }
    EXPECT_GE(p.bubble_share(), 0);
    EXPECT_LT(p.bubble_share(), 1);
    // Traffic by dimension: tensor-parallel collectives only with tp > 1; the
    // hidden state of every token out to stage 1 and the logits back with pp > 1.
    if (l.tp == 1) { EXPECT_EQ(p.tp[Collective::AllReduce].bytes, 0u); }
    if (l.tp > 1) { EXPECT_GT(p.tp[Collective::AllReduce].bytes, 0u); }
    if (l.pp == 1) {
      EXPECT_EQ(p.pp.total().calls, 0u);
    } else {
      const uint64_t activations = static_cast<uint64_t>(n) * static_cast<uint64_t>(s.hidden) * 4;
      const uint64_t logits = static_cast<uint64_t>(s.vocab) * 4;
      EXPECT_GE(p.pp.total().bytes, activations + logits);
      EXPECT_LT(p.pp.total().bytes, activations + logits + 2048) << "headers, batch words, stage times";
      EXPECT_EQ(p.pp.total().calls, 4u * static_cast<uint64_t>(l.pp)) << "header + payload, out and back, per micro-batch";
      EXPECT_EQ(p.pp[Collective::SendRecv].calls, p.pp.total().calls);
    }
    e.blocks().release(table);
  }
}

// --- The scheduler: one batch per stage in flight -----------------------------

struct Job {
  std::vector<int32_t> prompt;
  int max_tokens;
};

std::vector<Job> jobs(int n, int vocab, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<Job> out;
  for (int i = 0; i < n; ++i) {
    const int len = 2 + static_cast<int>(rng() % 30);
    out.push_back({testing::random_tokens(len, vocab, seed * 100 + static_cast<uint64_t>(i)), 4 + static_cast<int>(rng() % 20)});
  }
  return out;
}

std::vector<int32_t> alone(Engine& engine, const Job& j) {
  SamplingParams p;
  p.temperature = 0;
  GenerateOptions g;
  g.max_tokens = j.max_tokens;
  g.stop_at_eog = false;
  return generate(engine, j.prompt, p, g, [](int32_t) { return true; });
}

struct Outcome {
  std::vector<std::vector<int32_t>> tokens;
  std::vector<FinishReason> reasons;
  SchedulerMetrics metrics;
  int free_blocks = 0;
  int n_blocks = 0;
};

// Runs every job through one scheduler, all submitted at once; `cancel` (job
// index, after that many of its tokens) cancels a job from another's callback.
Outcome together(Engine& engine, const std::vector<Job>& js, SchedulerOptions so, std::pair<int, int> cancel = {-1, 0}) {
  Scheduler sched(engine, so);
  Outcome out;
  out.tokens.resize(js.size());
  out.reasons.resize(js.size(), FinishReason::Error);
  std::vector<uint64_t> ids(js.size(), 0);
  for (size_t i = 0; i < js.size(); ++i) {
    SequenceSpec r;
    r.prompt = js[i].prompt;
    r.max_tokens = js[i].max_tokens;
    r.stop_at_eog = false;
    r.sampling.temperature = 0;
    r.on_token = [&, i](const TokenEvent& ev) {
      out.tokens[i].push_back(ev.token);
      if (cancel.first >= 0 && static_cast<int>(i) != cancel.first && out.tokens[i].size() == 2) {
        sched.cancel(ids[static_cast<size_t>(cancel.first)]);
        cancel.first = -1;
      }
      return true;
    };
    r.on_finish = [&, i](FinishReason why, const std::string&) { out.reasons[i] = why; };
    ids[i] = sched.submit(std::move(r));
  }
  for (int guard = 0; sched.step(); ++guard) {
    if (guard > 100000) {
      ADD_FAILURE() << "the scheduler does not finish";
      break;
    }
  }
  out.metrics = sched.metrics();
  out.free_blocks = engine.blocks().free_blocks();
  out.n_blocks = engine.blocks().n_blocks();
  EXPECT_EQ(engine.in_flight(), 0);
  return out;
}

TEST(PipelineScheduler, RequestsTogetherGiveTheTokensTheyGetAlone) {
  TempDir dir;
  const SynthSpec s = shape(Arch::Llama, 4, 8, 4, 512, "q8_0");
  write_synth_model(s, dir.file("m.gguf"));
  const std::vector<Job> js = jobs(12, s.vocab, 3);
  for (const Layout l : std::vector<Layout>{{1, 2}, {2, 2}, {1, 3}}) {
    std::vector<std::vector<int32_t>> expected;
    {
      EngineOptions o = options({l.tp, 1});
      o.kv_tokens = 1024;
      Engine e(dir.file("m.gguf"), o);
      for (const Job& j : js) expected.push_back(alone(e, j));
    }
    EngineOptions o = options(l);
    o.kv_tokens = 1024;
    Engine e(dir.file("m.gguf"), o);
    SchedulerOptions so;
    so.max_batch_tokens = 48;  // prefill chunks and decode share steps
    const Outcome got = together(e, js, so);
    for (size_t i = 0; i < js.size(); ++i) {
      EXPECT_EQ(got.tokens[i], expected[i]) << name_of(l) << " job " << i;
      EXPECT_EQ(got.reasons[i], FinishReason::Length) << name_of(l) << " job " << i;
    }
    EXPECT_EQ(got.free_blocks, got.n_blocks);
    const ParallelStats p = e.parallel_stats();
    EXPECT_EQ(p.micro_batches, got.metrics.steps);
    // Batches overlap: both stages worked while the pipeline had work.
    for (double busy : p.stage_busy_seconds) EXPECT_GT(busy, 0);
  }
}

TEST(PipelineScheduler, PreemptionAndCancellationWithBatchesInFlight) {
  TempDir dir;
  const SynthSpec s = shape(Arch::Llama, 4, 8, 4, 512, "f32");
  write_synth_model(s, dir.file("m.gguf"));
  const std::vector<Job> js = jobs(10, s.vocab, 8);
  std::vector<std::vector<int32_t>> expected;
  {
    Engine e(dir.file("m.gguf"), options({1, 1}));
    for (const Job& j : js) expected.push_back(alone(e, j));
  }
  EngineOptions o = options({1, 2});
  o.kv_tokens = 96;  // 6 blocks of 16: far fewer than 10 sequences of up to 50 tokens need
  Engine e(dir.file("m.gguf"), o);
  SchedulerOptions so;
  so.max_batch_tokens = 32;
  const Outcome got = together(e, js, so, /*cancel job 4 once another has 2 tokens=*/{4, 2});
  EXPECT_GT(got.metrics.preemptions, 0u) << "the cache must have run out";
  for (size_t i = 0; i < js.size(); ++i) {
    if (i == 4) {
      EXPECT_EQ(got.reasons[i], FinishReason::Cancelled);
      // What it produced before the cancel is its prefix.
      EXPECT_EQ(got.tokens[i], std::vector<int32_t>(expected[i].begin(), expected[i].begin() + got.tokens[i].size()));
      continue;
    }
    EXPECT_EQ(got.tokens[i], expected[i]) << "job " << i;
    EXPECT_EQ(got.reasons[i], FinishReason::Length) << "job " << i;
  }
  EXPECT_EQ(got.free_blocks, got.n_blocks) << "every block back";
}

}  // namespace
}  // namespace tpinfer
