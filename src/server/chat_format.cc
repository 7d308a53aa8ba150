#include "server/chat_format.h"

#include <cstdio>

#include "core/error.h"

namespace tpinfer::server {

// TODO(jinja): render every template with tokenizer/chat_template.h once it is
// on main; until then only ChatML is rendered (natively), and a model's own
// template falls back to it with a warning.
struct ChatFormatter::Impl {};

ChatFormatter::ChatFormatter(const std::string& source, std::string bos_token, std::string eos_token)
    : impl_(std::make_unique<Impl>()), bos_token_(std::move(bos_token)), eos_token_(std::move(eos_token)) {
  is_default_ = source.empty();
  if (!is_default_) {
    std::fprintf(stderr, "warning: chat templates other than ChatML need the Jinja interpreter; using ChatML\n");
    is_default_ = true;
  }
}

ChatFormatter::~ChatFormatter() = default;

std::string ChatFormatter::render(const nlohmann::ordered_json& messages, bool add_generation_prompt,
                                  const nlohmann::ordered_json& kwargs) const {
  std::string out;
  for (const auto& m : messages) {
    out += "<|im_start|>" + m.at("role").get<std::string>() + "\n" + m.at("content").get<std::string>() +
           "<|im_end|>\n";
  }
  if (add_generation_prompt) out += "<|im_start|>assistant\n";
  return out;
}

}  // namespace tpinfer::server
