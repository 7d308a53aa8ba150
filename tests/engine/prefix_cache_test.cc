// Prefix caching through the scheduler: what a sequence finds in the cache it
// does not compute, and nothing else changes. Every scenario runs on an engine
// with the cache and on one without, and the tokens and their logprobs must be
// equal bit for bit: multi-turn conversations, a system prompt shared by
// requests arriving together, n copies of one prompt, prompts sharing a
// partial block, at tp 1, tp 2 and pp 2. Then the cache under pressure:
// sequences submitted while others stream through a cache too small for them
// all, cancelled sequences, and the counters.
#include <gtest/gtest.h>

#include <functional>
#include <random>

#include "engine/generator.h"
#include "engine/scheduler.h"
#include "test_util.h"

namespace tpinfer {
namespace {

using testing::TempDir;

constexpr int kBlock = 16;

struct Layout {
  int tp;
  int pp;
};

std::string name_of(const ::testing::TestParamInfo<Layout>& info) {
  return "tp" + std::to_string(info.param.tp) + "xpp" + std::to_string(info.param.pp);
}

SynthSpec model_spec() {
  SynthSpec s = testing::small_spec(Arch::Llama);
  s.layers = 4;
  s.heads = 8;
  s.kv_heads = 4;
  s.hidden = 256;
  s.ffn = 512;
  s.vocab = 512;
  s.context = 1024;
  s.dtype = DType::Q8_0;
  s.seed = 41;
  return s;
}

EngineOptions engine_options(Layout l, int64_t kv_tokens = 4096) {
  EngineOptions o = testing::f32_options(l.tp);
  o.parallel.pp = l.pp;
  o.kv_type = DType::F16;
  o.kv_block_size = kBlock;
  o.kv_tokens = kv_tokens;
  return o;
}

// What one sequence produced.
struct Out {
  std::vector<int32_t> tokens;
  std::vector<float> logprobs;  // of each chosen token: the logits, bit for bit
  FinishReason reason = FinishReason::Error;
  int cached = -1;  // cached_prompt_tokens of its first token
};

SequenceSpec greedy(std::vector<int32_t> prompt, int max_tokens, Out& out) {
  SequenceSpec r;
  r.prompt = std::move(prompt);
  r.max_tokens = max_tokens;
  r.stop_at_eog = false;
  r.sampling.temperature = 0;
  r.top_logprobs = 2;
  r.on_token = [&out](const TokenEvent& ev) {
    if (out.tokens.empty()) out.cached = ev.cached_prompt_tokens;
    out.tokens.push_back(ev.token);
    out.logprobs.push_back(ev.logprob);
    for (const auto& [id, lp] : ev.top_logprobs) out.logprobs.push_back(lp);
    return true;
  };
  r.on_finish = [&out](FinishReason why, const std::string&) { out.reason = why; };
  return r;
}

void run_until_idle(Scheduler& sched) {
  for (int guard = 0; sched.step(); ++guard) {
    if (guard > 100000) {
      ADD_FAILURE() << "the scheduler does not finish";
      return;
    }
  }
}

// Submits every prompt at once and runs them to the end.
std::vector<Out> together(Scheduler& sched, const std::vector<std::vector<int32_t>>& prompts, int max_tokens) {
  std::vector<Out> outs(prompts.size());
  for (size_t i = 0; i < prompts.size(); ++i) sched.submit(greedy(prompts[i], max_tokens, outs[i]));
  run_until_idle(sched);
  return outs;
}

std::vector<int32_t> concat(std::vector<int32_t> a, const std::vector<int32_t>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

// Tokens [0, n) of the prompt computed before `prompt` (the last sampled
// token never is): the full blocks of the shorter, short of the last token.
int expected_hit(int64_t computed_before, int64_t prompt) {
  return static_cast<int>(std::min(computed_before / kBlock, (prompt - 1) / kBlock) * kBlock);
}

class PrefixCache : public ::testing::TestWithParam<Layout> {
 protected:
  void SetUp() override { write_synth_model(spec_, dir_.file("m.gguf")); }
  std::string model() const { return dir_.file("m.gguf"); }
  SchedulerOptions options(bool caching) const {
    SchedulerOptions so;
    so.max_batch_tokens = 96;  // long prompts take several steps
    so.prefix_caching = caching;
    return so;
  }
  TempDir dir_;
  SynthSpec spec_ = model_spec();
};

void expect_same(const std::vector<Out>& hot, const std::vector<Out>& cold, const std::string& what) {
  ASSERT_EQ(hot.size(), cold.size());
  for (size_t i = 0; i < hot.size(); ++i) {
    EXPECT_EQ(hot[i].tokens, cold[i].tokens) << what << " sequence " << i;
    EXPECT_EQ(hot[i].logprobs, cold[i].logprobs) << what << " sequence " << i << ": logits not bit-identical";
    EXPECT_EQ(hot[i].reason, FinishReason::Length) << what << " sequence " << i;
  }
}

// Four conversations of three turns over a shared system prompt: each turn
// is the whole conversation so far plus a new user message.
TEST_P(PrefixCache, MultiTurnConversationsEqualTheirColdRuns) {
  const int conversations = 4, turns = 3, reply = 6;
  const std::vector<int32_t> system = testing::random_tokens(40, spec_.vocab, 1);
  Engine hot_engine(model(), engine_options(GetParam()));
  Engine cold_engine(model(), engine_options(GetParam()));
  Scheduler hot(hot_engine, options(true));
  Scheduler cold(cold_engine, options(false));
  std::vector<std::vector<int32_t>> history(conversations, system);
  std::vector<int64_t> computed(conversations, 0);
  for (int t = 0; t < turns; ++t) {
    std::vector<std::vector<int32_t>> prompts;
    for (int c = 0; c < conversations; ++c) {
      const int len = 5 + (c * 7 + t * 3) % 17;
      prompts.push_back(concat(history[static_cast<size_t>(c)],
                               testing::random_tokens(len, spec_.vocab, static_cast<uint64_t>(100 + c * 10 + t))));
    }
    const std::vector<Out> h = together(hot, prompts, reply);
    const std::vector<Out> k = together(cold, prompts, reply);
    expect_same(h, k, "turn " + std::to_string(t));
    for (int c = 0; c < conversations; ++c) {
      const size_t ci = static_cast<size_t>(c);
      const int64_t n = static_cast<int64_t>(prompts[ci].size());
      // Turn 0: the first conversation computes the system prompt, the others
      // wait for it and take its full blocks. Later turns: the whole history.
      const int want = t == 0 ? (c == 0 ? 0 : expected_hit(40, n)) : expected_hit(computed[ci], n);
      EXPECT_EQ(h[ci].cached, want) << "turn " << t << " conversation " << c;
      EXPECT_EQ(k[ci].cached, 0);
      history[ci] = concat(prompts[ci], h[ci].tokens);
      computed[ci] = n + reply - 1;
    }
  }
  const SchedulerMetrics m = hot.metrics();
  EXPECT_GT(m.prefix_cache_hits, 0u);
  EXPECT_GT(m.prefix_cache_queries, m.prefix_cache_hits);
  EXPECT_GT(m.prefix_cache_blocks, 0);
  EXPECT_EQ(cold.metrics().prefix_cache_hits, 0u);
  EXPECT_LT(m.prompt_tokens, cold.metrics().prompt_tokens);
  EXPECT_EQ(m.prompt_tokens + m.prefix_cache_hits, cold.metrics().prompt_tokens) << "a token is computed or found";
  EXPECT_EQ(hot_engine.blocks().used_blocks(), 0);
  EXPECT_EQ(cold_engine.blocks().used_blocks(), 0);
}

// n copies of one prompt submitted together (a request's n choices): one
// computes the prompt, the others wait and take its blocks.
TEST_P(PrefixCache, NCopiesOfAPromptComputeItOnce) {
  const std::vector<int32_t> prompt = testing::random_tokens(150, spec_.vocab, 7);
  const std::vector<std::vector<int32_t>> prompts(4, prompt);
  Engine hot_engine(model(), engine_options(GetParam()));
  Engine cold_engine(model(), engine_options(GetParam()));
  Scheduler hot(hot_engine, options(true));
  Scheduler cold(cold_engine, options(false));
  const std::vector<Out> h = together(hot, prompts, 5);
  const std::vector<Out> k = together(cold, prompts, 5);
  expect_same(h, k, "n=4");
  const int shared = 149 / kBlock * kBlock;  // 144: the last token is computed by each
  EXPECT_EQ(h[0].cached, 0);
  for (size_t i = 1; i < 4; ++i) EXPECT_EQ(h[i].cached, shared) << "copy " << i;
  EXPECT_EQ(hot.metrics().prompt_tokens, 150u + 3u * (150u - shared));
  EXPECT_EQ(cold.metrics().prompt_tokens, 4u * 150u);
}

// Prompts sharing a block and a half: the full block is reused, the partial
// one computed by each into its own block; a prompt that is all full blocks
// and all cached still computes its last token (into a block of its own).
TEST_P(PrefixCache, PromptsSharingAPartialBlock) {
  const std::vector<int32_t> base = testing::random_tokens(24, spec_.vocab, 9);  // 1.5 blocks
  const std::vector<int32_t> a = concat(base, testing::random_tokens(10, spec_.vocab, 10));
  const std::vector<int32_t> b = concat(base, testing::random_tokens(13, spec_.vocab, 11));
  const std::vector<int32_t> whole = testing::random_tokens(2 * kBlock, spec_.vocab, 12);
  Engine hot_engine(model(), engine_options(GetParam()));
  Engine cold_engine(model(), engine_options(GetParam()));
  Scheduler hot(hot_engine, options(true));
  Scheduler cold(cold_engine, options(false));
  std::vector<Out> h, k;
  for (const auto& p : {a, b, whole, whole}) {
    h.push_back(together(hot, {p}, 8)[0]);
    k.push_back(together(cold, {p}, 8)[0]);
  }
  expect_same(h, k, "partial blocks");
  EXPECT_EQ(h[0].cached, 0);
  EXPECT_EQ(h[1].cached, kBlock) << "the full block of the shared 24 tokens";
  EXPECT_EQ(h[2].cached, 0);
  EXPECT_EQ(h[3].cached, kBlock) << "the second block holds the last prompt token, which is computed again";
  EXPECT_EQ(hot_engine.blocks().used_blocks(), 0);
}

INSTANTIATE_TEST_SUITE_P(Layouts, PrefixCache, ::testing::Values(Layout{1, 1}, Layout{2, 1}, Layout{1, 2}), name_of);

// The greedy tokens of `prompt` from a plain generate() on an engine without
// a scheduler: the reference for runs under pressure.
std::vector<int32_t> alone(Engine& engine, const std::vector<int32_t>& prompt, int n) {
  SamplingParams p;
  p.temperature = 0;
  GenerateOptions g;
  g.max_tokens = n;
  g.stop_at_eog = false;
  return generate(engine, prompt, p, g, [](int32_t) { return true; });
}

// A cache too small for what runs: new sequences sharing prefixes arrive as
// others finish, while streams run, so cached blocks are evicted to make room
// again and again (and sequences preempted). Were a block that a sequence
// holds ever evicted and overwritten, its tokens would change.
TEST(PrefixCacheEviction, ASmallCacheEvictsOnlyBlocksNobodyHolds) {
  TempDir dir;
  const SynthSpec spec = model_spec();
  write_synth_model(spec, dir.file("m.gguf"));
  for (const Layout l : {Layout{1, 1}, Layout{1, 2}}) {
    Engine cold(dir.file("m.gguf"), engine_options({1, 1}));
    Engine hot(dir.file("m.gguf"), engine_options(l, 12 * kBlock));  // 12 blocks
    std::vector<std::vector<int32_t>> prefixes;
    for (int i = 0; i < 2; ++i) {
      prefixes.push_back(testing::random_tokens(36, spec.vocab, 200 + static_cast<uint64_t>(i)));
    }
    // Two prefixes over three running sequences: a sequence that finishes
    // leaves shared blocks that another still holds.
    std::vector<std::vector<int32_t>> prompts;
    for (int i = 0; i < 14; ++i) {
      prompts.push_back(concat(prefixes[static_cast<size_t>(i % 2)],
                               testing::random_tokens(3 + i % 5, spec.vocab, 300 + static_cast<uint64_t>(i))));
    }
    const int max_tokens = 12;
    SchedulerOptions so;
    so.max_num_seqs = 3;
    so.max_batch_tokens = 32;
    Scheduler sched(hot, so);
    std::vector<Out> outs(prompts.size());
    size_t next = 0;
    std::function<void()> submit_next = [&] {
      if (next >= prompts.size()) return;
      const size_t i = next++;
      SequenceSpec r = greedy(prompts[i], max_tokens, outs[i]);
      auto finish = r.on_finish;
      r.on_finish = [&, finish](FinishReason why, const std::string& e) {
        finish(why, e);
        submit_next();  // the next arrives as this one leaves, while the others stream
      };
      sched.submit(std::move(r));
    };
    for (int i = 0; i < 4; ++i) submit_next();
    run_until_idle(sched);
    ASSERT_EQ(next, prompts.size());
    for (size_t i = 0; i < prompts.size(); ++i) {
      EXPECT_EQ(outs[i].tokens, alone(cold, prompts[i], max_tokens)) << "tp1xpp" << l.pp << " sequence " << i;
      EXPECT_EQ(outs[i].reason, FinishReason::Length);
    }
    const SchedulerMetrics m = sched.metrics();
    EXPECT_GT(m.prefix_cache_evictions, 0u) << "the cache must have run out";
    EXPECT_GT(m.prefix_cache_hits, 0u);
    EXPECT_EQ(hot.blocks().used_blocks(), 0);
    EXPECT_EQ(hot.blocks().free_blocks(), hot.blocks().n_blocks());
  }
}

// A cancelled sequence gives its blocks back, whether it was computing a
// prefix, waiting for one, or holding shared blocks; the others go on.
TEST(PrefixCacheCancel, CancelledSequencesReturnTheirBlocks) {
  TempDir dir;
  const SynthSpec spec = model_spec();
  write_synth_model(spec, dir.file("m.gguf"));
  Engine cold(dir.file("m.gguf"), engine_options({1, 1}));
  Engine hot(dir.file("m.gguf"), engine_options({1, 1}));
  const std::vector<int32_t> prefix = testing::random_tokens(70, spec.vocab, 400);
  std::vector<std::vector<int32_t>> prompts;
  for (int i = 0; i < 5; ++i)
    prompts.push_back(concat(prefix, testing::random_tokens(4 + i, spec.vocab, 410 + static_cast<uint64_t>(i))));
  SchedulerOptions so;
  so.max_batch_tokens = 32;  // the prefix takes a few steps; the others wait for it
  Scheduler sched(hot, so);
  std::vector<Out> outs(prompts.size());
  std::vector<uint64_t> ids;
  for (size_t i = 0; i < prompts.size(); ++i) ids.push_back(sched.submit(greedy(prompts[i], 10, outs[i])));
  // Job 4 is cancelled while it waits for the prefix; job 0 (computing it)
  // after its first token; job 2 (holding shared blocks) after its third.
  sched.cancel(ids[4]);
  sched.step();
  int guard = 0;
  bool cancelled_0 = false, cancelled_2 = false;
  while (sched.step() && ++guard < 100000) {
    if (!cancelled_0 && !outs[0].tokens.empty()) {
      sched.cancel(ids[0]);
      cancelled_0 = true;
    }
    if (!cancelled_2 && outs[2].tokens.size() >= 3) {
      sched.cancel(ids[2]);
      cancelled_2 = true;
    }
  }
  EXPECT_EQ(outs[4].reason, FinishReason::Cancelled);
  EXPECT_TRUE(outs[4].tokens.empty());
  for (size_t i : {size_t{0}, size_t{2}}) {
    EXPECT_EQ(outs[i].reason, FinishReason::Cancelled) << i;
    const std::vector<int32_t> full = alone(cold, prompts[i], 10);
    EXPECT_EQ(outs[i].tokens,
              std::vector<int32_t>(full.begin(), full.begin() + static_cast<std::ptrdiff_t>(outs[i].tokens.size())));
  }
  for (size_t i : {size_t{1}, size_t{3}}) {
    EXPECT_EQ(outs[i].reason, FinishReason::Length) << i;
    EXPECT_EQ(outs[i].tokens, alone(cold, prompts[i], 10)) << i;
    EXPECT_EQ(outs[i].cached, 64) << i;
  }
  EXPECT_EQ(hot.blocks().used_blocks(), 0);
  EXPECT_EQ(hot.blocks().free_blocks(), hot.blocks().n_blocks());
  EXPECT_EQ(sched.metrics().kv_blocks_used, 0);
}

// Without prefix caching nothing is looked up or kept.
TEST(PrefixCacheOff, NothingIsLookedUpOrCached) {
  TempDir dir;
  const SynthSpec spec = model_spec();
  write_synth_model(spec, dir.file("m.gguf"));
  Engine e(dir.file("m.gguf"), engine_options({1, 1}));
  SchedulerOptions so;
  so.prefix_caching = false;
  Scheduler sched(e, so);
  const std::vector<int32_t> p = testing::random_tokens(50, spec.vocab, 5);
  const std::vector<Out> outs = together(sched, {p, p}, 4);
  EXPECT_EQ(outs[0].cached, 0);
  EXPECT_EQ(outs[1].cached, 0);
  EXPECT_EQ(outs[0].tokens, outs[1].tokens);
  const SchedulerMetrics m = sched.metrics();
  EXPECT_EQ(m.prefix_cache_queries, 0u);
  EXPECT_EQ(m.prefix_cache_blocks, 0);
  EXPECT_EQ(m.prompt_tokens, 100u);
  EXPECT_EQ(sched.prefix_match(p), 0);
}

}  // namespace
}  // namespace tpinfer
