// The pieces of the tokenizer on their own: special-token splitting, the
// pre-tokenizer's split behaviors, and each fast path (BPE heap merge + cache,
// SPM heap merge, trie splitter) against its plain reference on fresh random
// inputs.
#include <gtest/gtest.h>

#include <random>
#include <thread>

#include "core/error.h"
#include "tokenizer/pretokenizer.h"
#include "tokenizer/random_text.h"
#include "tokenizer/special_splitter.h"
#include "tokenizer/tokenizer_test_util.h"

namespace tpinfer {
namespace {

std::vector<std::string> texts(const std::vector<Fragment>& frags) {
  std::vector<std::string> out;
  for (const Fragment& f : frags) {
    if (f.token >= 0) {
      out.emplace_back(1, '#');
      out.back() += std::to_string(f.token);
    } else {
      out.emplace_back(f.text);
    }
  }
  return out;
}

TEST(SpecialSplitter, LongestMatchAndParseSpecial) {
  SpecialSplitter sp({{"<|im_start|>", 1, false, false, false},
                      {"<|im", 2, false, false, false},
                      {"  ", 3, /*always=*/true, false, false},
                      {"   ", 4, true, false, false}});
  using V = std::vector<std::string>;
  EXPECT_EQ(texts(sp.split("a<|im_start|>b", true)), (V{"a", "#1", "b"}));
  EXPECT_EQ(texts(sp.split("a<|im_startb", true)), (V{"a", "#2", "_startb"}));
  EXPECT_EQ(texts(sp.split("a<|im_start|>b", false)), (V{"a<|im_start|>b"}));
  EXPECT_EQ(texts(sp.split("x     y", false)), (V{"x", "#4", "#3", "y"}));
  EXPECT_EQ(texts(sp.split("", true)), V{});
}

TEST(SpecialSplitter, StripFlags) {
  SpecialSplitter sp({{"<mask>", 7, false, /*lstrip=*/true, /*rstrip=*/true}});
  using V = std::vector<std::string>;
  EXPECT_EQ(texts(sp.split("a \t<mask>  b", true)), (V{"a", "#7", "b"}));
  EXPECT_EQ(texts(sp.split("  <mask>  ", true)), (V{"#7"}));
}

TEST(SpecialSplitter, TrieMatchesReferenceOnRandomText) {
  std::mt19937 rng(11);
  const std::vector<std::string> alphabet = {"<", "|", ">", "a", "im", "_", " ", "\n", "\xC3\xA9"};
  for (int round = 0; round < 50; ++round) {
    std::vector<SpecialSplitter::Entry> entries;
    for (int e = 0; e < 12; ++e) {
      std::string t;
      for (uint32_t n = test::pick(rng, 1, 5); n > 0; --n) t += alphabet[test::pick(rng, 0, alphabet.size() - 1)];
      entries.push_back({t, e, test::pick(rng, 0, 2) == 0, test::pick(rng, 0, 3) == 0, test::pick(rng, 0, 3) == 0});
    }
    SpecialSplitter sp(entries);
    for (int i = 0; i < 200; ++i) {
      std::string text;
      for (uint32_t n = test::pick(rng, 0, 30); n > 0; --n) text += alphabet[test::pick(rng, 0, alphabet.size() - 1)];
      for (bool ps : {false, true}) ASSERT_EQ(texts(sp.split(text, ps)), texts(sp.split_reference(text, ps))) << text;
    }
  }
}

std::vector<std::string> split_with(const std::string& pattern, SplitBehavior b, bool invert, std::string_view text) {
  PreTokenizer pre;
  pre.add_split(pattern, b, invert);
  return pre.split(text);
}

TEST(PreTokenizer, SplitBehaviors) {
  using V = std::vector<std::string>;
  const std::string t = "a-b--c-";
  EXPECT_EQ(split_with("-", SplitBehavior::Isolated, false, t), (V{"a", "-", "b", "-", "-", "c", "-"}));
  EXPECT_EQ(split_with("-", SplitBehavior::Removed, false, t), (V{"a", "b", "c"}));
  EXPECT_EQ(split_with("-", SplitBehavior::MergedWithPrevious, false, t), (V{"a-", "b-", "-", "c-"}));
  EXPECT_EQ(split_with("-", SplitBehavior::MergedWithNext, false, t), (V{"a", "-b", "-", "-c", "-"}));
  EXPECT_EQ(split_with("-", SplitBehavior::Contiguous, false, t), (V{"a", "-", "b", "--", "c", "-"}));
  // Inverted: the matches are the content, the gaps the delimiters.
  EXPECT_EQ(split_with("[a-z]+", SplitBehavior::Removed, true, "ab, cd"), (V{"ab", "cd"}));
  PreTokenizer pre;
  pre.add_split("[a-z]+", SplitBehavior::Isolated);
  pre.add_prefix_space();
  EXPECT_EQ(pre.split("ab cd"), (V{" ab", " ", " cd"}));
}

TEST(PreTokenizer, Gpt2RegexAndLookahead) {
  PreTokenizer pre;
  pre.add_split(std::string(kGpt2Pattern), SplitBehavior::Isolated);
  using V = std::vector<std::string>;
  EXPECT_EQ(pre.split("Hello world's   end  \n"), (V{"Hello", " world", "'s", "  ", " end", "  \n"}));
  EXPECT_EQ(pre.split("x\xFFy"), (V{"x", "\xFF", "y"}));  // an invalid byte is its own piece
}

TEST(PreTokenizer, UnknownGgufNameListsSupported) {
  try {
    pretokenizer_for_gguf("no-such-model");
    FAIL() << "expected FormatError";
  } catch (const FormatError& e) {
    EXPECT_NE(std::string(e.what()).find("llama-bpe"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("no-such-model"), std::string::npos) << e.what();
  }
  EXPECT_THROW(Regex("[unclosed"), FormatError);
}

// BPE: heap + linked list + cache against the O(n^2) rescan, on random byte
// strings (valid or not), twice so that the second pass hits the cache.
TEST(BpeModel, FastMatchesReferenceOnRandomWords) {
  std::mt19937 rng(21);
  for (const char* name : {"llama-bpe", "gpt-2", "qwen2", "falcon", "mpt", "deepseek-llm"}) {
    const BpeModel& bpe = *test::vocab_tokenizer(name).bpe();
    std::vector<std::string> words;
    for (int i = 0; i < 3000; ++i) {
      std::string w;
      const uint32_t kind = test::pick(rng, 0, 2);
      for (uint32_t n = test::pick(rng, 1, 40); n > 0; --n) {
        if (kind == 0) {
          w += static_cast<char>(test::pick(rng, 'a', 'z'));
        } else if (kind == 1) {
          w += static_cast<char>(test::pick(rng, 0, 255));
        } else {
          test::append_piece(rng, w);
        }
      }
      words.push_back(w);
    }
    for (int pass = 0; pass < 2; ++pass) {
      for (const std::string& w : words) {
        std::vector<int32_t> fast, ref;
        bpe.encode_word(w, fast);
        bpe.encode_word_reference(w, ref);
        ASSERT_EQ(fast, ref) << name << " word of " << w.size() << " bytes";
      }
    }
  }
}

// SPM over long texts: the heap merge against the rescan.
TEST(SpmModel, FastMatchesReferenceOnRandomText) {
  std::mt19937 rng(31);
  for (const char* name : {"llama-spm", "phi-3"}) {
    const VocabTokenizer& tok = test::vocab_tokenizer(name);
    for (int i = 0; i < 300; ++i) {
      std::string text;
      for (char c : test::random_text(rng, 40)) {
        if (c == ' ') {
          text += "\xE2\x96\x81";
        } else {
          text += c;
        }
      }
      std::vector<int32_t> fast, ref;
      tok.spm()->encode(text, fast);
      tok.spm()->encode_reference(text, ref);
      ASSERT_EQ(fast, ref) << name << ": " << text;
    }
  }
}

// encode() is const and shared between threads (the BPE word cache is
// locked); results must not depend on what other threads do.
TEST(Tokenizer, ConcurrentEncodeIsConsistent) {
  const VocabTokenizer& tok = test::vocab_tokenizer("llama-bpe");
  std::mt19937 rng(41);
  std::vector<std::string> inputs;
  for (int i = 0; i < 400; ++i) inputs.push_back(test::random_text(rng, 30));
  std::vector<std::vector<int32_t>> want;
  for (const std::string& s : inputs) want.push_back(tok.encode_reference(s, true, true));
  std::vector<std::thread> threads;
  std::vector<int> bad(4, 0);
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int rep = 0; rep < 3; ++rep) {
        for (size_t i = 0; i < inputs.size(); ++i) {
          const size_t k = (i * 7 + static_cast<size_t>(t) * 13 + static_cast<size_t>(rep)) % inputs.size();
          bad[t] += tok.encode(inputs[k], true, true) != want[k];
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(bad, std::vector<int>(4, 0));
}

}  // namespace
}  // namespace tpinfer
