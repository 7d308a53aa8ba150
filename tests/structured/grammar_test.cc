// The GBNF parser and the matcher: languages, error messages, partial UTF-8,
// end of generation, rollback, and the token mask against a plain reference.
#include "structured/grammar.h"

#include <gtest/gtest.h>

#include <atomic>
#include <random>
#include <thread>

#include "structured/grammar_matcher.h"
#include "structured/json_schema.h"
#include "structured/structured_testing.h"

namespace tpinfer {
namespace {

using testing_structured::NaiveRecognizer;
using testing_structured::test_vocab;

// Whether `text` is a whole sentence of the grammar, by the matcher and by the
// plain reference (which must agree).
bool matches(const std::string& gbnf, const std::string& text) {
  const Grammar g = Grammar::parse_gbnf(gbnf);
  NaiveRecognizer ref(g);
  const bool by_ref = ref.advance(text) && ref.complete();
  GrammarMatcher m(CompiledGrammar::create(g, test_vocab().vocab));
  const bool by_matcher = m.accept_bytes(text) && m.is_complete();
  EXPECT_EQ(by_ref, by_matcher) << gbnf << " on " << text;
  return by_matcher;
}

std::string error_of(const std::string& gbnf) {
  try {
    Grammar::parse_gbnf(gbnf);
  } catch (const GrammarError& e) {
    return e.what();
  }
  return "";
}

TEST(GrammarGbnf, LiteralsAlternativesAndGroups) {
  const std::string g = R"(root ::= "a" ("b" | "cd")+ "e"?  # a comment
)";
  EXPECT_TRUE(matches(g, "ab"));
  EXPECT_TRUE(matches(g, "acdbe"));
  EXPECT_FALSE(matches(g, "a"));
  EXPECT_FALSE(matches(g, "ac"));
  EXPECT_FALSE(matches(g, "abee"));
}

TEST(GrammarGbnf, RepetitionCounts) {
  EXPECT_FALSE(matches(R"(root ::= "x"{2,3})", "x"));
  EXPECT_TRUE(matches(R"(root ::= "x"{2,3})", "xx"));
  EXPECT_TRUE(matches(R"(root ::= "x"{2,3})", "xxx"));
  EXPECT_FALSE(matches(R"(root ::= "x"{2,3})", "xxxx"));
  EXPECT_TRUE(matches(R"(root ::= "x"{3})", "xxx"));
  EXPECT_FALSE(matches(R"(root ::= "x"{3})", "xx"));
  EXPECT_TRUE(matches(R"(root ::= "x"{2,} "y")", "xxxxxy"));
  EXPECT_FALSE(matches(R"(root ::= "x"{2,} "y")", "xy"));
  EXPECT_TRUE(matches(R"(root ::= ("ab"){,2} "y")", "ababy"));
  EXPECT_TRUE(matches(R"(root ::= "x"* "y")", "y"));
}

TEST(GrammarGbnf, MultiLineRulesAndReferences) {
  const std::string g = R"g(
# arithmetic
root ::= expr
expr ::= term
  ( [-+] term )*
term ::= num | "(" expr ")"
num  ::= [0-9]+
)g";
  EXPECT_TRUE(matches(g, "1+(2-3)+45"));
  EXPECT_FALSE(matches(g, "1+"));
  EXPECT_FALSE(matches(g, "(1"));
}

TEST(GrammarGbnf, EscapesAndUnicodeClasses) {
  EXPECT_TRUE(matches(R"(root ::= "\x41\u00e9\n\t\"\\")", "A\xC3\xA9\n\t\"\\"));
  EXPECT_TRUE(matches(R"(root ::= "\U0001F600")", "😀"));
  const std::string cls = R"(root ::= [a-zà-ÿ€]+)";
  EXPECT_TRUE(matches(cls, "abé€ÿ"));
  EXPECT_FALSE(matches(cls, "abÀ"));  // U+00C0 is below à
  EXPECT_TRUE(matches(R"(root ::= [^"\\]+)", "日本語 ok"));
  EXPECT_FALSE(matches(R"(root ::= [^"\\]+)", "a\"b"));
  EXPECT_TRUE(matches(R"(root ::= . . .)", "a€😀"));
  // Only valid UTF-8: no surrogates, no overlong forms, nothing above U+10FFFF.
  EXPECT_FALSE(matches(R"(root ::= .)", "\xED\xA0\x80"));
  EXPECT_FALSE(matches(R"(root ::= .)", "\xC0\x80"));
  EXPECT_FALSE(matches(R"(root ::= .)", "\xF4\x90\x80\x80"));
  EXPECT_TRUE(matches(R"(root ::= [\-a\]]+)", "-]a"));
}

TEST(GrammarGbnf, ErrorsSayWhereAndWhat) {
  EXPECT_EQ(error_of(""), "empty grammar: no rules");
  EXPECT_EQ(error_of("# only a comment\n"), "empty grammar: no rules");
  EXPECT_EQ(error_of("expr ::= \"a\""), "grammar has no rule named 'root'");
  EXPECT_EQ(error_of("root ::= value"), "line 1:10: undefined rule 'value'");
  EXPECT_EQ(error_of("root ::= \"a\"\nroot ::= \"b\""), "line 2:1: rule 'root' is defined twice");
  EXPECT_EQ(error_of("root ::= \"a\" )"), "line 1:14: expected an item, '|' or the end of the rule, found ')'");
  EXPECT_EQ(error_of("root ::= \"abc"), "line 1:14: expected '\"', found end of input");
  EXPECT_EQ(error_of("root ::= (\"a\" | \"b\""), "line 1:20: expected ')' or '|', found end of input");
  EXPECT_EQ(error_of("root ::= [a-"), "line 1:13: expected ']', found end of input");
  EXPECT_EQ(error_of("root ::= \"\\q\""),
            "line 1:12: expected an escape (\\n \\r \\t \\\\ \\\" \\[ \\] \\xNN \\uNNNN "
            "\\UNNNNNNNN), found 'q'");
  EXPECT_EQ(error_of("root ::= \"a\"{3,1}"), "line 1:17: repetition {3,1} has max below min");
  EXPECT_EQ(error_of("root ::= = \"a\""), "line 1:10: expected an item, '|' or the end of the rule, found '='");
  EXPECT_EQ(error_of("root ::= a\na ::= a \"x\" | \"y\""), "left recursion: a -> a");
  EXPECT_EQ(error_of("root ::= b \"x\"\nb ::= \"c\"? root"), "left recursion: root -> b -> root");
  EXPECT_EQ(error_of("root: \"x\""), "line 1:5: expected '::=', found ':'");
}

// Random edits of valid grammars and schemas either compile or raise the
// layer's own error: never a crash or another exception.
TEST(GrammarGbnf, MutatedInputsParseOrRaiseGrammarError) {
  const std::vector<std::string> seeds = {
      "root ::= \"a\" (\"b\" | [c-e\\x41]+)* x{2,3}\nx ::= [^\"\\\\] | \"\\u00e9\" # c\n",
      json_object_gbnf(),
  };
  const std::string alphabet = "\"[]()|*+?{},.-^\\:=#\n axu019";
  std::mt19937 rng(11);
  int parsed = 0, rejected = 0;
  for (int i = 0; i < 3000; ++i) {
    std::string g = seeds[i % seeds.size()];
    for (int k = 0; k < 1 + static_cast<int>(rng() % 3); ++k) {
      const size_t at = rng() % (g.size() + 1);
      switch (rng() % 3) {
        case 0:
          g.insert(at, 1, alphabet[rng() % alphabet.size()]);
          break;
        case 1:
          if (at < g.size()) g.erase(at, 1);
          break;
        default:
          if (at < g.size()) g[at] = alphabet[rng() % alphabet.size()];
      }
    }
    try {
      Grammar::parse_gbnf(g);
      ++parsed;
    } catch (const GrammarError&) {
      ++rejected;
    }
  }
  EXPECT_GT(parsed, 0);
  EXPECT_GT(rejected, 0);
}

TEST(GrammarMatcher, TokensMaySplitACodePoint) {
  const auto g = CompiledGrammar::create(Grammar::parse_gbnf(R"(root ::= "<" [é€] ">")"), test_vocab().vocab);
  GrammarMatcher m(g);
  EXPECT_TRUE(m.accept_bytes("<\xE2"));
  EXPECT_FALSE(m.accept_bytes("\x82\x41"));  // not a continuation of €
  EXPECT_TRUE(m.accept_bytes("\x82"));
  EXPECT_FALSE(m.is_complete());
  EXPECT_TRUE(m.accept_bytes("\xAC>"));
  EXPECT_TRUE(m.is_complete());
  EXPECT_FALSE(m.can_continue());
}

TEST(GrammarMatcher, EndOfGenerationOnlyWhenComplete) {
  const auto& tv = test_vocab();
  const auto g = CompiledGrammar::create(Grammar::parse_gbnf(R"(root ::= "ab" "c"?)"), tv.vocab);
  GrammarMatcher m(g);
  TokenBitmask mask;
  m.fill_mask(mask);
  EXPECT_FALSE(mask.test(static_cast<size_t>(tv.eog)));
  EXPECT_FALSE(m.accept_token(tv.eog));
  const int32_t ab = static_cast<int32_t>(std::find(tv.tokens.begin(), tv.tokens.end(), "ab") - tv.tokens.begin());
  EXPECT_TRUE(mask.test(static_cast<size_t>(ab)));
  EXPECT_TRUE(mask.test('a'));
  EXPECT_EQ(mask.count(), 3u);  // "a", "ab" and "abc"
  ASSERT_TRUE(m.accept_token(ab));
  m.fill_mask(mask);
  EXPECT_TRUE(mask.test(static_cast<size_t>(tv.eog)));
  EXPECT_TRUE(mask.test('c'));
  EXPECT_EQ(mask.count(), 2u);
  EXPECT_TRUE(m.accept_token(tv.eog));
  EXPECT_TRUE(m.is_terminated());
  m.fill_mask(mask);
  EXPECT_EQ(mask.count(), 0u);
  EXPECT_FALSE(m.accept_token('c'));
  m.rollback(1);  // undo the end of generation
  EXPECT_TRUE(m.accept_token('c'));
  EXPECT_EQ(m.tokens_accepted(), 2u);
  m.rollback(2);
  EXPECT_EQ(m.tokens_accepted(), 0u);
  EXPECT_TRUE(m.accept_bytes("abc"));
  EXPECT_THROW(m.rollback(2), Error);
}

// The fast path (DFA over interned stack sets, trie walk, mask cache) against
// the plain reference: at random states of random generations, every token's
// verdict matches the explicit-stack recognizer fed the same bytes.
void check_masks(const std::string& gbnf, uint32_t seed) {
  const auto& tv = test_vocab();
  const Grammar grammar = Grammar::parse_gbnf(gbnf);
  const auto g = CompiledGrammar::create(grammar, tv.vocab);
  std::mt19937 rng(seed);
  TokenBitmask mask;
  for (int run = 0; run < 6; ++run) {
    GrammarMatcher m(g);
    NaiveRecognizer ref(grammar);  // fed the same tokens
    std::string prefix;
    for (int step = 0; step < 60; ++step) {
      m.fill_mask(mask);
      std::vector<int32_t> allowed;
      for (size_t id = 0; id < tv.tokens.size(); ++id) {
        const int32_t tok = static_cast<int32_t>(id);
        NaiveRecognizer r = ref;
        const bool ref_ok = tok == tv.eog ? r.complete() : r.advance(tv.tokens[id]);
        ASSERT_EQ(mask.test(id), ref_ok) << "token " << id << " '" << tv.tokens[id] << "' after '" << prefix << "'";
        if (ref_ok) allowed.push_back(tok);
      }
      if (allowed.empty()) break;
      const int32_t pick = allowed[std::uniform_int_distribution<size_t>(0, allowed.size() - 1)(rng)];
      if (pick == tv.eog) break;
      ASSERT_TRUE(m.accept_token(pick));
      ASSERT_TRUE(ref.advance(tv.tokens[static_cast<size_t>(pick)]));
      prefix += tv.tokens[static_cast<size_t>(pick)];
    }
  }
}

TEST(GrammarMatcher, MaskAgreesWithPlainReference) {
  check_masks(R"g(root ::= expr
expr ::= term ([-+*/] term)*
term ::= [0-9]{1,3} | "(" expr ")" | "\"" [^"\\]* "\"")g",
              1);
  check_masks(json_object_gbnf(), 2);
  check_masks(json_schema_to_gbnf(std::string_view(R"({"type":"object","properties":{
    "name":{"type":"string","maxLength":6},"id":{"type":"integer","minimum":-20,"maximum":300},
    "tags":{"type":"array","items":{"enum":["red","green","blue",null]},"minItems":1,"maxItems":3},
    "when":{"type":"string","format":"date-time"},"e":{"type":"string","pattern":"^[a-z]+é?$"}},
    "required":["name","tags"],"additionalProperties":{"type":"boolean"}})")),
              3);
}

TEST(GrammarMatcher, CachesMasksPerState) {
  const auto g = CompiledGrammar::create(compile_json_object(), test_vocab().vocab);
  GrammarMatcher a(g), b(g);
  TokenBitmask ma, mb;
  a.fill_mask(ma);
  b.fill_mask(mb);
  EXPECT_EQ(ma.words(), mb.words());
  const CompiledGrammar::Stats s = g->stats();
  EXPECT_EQ(s.mask_misses, 1u);
  EXPECT_EQ(s.mask_hits, 1u);
  // A bounded cache keeps at most its limit.
  const auto small = CompiledGrammar::create(compile_json_object(), test_vocab().vocab, {.max_cached_masks = 2});
  GrammarMatcher m(small);
  for (const char* t : {"{", "\"", "a", "\"", ":", "1"}) {
    m.fill_mask(ma);
    ASSERT_TRUE(m.accept_bytes(t));
  }
  EXPECT_EQ(small->stats().cached_masks, 2u);
}

// A grammar whose automaton would need too many states (the last 13 bytes
// all matter) is an error, not unbounded memory.
TEST(GrammarMatcher, TooAmbiguousGrammarIsAnError) {
  const auto g = CompiledGrammar::create(Grammar::parse_gbnf(R"(root ::= [ab]* "a" [ab]{12})"), test_vocab().vocab,
                                         {.max_states = 200});
  GrammarMatcher m(g);
  TokenBitmask mask;
  std::mt19937 rng(5);
  try {
    for (int i = 0; i < 1000; ++i) {
      m.fill_mask(mask);
      ASSERT_TRUE(m.accept_bytes(rng() % 2 ? "a" : "b"));
    }
    ADD_FAILURE() << "no error";
  } catch (const GrammarError& e) {
    EXPECT_NE(std::string(e.what()).find("more than 200 matcher states"), std::string::npos) << e.what();
  }
  EXPECT_LE(g->stats().states, 200u);
}

// Matchers on several threads share one CompiledGrammar (its caches behind
// one lock); each thread's masks equal those of a private grammar fed the
// same tokens.
TEST(GrammarMatcher, SharedAcrossThreads) {
  const auto& tv = test_vocab();
  const Grammar grammar = compile_json_object();
  const auto shared = CompiledGrammar::create(grammar, tv.vocab);
  std::atomic<int> mismatches{0}, steps{0};
  std::vector<std::thread> threads;
  for (uint32_t t = 0; t < 3; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937 rng(100 + t);
      const auto own = CompiledGrammar::create(grammar, tv.vocab);
      TokenBitmask ma, mb;
      for (int run = 0; run < 8; ++run) {
        GrammarMatcher a(shared), b(own);
        for (int step = 0; step < 80; ++step) {
          a.fill_mask(ma);
          b.fill_mask(mb);
          if (ma.words() != mb.words()) ++mismatches;
          ++steps;
          std::vector<int32_t> allowed;
          for (size_t i = 0; i < mb.size(); ++i) {
            if (mb.test(i)) allowed.push_back(static_cast<int32_t>(i));
          }
          if (allowed.empty()) break;
          const int32_t pick = allowed[rng() % allowed.size()];
          if (a.accept_token(pick) != b.accept_token(pick)) ++mismatches;
          if (b.is_terminated()) break;
        }
      }
    });
  }
  for (std::thread& th : threads) th.join();
  EXPECT_EQ(mismatches.load(), 0);
  EXPECT_GT(steps.load(), 100);
}

}  // namespace
}  // namespace tpinfer
