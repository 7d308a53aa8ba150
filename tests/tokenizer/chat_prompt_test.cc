#include "tokenizer/chat_prompt.h"

#include <gtest/gtest.h>

#include <algorithm>

#include "formats/model_source.h"
#include "test_util.h"

namespace tpinfer {
namespace {

std::unique_ptr<Tokenizer> bible_tokenizer() {
  const auto src = ModelSource::open(testing::shared_dir() + "/models/bible/bible-q8_0.gguf");
  return Tokenizer::load(*src);
}

TEST(ChatPrompt, DefaultTemplateIsChatMlAndAddsBosOnce) {
  const auto tok = bible_tokenizer();
  ASSERT_TRUE(tok->chat_template().empty());  // the bible model has none
  const auto tmpl = chat_template_for(*tok);
  const OrderedJson messages = OrderedJson::array({{{"role", "user"}, {"content", "Hello"}}});
  const std::string text = render_chat(*tmpl, *tok, messages);
  EXPECT_EQ(text, "<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\n");
  const auto ids = chat_prompt_tokens(*tok, text);
  ASSERT_FALSE(ids.empty());
  EXPECT_EQ(ids[0], tok->bos());
  EXPECT_EQ(std::count(ids.begin(), ids.end(), tok->bos()), 1);
}

TEST(ChatPrompt, TemplateThatWritesBosGetsNoSecondOne) {
  const auto tok = bible_tokenizer();
  const auto tmpl = chat_template_for(*tok, "{{ bos_token }}{% for m in messages %}{{ m.content }}{% endfor %}");
  const std::string text = render_chat(*tmpl, *tok, OrderedJson::array({{{"role", "user"}, {"content", " Amen"}}}));
  EXPECT_EQ(text, "<|begin_of_text|> Amen");
  const auto ids = chat_prompt_tokens(*tok, text);
  EXPECT_EQ(ids, tok->encode(" Amen", true, false));  // BOS (recognised as special) + text
}

}  // namespace
}  // namespace tpinfer
