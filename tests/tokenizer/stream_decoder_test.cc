// StreamDecoder: never returns broken UTF-8, holds a character split across
// tokens until it is whole, and in total returns utf8::sanitize(decode(ids))
// (= decode(ids) whenever that is valid UTF-8).
#include <gtest/gtest.h>

#include <random>

#include "core/error.h"
#include "core/utf8.h"
#include "tokenizer/byte_level.h"
#include "tokenizer/random_text.h"
#include "tokenizer/tokenizer_test_util.h"

namespace tpinfer {
namespace {

// Streams ids; checks every piece is valid UTF-8; returns the concatenation.
std::string stream(const Tokenizer& tok, const std::vector<int32_t>& ids, bool skip_special) {
  StreamDecoder dec(tok, skip_special);
  std::string all;
  for (int32_t id : ids) {
    const std::string piece = dec.push(id);
    EXPECT_TRUE(utf8::is_valid(piece)) << "push returned broken UTF-8";
    all += piece;
  }
  const std::string rest = dec.finish();
  EXPECT_TRUE(utf8::is_valid(rest));
  return all + rest;
}

// The id of the token standing for one raw byte (byte-level character or
// <0xNN> byte token).
int32_t byte_id(const VocabTokenizer& tok, uint8_t b) {
  if (tok.spm() != nullptr) return tok.vocab().byte_token(b);
  return tok.token_id(ByteLevelMap().encode_byte(b));
}

// A multi-byte character fed one byte token at a time comes out whole, with
// the last byte.
TEST(StreamDecoder, SplitCharacterComesOutWhole) {
  for (const char* name : {"llama-spm", "llama-bpe"}) {
    const VocabTokenizer& tok = test::vocab_tokenizer(name);
    for (std::string_view ch : {"\xC3\xA9", "\xE2\x82\xAC", "\xF0\x9F\xA6\x99"}) {  // é € 🦙
      StreamDecoder dec(tok);
      for (size_t i = 0; i + 1 < ch.size(); ++i) EXPECT_EQ(dec.push(byte_id(tok, ch[i])), "") << name;
      EXPECT_EQ(dec.push(byte_id(tok, ch.back())), ch) << name;
      EXPECT_EQ(dec.finish(), "");
    }
    // A truncated character at the end becomes U+FFFD on finish().
    StreamDecoder dec(tok);
    EXPECT_EQ(dec.push(byte_id(tok, 0xF0)), "");
    EXPECT_EQ(dec.push(byte_id(tok, 0x9F)), "");
    EXPECT_EQ(dec.finish(), "\xEF\xBF\xBD");
    // A byte that can never start a character is replaced at once.
    StreamDecoder dec2(tok);
    EXPECT_EQ(dec2.push(byte_id(tok, 0xE2)), "");
    EXPECT_EQ(dec2.push(byte_id(tok, 'A')),
              "\xEF\xBF\xBD"
              "A");
  }
}

// Random text, encoded, then streamed token by token and byte by byte.
TEST(StreamDecoder, RandomTextEqualsDecode) {
  std::mt19937 rng(99);
  for (const std::string& name : test::vocab_names()) {
    const VocabTokenizer& tok = test::vocab_tokenizer(name);
    for (int i = 0; i < 500; ++i) {
      const std::string x = test::random_text(rng);
      const std::vector<int32_t> ids = tok.encode(x, true, false);
      for (bool skip : {true, false}) {
        const std::string full = tok.decode(ids, skip);
        ASSERT_EQ(stream(tok, ids, skip), utf8::sanitize(full)) << name;
        if (utf8::is_valid(full)) {
          ASSERT_EQ(stream(tok, ids, skip), full) << name;
        }
      }
      // The same text as one byte token per byte: every character is split.
      std::vector<int32_t> bytes;
      for (char c : x) {
        if (byte_id(tok, c) >= 0) bytes.push_back(byte_id(tok, c));
      }
      ASSERT_EQ(stream(tok, bytes, true), utf8::sanitize(tok.decode(bytes, true))) << name;
    }
  }
}

// Random byte tokens (mostly ill-formed UTF-8) mixed with ordinary tokens.
TEST(StreamDecoder, RandomBytesEqualSanitizedDecode) {
  std::mt19937 rng(5);
  for (const char* name : {"llama-spm", "gpt-2", "qwen2"}) {
    const VocabTokenizer& tok = test::vocab_tokenizer(name);
    for (int i = 0; i < 2000; ++i) {
      std::vector<int32_t> ids;
      for (uint32_t n = test::pick(rng, 0, 12); n > 0; --n) {
        const int32_t b = byte_id(tok, static_cast<uint8_t>(test::pick(rng, 0, 255)));
        ids.push_back(
            test::pick(rng, 0, 3) == 0 || b < 0 ? static_cast<int32_t>(test::pick(rng, 0, tok.vocab_size() - 1)) : b);
      }
      for (bool skip : {true, false}) ASSERT_EQ(stream(tok, ids, skip), utf8::sanitize(tok.decode(ids, skip))) << name;
    }
  }
}

TEST(StreamDecoder, SkipsSpecialTokensAndDropsPrefixSpace) {
  const VocabTokenizer& tok = test::vocab_tokenizer("llama-spm");
  const std::vector<int32_t> ids = tok.encode("Hello world", true, false);
  ASSERT_EQ(ids.front(), tok.bos());
  EXPECT_EQ(stream(tok, ids, true), "Hello world");
  EXPECT_EQ(stream(tok, ids, false), "<s>Hello world");
}

TEST(StreamDecoder, OutOfRangeIdThrows) {
  const VocabTokenizer& tok = test::vocab_tokenizer("gpt-2");
  StreamDecoder dec(tok);
  EXPECT_THROW(dec.push(-1), Error);
  EXPECT_THROW(dec.push(tok.vocab_size()), Error);
  EXPECT_THROW(tok.decode({5, 1 << 30}), Error);
}

}  // namespace
}  // namespace tpinfer
