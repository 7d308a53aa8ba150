#include "server/chat_format.h"

#include "core/error.h"
#include "tokenizer/chat_template.h"

namespace tpinfer::server {

struct ChatFormatter::Impl {
  explicit Impl(std::string source) : tmpl(std::move(source)) {}
  ChatTemplate tmpl;
};

ChatFormatter::ChatFormatter(const std::string& source, std::string bos_token, std::string eos_token)
    : bos_token_(std::move(bos_token)), eos_token_(std::move(eos_token)) {
  is_default_ = source.empty();
  try {
    impl_ = std::make_unique<Impl>(is_default_ ? default_chat_template() : source);
  } catch (const std::exception& e) {
    throw ConfigError(cat("the chat template does not parse: ", e.what()));
  }
}

ChatFormatter::~ChatFormatter() = default;

std::string ChatFormatter::render(const nlohmann::ordered_json& messages, bool add_generation_prompt,
                                  const nlohmann::ordered_json& kwargs) const {
  nlohmann::ordered_json context = nlohmann::ordered_json::object();
  context["bos_token"] = bos_token_;
  context["eos_token"] = eos_token_;
  if (kwargs.is_object()) {
    for (auto it = kwargs.begin(); it != kwargs.end(); ++it) context[it.key()] = it.value();
  }
  try {
    return impl_->tmpl.render(messages, add_generation_prompt, context);
  } catch (const TemplateError& e) {
    throw TemplateFailure(e.what());
  }
}

}  // namespace tpinfer::server
