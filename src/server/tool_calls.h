// Tool calling (OpenAI's `tools`): everything the server knows about the text
// formats in which models write tool calls, in one place. For each format:
//
//   - how to recognise it from a chat template's source (detect_tool_call_format),
//   - the parser of a model's output into content and calls, whole
//     (parse_tool_calls) or piece by piece as tokens arrive (ToolCallStream),
//   - what the output must look like when the request forces a call
//     (tool_call_constraint: the seam for constrained decoding).
//
// The formats (the text a model writes; whitespace between the parts is free):
//
//   hermes       Hermes 2/3, Qwen2.5, Qwen3 (templates that mention <tool_call>):
//                <tool_call>\n{"name": "f", "arguments": {...}}\n</tool_call>
//                one block per call; text before, between and after is content.
//   llama3_json  Llama 3.1 / 3.2 (templates with <|start_header_id|> that render
//                tools): the output starts (after blanks) with an optional
//                <|python_tag|> and then {"name": "f", "parameters": {...}};
//                several calls are separated by ";" (as vLLM's llama3_json
//                parser accepts). "arguments" is accepted for "parameters".
//                Text that does not start so is content, all of it.
//   mistral      Mistral Nemo and later ([TOOL_CALLS] in the template):
//                [TOOL_CALLS][{"name": "f", "arguments": {...}}, ...]
//                (a single object instead of the array is accepted).
//
// A call is recognised only whole: its JSON object must be complete and valid,
// with a string "name" and an object of arguments (absent: {}). Text that
// looks like the start of a call and then is not one (malformed JSON, no name,
// arguments not an object, the output ending first) is content, exactly as
// written, never an error. Blanks next to a call (before its opening marker,
// after its end) belong to the call's framing and are dropped; when only
// blanks are left, the content is empty. The arguments are returned as the
// model wrote them (the raw JSON text of the object), so that the streamed and
// the whole forms give the same bytes.
//
// Streaming holds text back while it may still be the start of a call (as
// StopMatcher holds back a possible stop string), releases it as content as
// soon as it cannot be, and releases a call when its JSON object completes:
// pushing the text in any pieces gives the same content and calls as
// parse_tool_calls of the whole (tests/server/tool_calls_test.cc cuts every
// case at every byte).
#pragma once

#include <cstddef>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/enum_names.h"

namespace tpinfer::server {

enum class ToolCallFormat { None, Hermes, Llama3Json, Mistral };
// The names of --tool-call-parser ("none" is what detection returns for a
// template that renders no tools or writes calls in a format not parsed here).
inline constexpr EnumNames<ToolCallFormat, 4> kToolCallFormats{{"none", "hermes", "llama3_json", "mistral"}};

// The format a chat template's source asks the model to write, from the
// markers it renders: [TOOL_CALLS] -> mistral, <tool_call> -> hermes,
// <|start_header_id|> with a "parameters" object and `tools` -> llama3_json;
// anything else (ChatML, Phi, Gemma, gpt-oss's harmony, DeepSeek-R1's) -> None.
ToolCallFormat detect_tool_call_format(std::string_view template_source);

// --tool-call-parser: "auto" is the format detected from `template_source`,
// a format's name (but "none") that format. Throws ConfigError naming the
// valid choices for anything else.
ToolCallFormat resolve_tool_call_parser(std::string_view option, std::string_view template_source);

// The marker texts of a format that are single special tokens in the models
// that use it (<tool_call>, <|python_tag|>, [TOOL_CALLS]): the server keeps
// them in the decoded text of a request with tools even when special tokens
// are skipped, so that the parser sees them.
std::vector<std::string> tool_call_marker_tokens(ToolCallFormat format);

// Adapts a validated conversation to what the format's templates demand:
// mistral's raise unless tool-call ids are 9 alphanumerics, so the ids of
// assistant tool_calls and of tool messages' tool_call_id are cut to their
// last 9 characters (as vLLM does; this server's ids end in 24 alphanumerics).
void prepare_messages_for_format(ToolCallFormat format, nlohmann::ordered_json& messages);

// A new tool-call id, "call_" and 24 alphanumerics drawn from the two words.
std::string tool_call_id(uint64_t a, uint64_t b);

// tool_choice of a request.
struct ToolChoice {
  enum Kind { Auto, None, Required, Named };
  Kind kind = Auto;
  std::string name;  // Named: the function
};

struct ToolCall {
  std::string name;
  std::string arguments;  // JSON text of an object, as the model wrote it
};

// A piece of parsed output, in the order of the text: content, or a call.
struct ToolCallPiece {
  bool is_call = false;
  std::string content;  // !is_call
  ToolCall call;        // is_call
};

// The whole output: the content (text outside the calls) and the calls.
struct ParsedToolCalls {
  std::string content;
  std::vector<ToolCall> calls;
};

// Parses a finished output. Format None: all content.
ParsedToolCalls parse_tool_calls(ToolCallFormat format, std::string_view text);

// The same parse over text that arrives in pieces.
class ToolCallStream {
 public:
  explicit ToolCallStream(ToolCallFormat format);
  // Appends `text`; returns what became certain (content and whole calls), in order.
  std::vector<ToolCallPiece> push(std::string_view text);
  // The output ended: returns the rest (text held back is content).
  std::vector<ToolCallPiece> finish();

 private:
  // Parses as much of held_ as is certain; `end`: no more text follows.
  void drain(bool end, std::vector<ToolCallPiece>& out);

  ToolCallFormat format_;
  std::string held_;         // text not yet resolved
  bool at_start_ = true;     // nothing resolved yet (llama3_json: calls only here)
  bool after_call_ = false;  // the last thing resolved was a call (drop leading blanks)
  bool plain_ = false;       // llama3_json: the rest is content
  bool llama_next_ = false;  // llama3_json: after ";", another call must follow
};

// Constrained decoding's seam. When a request forces calls (tool_choice
// "required" or a named function), the output must be exactly
//
//   prefix  call (separator call){0, max_calls - 1}  suffix
//
// where every `call` is a JSON value valid against `call_schema`, written
// compactly or with blanks as a JSON grammar allows. `call_schema` is a JSON
// Schema of one call object in the format's own key names, in the order they
// must be written:
//
//   {"type": "object",
//    "properties": {"name": {"const": "f"}, "arguments": <f's parameters>},
//    "required": ["name", "arguments"], "additionalProperties": false}
//
// ("parameters" instead of "arguments" for llama3_json), or {"anyOf": [one
// such schema per tool]} for "required"; besides what the tools' parameters
// use, it needs type, properties, required, const, anyOf, additionalProperties
// and $defs/$ref. A tool without `parameters` takes {"type": "object",
// "properties": {}}. The parameters' $defs (and definitions) move to the call
// schema's root $defs as "<tool>.<name>", and their $refs are rewritten to
// match (local pointers such as "#" to where the parameters now sit), so that
// the schema is whole on its own. The grammar layer compiles `call_schema`
// (compile_json_schema) and wraps it in the literal strings; the result
// parses back with parse_tool_calls into 1..max_calls calls.
//
// The literals may hold a marker that is one special token of the vocabulary
// (tool_call_marker_tokens: [TOOL_CALLS] in Mistral's, <tool_call> in some
// Hermes models'): the grammar layer must let that token match the literal's
// text, as the server decodes it with that token kept.
struct ToolCallConstraint {
  std::string prefix;
  nlohmann::ordered_json call_schema;
  std::string separator;
  std::string suffix;
  int max_calls = 1;  // >= 1; kUnboundedCalls: any number
};
inline constexpr int kUnboundedCalls = -1;

// The constraint for a request, or nullopt when its output is free (no tools,
// tool_choice auto or none, or format None). `tools`: the request's validated
// tools array ([{"type": "function", "function": {"name", "parameters"?, ...}}]).
// With parallel_tool_calls false or a named function, max_calls is 1; llama3_json is always 1
// (its templates raise on an assistant turn with several calls).
std::optional<ToolCallConstraint> tool_call_constraint(ToolCallFormat format, const nlohmann::ordered_json& tools,
                                                       const ToolChoice& choice, bool parallel_tool_calls);

}  // namespace tpinfer::server
