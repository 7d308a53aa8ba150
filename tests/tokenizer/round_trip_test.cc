// decode(encode(x)) == x on 10,000 random strings per vocabulary (seeded; the
// eight shared vocabulary files and the bible model's own), and
// the fast encoder agrees with the reference encoder on every one of them.
//
// What holds exactly (see tokenizer.h): byte-level BPE gives x back byte for
// byte, except the bytes the vocabulary has no token for, which are dropped
// (as Hugging Face does without an unknown token): Falcon lacks 28 of the 256
// byte characters (e.g. 0x03, 0xF2), MPT the 13 that never occur in UTF-8. SentencePiece gives x back with each U+2581
// turned into a space: the vocabulary writes spaces as U+2581, so the two cannot be told apart; the space encode()
// prepends is dropped by decode().
#include <gtest/gtest.h>

#include <random>

#include "tokenizer/byte_level.h"
#include "tokenizer/random_text.h"
#include "tokenizer/tokenizer_test_util.h"

namespace tpinfer {
namespace {

std::string spm_expected(std::string_view x) {
  std::string out;
  for (size_t i = 0; i < x.size(); ++i) {
    if (x.substr(i, 3) == "\xE2\x96\x81") {
      out += ' ';
      i += 2;
    } else {
      out += x[i];
    }
  }
  return out;
}

// x without the bytes whose byte-level character is not a token.
std::string bpe_expected(const VocabTokenizer& tok, std::string_view x) {
  const ByteLevelMap map;
  std::string out;
  for (char c : x) {
    if (tok.token_id(map.encode_byte(static_cast<uint8_t>(c))) >= 0) out += c;
  }
  return out;
}

class RoundTrip : public ::testing::TestWithParam<std::string> {};

// The shared vocabulary files by name, and "bible": the bible model's own
// byte-level BPE vocabulary (4096 tokens, trained on the King James Bible), as
// its GGUF carries it.
const VocabTokenizer& param_tokenizer(const std::string& name) {
  if (name == "bible") return test::gguf_tokenizer(test::shared_dir() + "/bible/bible-q8_0.gguf");
  return test::vocab_tokenizer(name);
}

std::vector<std::string> round_trip_params() {
  std::vector<std::string> v = test::vocab_names();
  v.push_back("bible");
  return v;
}

TEST_P(RoundTrip, RandomUnicode) {
  const VocabTokenizer& tok = param_tokenizer(GetParam());
  const bool spm = tok.spm() != nullptr;
  std::mt19937 rng(20240611u + static_cast<uint32_t>(GetParam().size()));
  int failures = 0;
  for (int i = 0; i < 10000 && failures < 5; ++i) {
    const std::string x = test::random_text(rng);
    const std::string want = spm ? spm_expected(x) : bpe_expected(tok, x);
    const std::vector<int32_t> ids = tok.encode(x, false, false);
    const std::string got = tok.decode(ids);
    if (got != want) {
      ++failures;
      ADD_FAILURE() << GetParam() << ": decode(encode(x)) != x for x = \"" << x << "\", got \"" << got << "\"";
    }
    // With BOS/EOS added and skipped again, the text is the same.
    EXPECT_EQ(tok.decode(tok.encode(x, true, false), /*skip_special=*/true), want);
    if (tok.encode_reference(x, false, false) != ids) {
      ++failures;
      ADD_FAILURE() << GetParam() << ": fast and reference encoders disagree on \"" << x << "\"";
    }
  }
}

INSTANTIATE_TEST_SUITE_P(AllVocabs, RoundTrip, ::testing::ValuesIn(round_trip_params()), [](const auto& info) {
  std::string n = info.param;
  for (char& c : n) {
    if (c == '-') c = '_';
  }
  return n;
});

// Byte-level BPE represents any bytes, so even ill-formed UTF-8 comes back
// unchanged (the regexes skip invalid bytes, which become words of their own).
TEST(RoundTripInvalid, ByteLevelBpe) {
  for (const char* name : {"llama-bpe", "gpt-2", "qwen2"}) {
    const VocabTokenizer& tok = test::vocab_tokenizer(name);
    std::mt19937 rng(7);
    for (int i = 0; i < 2000; ++i) {
      std::string x = test::random_text(rng, 4);
      for (uint32_t n = test::pick(rng, 1, 4); n > 0; --n) {
        x.insert(x.begin() + test::pick(rng, 0, x.size()), static_cast<char>(test::pick(rng, 0x80, 0xFF)));
      }
      const std::vector<int32_t> ids = tok.encode(x, false, false);
      ASSERT_EQ(tok.decode(ids), x) << name;
      ASSERT_EQ(tok.encode_reference(x, false, false), ids) << name;
    }
  }
}

// SentencePiece with byte fallback also gives ill-formed input back.
TEST(RoundTripInvalid, Spm) {
  const VocabTokenizer& tok = test::vocab_tokenizer("llama-spm");
  std::mt19937 rng(8);
  for (int i = 0; i < 2000; ++i) {
    std::string x = test::random_text(rng, 4);
    x.insert(x.begin() + test::pick(rng, 0, x.size()), static_cast<char>(test::pick(rng, 0x80, 0xFF)));
    const std::vector<int32_t> ids = tok.encode(x, false, false);
    ASSERT_EQ(tok.decode(ids), spm_expected(x));
    ASSERT_EQ(tok.encode_reference(x, false, false), ids);
  }
}

}  // namespace
}  // namespace tpinfer
