// Speculative decoding: the n-gram proposer, the sampler's verification rule
// (the tokens that come out are distributed exactly as without speculation:
// a chi-square test over many seeded draws), and greedy generation on the
// bible model, token for token the same with and without speculation at
// TP 1, 2 and 4 and with two pipeline stages.
#include "engine/speculative.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "core/error.h"
#include "engine/engine.h"
#include "engine/generator.h"
#include "engine/sampler.h"
#include "formats/layer_cut.h"
#include "model/synth.h"
#include "test_util.h"
#include "tokenizer/tokenizer.h"

namespace tpinfer {
namespace {

using Tokens = std::vector<int32_t>;

TEST(NgramProposer, TakesWhatFollowedTheLatestLongestMatch) {
  // Suffix "7 8" occurred at 1 and 5; the latest is followed by 9 4.
  EXPECT_EQ(propose_ngram(Tokens{6, 7, 8, 1, 2, 7, 8, 9, 4, 3, 7, 8}, 2, 3, 1), (Tokens{9, 4}));
  // The longest suffix wins over a later shorter one: "1 2 3" was followed by 5.
  EXPECT_EQ(propose_ngram(Tokens{1, 2, 3, 5, 6, 3, 7, 1, 2, 3}, 1, 3, 1), (Tokens{5}));
  // A repeating text: the latest occurrence has only 2 tokens after it, an
  // earlier one has all 4.
  EXPECT_EQ(propose_ngram(Tokens{1, 2, 1, 2, 1, 2, 1, 2, 1, 2}, 4, 3, 2), (Tokens{1, 2, 1, 2}));
  // k caps the guess; the guess stops at the end of the text.
  EXPECT_EQ(propose_ngram(Tokens{4, 5, 6, 4}, 8, 3, 1), (Tokens{5, 6, 4}));
  // Nothing repeats: no guess; a suffix shorter than n_min does not count.
  EXPECT_TRUE(propose_ngram(Tokens{1, 2, 3, 4}, 4, 3, 1).empty());
  EXPECT_TRUE(propose_ngram(Tokens{9, 1, 2, 9}, 4, 3, 2).empty());
  EXPECT_TRUE(propose_ngram(Tokens{}, 4, 3, 1).empty());
}

TEST(NgramProposer, OptionsOutOfRangeNameTheValidOnes) {
  SpeculativeOptions o;
  o.method = Speculation::Ngram;
  o.k = kMaxSpeculativeTokens + 1;
  try {
    check(o);
    ADD_FAILURE() << "k out of range passed";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("valid: 1 to 16"), std::string::npos) << e.what();
  }
  o.k = 0;
  EXPECT_THROW(check(o), ConfigError);
  EXPECT_EQ(parse_speculation("ngram"), Speculation::Ngram);
  try {
    parse_speculation("medusa");
    ADD_FAILURE() << "an unknown method passed";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("valid: none, ngram, draft"), std::string::npos) << e.what();
  }
}

// The distribution sample() draws from, by brute force over `draws` draws of
// a fresh sampler, and what verify() gives for a fixed proposal: the same
// distribution (chi-square below the 1e-6 tail for the degrees of freedom).
void expect_verify_keeps_distribution(const SamplingParams& params, const std::vector<float>& logits,
                                      int32_t proposed) {
  constexpr int kDraws = 60000;
  const std::vector<int32_t> history{0, 1};
  std::vector<double> p(logits.size(), 0.0), q(logits.size(), 0.0);
  Sampler plain(params);
  SamplingParams other = params;
  other.seed = params.seed + 1;
  Sampler spec(other);
  int accepted = 0;
  for (int i = 0; i < kDraws; ++i) {
    std::vector<float> a = logits, b = logits;
    p[static_cast<size_t>(plain.sample(a, history))] += 1;
    const Verdict v = spec.verify(b, history, proposed);
    q[static_cast<size_t>(v.token)] += 1;
    accepted += v.accepted ? 1 : 0;
    if (v.accepted) {
      EXPECT_EQ(v.token, proposed);
    }
  }
  // Two-sample chi-square over the tokens either drew.
  double chi2 = 0;
  int cells = 0;
  for (size_t t = 0; t < p.size(); ++t) {
    if (p[t] + q[t] == 0) continue;
    chi2 += (p[t] - q[t]) * (p[t] - q[t]) / (p[t] + q[t]);
    ++cells;
  }
  // 1e-6 upper tail of chi-square with up to 9 degrees of freedom is below 47.
  EXPECT_LT(chi2, 47.0) << "proposed " << proposed << ", " << cells << " cells";
  // The proposal is accepted as often as the target draws it.
  EXPECT_NEAR(static_cast<double>(accepted) / kDraws, p[static_cast<size_t>(proposed)] / kDraws, 0.01);
}

TEST(SamplerVerify, SampledTokensKeepTheTargetDistribution) {
  const std::vector<float> logits{2.0f, 1.2f, 0.3f, -0.5f, 1.9f, -1.0f, 0.8f, 0.0f, -2.0f, 1.0f};
  SamplingParams full;
  full.temperature = 1.0f;
  full.top_k = 0;
  full.top_p = 1.0f;
  full.min_p = 0.0f;
  for (int32_t proposed : {0, 4, 5, 8}) expect_verify_keeps_distribution(full, logits, proposed);
  // Truncated: top-k 5 and top-p 0.9 with a repetition penalty on the history;
  // a proposal outside what survives is never accepted.
  SamplingParams cut = full;
  cut.top_k = 5;
  cut.top_p = 0.9f;
  cut.temperature = 0.7f;
  cut.repeat_penalty = 1.3f;
  for (int32_t proposed : {0, 1, 9, 8}) expect_verify_keeps_distribution(cut, logits, proposed);
}

TEST(SamplerVerify, GreedyAcceptsOnlyTheArgmax) {
  SamplingParams g;
  g.temperature = 0;
  Sampler s(g);
  std::vector<float> l{0.1f, 3.0f, 2.0f};
  EXPECT_EQ(s.verify(l, {}, 1).accepted, true);
  l = {0.1f, 3.0f, 2.0f};
  const Verdict v = s.verify(l, {}, 2);
  EXPECT_FALSE(v.accepted);
  EXPECT_EQ(v.token, 1);
}

std::string bible(const std::string& name) { return testing::shared_dir() + "/models/bible/" + name; }

struct GreedyRun {
  Tokens tokens;
  GenerationStats stats;
};

GreedyRun generate_greedy(int tp, int pp, Speculation method, const Tokens& prompt, int n, Engine* draft = nullptr) {
  EngineOptions o = testing::f32_options(tp);
  o.parallel.pp = pp;
  o.kv_type = DType::F16;
  Engine engine(bible("bible-q8_0.gguf"), o);
  SamplingParams p;
  p.temperature = 0;
  GenerateOptions g;
  g.max_tokens = n;
  g.stop_at_eog = false;
  g.speculative.method = method;
  g.speculative.k = 5;
  g.speculative.draft = draft;
  GreedyRun r;
  r.tokens = generate(
      engine, prompt, p, g, [](int32_t) { return true; }, &r.stats);
  return r;
}

// A prompt whose continuation quotes it (a verse, then its beginning again),
// and free generation after a plain prompt.
TEST(SpeculativeGreedy, SameTokensWithAndWithoutAtEveryLayout) {
  const std::unique_ptr<Tokenizer> tok = Tokenizer::open(bible("bible-q8_0.gguf"));
  const std::string verse =
      "In the beginning God created the heaven and the earth. And the earth was without form, and void; and "
      "darkness was upon the face of the deep. And the Spirit of God moved upon the face of the waters.";
  const Tokens quoting = tok->encode(verse + "\n" + verse.substr(0, 40), true, false);
  const Tokens free = tok->encode("And Jesus answered and said unto them,", true, false);
  struct Layout {
    int tp, pp;
  };
  for (const Layout l : {Layout{1, 1}, Layout{2, 1}, Layout{4, 1}, Layout{1, 2}}) {
    for (const Tokens* prompt : {&quoting, &free}) {
      SCOPED_TRACE(cat("tp ", l.tp, " pp ", l.pp, prompt == &quoting ? " quoting" : " free"));
      const GreedyRun plain = generate_greedy(l.tp, l.pp, Speculation::None, *prompt, 48);
      const GreedyRun spec = generate_greedy(l.tp, l.pp, Speculation::Ngram, *prompt, 48);
      EXPECT_EQ(spec.tokens, plain.tokens);
      EXPECT_EQ(plain.stats.decode_forwards, 47);
      EXPECT_LE(spec.stats.decode_forwards, plain.stats.decode_forwards);
      EXPECT_EQ(spec.stats.generated_tokens - 1, spec.stats.decode_forwards + spec.stats.accepted_tokens);
      if (prompt == &quoting) {
        EXPECT_GT(spec.stats.accepted_tokens, 10) << "the quote should be guessed";
      }
    }
  }
}

// A draft model: the bible model's BF16 weights drafting for its Q8_0 ones
// (nearly always right), a random-weight model with the same vocabulary
// (nearly always wrong), and its first two layers cut out (tpinfer cut):
// whatever the draft, the greedy tokens are the target's.
TEST(SpeculativeGreedy, DraftModelsGoodAndBadLeaveTheTokensAlone) {
  const std::unique_ptr<Tokenizer> tok = Tokenizer::open(bible("bible-q8_0.gguf"));
  const Tokens prompt = tok->encode("And God said, Let there be light: and there was light.", true, false);
  testing::TempDir dir;
  SynthSpec random = testing::small_spec(Arch::Llama);
  random.vocab = 4096;
  write_synth_model(random, dir.file("random.gguf"));
  EngineOptions d;
  d.comm = CommBackend::Local;
  d.pin_threads = false;
  d.kv_tokens = 512;
  cut_gguf_layers(bible("bible-q8_0.gguf"), 2, dir.file("cut.gguf"));
  for (const std::string& path : {bible("bible-bf16.gguf"), dir.file("random.gguf"), dir.file("cut.gguf")}) {
    for (const int tp : {1, 2}) {
      SCOPED_TRACE(cat(path, " tp ", tp));
      Engine draft(path, d);
      const GreedyRun plain = generate_greedy(tp, 1, Speculation::None, prompt, 40);
      const GreedyRun spec = generate_greedy(tp, 1, Speculation::Draft, prompt, 40, &draft);
      EXPECT_EQ(spec.tokens, plain.tokens);
      EXPECT_EQ(spec.stats.generated_tokens - 1, spec.stats.decode_forwards + spec.stats.accepted_tokens);
      if (path == bible("bible-bf16.gguf")) {
        EXPECT_GT(spec.stats.acceptance_rate(), 0.8);
      }
      // The draft's blocks go back when the generation ends.
      EXPECT_EQ(draft.blocks().free_blocks(), draft.blocks().n_blocks());
    }
  }
  // A draft with another vocabulary is an error naming both sizes.
  SynthSpec other = testing::small_spec(Arch::Llama);
  write_synth_model(other, dir.file("other.gguf"));
  Engine wrong(dir.file("other.gguf"), d);
  try {
    generate_greedy(1, 1, Speculation::Draft, prompt, 4, &wrong);
    ADD_FAILURE() << "a draft with another vocabulary passed";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("300 tokens and the target's 4096"), std::string::npos) << e.what();
  }
}

// Why greedy speculation is exact: a token's logits do not depend on the
// other rows of its batch. The same 24 tokens as one batch, and as 8 then one
// at a time, give bit-identical logits for the last 16 (Q8_0 and BF16
// weights, TP 1 and 2).
TEST(SpeculativeGreedy, RowLogitsDoNotDependOnTheBatch) {
  for (const std::string& model : {bible("bible-q8_0.gguf"), bible("bible-bf16.gguf")}) {
    for (const int tp : {1, 2}) {
      SCOPED_TRACE(cat(model, " tp ", tp));
      EngineOptions o = testing::f32_options(tp);
      o.kv_type = DType::F16;
      o.kv_tokens = 64;
      const Tokens tokens = testing::random_tokens(24, 4096, 77);
      const std::vector<float> whole = testing::engine_logits(model, tokens, o);
      Engine engine(model, o);
      const int64_t vocab = engine.config().vocab;
      std::vector<int32_t> table;
      ASSERT_TRUE(engine.blocks().reserve(table, 24));
      for (int64_t at = 0; at < 24;) {
        const int64_t n = at == 0 ? 8 : 1;
        Batch b;
        b.sequences.push_back({table});
        for (int64_t i = at; i < at + n; ++i) {
          b.tokens.push_back(tokens[static_cast<size_t>(i)]);
          b.positions.push_back(static_cast<int32_t>(i));
          b.seq.push_back(0);
          b.want_logits.push_back(1);
        }
        const std::vector<float>& rows = engine.step(b);
        if (at > 0) {
          const float* want = whole.data() + at * vocab;
          ASSERT_TRUE(std::equal(rows.begin(), rows.begin() + vocab, want)) << "position " << at;
        }
        at += n;
      }
    }
  }
}

}  // namespace
}  // namespace tpinfer
