// Chat messages -> prompt text, with the model's chat template (or one given on
// the command line); a model without a template of its own gets the documented
// default, ChatML:
//
//   <|im_start|>{role}\n{content}<|im_end|>\n ... [<|im_start|>assistant\n]
//
// Rendering is tokenizer/chat_template.h (Jinja2 semantics, as Hugging Face
// transformers' apply_chat_template). The template sees `messages`,
// `add_generation_prompt`, `bos_token`, `eos_token` and the request's
// chat_template_kwargs. A template that fails on a conversation (Gemma's
// "System role not supported", a render limit) throws TemplateFailure, which
// the server answers with 400.
#pragma once

#include <memory>
#include <stdexcept>
#include <string>

#include <nlohmann/json.hpp>

namespace tpinfer::server {

struct TemplateFailure : std::runtime_error {
  using std::runtime_error::runtime_error;
};

class ChatFormatter {
 public:
  // `source`: the template text; empty selects ChatML. Throws ConfigError when
  // the template does not parse.
  ChatFormatter(const std::string& source, std::string bos_token, std::string eos_token);
  ~ChatFormatter();
  ChatFormatter(const ChatFormatter&) = delete;
  ChatFormatter& operator=(const ChatFormatter&) = delete;

  // Thread-safe.
  std::string render(const nlohmann::ordered_json& messages, bool add_generation_prompt,
                     const nlohmann::ordered_json& kwargs) const;

  bool is_default() const { return is_default_; }

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  std::string bos_token_, eos_token_;
  bool is_default_ = false;
};

}  // namespace tpinfer::server
