// Speculative decoding under continuous batching (engine/scheduler.h): 16
// sequences of the bible model decoding together, each accepting its own
// number of guesses per step, give the tokens and logprobs of the same
// sequences without speculation, for both proposers, at tp 1, 2 and pp 2,
// with the prefix cache sharing prompts and with a KV cache so small that
// sequences are preempted. Then the per-sequence k, its bounds, and the
// counters behind /metrics.
#include <gtest/gtest.h>

#include <cmath>

#include "core/error.h"
#include "engine/scheduler.h"
#include "formats/layer_cut.h"
#include "test_util.h"

namespace tpinfer {
namespace {

using Tokens = std::vector<int32_t>;

std::string bible(const std::string& name) { return testing::shared_dir() + "/models/bible/" + name; }

struct Out {
  std::vector<int32_t> tokens;
  std::vector<float> logprobs;  // the chosen token's, then the top 2
  FinishReason reason = FinishReason::Error;
};

SequenceSpec greedy(std::vector<int32_t> prompt, int max_tokens, Out& out, int k = -1) {
  SequenceSpec r;
  r.prompt = std::move(prompt);
  r.max_tokens = max_tokens;
  r.stop_at_eog = false;
  r.sampling.temperature = 0;
  r.top_logprobs = 2;
  r.speculative_tokens = k;
  r.on_token = [&out](const TokenEvent& ev) {
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

// 16 prompts: verses followed by their own beginnings (the continuation
// quotes them), plain openings (free generation), and two copies of one
// prompt (the prefix cache shares its blocks).
std::vector<Tokens> prompts(const Tokenizer& tok) {
  const std::vector<std::string> verses = {
      "In the beginning God created the heaven and the earth. And the earth was without form, and void.",
      "And God said, Let there be light: and there was light. And God saw the light, that it was good.",
      "The LORD is my shepherd; I shall not want. He maketh me to lie down in green pastures.",
      "For God so loved the world, that he gave his only begotten Son, that whosoever believeth in him.",
      "Blessed are the poor in spirit: for theirs is the kingdom of heaven. Blessed are they that mourn.",
      "And it came to pass in those days, that there went out a decree from Caesar Augustus.",
  };
  std::vector<Tokens> p;
  for (const std::string& v : verses) p.push_back(tok.encode(v + "\n" + v.substr(0, 30), true, false));
  for (const char* open : {"And Jesus answered and said unto them,", "Then said the LORD unto Moses,",
                           "And the king said,", "Now the serpent was more subtil", "And David said to Saul,",
                           "Hear, O Israel:", "And Abraham rose up early", "Woe unto you,"}) {
    p.push_back(tok.encode(open, true, false));
  }
  p.push_back(p[0]);
  p.push_back(p[6]);
  return p;
}

struct Result {
  std::vector<Out> outs;
  SchedulerMetrics metrics;
};

Result run_all(Engine& engine, const std::vector<Tokens>& ps, const SpeculativeOptions& spec, int max_tokens = 32) {
  SchedulerOptions so;
  so.max_num_seqs = 16;
  so.max_batch_tokens = 256;
  so.speculative = spec;
  Scheduler sched(engine, so);
  Result r;
  r.outs.resize(ps.size());
  for (size_t i = 0; i < ps.size(); ++i) sched.submit(greedy(ps[i], max_tokens, r.outs[i]));
  run_until_idle(sched);
  r.metrics = sched.metrics();
  return r;
}

void expect_same(const Result& spec, const Result& plain, const std::string& what) {
  ASSERT_EQ(spec.outs.size(), plain.outs.size());
  for (size_t i = 0; i < spec.outs.size(); ++i) {
    EXPECT_EQ(spec.outs[i].tokens, plain.outs[i].tokens) << what << " sequence " << i;
    ASSERT_EQ(spec.outs[i].logprobs.size(), plain.outs[i].logprobs.size()) << what << " sequence " << i;
    for (size_t j = 0; j < spec.outs[i].logprobs.size(); ++j) {
      EXPECT_NEAR(spec.outs[i].logprobs[j], plain.outs[i].logprobs[j], 1e-4) << what << " sequence " << i;
    }
    EXPECT_EQ(spec.outs[i].reason, FinishReason::Length) << what << " sequence " << i;
  }
}

// Every token delivered came from a step: one per sequence step, plus every
// accepted guess.
void expect_counts_add_up(const Result& r) {
  EXPECT_EQ(r.metrics.generated_tokens, r.metrics.decode_steps + r.metrics.spec_accepted_tokens);
  EXPECT_LE(r.metrics.spec_accepted_tokens, r.metrics.spec_draft_tokens);
}

EngineOptions options(int tp, int pp, int64_t kv_tokens = 4096) {
  EngineOptions o = testing::f32_options(tp);
  o.parallel.pp = pp;
  o.kv_type = DType::F16;
  o.kv_tokens = kv_tokens;
  return o;
}

TEST(SpeculativeScheduler, SixteenStreamsGreedyEqualWithoutForBothProposers) {
  const std::unique_ptr<Tokenizer> tok = Tokenizer::open(bible("bible-q8_0.gguf"));
  const std::vector<Tokens> ps = prompts(*tok);
  testing::TempDir dir;
  cut_gguf_layers(bible("bible-q8_0.gguf"), 2, dir.file("cut.gguf"));
  EngineOptions d;
  d.comm = CommBackend::Local;
  d.pin_threads = false;
  d.kv_tokens = 4096;
  Engine draft(dir.file("cut.gguf"), d);
  struct Layout {
    int tp, pp;
  };
  for (const Layout l : {Layout{1, 1}, Layout{2, 1}, Layout{1, 2}}) {
    Engine engine(bible("bible-q8_0.gguf"), options(l.tp, l.pp));
    const Result plain = run_all(engine, ps, {});
    SpeculativeOptions ngram;
    ngram.method = Speculation::Ngram;
    ngram.k = 4;
    SpeculativeOptions drafted;
    drafted.method = Speculation::Draft;
    drafted.k = 3;
    drafted.draft = &draft;
    for (const SpeculativeOptions& spec : {ngram, drafted}) {
      const std::string what = cat("tp ", l.tp, " pp ", l.pp, " ", name(spec.method));
      const Result r = run_all(engine, ps, spec);
      expect_same(r, plain, what);
      expect_counts_add_up(r);
      EXPECT_LT(r.metrics.decode_steps, plain.metrics.decode_steps) << what << ": no guess was ever accepted";
      EXPECT_GT(r.metrics.spec_drafts, 0u) << what;
      // Every draft KV block is back once the sequences are done.
      EXPECT_EQ(draft.blocks().free_blocks() + draft.blocks().cached_blocks(), draft.blocks().n_blocks()) << what;
    }
    EXPECT_EQ(plain.metrics.spec_drafts, 0u);
    EXPECT_EQ(plain.metrics.decode_steps, plain.metrics.generated_tokens);
  }
}

// A cache of 12 blocks of 16 tokens for 16 sequences of up to ~60 tokens:
// sequences are preempted and recomputed while others speculate, and guesses
// take only free blocks.
TEST(SpeculativeScheduler, PreemptionUnderATightCacheKeepsTheTokens) {
  const std::unique_ptr<Tokenizer> tok = Tokenizer::open(bible("bible-q8_0.gguf"));
  const std::vector<Tokens> ps = prompts(*tok);
  Engine engine(bible("bible-q8_0.gguf"), options(1, 1, 12 * 16));
  SpeculativeOptions ngram;
  ngram.method = Speculation::Ngram;
  ngram.k = 6;
  const Result plain = run_all(engine, ps, {}, 24);
  const Result r = run_all(engine, ps, ngram, 24);
  expect_same(r, plain, "tight cache");
  expect_counts_add_up(r);
  EXPECT_GT(r.metrics.preemptions, 0u) << "the cache was meant to be too small for every sequence at once";
}

// A sequence's own k: 0 turns speculation off for it, the bounds are checked
// at submit.
TEST(SpeculativeScheduler, PerSequenceTokensAndTheirBounds) {
  const std::unique_ptr<Tokenizer> tok = Tokenizer::open(bible("bible-q8_0.gguf"));
  const std::vector<Tokens> ps = prompts(*tok);
  Engine engine(bible("bible-q8_0.gguf"), options(1, 1));
  SchedulerOptions so;
  so.speculative.method = Speculation::Ngram;
  so.speculative.k = 4;
  Scheduler sched(engine, so);
  Out off, on;
  sched.submit(greedy(ps[0], 24, off, 0));
  run_until_idle(sched);
  EXPECT_EQ(sched.metrics().spec_drafts, 0u);
  sched.submit(greedy(ps[0], 24, on, 8));
  run_until_idle(sched);
  EXPECT_GT(sched.metrics().spec_drafts, 0u);
  EXPECT_EQ(on.tokens, off.tokens);
  Out bad;
  EXPECT_THROW(sched.submit(greedy(ps[0], 8, bad, kMaxSpeculativeTokens + 1)), Error);
  EXPECT_THROW(sched.submit(greedy(ps[0], 8, bad, -2)), Error);
}

}  // namespace
}  // namespace tpinfer
