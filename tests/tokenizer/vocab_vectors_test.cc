// The test vectors that come with the vocabulary files (from llama.cpp's
// models/ folder): every string of ggml-vocab-NAME.gguf.inp must encode to
// exactly the ids on the same line of .out, which the model's own reference
// tokenizer (Hugging Face) produced. The vectors were made without BOS/EOS and
// without parsing special tokens, so encode(text, false, false) must match.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "tokenizer/tokenizer_test_util.h"

namespace tpinfer {
namespace {

std::string show(const std::vector<int32_t>& ids) {
  std::string s;
  for (int32_t id : ids) {
    s += ' ';
    s += std::to_string(id);
  }
  return s;
}

class VocabVectors : public ::testing::TestWithParam<std::string> {};

TEST_P(VocabVectors, MatchReferenceIds) {
  const std::string path = test::vocab_path(GetParam());
  const std::vector<std::string> inputs = test::vocab_test_inputs(path);
  const std::vector<std::vector<int32_t>> expected = test::vocab_test_ids(path);
  ASSERT_EQ(inputs.size(), 46u);
  ASSERT_EQ(inputs.size(), expected.size());
  const VocabTokenizer& tok = test::gguf_tokenizer(path);
  for (size_t i = 0; i < inputs.size(); ++i) {
    const std::vector<int32_t> got = tok.encode(inputs[i], /*add_special=*/false, /*parse_special=*/false);
    EXPECT_EQ(show(got), show(expected[i])) << GetParam() << " string " << i << ": \"" << inputs[i] << "\"";
    EXPECT_EQ(tok.encode_reference(inputs[i], false, false), got) << "reference disagrees on string " << i;
  }
}

INSTANTIATE_TEST_SUITE_P(AllVocabs, VocabVectors, ::testing::ValuesIn(test::vocab_names()), [](const auto& info) {
  std::string n = info.param;
  for (char& c : n) {
    if (c == '-') c = '_';
  }
  return n;
});

}  // namespace
}  // namespace tpinfer
