// Token constraints (engine/constraint.h) in the generator and the scheduler:
// every token drawn is one the constraint allowed, the constraint sees every
// token, a finished constraint ends the sequence, a dead end ends it with an
// error, and a constrained sequence takes no speculative guesses. The
// constraint here is a plain one of the test's own (the structured-output
// one, engine/grammar_constraint.h, is tested with its grammars).
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "core/error.h"
#include "engine/generator.h"
#include "engine/scheduler.h"
#include "test_util.h"

namespace tpinfer {
namespace {

std::string bible() { return testing::shared_dir() + "/models/bible/bible-q8_0.gguf"; }

// Allows tokens whose id is a multiple of `step`; finished after `length`
// tokens; at a dead end (allows nothing) after `dead_after` tokens.
class EveryNth final : public TokenConstraint {
 public:
  EveryNth(int step, int length, int dead_after = -1) : step_(step), length_(length), dead_after_(dead_after) {}
  bool mask(std::span<float> logits) override {
    if (dead_after_ >= 0 && static_cast<int>(seen.size()) >= dead_after_) return false;
    for (size_t i = 0; i < logits.size(); ++i) {
      if (i % static_cast<size_t>(step_) != 0) logits[i] = -std::numeric_limits<float>::infinity();
    }
    return true;
  }
  void accept(int32_t token) override { seen.push_back(token); }
  bool finished() const override { return static_cast<int>(seen.size()) >= length_; }
  std::vector<int32_t> seen;

 private:
  int step_, length_, dead_after_;
};

TEST(TokenConstraint, GeneratorDrawsOnlyAllowedTokensAndStopsWhenFinished) {
  Engine engine(bible(), testing::f32_options(1));
  const std::vector<int32_t> prompt = engine.tokenizer().encode("And God said,", true, false);
  for (const float temperature : {0.0f, 1.0f}) {
    SamplingParams p;
    p.temperature = temperature;
    EveryNth c(7, 9);
    GenerateOptions g;
    g.max_tokens = 30;
    g.stop_at_eog = false;
    g.constraint = &c;
    g.speculative.method = Speculation::Ngram;  // ignored with a constraint
    GenerationStats st;
    const std::vector<int32_t> out = generate(
        engine, prompt, p, g, [](int32_t) { return true; }, &st);
    EXPECT_EQ(out.size(), 9u);
    EXPECT_EQ(out, c.seen);
    for (int32_t t : out) EXPECT_EQ(t % 7, 0) << t;
    EXPECT_EQ(st.proposed_tokens, 0);
  }
  EveryNth dead(3, 100, 4);
  GenerateOptions g;
  g.max_tokens = 30;
  g.constraint = &dead;
  EXPECT_THROW(generate(engine, prompt, SamplingParams{}, g, [](int32_t) { return true; }), Error);
}

TEST(TokenConstraint, SchedulerConstrainsItsSequencesOnlyAndTakesNoGuessesForThem) {
  Engine engine(bible(), testing::f32_options(1));
  const std::vector<int32_t> prompt = engine.tokenizer().encode(
      "In the beginning God created the heaven and the earth.\nIn the beginning God", true, false);
  SchedulerOptions so;
  so.speculative.method = Speculation::Ngram;
  so.speculative.k = 4;
  Scheduler sched(engine, so);
  struct Out {
    std::vector<int32_t> tokens;
    FinishReason reason = FinishReason::Cancelled;
    std::string error;
  };
  std::vector<Out> outs(3);
  auto spec = [&](Out& out, std::shared_ptr<TokenConstraint> c) {
    SequenceSpec r;
    r.prompt = prompt;
    r.max_tokens = 24;
    r.stop_at_eog = false;
    r.sampling.temperature = 0;
    r.constraint = std::move(c);
    r.on_token = [&out](const TokenEvent& ev) {
      out.tokens.push_back(ev.token);
      return true;
    };
    r.on_finish = [&out](FinishReason why, const std::string& e) {
      out.reason = why;
      out.error = e;
    };
    return r;
  };
  auto five = std::make_shared<EveryNth>(5, 11);
  sched.submit(spec(outs[0], five));
  sched.submit(spec(outs[1], nullptr));
  sched.submit(spec(outs[2], std::make_shared<EveryNth>(2, 100, 6)));
  for (int guard = 0; sched.step(); ++guard) ASSERT_LT(guard, 10000);
  EXPECT_EQ(outs[0].tokens, five->seen);
  EXPECT_EQ(outs[0].tokens.size(), 11u);
  for (int32_t t : outs[0].tokens) EXPECT_EQ(t % 5, 0) << t;
  EXPECT_EQ(outs[0].reason, FinishReason::Stop);
  EXPECT_EQ(outs[1].tokens.size(), 24u);
  EXPECT_EQ(outs[1].reason, FinishReason::Length);
  EXPECT_EQ(outs[2].tokens.size(), 6u);
  EXPECT_EQ(outs[2].reason, FinishReason::Error);
  EXPECT_NE(outs[2].error.find("dead end"), std::string::npos) << outs[2].error;
  // Guesses: only the unconstrained sequence's (the quote is guessed).
  const SchedulerMetrics m = sched.metrics();
  EXPECT_GT(m.spec_accepted_tokens, 0u);
  EXPECT_EQ(m.generated_tokens, m.decode_steps + m.spec_accepted_tokens);
}

}  // namespace
}  // namespace tpinfer
