// The JSON of OpenAI's completion and chat-completion responses, built in one
// place for both ways a response goes out: whole (one JSON object when every
// choice finished) and streamed (server-sent events, one chunk per piece of a
// choice). A choice is built by choice_json() in both; only its text field
// differs ("message" whole, "delta" streamed, "text" for completions either way).
//
// Everything here is a pure function of its arguments: no HTTP, no threads, no
// engine. Keys come out in OpenAI's order (ordered_json), and text that is not
// valid UTF-8 (a token cut mid-character in logprobs) is dumped with U+FFFD.
#pragma once

#include <cstdint>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "server/request_parser.h"
#include "server/tool_calls.h"

namespace tpinfer {
class Tokenizer;
}

namespace tpinfer::server {

// One generated token as logprobs report it.
struct TokenLogprob {
  int32_t token = -1;
  float logprob = 0;
  std::vector<std::pair<int32_t, float>> top;  // alternatives, best first
  size_t text_offset = 0;                      // bytes into the choice's text where the token's text begins
};

// What every response or chunk of one request repeats.
struct ResponseHead {
  Endpoint endpoint = Endpoint::Completions;
  std::string id;
  int64_t created = 0;  // Unix seconds
  std::string model;
  int logprobs = -1;           // -1: "logprobs": null in every choice
  bool include_usage = false;  // streaming: every chunk carries "usage" (null until the last)
};

// Whole responses carry a choice's text as "message" (chat), streamed chunks
// as "delta" (chat; {} when the piece has no text). Completions use "text" in both.
enum class ChoiceForm { Message, Delta };

// One choice: {"index", "message"|"delta"|"text", "logprobs", "finish_reason"}.
// `finish_reason` null: the choice goes on (streaming) or failed.
// `tool_calls` (chat), when an array: the message's "tool_calls" (its
// "content" then null when `text` is empty), or the delta's.
nlohmann::ordered_json choice_json(const ResponseHead& head, ChoiceForm form, size_t index, const std::string& text,
                                   const std::vector<TokenLogprob>& logprobs, const char* finish_reason,
                                   const Tokenizer& tok, const nlohmann::ordered_json& tool_calls = nullptr);

// A call in a whole message: {"id", "type": "function", "function": {"name", "arguments"}}.
nlohmann::ordered_json tool_call_json(const std::string& id, const ToolCall& call);
// A call streamed as OpenAI does: first {"index", "id", "type", "function":
// {"name", "arguments": ""}}, then {"index", "function": {"arguments"}} pieces.
nlohmann::ordered_json tool_call_start_delta(size_t index, const std::string& id, const std::string& name);
nlohmann::ordered_json tool_call_arguments_delta(size_t index, const std::string& arguments);

// What one streamed choice sends for pieces of parsed output, in order: a
// delta of content, or of tool_calls (each call: its start, then its
// arguments). `calls` counts the choice's calls so far (a call's index);
// `new_id` gives each call its id.
struct ToolStreamDelta {
  std::string content;
  nlohmann::ordered_json tool_calls;  // an array, or null for a content delta
};
std::vector<ToolStreamDelta> tool_stream_deltas(const std::vector<ToolCallPiece>& pieces, size_t& calls,
                                                const std::function<std::string()>& new_id);
// The first chunk of each choice of a chat stream: the assistant role, no text.
nlohmann::ordered_json role_delta_json(size_t index);

// The token counts of a response's "usage": cached_prompt_tokens (of
// prompt_tokens, found in the prefix cache) goes out as OpenAI's
// usage.prompt_tokens_details.cached_tokens.
struct UsageCounts {
  int64_t prompt_tokens = 0;
  int64_t completion_tokens = 0;
  int64_t cached_prompt_tokens = 0;
};

// {"id", "object", "created", "model", "choices", "usage"}: a whole response.
nlohmann::ordered_json response_json(const ResponseHead& head, nlohmann::ordered_json choices,
                                     const UsageCounts& usage);
// A chunk of a stream with `choices`.
nlohmann::ordered_json chunk_json(const ResponseHead& head, nlohmann::ordered_json choices);
// The last chunk of a stream with include_usage: no choices, the usage.
nlohmann::ordered_json usage_chunk_json(const ResponseHead& head, const UsageCounts& usage);

// Compact JSON text; invalid UTF-8 becomes U+FFFD.
std::string dump_json(const nlohmann::ordered_json& j);
// "data: <json>\n\n": one server-sent event.
std::string sse_event(const nlohmann::ordered_json& j);
inline constexpr const char* kSseDone = "data: [DONE]\n\n";

// Errors of the server's own making (5xx), in OpenAI's error shape.
ApiError server_error(int status, std::string message, std::string code = "");
// 503: the server is shutting down and takes no new work.
ApiError shutting_down();

}  // namespace tpinfer::server
