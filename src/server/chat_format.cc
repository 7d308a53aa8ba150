#include "server/chat_format.h"

#include "core/error.h"
#include "tokenizer/chat_prompt.h"

namespace tpinfer::server {

ChatFormatter::ChatFormatter(const Tokenizer& tok, const std::string& override_source) : tok_(tok) {
  try {
    template_ = chat_template_for(tok, override_source);
  } catch (const std::exception& e) {
    throw ConfigError(cat("the chat template does not parse: ", e.what()));
  }
}

std::vector<int32_t> ChatFormatter::tokens(const nlohmann::ordered_json& messages, bool add_generation_prompt,
                                           const nlohmann::ordered_json& kwargs,
                                           const nlohmann::ordered_json& tools) const {
  nlohmann::ordered_json extra = kwargs.is_object() ? kwargs : nlohmann::ordered_json::object();
  if (tools.is_array()) extra["tools"] = tools;
  std::string text;
  try {
    text = render_chat(*template_, tok_, messages, add_generation_prompt, extra);
  } catch (const TemplateError& e) {
    throw TemplateFailure(e.what());
  }
  return chat_prompt_tokens(tok_, text);
}

}  // namespace tpinfer::server
