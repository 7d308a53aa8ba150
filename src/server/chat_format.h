// Chat messages -> prompt tokens for the server, through the project's one
// path for chat prompts (tokenizer/chat_prompt.h, also behind `run --chat`):
// the template given on the command line, else the model's own, else the
// documented default, ChatML:
//
//   <|im_start|>{role}\n{content}<|im_end|>\n ... [<|im_start|>assistant\n]
//
// Rendering has Jinja2's semantics (tokenizer/chat_template.h). The template
// sees `messages`, `add_generation_prompt`, `bos_token`, `eos_token`, the
// request's chat_template_kwargs, and `tools` when the request has tools
// (undefined otherwise, so that `tools is defined` is false). The text is
// tokenized with special tokens recognised, and BOS is added once (only when
// the text does not start with it).
// A template that fails on a conversation (Gemma's "System role not
// supported", a render limit) throws TemplateFailure, which the server answers
// with 400.
#pragma once

#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "tokenizer/chat_template.h"
#include "tokenizer/tokenizer.h"

namespace tpinfer::server {

struct TemplateFailure : std::runtime_error {
  using std::runtime_error::runtime_error;
};

class ChatFormatter {
 public:
  // `override_source`: template text from the command line (empty: the model's
  // own, else ChatML). Throws ConfigError when the template does not parse.
  ChatFormatter(const Tokenizer& tok, const std::string& override_source);

  // Thread-safe. `tools`: an array, or null for none.
  std::vector<int32_t> tokens(const nlohmann::ordered_json& messages, bool add_generation_prompt,
                              const nlohmann::ordered_json& kwargs,
                              const nlohmann::ordered_json& tools = nullptr) const;

  // The template's source (for detect_tool_call_format).
  const std::string& source() const { return template_->source(); }

 private:
  const Tokenizer& tok_;
  std::unique_ptr<ChatTemplate> template_;
};

}  // namespace tpinfer::server
