// Chat templates: turning a conversation into the prompt text a model was
// trained on, by rendering the model's Jinja2 chat template exactly as Hugging
// Face transformers' apply_chat_template does (see jinja/template.h for the
// environment). The output is byte-for-byte what Python's jinja2 produces for
// the same template and inputs; templates that call raise_exception("...")
// throw TemplateError with that message (TemplateError::raised() is true).
//
//   ChatTemplate t(tokenizer.chat_template());        // FormatError if malformed
//   std::string prompt = t.render(messages, true, {{"bos_token", "<s>"}});
//
// The template sees `messages`, `add_generation_prompt` and every member of
// `extra_context`: the special tokens (bos_token, eos_token, ...), `tools` when
// the request has tools (leave it out otherwise, so that `tools is defined`
// is false), and template options such as enable_thinking or date_string.
//
// JSON values are nlohmann::ordered_json so that dicts keep their key order:
// a tool schema serializes (tojson) in the order the client sent it, as in
// Python. A ChatTemplate is immutable and may render from several threads.
#pragma once

#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "jinja/error.h"
#include "jinja/template.h"

namespace tpinfer {

using OrderedJson = nlohmann::ordered_json;

struct ChatMessage {
  std::string role;
  OrderedJson content;                        // a string, or null (a turn with only tool calls)
  OrderedJson extra = OrderedJson::object();  // other members: tool_calls, name, tool_call_id, ...
  // {"role": ..., "content": ..., then the members of extra}.
  OrderedJson to_json() const;
};

struct ChatTemplateOptions {
  jinja::Limits limits;
  // The templates' strftime_now(format); empty: the local time now.
  std::function<std::string(const std::string& format)> strftime_now;
};

class ChatTemplate {
 public:
  // Parses the template; throws FormatError (with line and column) if it is malformed.
  explicit ChatTemplate(std::string source, ChatTemplateOptions options = {});

  // messages: a JSON array of message objects. extra_context: a JSON object (or
  // null) of further variables; messages and add_generation_prompt override
  // members of the same name. Throws TemplateError when rendering fails.
  std::string render(const OrderedJson& messages, bool add_generation_prompt,
                     const OrderedJson& extra_context = OrderedJson::object()) const;
  std::string render(const std::vector<ChatMessage>& messages, bool add_generation_prompt,
                     const OrderedJson& extra_context = OrderedJson::object()) const;

  const std::string& source() const { return source_; }

 private:
  std::string source_;
  jinja::Template template_;
  jinja::RenderConfig config_;
};

// The documented default for models without a template of their own: ChatML
// ("<|im_start|>role\ncontent<|im_end|>\n" per message).
const std::string& default_chat_template();

}  // namespace tpinfer
