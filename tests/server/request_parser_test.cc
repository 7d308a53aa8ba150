// The request parser without HTTP: valid bodies become the request they say,
// each kind of bad body becomes its 400 with `param` naming the field, and
// hostile bytes (mutated bodies, random JSON, deep nesting) always give a value
// or an ApiError, never an exception or a crash.
#include "server/request_parser.h"

#include <gtest/gtest.h>

#include <random>

namespace tpinfer::server {
namespace {

using json = nlohmann::json;

ParserLimits limits() {
  ParserLimits l;
  l.max_model_len = 512;
  l.vocab_size = 4096;
  return l;
}

GenerationRequest parse_ok(Endpoint e, const std::string& body) {
  GenerationParse p = parse_generation_request(e, body, limits());
  if (const ApiError* err = std::get_if<ApiError>(&p)) {
    ADD_FAILURE() << body << " -> " << err->message;
    return {};
  }
  return std::get<GenerationRequest>(p);
}

ApiError parse_err(Endpoint e, const std::string& body) {
  GenerationParse p = parse_generation_request(e, body, limits());
  if (std::holds_alternative<GenerationRequest>(p)) {
    ADD_FAILURE() << body << " was accepted";
    return {};
  }
  return std::get<ApiError>(p);
}

TEST(RequestParser, CompletionFieldsAreRead) {
  const GenerationRequest r = parse_ok(Endpoint::Completions, R"({
    "model": "m", "prompt": "hello", "max_tokens": 7, "n": 2, "stream": true,
    "stream_options": {"include_usage": true}, "stop": ["a", "bc"], "temperature": 0.5,
    "top_p": 0.9, "seed": -3, "logprobs": 4, "presence_penalty": 1.5, "frequency_penalty": -0.5,
    "top_k": 20, "min_p": 0.1, "repetition_penalty": 1.1, "ignore_eos": true, "user": "u",
    "some_future_field": {"x": [1, 2]}})");
  EXPECT_EQ(r.model, "m");
  ASSERT_EQ(r.prompts.size(), 1u);
  EXPECT_FALSE(r.prompts[0].is_tokens);
  EXPECT_EQ(r.prompts[0].text, "hello");
  EXPECT_EQ(r.max_tokens, 7);
  EXPECT_EQ(r.n, 2);
  EXPECT_TRUE(r.stream);
  EXPECT_TRUE(r.include_usage);
  EXPECT_EQ(r.stop, (std::vector<std::string>{"a", "bc"}));
  EXPECT_DOUBLE_EQ(r.temperature, 0.5);
  EXPECT_DOUBLE_EQ(r.top_p, 0.9);
  EXPECT_EQ(r.seed, -3);
  EXPECT_EQ(r.logprobs, 4);
  EXPECT_DOUBLE_EQ(r.presence_penalty, 1.5);
  EXPECT_DOUBLE_EQ(r.frequency_penalty, -0.5);
  EXPECT_EQ(r.top_k, 20);
  EXPECT_DOUBLE_EQ(r.min_p, 0.1);
  EXPECT_DOUBLE_EQ(r.repetition_penalty, 1.1);
  EXPECT_TRUE(r.ignore_eos);
  EXPECT_EQ(r.user, "u");
}

// response_format and grammar: the schema keeps the request's key order (its
// properties are generated in it).
TEST(RequestParser, OutputFormats) {
  GenerationRequest r = parse_ok(Endpoint::ChatCompletions, R"({"messages": [{"role": "user", "content": "x"}],
    "response_format": {"type": "json_schema", "json_schema": {"name": "n", "strict": true,
      "schema": {"type": "object", "properties": {"zeta": {"type": "string"}, "alpha": {"type": "integer"}}}}}})");
  EXPECT_EQ(r.output.kind, OutputFormat::Kind::JsonSchema);
  EXPECT_TRUE(r.output.strict);
  EXPECT_EQ(r.output.schema["properties"].begin().key(), "zeta");
  r = parse_ok(Endpoint::Completions, R"({"prompt": "x", "response_format": {"type": "json_object"}})");
  EXPECT_EQ(r.output.kind, OutputFormat::Kind::JsonObject);
  r = parse_ok(Endpoint::Completions, R"({"prompt": "x", "response_format": {"type": "text"}})");
  EXPECT_EQ(r.output.kind, OutputFormat::Kind::Text);
  r = parse_ok(Endpoint::Completions, R"({"prompt": "x", "grammar": "root ::= \"yes\" | \"no\""})");
  EXPECT_EQ(r.output.kind, OutputFormat::Kind::Grammar);
  EXPECT_EQ(r.output.grammar, "root ::= \"yes\" | \"no\"");
}

TEST(RequestParser, DefaultsFollowOpenAI) {
  const GenerationRequest r = parse_ok(Endpoint::Completions, R"({"prompt": "x", "stop": null, "seed": null})");
  EXPECT_EQ(r.n, 1);
  EXPECT_FALSE(r.stream);
  EXPECT_FALSE(r.max_tokens.has_value());
  EXPECT_DOUBLE_EQ(r.temperature, 1.0);
  EXPECT_DOUBLE_EQ(r.top_p, 1.0);
  EXPECT_EQ(r.top_k, 0);
  EXPECT_DOUBLE_EQ(r.min_p, 0.0);
  EXPECT_EQ(r.logprobs, -1);
  EXPECT_FALSE(r.seed.has_value());
  EXPECT_TRUE(r.stop.empty());
  EXPECT_TRUE(r.skip_special_tokens);
}

TEST(RequestParser, PromptForms) {
  auto r = parse_ok(Endpoint::Completions, R"({"prompt": [1, 2, 3]})");
  ASSERT_EQ(r.prompts.size(), 1u);
  EXPECT_TRUE(r.prompts[0].is_tokens);
  EXPECT_EQ(r.prompts[0].tokens, (std::vector<int32_t>{1, 2, 3}));
  r = parse_ok(Endpoint::Completions, R"({"prompt": ["a", "b"], "n": 3})");
  ASSERT_EQ(r.prompts.size(), 2u);
  EXPECT_EQ(r.prompts[1].text, "b");
  r = parse_ok(Endpoint::Completions, R"({"prompt": [[5], [6, 7]]})");
  ASSERT_EQ(r.prompts.size(), 2u);
  EXPECT_EQ(r.prompts[1].tokens, (std::vector<int32_t>{6, 7}));
  r = parse_ok(Endpoint::Completions, R"({"prompt": [4095.0], "max_tokens": 1e2})");
  EXPECT_EQ(r.prompts[0].tokens, (std::vector<int32_t>{4095}));
  EXPECT_EQ(r.max_tokens, 100);
}

TEST(RequestParser, ChatMessagesAreNormalized) {
  const GenerationRequest r = parse_ok(Endpoint::ChatCompletions, R"({
    "messages": [
      {"role": "system", "content": "be brief"},
      {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}], "name": "bob"},
      {"role": "assistant", "content": null, "tool_calls": []}],
    "max_tokens": 3, "max_completion_tokens": 9, "logprobs": true, "top_logprobs": 5,
    "add_generation_prompt": false, "chat_template_kwargs": {"enable_thinking": false}})");
  ASSERT_EQ(r.messages.size(), 3u);
  EXPECT_EQ(r.messages[0]["content"], "be brief");
  EXPECT_EQ(r.messages[1]["content"], "a\nb");
  EXPECT_EQ(r.messages[1]["name"], "bob");
  EXPECT_TRUE(r.messages[2]["content"].is_null());
  EXPECT_FALSE(r.messages[2].contains("tool_calls")) << "an empty tool_calls is dropped";
  EXPECT_EQ(r.max_tokens, 9) << "max_completion_tokens wins";
  EXPECT_EQ(r.logprobs, 5);
  EXPECT_FALSE(r.add_generation_prompt);
  EXPECT_EQ(r.chat_template_kwargs["enable_thinking"], false);
  EXPECT_EQ(parse_ok(Endpoint::ChatCompletions, R"({"messages": [{"role": "user", "content": "x"}], "logprobs": true})")
                .logprobs,
            0);
}

TEST(RequestParser, ToolsAndToolChoiceAreRead) {
  const char* tools = R"("tools": [
      {"type": "function", "function": {"name": "get_weather", "description": "d", "strict": true,
        "parameters": {"type": "object", "properties": {"z": {}, "a": {}}, "required": ["z"]}}},
      {"type": "function", "function": {"name": "now"}}])";
  GenerationRequest r = parse_ok(Endpoint::ChatCompletions,
                                 std::string(R"({"messages": [{"role": "user", "content": "x"}], )") + tools + "}");
  ASSERT_TRUE(r.tools.is_array());
  ASSERT_EQ(r.tools.size(), 2u);
  EXPECT_EQ(r.tools[0]["function"]["parameters"].dump(),
            R"({"type":"object","properties":{"z":{},"a":{}},"required":["z"]})")
      << "the schema keeps its key order";
  EXPECT_EQ(r.tool_choice.kind, ToolChoice::Auto) << "auto is the default with tools";
  EXPECT_TRUE(r.parallel_tool_calls);

  r = parse_ok(Endpoint::ChatCompletions, std::string(R"({"messages": [{"role": "user", "content": "x"}], )") + tools +
                                              R"(, "tool_choice": {"type": "function", "function": {"name": "now"}},
                                              "parallel_tool_calls": false})");
  EXPECT_EQ(r.tool_choice.kind, ToolChoice::Named);
  EXPECT_EQ(r.tool_choice.name, "now");
  EXPECT_FALSE(r.parallel_tool_calls);
  for (const auto& [text, kind] : std::vector<std::pair<std::string, ToolChoice::Kind>>{
           {"none", ToolChoice::None}, {"auto", ToolChoice::Auto}, {"required", ToolChoice::Required}}) {
    r = parse_ok(Endpoint::ChatCompletions, std::string(R"({"messages": [{"role": "user", "content": "x"}], )") +
                                                tools + R"(, "tool_choice": ")" + text + "\"}");
    EXPECT_EQ(r.tool_choice.kind, kind) << text;
  }

  r = parse_ok(Endpoint::ChatCompletions, R"({"messages": [{"role": "user", "content": "x"}], "tools": [],
                                            "tool_choice": "none"})");
  EXPECT_TRUE(r.tools.is_null()) << "no tools";
  EXPECT_EQ(r.tool_choice.kind, ToolChoice::None);
}

TEST(RequestParser, ToolCallMessagesAreNormalizedForTemplates) {
  const GenerationRequest r = parse_ok(Endpoint::ChatCompletions, R"({"messages": [
      {"role": "user", "content": "weather?"},
      {"role": "assistant", "content": null, "tool_calls": [
        {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{\"b\": 1, \"a\": [true]}"}},
        {"id": "call_2", "type": "function", "function": {"name": "g", "arguments": "not json"}},
        {"id": "call_3", "function": {"name": "h", "arguments": {"k": "v"}}}]},
      {"role": "tool", "tool_call_id": "call_1", "content": "sunny"}]})");
  ASSERT_EQ(r.messages.size(), 3u);
  const auto& a = r.messages[1];
  EXPECT_EQ(a["content"], "") << "null content with tool calls becomes empty text";
  ASSERT_EQ(a["tool_calls"].size(), 3u);
  EXPECT_EQ(a["tool_calls"][0].dump(),
            R"({"id":"call_1","type":"function","function":{"name":"f","arguments":{"b":1,"a":[true]}}})");
  EXPECT_EQ(a["tool_calls"][1]["function"]["arguments"], "not json") << "not a JSON object: stays a string";
  EXPECT_EQ(a["tool_calls"][2]["function"]["arguments"].dump(), R"({"k":"v"})");
  EXPECT_EQ(r.messages[2]["tool_call_id"], "call_1");
  EXPECT_EQ(r.messages[2]["content"], "sunny");
}

struct BadCase {
  Endpoint endpoint;
  std::string body;
  std::string param;  // "" for null
};

TEST(RequestParser, BadBodiesNameTheirField) {
  const Endpoint C = Endpoint::Completions, H = Endpoint::ChatCompletions;
  std::vector<BadCase> cases = {
      {C, "", ""},
      {C, "{", ""},
      {C, "null", ""},
      {C, "\"prompt\"", ""},
      {C, "{\"prompt\": \"x\"} trailing", ""},
      {C, "{\"prompt\": \"\\ud800\"}", ""},                // lone surrogate
      {C, std::string("{\"prompt\": \"\xff\xfe\"}"), ""},  // invalid UTF-8
      {C, "{}", "prompt"},
      {C, "{\"prompt\": null}", "prompt"},
      {C, "{\"prompt\": true}", "prompt"},
      {C, "{\"prompt\": {}}", "prompt"},
      {C, "{\"prompt\": [\"a\", 1]}", "prompt"},
      {C, "{\"prompt\": [1, \"a\"]}", "prompt"},
      {C, "{\"prompt\": [[1], []]}", "prompt"},
      {C, "{\"prompt\": [4096]}", "prompt"},
      {C, "{\"prompt\": [1.5]}", "prompt"},
      {C, "{\"prompt\": [1e30]}", "prompt"},
      {C, "{\"prompt\": \"x\", \"model\": 3}", "model"},
      {C, "{\"prompt\": \"x\", \"n\": 129}", "n"},
      {C, "{\"prompt\": \"x\", \"n\": 1.5}", "n"},
      {C, "{\"prompt\": [\"a\", \"b\", \"c\"], \"n\": 100}", "n"},
      {C, "{\"prompt\": \"x\", \"max_tokens\": 513}", "max_tokens"},
      {C, "{\"prompt\": \"x\", \"max_tokens\": 18446744073709551615}", "max_tokens"},
      {C, "{\"prompt\": \"x\", \"max_tokens\": true}", "max_tokens"},
      {C, "{\"prompt\": \"x\", \"temperature\": -0.1}", "temperature"},
      {C, "{\"prompt\": \"x\", \"top_p\": 1.01}", "top_p"},
      {C, "{\"prompt\": \"x\", \"top_k\": -2}", "top_k"},
      {C, "{\"prompt\": \"x\", \"min_p\": 2}", "min_p"},
      {C, "{\"prompt\": \"x\", \"repetition_penalty\": 0}", "repetition_penalty"},
      {C, "{\"prompt\": \"x\", \"frequency_penalty\": -2.5}", "frequency_penalty"},
      {C, "{\"prompt\": \"x\", \"stream\": 1}", "stream"},
      {C, "{\"prompt\": \"x\", \"stream\": true, \"stream_options\": []}", "stream_options"},
      {C, "{\"prompt\": \"x\", \"stream\": true, \"stream_options\": {\"include_usage\": \"y\"}}",
       "stream_options.include_usage"},
      {C, "{\"prompt\": \"x\", \"stop\": \"\"}", "stop"},
      {C, "{\"prompt\": \"x\", \"stop\": [\"a\", null]}", "stop"},
      {C, "{\"prompt\": \"x\", \"logprobs\": -1}", "logprobs"},
      {C, "{\"prompt\": \"x\", \"logprobs\": true}", "logprobs"},
      {C, "{\"prompt\": \"x\", \"best_of\": 3}", "best_of"},
      {C, "{\"prompt\": \"x\", \"suffix\": \"s\"}", "suffix"},
      {C, "{\"prompt\": \"x\", \"ignore_eos\": \"no\"}", "ignore_eos"},
      {C, "{\"prompt\": \"x\", \"response_format\": {\"type\": \"xml\"}}", "response_format"},
      {C, "{\"prompt\": \"x\", \"response_format\": {\"type\": \"json_schema\"}}", "response_format"},
      {C, "{\"prompt\": \"x\", \"response_format\": {\"type\": \"json_schema\", \"json_schema\": {\"schema\": {}}}}",
       "response_format"},
      {C, "{\"prompt\": \"x\", \"response_format\": {\"type\": \"json_schema\", \"json_schema\": {\"name\": \"a\", \"schema\": 3}}}",
       "response_format.json_schema.schema"},
      {C, "{\"prompt\": \"x\", \"grammar\": \"\"}", "grammar"},
      {C, "{\"prompt\": \"x\", \"grammar\": \"root ::= [a]\", \"response_format\": {\"type\": \"json_object\"}}", "grammar"},
      {C, "{\"prompt\": \"x\", \"user\": 5}", "user"},
      {H, "{\"prompt\": \"x\"}", "messages"},
      {H, "{\"messages\": null}", "messages"},
      {H, "{\"messages\": {}}", "messages"},
      {H, "{\"messages\": [1]}", "messages[0]"},
      {H, "{\"messages\": [{\"role\": \"\", \"content\": \"x\"}]}", "messages[0].role"},
      {H, "{\"messages\": [{\"role\": 1, \"content\": \"x\"}]}", "messages[0].role"},
      {H, "{\"messages\": [{\"role\": \"user\", \"content\": \"x\"}, {\"role\": \"user\", \"content\": null}]}",
       "messages[1].content"},
      {H, "{\"messages\": [{\"role\": \"user\", \"content\": [{\"text\": \"x\"}]}]}", "messages[0].content[0].type"},
      {H, "{\"messages\": [{\"role\": \"user\", \"content\": [{\"type\": \"text\"}]}]}", "messages[0].content[0].text"},
      {H, "{\"messages\": [{\"role\": \"user\", \"content\": [5]}]}", "messages[0].content[0]"},
      {H, "{\"messages\": [{\"role\": \"user\", \"content\": \"x\"}], \"logprobs\": 3}", "logprobs"},
      {H, "{\"messages\": [{\"role\": \"user\", \"content\": \"x\"}], \"logprobs\": true, \"top_logprobs\": 21}",
       "top_logprobs"},
      {H, "{\"messages\": [{\"role\": \"user\", \"content\": \"x\"}], \"max_tokens\": 0}", "max_tokens"},
      {H, "{\"messages\": [{\"role\": \"user\", \"content\": \"x\"}], \"chat_template_kwargs\": 1}",
       "chat_template_kwargs"},
      {H, "{\"messages\": [{\"role\": \"user\", \"content\": \"x\"}], \"tools\": {}}", "tools"},
  };
  // Tools, tool_choice and tool messages (U: a user message before them).
  const std::string U = "{\"messages\": [{\"role\": \"user\", \"content\": \"x\"}], ";
  const std::string F = "{\"type\": \"function\", \"function\": {\"name\": \"f\"}}";
  const std::vector<std::pair<std::string, std::string>> tool_cases = {
      {U + "\"tools\": [1]}", "tools[0]"},
      {U + "\"tools\": [{\"function\": {\"name\": \"f\"}}]}", "tools[0].type"},
      {U + "\"tools\": [{\"type\": \"retrieval\", \"function\": {\"name\": \"f\"}}]}", "tools[0].type"},
      {U + "\"tools\": [{\"type\": \"function\"}]}", "tools[0].function"},
      {U + "\"tools\": [{\"type\": \"function\", \"function\": {}}]}", "tools[0].function.name"},
      {U + "\"tools\": [{\"type\": \"function\", \"function\": {\"name\": \"a b\"}}]}", "tools[0].function.name"},
      {U + "\"tools\": [" + F + ", " + F + "]}", "tools[1].function.name"},
      {U + "\"tools\": [{\"type\": \"function\", \"function\": {\"name\": \"f\", \"parameters\": []}}]}",
       "tools[0].function.parameters"},
      {U + "\"tools\": [{\"type\": \"function\", \"function\": {\"name\": \"f\", \"description\": 1}}]}",
       "tools[0].function.description"},
      {U + "\"tools\": [{\"type\": \"function\", \"function\": {\"name\": \"f\", \"strict\": 1}}]}",
       "tools[0].function.strict"},
      {U + "\"tools\": [" + F + "], \"tool_choice\": \"always\"}", "tool_choice"},
      {U + "\"tools\": [" + F + "], \"tool_choice\": 1}", "tool_choice"},
      {U + "\"tools\": [" + F + "], \"tool_choice\": {\"type\": \"function\", \"function\": {\"name\": \"g\"}}}",
       "tool_choice.function.name"},
      {U + "\"tools\": [" + F + "], \"tool_choice\": {\"type\": \"function\"}}", "tool_choice.function"},
      {U + "\"tool_choice\": \"required\"}", "tool_choice"},
      {U + "\"tools\": [" + F + "], \"parallel_tool_calls\": 1}", "parallel_tool_calls"},
      {"{\"messages\": [{\"role\": \"tool\", \"content\": \"x\"}]}", "messages[0].tool_call_id"},
      {"{\"messages\": [{\"role\": \"user\", \"content\": \"x\", \"tool_calls\": []}]}", "messages[0].tool_calls"},
      {"{\"messages\": [{\"role\": \"assistant\", \"content\": null, \"tool_calls\": {}}]}", "messages[0].tool_calls"},
      {"{\"messages\": [{\"role\": \"assistant\", \"tool_calls\": [{\"type\": \"function\"}]}]}",
       "messages[0].tool_calls[0].function"},
      {"{\"messages\": [{\"role\": \"assistant\", \"tool_calls\": [{\"function\": {\"arguments\": \"{}\"}}]}]}",
       "messages[0].tool_calls[0].function.name"},
      {"{\"messages\": [{\"role\": \"assistant\", \"tool_calls\": [{\"function\": {\"name\": \"f\", "
       "\"arguments\": 1}}]}]}",
       "messages[0].tool_calls[0].function.arguments"},
      {"{\"messages\": [{\"role\": \"assistant\", \"tool_calls\": [{\"type\": \"x\", \"function\": {\"name\": "
       "\"f\"}}]}]}",
       "messages[0].tool_calls[0].type"},
  };
  for (const auto& [body, param] : tool_cases) cases.push_back({H, body, param});

  for (const BadCase& k : cases) {
    const ApiError e = parse_err(k.endpoint, k.body);
    EXPECT_EQ(e.status, 400) << k.body;
    EXPECT_EQ(e.type, "invalid_request_error") << k.body;
    EXPECT_FALSE(e.message.empty()) << k.body;
    EXPECT_EQ(e.param, k.param) << k.body << " -> " << e.message;
    const json j = e.to_json();
    EXPECT_EQ(j["error"]["message"], e.message);
    EXPECT_EQ(j["error"]["param"].is_null(), k.param.empty());
    EXPECT_TRUE(j["error"]["code"].is_null());
  }
}

TEST(RequestParser, NestingIsBounded) {
  for (int depth : {kMaxJsonDepth - 2, kMaxJsonDepth + 1, 100000}) {
    const std::string body = "{\"prompt\": \"x\", \"deep\": " + std::string(static_cast<size_t>(depth), '[') +
                             std::string(static_cast<size_t>(depth), ']') + "}";
    const GenerationParse p = parse_generation_request(Endpoint::Completions, body, limits());
    EXPECT_EQ(std::holds_alternative<GenerationRequest>(p), depth < kMaxJsonDepth) << depth;
  }
}

// A body keeps its key order, and an object of many keys still costs time
// linear in them (an ordered parse that looks each key up in a list would
// take minutes here).
TEST(RequestParser, ManyKeysParseInLinearTime) {
  std::string body = "{\"prompt\": \"x\", \"big\": {";
  for (int i = 0; i < 300000; ++i) body += (i ? ",\"k" : "\"k") + std::to_string(i) + "\": " + std::to_string(i);
  body += "}, \"big\": 1, \"max_tokens\": 2}";
  const GenerationRequest r = parse_ok(Endpoint::Completions, body);
  EXPECT_EQ(r.max_tokens, 2);
}

TEST(RequestParser, PromptLengthChecks) {
  GenerationRequest c;
  c.endpoint = Endpoint::Completions;
  auto v = check_prompt_length(c, 10, 512);
  EXPECT_EQ(std::get<int64_t>(v), 16) << "OpenAI's default for completions";
  v = check_prompt_length(c, 500, 512);
  EXPECT_EQ(std::get<int64_t>(v), 12) << "capped by the room left";
  v = check_prompt_length(c, 512, 512);
  EXPECT_EQ(std::get<ApiError>(v).code, "context_length_exceeded");
  v = check_prompt_length(c, 0, 512);
  EXPECT_EQ(std::get<ApiError>(v).param, "prompt");
  c.max_tokens = 100;
  EXPECT_EQ(std::get<int64_t>(check_prompt_length(c, 412, 512)), 100);
  const ApiError e = std::get<ApiError>(check_prompt_length(c, 413, 512));
  EXPECT_EQ(e.status, 400);
  EXPECT_NE(e.message.find("513 tokens (413 in the prompt, 100 in the completion)"), std::string::npos) << e.message;
  GenerationRequest h;
  h.endpoint = Endpoint::ChatCompletions;
  EXPECT_EQ(std::get<int64_t>(check_prompt_length(h, 12, 512)), 500) << "chat: the rest of the context";
  EXPECT_EQ(std::get<ApiError>(check_prompt_length(h, 600, 512)).param, "messages");
}

TEST(RequestParser, TokenizeAndDetokenizeBodies) {
  auto t = parse_tokenize_request(R"({"prompt": "abc", "add_special_tokens": false})", limits());
  ASSERT_TRUE(std::holds_alternative<TokenizeRequest>(t));
  EXPECT_EQ(std::get<TokenizeRequest>(t).prompt, "abc");
  EXPECT_FALSE(std::get<TokenizeRequest>(t).add_special_tokens);
  t = parse_tokenize_request(R"({"messages": [{"role": "user", "content": "hi"}]})", limits());
  ASSERT_TRUE(std::holds_alternative<TokenizeRequest>(t));
  EXPECT_TRUE(std::get<TokenizeRequest>(t).is_chat);
  EXPECT_EQ(std::get<ApiError>(parse_tokenize_request("{}", limits())).param, "prompt");
  auto d = parse_detokenize_request(R"({"tokens": [0, 4095]})", limits());
  ASSERT_TRUE(std::holds_alternative<DetokenizeRequest>(d));
  EXPECT_EQ(std::get<DetokenizeRequest>(d).tokens, (std::vector<int32_t>{0, 4095}));
  EXPECT_EQ(std::get<ApiError>(parse_detokenize_request(R"({"tokens": [4096]})", limits())).param, "tokens");
  EXPECT_EQ(std::get<ApiError>(parse_detokenize_request(R"({"tokens": "1 2"})", limits())).param, "tokens");
}

// Every mutation of a valid body is accepted or rejected with a 400, never
// anything else; what is accepted satisfies the limits.
TEST(RequestParser, MutatedBodiesNeverEscape) {
  const std::vector<std::pair<Endpoint, std::string>> seeds = {
      {Endpoint::Completions,
       R"({"prompt": ["abc", "d"], "max_tokens": 5, "n": 2, "stop": ["x", "yz"], "logprobs": 2, "stream": true,
           "stream_options": {"include_usage": true}, "temperature": 0.7, "seed": 9})"},
      {Endpoint::Completions, R"({"prompt": [[1, 2, 3], [4]], "top_p": 0.5, "top_k": 3})"},
      {Endpoint::ChatCompletions,
       R"({"messages": [{"role": "system", "content": "s"}, {"role": "user", "content": [{"type": "text", "text": "t"}]}],
           "logprobs": true, "top_logprobs": 3, "max_completion_tokens": 8, "chat_template_kwargs": {"a": [1, {"b": null}]}})"},
  };
  const std::string alphabet = "{}[]\":,0123456789.-eE truefalsnl\\u\xc3\xa9\xff";
  std::mt19937_64 rng(20240611);
  int accepted = 0, rejected = 0;
  for (int iter = 0; iter < 40000; ++iter) {
    const auto& [endpoint, seed] = seeds[rng() % seeds.size()];
    std::string body = seed;
    const int edits = 1 + static_cast<int>(rng() % 4);
    for (int e = 0; e < edits && !body.empty(); ++e) {
      const size_t at = rng() % body.size();
      switch (rng() % 4) {
        case 0: body[at] = alphabet[rng() % alphabet.size()]; break;
        case 1: body.insert(at, 1, alphabet[rng() % alphabet.size()]); break;
        case 2: body.erase(at, 1 + rng() % 3); break;
        default: body.resize(at); break;
      }
    }
    GenerationParse p = parse_generation_request(endpoint, body, limits());
    if (const ApiError* err = std::get_if<ApiError>(&p)) {
      ASSERT_EQ(err->status, 400) << body << " -> " << err->message;
      ++rejected;
    } else {
      const GenerationRequest& r = std::get<GenerationRequest>(p);
      ASSERT_GE(r.n, 1);
      ASSERT_LE(r.n, limits().max_n);
      if (r.max_tokens) {
        ASSERT_TRUE(*r.max_tokens >= 1 && *r.max_tokens <= 512) << body;
      }
      for (const Prompt& pr : r.prompts) {
        for (int32_t t : pr.tokens) ASSERT_TRUE(t >= 0 && t < 4096) << body;
      }
      ASSERT_LE(r.logprobs, 20);
      ++accepted;
    }
  }
  EXPECT_GT(accepted, 100) << "the mutations should not all break the body";
  EXPECT_GT(rejected, 1000);
}

// Random JSON documents built from the known field names and values of every
// type: the parser accepts or rejects each, never escapes.
TEST(RequestParser, RandomDocumentsNeverEscape) {
  const std::vector<std::string> keys = {"prompt",
                                         "messages",
                                         "model",
                                         "n",
                                         "stream",
                                         "stream_options",
                                         "stop",
                                         "max_tokens",
                                         "max_completion_tokens",
                                         "temperature",
                                         "top_p",
                                         "seed",
                                         "logprobs",
                                         "top_logprobs",
                                         "presence_penalty",
                                         "frequency_penalty",
                                         "echo",
                                         "best_of",
                                         "suffix",
                                         "tools",
                                         "logit_bias",
                                         "role",
                                         "content",
                                         "type",
                                         "text",
                                         "include_usage",
                                         "response_format",
                                         "top_k",
                                         "tool_choice",
                                         "tool_calls",
                                         "function",
                                         "name",
                                         "arguments",
                                         "tool_call_id",
                                         "parallel_tool_calls",
                                         "parameters"};
  std::mt19937_64 rng(7);
  std::function<json(int)> value = [&](int depth) -> json {
    switch (rng() % (depth > 3 ? 7 : 9)) {
      case 0: return nullptr;
      case 1: return rng() % 2 == 0;
      case 2: return static_cast<int64_t>(rng() % 2000) - 1000;
      case 3: return static_cast<double>(static_cast<int64_t>(rng() % 20000) - 10000) / 1000.0;
      case 4: return std::string(rng() % 4, "ab\n"[rng() % 3]);
      case 5: return static_cast<uint64_t>(rng());
      case 6: return json::array();
      case 7: {
        json a = json::array();
        for (size_t i = rng() % 4; i > 0; --i) a.push_back(value(depth + 1));
        return a;
      }
      default: {
        json o = json::object();
        for (size_t i = rng() % 5; i > 0; --i) o[keys[rng() % keys.size()]] = value(depth + 1);
        return o;
      }
    }
  };
  for (int iter = 0; iter < 20000; ++iter) {
    json doc = json::object();
    for (size_t i = 1 + rng() % 6; i > 0; --i) doc[keys[rng() % keys.size()]] = value(0);
    if (rng() % 3 == 0) doc["prompt"] = "p";
    if (rng() % 3 == 0) doc["messages"] = json::array({{{"role", "user"}, {"content", "c"}}});
    for (Endpoint e : {Endpoint::Completions, Endpoint::ChatCompletions}) {
      GenerationParse p = parse_generation_request(e, doc.dump(), limits());
      if (const ApiError* err = std::get_if<ApiError>(&p)) {
        ASSERT_EQ(err->status, 400) << doc.dump();
      }
    }
    ASSERT_NO_THROW(parse_tokenize_request(doc.dump(), limits()));
    ASSERT_NO_THROW(parse_detokenize_request(doc.dump(), limits()));
  }
}

}  // namespace
}  // namespace tpinfer::server
