#include "tokenizer/chat_prompt.h"

namespace tpinfer {

std::unique_ptr<ChatTemplate> chat_template_for(const Tokenizer& tok, const std::string& override_source) {
  if (!override_source.empty()) return std::make_unique<ChatTemplate>(override_source);
  if (!tok.chat_template().empty()) return std::make_unique<ChatTemplate>(tok.chat_template());
  return std::make_unique<ChatTemplate>(default_chat_template());
}

std::string render_chat(const ChatTemplate& tmpl, const Tokenizer& tok, const OrderedJson& messages,
                        bool add_generation_prompt, const OrderedJson& extra) {
  OrderedJson ctx = extra.is_object() ? extra : OrderedJson::object();
  if (!ctx.contains("bos_token")) ctx["bos_token"] = tok.bos() >= 0 ? tok.token_text(tok.bos()) : "";
  if (!ctx.contains("eos_token")) ctx["eos_token"] = tok.eos() >= 0 ? tok.token_text(tok.eos()) : "";
  return tmpl.render(messages, add_generation_prompt, ctx);
}

std::vector<int32_t> chat_prompt_tokens(const Tokenizer& tok, const std::string& rendered) {
  const std::string bos = tok.bos() >= 0 ? tok.token_text(tok.bos()) : "";
  const bool has_bos = !bos.empty() && rendered.compare(0, bos.size(), bos) == 0;
  return tok.encode(rendered, /*add_special=*/!has_bos, /*parse_special=*/true);
}

}  // namespace tpinfer
