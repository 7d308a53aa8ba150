// The bible model's tokenizer, three ways: bible-q8_0.gguf, bible-bf16.gguf and
// the Hugging Face folder's tokenizer.json must agree with each other and with
// the reference outputs the recipe computed with Hugging Face tokenizers.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "formats/model_source.h"
#include "tokenizer/tokenizer_test_util.h"

namespace tpinfer {
namespace {

std::string bible_dir() { return test::shared_dir() + "/bible"; }

const Tokenizer& hf_bible() {
  static const std::unique_ptr<Tokenizer> tok = Tokenizer::from_hf_dir(bible_dir() + "/bible-bf16");
  return *tok;
}

TEST(BibleTokenizer, InTheBeginning) {
  const std::vector<int32_t> want = {4094, 1135, 258, 2099};
  EXPECT_EQ(test::gguf_tokenizer(bible_dir() + "/bible-q8_0.gguf").encode("In the beginning", true, false), want);
  EXPECT_EQ(hf_bible().encode("In the beginning", true, false), want);
}

TEST(BibleTokenizer, SpecialTokensAndFlags) {
  for (const Tokenizer* tok :
       {static_cast<const Tokenizer*>(&test::gguf_tokenizer(bible_dir() + "/bible-q8_0.gguf")), &hf_bible()}) {
    EXPECT_EQ(tok->vocab_size(), 4096);
    EXPECT_EQ(tok->bos(), 4094);
    EXPECT_EQ(tok->eos(), 4095);
    EXPECT_TRUE(tok->add_bos_token());
    EXPECT_FALSE(tok->add_eos_token());
    EXPECT_TRUE(tok->is_eog(4095));
    EXPECT_FALSE(tok->is_eog(4094));
    EXPECT_TRUE(tok->is_special(4094));
    EXPECT_FALSE(tok->is_special(258));
    EXPECT_EQ(tok->token_text(4094), "<|begin_of_text|>");
    EXPECT_EQ(tok->token_id("<|end_of_text|>"), 4095);
    // Without parse_special the markers are text; with it they are tokens.
    EXPECT_EQ(tok->encode("<|end_of_text|>", false, true), std::vector<int32_t>{4095});
    EXPECT_GT(tok->encode("<|end_of_text|>", false, false).size(), 1u);
    EXPECT_EQ(tok->decode(tok->encode("<|end_of_text|>", false, false)), "<|end_of_text|>");
  }
}

TEST(BibleTokenizer, ReferencePromptsAndGreedyText) {
  const Tokenizer& gguf = test::gguf_tokenizer(bible_dir() + "/bible-bf16.gguf");
  for (int k : {0, 1}) {
    const auto ref = nlohmann::json::parse(test::read_file(bible_dir() + "/reference/" + std::to_string(k) + ".json"));
    const std::string prompt = ref["prompt"];
    const auto prompt_ids = ref["prompt_tokens"].get<std::vector<int32_t>>();
    EXPECT_EQ(gguf.encode(prompt, true, false), prompt_ids) << prompt;
    EXPECT_EQ(hf_bible().encode(prompt, true, false), prompt_ids) << prompt;
    const auto greedy = ref["greedy_tokens"].get<std::vector<int32_t>>();
    EXPECT_EQ(gguf.decode(greedy), ref["greedy_text"].get<std::string>());
    EXPECT_EQ(hf_bible().decode(greedy), ref["greedy_text"].get<std::string>());
  }
}

// The whole validation text: all three loaders give the same ids, as many as
// the README says (24,286 with the leading BOS), and decoding gives the text back.
TEST(BibleTokenizer, ValidationTextAllLoadersAgree) {
  const std::string text = test::read_file(bible_dir() + "/kjv-valid.txt");
  const VocabTokenizer& q8 = test::gguf_tokenizer(bible_dir() + "/bible-q8_0.gguf");
  const std::vector<int32_t> ids = q8.encode(text, true, false);
  EXPECT_EQ(ids.size(), 24286u);
  EXPECT_EQ(test::gguf_tokenizer(bible_dir() + "/bible-bf16.gguf").encode(text, true, false), ids);
  EXPECT_EQ(hf_bible().encode(text, true, false), ids);
  EXPECT_EQ(q8.encode_reference(text, true, false), ids);
  EXPECT_EQ(q8.decode(ids, /*skip_special=*/true), text);
  EXPECT_EQ(hf_bible().decode(ids, true), text);
}

// Tokenizer::load picks the GGUF metadata or the folder's tokenizer.json.
TEST(BibleTokenizer, LoadThroughModelSource) {
  const std::string text = test::read_file(bible_dir() + "/kjv-valid.txt").substr(0, 5000);
  const auto gguf = Tokenizer::load(*ModelSource::open(bible_dir() + "/bible-q8_0.gguf"));
  const auto hf = Tokenizer::load(*ModelSource::open(bible_dir() + "/bible-bf16"));
  EXPECT_EQ(gguf->encode(text, true, false), hf->encode(text, true, false));
  EXPECT_EQ(gguf->encode("In the beginning", true, false), (std::vector<int32_t>{4094, 1135, 258, 2099}));
}

}  // namespace
}  // namespace tpinfer
