// Shard-local sampling: the sampler reading the ranks' summaries of their
// vocabulary shards gives the very tokens it gives from whole rows, for the
// same seed: on random rows cut into shards (sample and verify, many seeds and
// settings), and on the bible model at TP 1, 2 and 4, with two pipeline
// stages, plain and speculative, and in the scheduler with logprobs. The
// lm_head's bytes fall.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "core/error.h"
#include "engine/engine.h"
#include "engine/generator.h"
#include "engine/sampler.h"
#include "engine/scheduler.h"
#include "parallel/logit_summary.h"
#include "test_util.h"
#include "tokenizer/tokenizer.h"

namespace tpinfer {
namespace {

using Tokens = std::vector<int32_t>;

struct Setting {
  const char* name;
  SamplingParams params;
};

// The settings the tests walk: every one has a summary (top-k, or greedy).
std::vector<Setting> settings() {
  SamplingParams greedy;
  greedy.temperature = 0;
  SamplingParams top_k;
  top_k.temperature = 1.0f;
  top_k.top_k = 40;
  top_k.top_p = 1.0f;
  top_k.min_p = 0.0f;
  SamplingParams top_p = top_k;
  top_p.top_p = 0.9f;
  top_p.temperature = 0.8f;
  SamplingParams min_p = top_k;
  min_p.min_p = 0.1f;
  min_p.temperature = 1.3f;
  SamplingParams penalties = top_p;
  penalties.repeat_penalty = 1.3f;
  penalties.repeat_last_n = 16;
  penalties.presence_penalty = 0.5f;
  penalties.frequency_penalty = 0.3f;
  SamplingParams greedy_penalised = greedy;
  greedy_penalised.repeat_penalty = 1.5f;
  greedy_penalised.frequency_penalty = -0.2f;  // raises the history's tokens
  return {{"greedy", greedy},   {"top-k 40", top_k},      {"top-p 0.9, top-k 40", top_p},
          {"min-p 0.1", min_p}, {"penalties", penalties}, {"greedy, penalties", greedy_penalised}};
}

// `row` cut into shards as `ranks` ranks hold it, each summarised alone.
std::vector<float> summarise(const std::vector<float>& row, int ranks, int top, const PenaltyInputs& p,
                             bool lse = true) {
  const int64_t vocab = static_cast<int64_t>(row.size());
  std::vector<float> out(static_cast<size_t>(ranks * summary_floats(top))), scratch;
  const std::vector<PenaltyInputs> pens{p};
  for (int r = 0; r < ranks; ++r) {
    const int64_t a = vocab * r / ranks, b = vocab * (r + 1) / ranks;
    summarize_shard(row.data() + a, 1, b - a, b - a, a, top, lse, pens, out.data() + r * summary_floats(top), scratch);
  }
  return out;
}

std::vector<float> random_row(int64_t vocab, std::mt19937_64& rng) {
  std::normal_distribution<float> n(0.0f, 3.0f);
  std::vector<float> l(static_cast<size_t>(vocab));
  for (float& x : l) {
    do x = n(rng);
    while (x == 0.0f);
  }
  return l;
}

TEST(ShardSampling, SampleAndVerifyFromSummariesEqualWholeRows) {
  std::mt19937_64 rng(7);
  const int64_t vocab = 1000;
  for (const Setting& s : settings()) {
    for (int ranks : {1, 2, 4}) {
      SCOPED_TRACE(cat(s.name, ", ", ranks, " ranks"));
      Sampler whole(s.params), shard(s.params);
      const int top = whole.summary_top();
      ASSERT_GT(top, 0);
      Tokens history{1, 5, 5, 9, 700, 999, 3};
      for (int i = 0; i < 300; ++i) {
        const std::vector<float> row = random_row(vocab, rng);
        const std::vector<float> sums = summarise(row, ranks, top, shard.penalties(history), i % 4 < 2);
        LogitRow summary;
        summary.summaries = sums.data();
        summary.ranks = ranks;
        summary.top = top;
        std::vector<float> full = row;
        if (i % 2 == 0) {
          const int32_t t = whole.sample(full, history);
          ASSERT_EQ(shard.sample(summary, history), t) << "draw " << i;
          history.push_back(t);
        } else {
          // A proposal that is often the best, sometimes not.
          const int32_t proposed = i % 3 == 0 ? argmax(row) : static_cast<int32_t>(rng() % vocab);
          const Verdict a = whole.verify(full, history, proposed);
          const Verdict b = shard.verify(summary, history, proposed);
          ASSERT_EQ(b.accepted, a.accepted) << "draw " << i;
          ASSERT_EQ(b.token, a.token) << "draw " << i;
          history.push_back(a.token);
        }
      }
    }
  }
}

TEST(ShardSampling, ARequestWithAWholeRowAsksForWholeRows) {
  SamplingParams p;
  p.temperature = 0;
  p.repeat_penalty = 1.2f;
  SummaryRequest r;
  r.add(Sampler(p), Tokens{3, 4}, 2);
  EXPECT_EQ(r.wanted(), 2);
  r.add_whole();
  EXPECT_EQ(r.wanted(), 0);
  Batch b;
  r.fill(b, 0);
  EXPECT_EQ(b.logit_top, 0);
  EXPECT_TRUE(b.penalties.empty());
  // Summaries: one penalty row per logits row, the whole one's empty.
  SummaryRequest s;
  s.add(Sampler(p), Tokens{3, 4}, 2);
  s.add(Sampler(SamplingParams{}), Tokens{5});
  s.fill(b, 40);
  EXPECT_EQ(b.logit_top, 40);
  EXPECT_TRUE(b.logit_lse);
  ASSERT_EQ(b.penalties.size(), 2u);
  EXPECT_EQ(b.penalties[0].tokens.size(), 2u);
  EXPECT_TRUE(b.penalties[1].empty());
}

TEST(ShardSampling, SummaryTopSaysWhichSettingsNeedWholeRows) {
  SamplingParams p;
  p.temperature = 0;
  EXPECT_EQ(Sampler(p).summary_top(), 1);
  EXPECT_EQ(Sampler(p).summary_top(5), 5);  // logprobs of 5 alternatives
  p.temperature = 0.7f;
  p.top_k = 40;
  EXPECT_EQ(Sampler(p).summary_top(), 40);
  p.top_k = 0;  // top-p / min-p over the whole vocabulary: whole rows
  EXPECT_EQ(Sampler(p).summary_top(), 0);
  EXPECT_EQ(Sampler(p).summary_top(5), 0);
  // A summarised row without enough candidates is an error, not a wrong token.
  p.top_k = 50;
  std::vector<float> sums = summarise(std::vector<float>(100, 1.5f), 2, 40, {});
  LogitRow row;
  row.summaries = sums.data();
  row.ranks = 2;
  row.top = 40;
  Sampler s(p);
  EXPECT_THROW(s.sample(row, {}), Error);
}

std::string bible() { return testing::shared_dir() + "/models/bible/bible-q8_0.gguf"; }

struct GenRun {
  Tokens tokens;
  GenerationStats stats;
};

GenRun generate_with(SamplingGather gather, int tp, int pp, const SamplingParams& params, const Tokens& prompt, int n,
                     Speculation spec = Speculation::None) {
  EngineOptions o = testing::f32_options(tp);
  o.parallel.pp = pp;
  o.kv_type = DType::F16;
  o.kv_tokens = 256;
  o.sampling_gather = gather;
  Engine engine(bible(), o);
  GenerateOptions g;
  g.max_tokens = n;
  g.stop_at_eog = false;
  g.speculative.method = spec;
  g.speculative.k = 4;
  GenRun r;
  r.tokens = generate(
      engine, prompt, params, g, [](int32_t) { return true; }, &r.stats);
  return r;
}

// The test: the same seed gives the same tokens with the ranks'
// summaries as with the full gather, at TP 1, 2 and 4, over greedy, top-k,
// top-p, min-p and penalties; and the decode moves fewer bytes.
TEST(ShardSampling, BibleTokensEqualFullGatherAtEveryTp) {
  const std::unique_ptr<Tokenizer> tok = Tokenizer::open(bible());
  const Tokens prompt = tok->encode("And it came to pass, when the king heard", true, false);
  for (const int tp : {1, 2, 4}) {
    for (const Setting& s : settings()) {
      SCOPED_TRACE(cat("tp ", tp, ", ", s.name));
      const GenRun full = generate_with(SamplingGather::Full, tp, 1, s.params, prompt, 24);
      const GenRun shard = generate_with(SamplingGather::Shard, tp, 1, s.params, prompt, 24);
      EXPECT_EQ(shard.tokens, full.tokens);
      if (tp > 1) {
        // Per decode token each rank sends 4096 / tp logits whole, 2 + 2 top in a summary.
        EXPECT_LT(shard.stats.decode_comm.total().bytes, full.stats.decode_comm.total().bytes);
      }
    }
  }
}

// Speculative verification over summaries (several rows of one sequence,
// each with its own penalties) and two pipeline stages (the last stage sends
// the summaries to the driver).
TEST(ShardSampling, BibleSpeculativeAndPipelineEqualFullGather) {
  const std::unique_ptr<Tokenizer> tok = Tokenizer::open(bible());
  const std::string verse = "In the beginning God created the heaven and the earth. And the earth was without form";
  const Tokens prompt = tok->encode(verse + "\n" + verse.substr(0, 30), true, false);
  for (const Setting& s : settings()) {
    for (const int tp : {2, 4}) {
      SCOPED_TRACE(cat("speculative, tp ", tp, ", ", s.name));
      const GenRun full = generate_with(SamplingGather::Full, tp, 1, s.params, prompt, 24, Speculation::Ngram);
      const GenRun shard = generate_with(SamplingGather::Shard, tp, 1, s.params, prompt, 24, Speculation::Ngram);
      EXPECT_EQ(shard.tokens, full.tokens);
      EXPECT_EQ(shard.stats.accepted_tokens, full.stats.accepted_tokens);
    }
    SCOPED_TRACE(cat("tp 2 pp 2, ", s.name));
    const GenRun full = generate_with(SamplingGather::Full, 2, 2, s.params, prompt, 16);
    const GenRun shard = generate_with(SamplingGather::Shard, 2, 2, s.params, prompt, 16);
    EXPECT_EQ(shard.tokens, full.tokens);
    EXPECT_LT(shard.stats.decode_parallel.pp.total().bytes, full.stats.decode_parallel.pp.total().bytes);
  }
}

// The scheduler: several sequences in one batch with different settings (one
// of them needs whole rows for a while: the batch then comes whole), tokens
// and logprobs as with the full gather.
TEST(ShardSampling, SchedulerTokensAndLogprobsEqualFullGather) {
  const std::unique_ptr<Tokenizer> tok = Tokenizer::open(bible());
  struct Out {
    Tokens tokens;
    std::vector<float> logprobs;
    std::vector<std::vector<std::pair<int32_t, float>>> top;
  };
  auto run = [&](SamplingGather gather, bool with_whole_row_sequence) {
    EngineOptions o = testing::f32_options(2);
    o.kv_type = DType::F16;
    o.kv_tokens = 1024;
    o.sampling_gather = gather;
    Engine engine(bible(), o);
    Scheduler sched(engine, SchedulerOptions{});
    std::vector<Setting> all = settings();
    if (with_whole_row_sequence) {
      SamplingParams no_top_k;
      no_top_k.top_k = 0;
      all.push_back({"no top-k", no_top_k});
    }
    std::vector<Out> outs(all.size());
    for (size_t i = 0; i < all.size(); ++i) {
      SequenceSpec spec;
      spec.prompt = tok->encode(i % 2 ? "And the LORD spake unto Moses, saying" : "Blessed are the", true, false);
      spec.sampling = all[i].params;
      spec.sampling.seed = 100 + i;
      spec.max_tokens = 12 + static_cast<int>(i);
      spec.stop_at_eog = false;
      spec.top_logprobs = 3;
      Out* out = &outs[i];
      spec.on_token = [out](const TokenEvent& ev) {
        out->tokens.push_back(ev.token);
        out->logprobs.push_back(ev.logprob);
        out->top.push_back(ev.top_logprobs);
        return true;
      };
      sched.submit(std::move(spec));
    }
    while (sched.step()) {
    }
    return outs;
  };
  for (const bool mixed : {false, true}) {
    SCOPED_TRACE(mixed ? "with a sequence that needs whole rows" : "every sequence summarised");
    const std::vector<Out> full = run(SamplingGather::Full, mixed);
    const std::vector<Out> shard = run(SamplingGather::Shard, mixed);
    ASSERT_EQ(full.size(), shard.size());
    for (size_t i = 0; i < full.size(); ++i) {
      EXPECT_EQ(shard[i].tokens, full[i].tokens) << "sequence " << i;
      ASSERT_EQ(shard[i].logprobs.size(), full[i].logprobs.size());
      for (size_t t = 0; t < full[i].logprobs.size(); ++t) {
        EXPECT_NEAR(shard[i].logprobs[t], full[i].logprobs[t], 1e-4) << "sequence " << i << " token " << t;
        ASSERT_EQ(shard[i].top[t].size(), 3u);
        for (size_t j = 0; j < 3; ++j) {
          EXPECT_EQ(shard[i].top[t][j].first, full[i].top[t][j].first);
          EXPECT_NEAR(shard[i].top[t][j].second, full[i].top[t][j].second, 1e-4);
        }
      }
    }
  }
}

}  // namespace
}  // namespace tpinfer
