#include "server/openai_json.h"

#include "tokenizer/tokenizer.h"

namespace tpinfer::server {

using ojson = nlohmann::ordered_json;

namespace {

// Token text for logprobs: the token's bytes, special tokens as their text
// (invalid UTF-8 of partial characters becomes U+FFFD when dumped).
ojson bytes_json(const std::string& b) {
  ojson arr = ojson::array();
  for (unsigned char c : b) arr.push_back(static_cast<int>(c));
  return arr;
}

ojson completion_logprobs(const std::vector<TokenLogprob>& lps, const Tokenizer& tok) {
  ojson tokens = ojson::array(), token_logprobs = ojson::array(), top = ojson::array(), offsets = ojson::array();
  for (const TokenLogprob& lp : lps) {
    tokens.push_back(tok.token_bytes(lp.token));
    token_logprobs.push_back(lp.logprob);
    ojson alts = ojson::object();
    for (const auto& [id, l] : lp.top) alts[tok.token_bytes(id)] = l;
    top.push_back(std::move(alts));
    offsets.push_back(lp.text_offset);
  }
  return {{"tokens", tokens}, {"token_logprobs", token_logprobs}, {"top_logprobs", top}, {"text_offset", offsets}};
}

ojson chat_logprobs(const std::vector<TokenLogprob>& lps, const Tokenizer& tok) {
  ojson content = ojson::array();
  for (const TokenLogprob& lp : lps) {
    const std::string b = tok.token_bytes(lp.token);
    ojson alts = ojson::array();
    for (const auto& [id, l] : lp.top) {
      const std::string ab = tok.token_bytes(id);
      alts.push_back({{"token", ab}, {"logprob", l}, {"bytes", bytes_json(ab)}});
    }
    content.push_back({{"token", b}, {"logprob", lp.logprob}, {"bytes", bytes_json(b)}, {"top_logprobs", alts}});
  }
  return {{"content", content}};
}

ojson usage_json(const UsageCounts& u) {
  return {{"prompt_tokens", u.prompt_tokens},
          {"completion_tokens", u.completion_tokens},
          {"total_tokens", u.prompt_tokens + u.completion_tokens},
          {"prompt_tokens_details", {{"cached_tokens", u.cached_prompt_tokens}}}};
}

bool is_chat(const ResponseHead& head) { return head.endpoint == Endpoint::ChatCompletions; }

// {"id", "object", "created", "model", "choices"}
ojson envelope(const ResponseHead& head, const char* object, ojson choices) {
  ojson out;
  out["id"] = head.id;
  out["object"] = object;
  out["created"] = head.created;
  out["model"] = head.model;
  out["choices"] = std::move(choices);
  return out;
}

const char* chunk_object(const ResponseHead& head) {
  return is_chat(head) ? "chat.completion.chunk" : "text_completion";
}

}  // namespace

ojson choice_json(const ResponseHead& head, ChoiceForm form, size_t index, const std::string& text,
                  const std::vector<TokenLogprob>& logprobs, const char* finish_reason, const Tokenizer& tok,
                  const ojson& tool_calls) {
  ojson c;
  c["index"] = index;
  if (is_chat(head)) {
    const bool calls = tool_calls.is_array();
    if (form == ChoiceForm::Message) {
      c["message"] = {{"role", "assistant"}, {"content", calls && text.empty() ? ojson(nullptr) : ojson(text)}};
      if (calls) c["message"]["tool_calls"] = tool_calls;
    } else {
      c["delta"] = text.empty() ? ojson::object() : ojson{{"content", text}};
      if (calls) c["delta"]["tool_calls"] = tool_calls;
    }
    c["logprobs"] = head.logprobs >= 0 ? chat_logprobs(logprobs, tok) : ojson(nullptr);
  } else {
    c["text"] = text;
    c["logprobs"] = head.logprobs >= 0 ? completion_logprobs(logprobs, tok) : ojson(nullptr);
  }
  c["finish_reason"] = finish_reason != nullptr ? ojson(finish_reason) : ojson(nullptr);
  return c;
}

ojson tool_call_json(const std::string& id, const ToolCall& call) {
  return {{"id", id}, {"type", "function"}, {"function", {{"name", call.name}, {"arguments", call.arguments}}}};
}

ojson tool_call_start_delta(size_t index, const std::string& id, const std::string& name) {
  return {{"index", index}, {"id", id}, {"type", "function"}, {"function", {{"name", name}, {"arguments", ""}}}};
}

ojson tool_call_arguments_delta(size_t index, const std::string& arguments) {
  return {{"index", index}, {"function", {{"arguments", arguments}}}};
}

std::vector<ToolStreamDelta> tool_stream_deltas(const std::vector<ToolCallPiece>& pieces, size_t& calls,
                                                const std::function<std::string()>& new_id) {
  std::vector<ToolStreamDelta> out;
  for (const ToolCallPiece& p : pieces) {
    if (!p.is_call) {
      out.push_back({p.content, nullptr});
      continue;
    }
    const size_t k = calls++;
    out.push_back({"", ojson::array({tool_call_start_delta(k, new_id(), p.call.name)})});
    out.push_back({"", ojson::array({tool_call_arguments_delta(k, p.call.arguments)})});
  }
  return out;
}

ojson role_delta_json(size_t index) {
  return {{"index", index},
          {"delta", {{"role", "assistant"}, {"content", ""}}},
          {"logprobs", nullptr},
          {"finish_reason", nullptr}};
}

ojson response_json(const ResponseHead& head, ojson choices, const UsageCounts& usage) {
  ojson out = envelope(head, is_chat(head) ? "chat.completion" : "text_completion", std::move(choices));
  out["usage"] = usage_json(usage);
  return out;
}

ojson chunk_json(const ResponseHead& head, ojson choices) {
  ojson out = envelope(head, chunk_object(head), std::move(choices));
  if (head.include_usage) out["usage"] = nullptr;
  return out;
}

ojson usage_chunk_json(const ResponseHead& head, const UsageCounts& usage) {
  ojson out = envelope(head, chunk_object(head), ojson::array());
  out["usage"] = usage_json(usage);
  return out;
}

std::string dump_json(const ojson& j) { return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace); }

std::string sse_event(const ojson& j) { return "data: " + dump_json(j) + "\n\n"; }

ApiError server_error(int status, std::string message, std::string code) {
  ApiError e;
  e.status = status;
  e.type = status == 503 ? "service_unavailable" : "server_error";
  e.message = std::move(message);
  e.code = std::move(code);
  return e;
}

ApiError shutting_down() { return server_error(503, "The server is shutting down.", "service_unavailable"); }

}  // namespace tpinfer::server
