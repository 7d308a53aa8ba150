#include "tokenizer/chat_template.h"

namespace tpinfer {

OrderedJson ChatMessage::to_json() const {
  OrderedJson j = OrderedJson::object();
  j["role"] = role;
  j["content"] = content;
  if (extra.is_object()) {
    for (const auto& [k, v] : extra.items()) j[k] = v;
  }
  return j;
}

ChatTemplate::ChatTemplate(std::string source, ChatTemplateOptions options)
    : source_(std::move(source)), template_(source_) {
  config_.limits = options.limits;
  config_.strftime_now = std::move(options.strftime_now);
}

std::string ChatTemplate::render(const OrderedJson& messages, bool add_generation_prompt,
                                 const OrderedJson& extra_context) const {
  if (!messages.is_array()) throw TemplateError("chat template: messages must be a JSON array");
  if (!extra_context.is_object() && !extra_context.is_null()) {
    throw TemplateError("chat template: the extra context must be a JSON object");
  }
  OrderedJson context = extra_context.is_object() ? extra_context : OrderedJson::object();
  context["messages"] = messages;
  context["add_generation_prompt"] = add_generation_prompt;
  return template_.render(context, config_);
}

std::string ChatTemplate::render(const std::vector<ChatMessage>& messages, bool add_generation_prompt,
                                 const OrderedJson& extra_context) const {
  OrderedJson array = OrderedJson::array();
  for (const ChatMessage& m : messages) array.push_back(m.to_json());
  return render(array, add_generation_prompt, extra_context);
}

const std::string& default_chat_template() {
  static const std::string kChatML =
      "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + "
      "'<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";
  return kChatML;
}

}  // namespace tpinfer
