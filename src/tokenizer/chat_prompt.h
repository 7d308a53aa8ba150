// From a conversation to prompt tokens: render the model's chat template (or
// the default ChatML one) with the tokenizer's special tokens, then tokenize it
// with special tokens recognised. BOS is added only when the rendered text does
// not already start with it (templates such as Llama 3's write it themselves).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "tokenizer/chat_template.h"
#include "tokenizer/tokenizer.h"

namespace tpinfer {

// The template to use: `override_source` if not empty, else the model's own,
// else default_chat_template().
std::unique_ptr<ChatTemplate> chat_template_for(const Tokenizer& tok, const std::string& override_source = "");

// The rendered prompt text for `messages` (a JSON array).
std::string render_chat(const ChatTemplate& tmpl, const Tokenizer& tok, const OrderedJson& messages,
                        bool add_generation_prompt = true, const OrderedJson& extra = OrderedJson::object());

// Tokens of a rendered chat prompt.
std::vector<int32_t> chat_prompt_tokens(const Tokenizer& tok, const std::string& rendered);

}  // namespace tpinfer
