// Structured outputs on real models: for every schema of the schema
// compiler's cases (tests/structured/schema_cases.h, 20 real-world schemas),
// outputs sampled at temperature 1 from the bible model and from a
// random-weight model, under the schema's grammar (engine/grammar_constraint),
// always end, parse and validate against the schema by the tests' own
// validator; the same through the scheduler with several sequences at once.
//
// A model at temperature 1 may write a free string for longer than its
// context (the bible model's is 512 tokens, and the King James Bible has no
// quotation marks). So that every output ends, after a soft cap the test
// narrows the grammar's mask further, to the allowed tokens that end in a
// closing quote or bracket (or an end of generation): a subset of what the
// grammar allows, so validity is still the grammar's alone.
#include <gtest/gtest.h>

#include <limits>
#include <nlohmann/json.hpp>

#include "engine/generator.h"
#include "engine/grammar_constraint.h"
#include "engine/scheduler.h"
#include "model/synth.h"
#include "structured/json_schema.h"
#include "structured/schema_cases.h"
#include "structured/structured_testing.h"
#include "test_util.h"

namespace tpinfer {
namespace {

using nlohmann::json;
using testing_structured::cases;
using testing_structured::SchemaCase;

std::shared_ptr<CompiledGrammar> compile(const SchemaCase& c, const std::shared_ptr<const TokenVocabulary>& vocab) {
  JsonSchemaOptions o;
  o.strict = c.strict;
  return CompiledGrammar::create(compile_json_schema(std::string_view(c.schema), o), vocab);
}

// "" when `text` is a document of the schema, else why not.
std::string check(const SchemaCase& c, const std::string& text) {
  json doc;
  try {
    doc = json::parse(text);
  } catch (const std::exception& e) {
    return std::string("does not parse: ") + e.what();
  }
  const json schema = json::parse(c.schema);
  return testing_structured::validate(doc, schema, schema, c.strict);
}

class ClosingAfter final : public TokenConstraint {
 public:
  ClosingAfter(std::shared_ptr<CompiledGrammar> g, const Tokenizer& tok, int soft_cap)
      : inner_(g), matcher_(g), tok_(tok), soft_cap_(soft_cap) {}
  // After the cap, among the tokens the grammar allows, the first non-empty
  // of: an end of generation; the tokens that complete the document; the
  // one-byte token '"'; inside a string (where a backslash may come), the
  // one-byte tokens after which '"' may come, else outside one ']', '}' and
  // 'n' (a null ends a recursive schema);
  // the one-byte tokens after which '"' may come (',' before a key); all.
  bool mask(std::span<float> logits) override {
    if (!inner_.mask(logits)) return false;
    if (n_ < soft_cap_) return true;
    auto allows = [](GrammarMatcher m, std::string_view bytes) { return m.accept_bytes(bytes); };
    const bool in_string = allows(matcher_, "\\");
    std::vector<size_t> tiers[5];
    for (size_t i = 0; i < logits.size() && i < static_cast<size_t>(tok_.vocab_size()); ++i) {
      if (logits[i] == -std::numeric_limits<float>::infinity()) continue;
      const auto id = static_cast<int32_t>(i);
      if (tok_.is_eog(id)) {
        tiers[0].push_back(i);
        continue;
      }
      GrammarMatcher m = matcher_;
      if (m.accept_token(id) && m.is_complete()) tiers[1].push_back(i);
      const std::string b = tok_.token_bytes(id);
      if (b.size() != 1) continue;
      if (b == "\"") tiers[2].push_back(i);
      const bool quote_next = allows(m, "\"");
      if (in_string ? quote_next : (b == "]" || b == "}" || b == "n")) tiers[3].push_back(i);
      if (!in_string && quote_next) tiers[4].push_back(i);
    }
    for (const std::vector<size_t>& keep : tiers) {
      if (keep.empty()) continue;
      std::vector<float> kept;
      for (size_t i : keep) kept.push_back(logits[i]);
      std::fill(logits.begin(), logits.end(), -std::numeric_limits<float>::infinity());
      for (size_t j = 0; j < keep.size(); ++j) logits[keep[j]] = kept[j];
      break;
    }
    return true;
  }
  void accept(int32_t token) override {
    ++n_;
    inner_.accept(token);
    matcher_.accept_token(token);
  }
  bool finished() const override { return inner_.finished(); }

 private:
  GrammarConstraint inner_;
  GrammarMatcher matcher_;
  const Tokenizer& tok_;
  int soft_cap_;
  int n_ = 0;
};

class StructuredOutput : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    if (GetParam() == "bible") {
      path_ = testing::shared_dir() + "/models/bible/bible-q8_0.gguf";
    } else {
      SynthSpec s = testing::small_spec(Arch::Llama);
      s.vocab = 1024;
      s.seed = 17;
      s.context = 512;
      path_ = dir_.file("random.gguf");
      write_synth_model(s, path_);
    }
  }
  static EngineOptions options() {
    EngineOptions o = testing::f32_options(1);
    o.kv_tokens = 8192;  // 16 sequences of up to 512 tokens
    return o;
  }
  testing::TempDir dir_;
  std::string path_;
};

TEST_P(StructuredOutput, SampledOutputsOfEverySchemaEndParseAndValidate) {
  Engine engine(path_, options());
  const auto vocab = grammar_vocabulary(engine.tokenizer(), engine.config().vocab);
  const std::vector<int32_t> prompt = engine.tokenizer().encode("And the king said, Write it down:", true, false);
  ASSERT_GE(cases().size(), 15u);
  for (const SchemaCase& c : cases()) {
    const std::shared_ptr<CompiledGrammar> grammar = compile(c, vocab);
    for (uint64_t seed = 1; seed <= 3; ++seed) {
      ClosingAfter constraint(grammar, engine.tokenizer(), 150);
      SamplingParams p;
      p.temperature = 1.0f;
      p.top_k = 0;
      p.top_p = 1.0f;
      p.min_p = 0.0f;
      p.seed = seed;
      GenerateOptions g;
      g.max_tokens = 400;
      g.stop_at_eog = true;
      g.constraint = &constraint;
      const std::vector<int32_t> out = generate(engine, prompt, p, g, [](int32_t) { return true; });
      std::vector<int32_t> text_tokens;
      for (int32_t t : out) {
        if (!engine.tokenizer().is_eog(t)) text_tokens.push_back(t);
      }
      const std::string text = engine.tokenizer().decode(text_tokens);
      ASSERT_TRUE(constraint.finished()) << c.name << " seed " << seed << ": did not end in " << out.size()
                                         << " tokens: " << text.substr(0, 400);
      EXPECT_EQ(check(c, text), "") << c.name << " seed " << seed << ": " << text;
    }
  }
}

// Sixteen constrained sequences (and one free) in one continuous batch.
TEST_P(StructuredOutput, ConstrainedSequencesInOneBatchAllValidate) {
  Engine engine(path_, options());
  const auto vocab = grammar_vocabulary(engine.tokenizer(), engine.config().vocab);
  const std::vector<int32_t> prompt = engine.tokenizer().encode("And the people answered,", true, false);
  SchedulerOptions so;
  so.speculative.method = Speculation::Ngram;  // the free sequence speculates, the others cannot
  Scheduler sched(engine, so);
  struct Out {
    std::vector<int32_t> tokens;
    FinishReason reason = FinishReason::Cancelled;
  };
  std::vector<Out> outs(17);
  std::vector<const SchemaCase*> which;
  for (size_t i = 0; i < outs.size(); ++i) {
    SequenceSpec r;
    r.prompt = prompt;
    r.max_tokens = 400;
    r.sampling.temperature = 1.0f;
    r.sampling.seed = 100 + i;
    if (i < 16) {
      which.push_back(&cases()[i % cases().size()]);
      r.constraint = std::make_shared<ClosingAfter>(compile(*which.back(), vocab), engine.tokenizer(), 150);
    } else {
      r.max_tokens = 24;
    }
    Out& out = outs[i];
    r.on_token = [&out](const TokenEvent& ev) {
      out.tokens.push_back(ev.token);
      return true;
    };
    r.on_finish = [&out](FinishReason why, const std::string&) { out.reason = why; };
    sched.submit(std::move(r));
  }
  for (int guard = 0; sched.step(); ++guard) ASSERT_LT(guard, 100000);
  for (size_t i = 0; i < which.size(); ++i) {
    std::vector<int32_t> text_tokens;
    for (int32_t t : outs[i].tokens) {
      if (!engine.tokenizer().is_eog(t)) text_tokens.push_back(t);
    }
    const std::string text = engine.tokenizer().decode(text_tokens);
    EXPECT_EQ(outs[i].reason, FinishReason::Stop) << which[i]->name << ": " << text;
    EXPECT_EQ(check(*which[i], text), "") << which[i]->name << ": " << text;
  }
  EXPECT_EQ(outs[16].tokens.size(), 24u);
}

INSTANTIATE_TEST_SUITE_P(Models, StructuredOutput, ::testing::Values("bible", "random"),
                         [](const ::testing::TestParamInfo<std::string>& i) { return i.param; });

}  // namespace
}  // namespace tpinfer
