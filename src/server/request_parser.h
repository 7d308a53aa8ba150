// Request parsing for the OpenAI-compatible server: the JSON body of a request
// becomes a validated request struct, or an ApiError that the server sends back
// as HTTP status + OpenAI error JSON ({"error": {"message", "type", "param",
// "code"}}). Nothing here touches HTTP, the tokenizer or the engine, so a fuzzer
// can call it with any bytes: every input gives a value or an ApiError, never
// another exception, a crash or unbounded work.
//
// Policy (written down because OpenAI and vLLM differ):
// - Unknown fields are ignored, as vLLM does (OpenAI rejects them); fields the
//   server knows are checked strictly: a wrong type or a value out of range is
//   400 with `param` naming the field. `null` means "not given" for every
//   optional field, as in OpenAI's API.
// - Known features this server cannot honour with a non-default value (echo,
//   best_of > n, logit_bias, suffix, tools on /v1/completions, response_format
//   other than text) are 400 rather than silently ignored.
// - Chat `tools` are checked as OpenAI defines them (type "function", a name of
//   [A-Za-z0-9_-]{1,64}, unique; description a string; parameters an object;
//   strict a boolean) and kept as sent, key order included, for the chat
//   template. `tool_choice` without tools (other than "none") and a named
//   function not among the tools are 400s. Whether the model's template can
//   take tools at all is the server's check (it knows the template).
// - Chat messages are normalized for the templates as vLLM does: an
//   assistant turn's tool_calls are checked ({id, type: "function", function:
//   {name, arguments}}) and each `arguments` JSON string becomes the object it
//   holds (the templates write it with tojson; a string that is not a JSON
//   object stays a string); a turn with tool calls and null content gets
//   content ""; an empty tool_calls is dropped (Llama's template tests only
//   whether the key exists). A "tool" turn needs tool_call_id.
// - The body keeps its key order (a tool's JSON schema reaches the template
//   as sent); an object is built in time linear in its keys whatever it holds.
// - `model` is optional (vLLM); when given it must name the served model (the
//   server checks that: 404 model_not_found).
// - Integers may be written as JSON floats with no fraction (1e3), as Pydantic
//   accepts; booleans must be booleans.
// - The body may nest at most kMaxJsonDepth levels (a bound on work and stack).
// Checks that need the tokenizer (empty prompt after encoding, prompt +
// max_tokens over the model length) are in check_prompt_length().
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "server/tool_calls.h"

namespace tpinfer::server {

inline constexpr int kMaxJsonDepth = 64;

struct ApiError {
  int status = 400;
  std::string message;
  std::string type = "invalid_request_error";
  std::string param;  // empty: null
  std::string code;   // empty: null

  // {"error": {"message", "type", "param", "code"}}
  nlohmann::ordered_json to_json() const;

  static ApiError invalid(std::string message, std::string param = "", std::string code = "");
  static ApiError model_not_found(const std::string& model);
};

// Bounds on what one request may ask for.
struct ParserLimits {
  int64_t max_model_len = 4096;  // max_tokens above this is rejected without tokenizing
  int32_t vocab_size = 0;        // token-id prompts must be in [0, vocab_size); 0: unchecked
  int max_n = 128;               // OpenAI's bound on n
  int max_prompts = 128;         // prompts in one completions request
  int max_sequences = 256;       // prompts x n
  int max_stop = 4;              // OpenAI: up to 4 stop sequences
  size_t max_stop_bytes = 1024;  // per stop sequence
  int max_logprobs = 20;         // completions logprobs / chat top_logprobs
  size_t max_messages = 4096;
  size_t max_tools = 128;  // OpenAI's bound
};

enum class Endpoint { Completions, ChatCompletions };

// One prompt of a completions request: text, or token ids.
struct Prompt {
  bool is_tokens = false;
  std::string text;
  std::vector<int32_t> tokens;
};

// What the output must be: `response_format` (json_object, json_schema) or a
// GBNF grammar of the user's own (`grammar`).
struct OutputFormat {
  enum class Kind { Text, JsonObject, JsonSchema, Grammar };
  Kind kind = Kind::Text;
  nlohmann::ordered_json schema;  // JsonSchema: in the request's key order (properties come out in it)
  bool strict = false;            // json_schema.strict (OpenAI's default: false)
  std::string grammar;            // Grammar: GBNF, root rule 'root'
};

struct GenerationRequest {
  Endpoint endpoint = Endpoint::Completions;
  std::string model;  // empty: not given

  std::vector<Prompt> prompts;      // completions: one or more
  nlohmann::ordered_json messages;  // chat: [{role, content: string (null: assistant turn with only tool calls), ...}]
  bool add_generation_prompt = true;            // chat (vLLM extra)
  nlohmann::ordered_json chat_template_kwargs;  // chat (vLLM extra): object or null
  // chat: the validated tools array as sent (null: no tools, or an empty array),
  // tool_choice (default auto with tools, none without), parallel_tool_calls.
  nlohmann::ordered_json tools;
  ToolChoice tool_choice{ToolChoice::None, ""};
  bool parallel_tool_calls = true;

  int n = 1;
  bool stream = false;
  bool include_usage = false;  // stream_options.include_usage
  std::vector<std::string> stop;
  std::optional<int64_t> max_tokens;  // absent: completions 16, chat the rest of the context
  double temperature = 1.0;
  double top_p = 1.0;
  int top_k = 0;                    // vLLM extra; 0: off
  double min_p = 0.0;               // vLLM extra
  double repetition_penalty = 1.0;  // vLLM extra
  double presence_penalty = 0.0;
  double frequency_penalty = 0.0;
  std::optional<int64_t> seed;
  // -1: no logprobs. Otherwise the number of alternatives per token (completions:
  // `logprobs`; chat: `top_logprobs` when `logprobs` is true).
  int logprobs = -1;
  bool ignore_eos = false;  // vLLM extra
  // tpinfer extra: guesses per step when the server speculates (0 turns it
  // off for this request; absent: the server's --num-speculative-tokens).
  int num_speculative_tokens = -1;
  OutputFormat output;
  bool skip_special_tokens = true;  // vLLM extra
  std::string user;
};

using GenerationParse = std::variant<GenerationRequest, ApiError>;
GenerationParse parse_generation_request(Endpoint endpoint, std::string_view body, const ParserLimits& limits);

// POST /tokenize (vLLM): {"prompt": "...", "add_special_tokens": true} or
// {"messages": [...], "add_generation_prompt": true, "tools": [...],
// "chat_template_kwargs": {...}}; chat prompts are tokenized exactly as the
// chat endpoint does (add_special_tokens does not apply).
struct TokenizeRequest {
  std::string model;
  bool is_chat = false;
  std::string prompt;
  nlohmann::ordered_json messages;
  bool add_generation_prompt = true;
  nlohmann::ordered_json tools;                 // chat: validated, as sent; null: none
  nlohmann::ordered_json chat_template_kwargs;  // chat: object or null
  bool add_special_tokens = true;               // prompts only
};
using TokenizeParse = std::variant<TokenizeRequest, ApiError>;
TokenizeParse parse_tokenize_request(std::string_view body, const ParserLimits& limits);

// POST /detokenize (vLLM): {"tokens": [ids]}.
struct DetokenizeRequest {
  std::string model;
  std::vector<int32_t> tokens;
};
using DetokenizeParse = std::variant<DetokenizeRequest, ApiError>;
DetokenizeParse parse_detokenize_request(std::string_view body, const ParserLimits& limits);

// The checks that need the prompt's length in tokens: an empty prompt, and
// prompt + max_tokens over max_model_len (OpenAI's context_length_exceeded).
// Returns the max_tokens to use (the default when the request gave none).
std::variant<int64_t, ApiError> check_prompt_length(const GenerationRequest& request, int64_t prompt_tokens,
                                                    int64_t max_model_len);

}  // namespace tpinfer::server
