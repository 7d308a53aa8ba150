// The tool-call formats (server/tool_calls.h): each parser on whole outputs
// (calls, content, malformed calls falling back to content), the same output
// pushed in every cutting (every two-piece cut, byte by byte, random cuts)
// giving the same content and calls, detection from the real templates, and
// the constraint seam's wrappers parsing back into calls.
#include "server/tool_calls.h"

#include <gtest/gtest.h>

#include <cctype>
#include <fstream>
#include <random>
#include <sstream>

#include "server/openai_json.h"
#include "structured/json_schema.h"

namespace tpinfer::server {
namespace {

using ojson = nlohmann::ordered_json;

struct Case {
  ToolCallFormat format;
  std::string text;
  std::string content;                                     // expected
  std::vector<std::pair<std::string, std::string>> calls;  // expected (name, arguments)
};

std::vector<std::pair<std::string, std::string>> names_and_args(const std::vector<ToolCall>& calls) {
  std::vector<std::pair<std::string, std::string>> out;
  for (const ToolCall& c : calls) out.emplace_back(c.name, c.arguments);
  return out;
}

// The text pushed in the given pieces, gathered as parse_tool_calls returns it;
// content pieces must not follow each other (push merges them), and every
// piece must be non-empty.
ParsedToolCalls streamed(ToolCallFormat format, const std::vector<std::string_view>& pieces) {
  ToolCallStream stream(format);
  std::vector<ToolCallPiece> out;
  for (std::string_view p : pieces) {
    for (ToolCallPiece& q : stream.push(p)) out.push_back(std::move(q));
  }
  for (ToolCallPiece& q : stream.finish()) out.push_back(std::move(q));
  ParsedToolCalls parsed;
  for (const ToolCallPiece& p : out) {
    if (p.is_call) {
      parsed.calls.push_back(p.call);
    } else {
      EXPECT_FALSE(p.content.empty());
      parsed.content += p.content;
    }
  }
  return parsed;
}

void expect_same(const ParsedToolCalls& got, const Case& c, const std::string& how) {
  EXPECT_EQ(got.content, c.content) << how << "\n" << c.text;
  EXPECT_EQ(names_and_args(got.calls), c.calls) << how << "\n" << c.text;
}

void check_every_cutting(const Case& c) {
  const std::string_view t = c.text;
  expect_same(parse_tool_calls(c.format, t), c, "whole");
  for (size_t cut = 0; cut <= t.size(); ++cut) {
    std::vector<std::string_view> pieces;
    if (cut > 0) pieces.push_back(t.substr(0, cut));
    if (cut < t.size()) pieces.push_back(t.substr(cut));
    expect_same(streamed(c.format, pieces), c, "cut at " + std::to_string(cut));
  }
  std::vector<std::string_view> bytes;
  for (size_t i = 0; i < t.size(); ++i) bytes.push_back(t.substr(i, 1));
  expect_same(streamed(c.format, bytes), c, "byte by byte");
  std::mt19937_64 rng(t.size());
  for (int iter = 0; iter < 50; ++iter) {
    std::vector<std::string_view> pieces;
    for (size_t i = 0; i < t.size();) {
      const size_t n = 1 + rng() % 7;
      pieces.push_back(t.substr(i, n));
      i += n;
    }
    expect_same(streamed(c.format, pieces), c, "random cuts " + std::to_string(iter));
  }
}

const ToolCallFormat H = ToolCallFormat::Hermes;
const ToolCallFormat L = ToolCallFormat::Llama3Json;
const ToolCallFormat M = ToolCallFormat::Mistral;

TEST(ToolCalls, Hermes) {
  const std::vector<Case> cases = {
      {H,
       "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>",
       "",
       {{"get_weather", "{\"city\": \"Paris\"}"}}},
      {H,
       "Let me check.\n<tool_call>\n{\"name\": \"a\", \"arguments\": {}}\n</tool_call>\n<tool_call>\n{\"name\": "
       "\"b\", \"arguments\": {\"x\": [1, {\"y\": \"}]\\\"\"}]}}\n</tool_call>",
       "Let me check.",
       {{"a", "{}"}, {"b", "{\"x\": [1, {\"y\": \"}]\\\"\"}]}"}}},
      // Qwen3 thinks first; the thinking is content.
      {H,
       "<think>\nweather needed\n</think>\n\n<tool_call>\n{\"name\": \"f\", \"arguments\": {\"q\": "
       "\"caf\\u00e9 \xe6\x97\xa5\xe6\x9c\xac\"}}\n</tool_call>",
       "<think>\nweather needed\n</think>",
       {{"f", "{\"q\": \"caf\\u00e9 \xe6\x97\xa5\xe6\x9c\xac\"}"}}},
      // No closing tag: the call ends with its object; text after a call is content.
      {H, "<tool_call>{\"name\": \"f\", \"arguments\": {\"a\": 1}}", "", {{"f", "{\"a\": 1}"}}},
      {H, "<tool_call>{\"name\":\"f\",\"arguments\":{}}</tool_call>\n\nDone. ", "Done. ", {{"f", "{}"}}},
      {H, "<tool_call>{\"name\": \"f\"}</tool_call>", "", {{"f", "{}"}}},
      {H, "Hello <tool world, < tool_call >\n", "Hello <tool world, < tool_call >\n", {}},
      {H, "  spaced  \n", "  spaced  \n", {}},
      // Not calls: the text stays as written.
      {H, "<tool_call>\nnot json\n</tool_call>", "<tool_call>\nnot json\n</tool_call>", {}},
      {H, "x <tool_call>{\"arguments\": {}}</tool_call>", "x <tool_call>{\"arguments\": {}}</tool_call>", {}},
      {H,
       "<tool_call>{\"name\": \"f\", \"arguments\": \"{}\"}</tool_call>",
       "<tool_call>{\"name\": \"f\", \"arguments\": \"{}\"}</tool_call>",
       {}},
      {H,
       "<tool_call>{\"name\": \"f\", \"arguments\": {\"a\": ",
       "<tool_call>{\"name\": \"f\", \"arguments\": {\"a\": ",
       {}},
      {H, "<tool_call>{\"name\": \"f\", \"arguments\": {]}", "<tool_call>{\"name\": \"f\", \"arguments\": {]}", {}},
      {H, "<tool_call>{\"name\": 1, \"arguments\": {}}", "<tool_call>{\"name\": 1, \"arguments\": {}}", {}},
      // A broken call, then a good one.
      {H,
       "<tool_call>oops</tool_call> <tool_call>{\"name\": \"g\", \"arguments\": {\"k\": null}}</tool_call>",
       "<tool_call>oops</tool_call>",
       {{"g", "{\"k\": null}"}}},
      {H, "", "", {}},
  };
  for (const Case& c : cases) check_every_cutting(c);
}

TEST(ToolCalls, Llama3Json) {
  const std::vector<Case> cases = {
      {L,
       "{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Paris\"}}",
       "",
       {{"get_weather", "{\"city\": \"Paris\"}"}}},
      {L,
       "<|python_tag|>{\"name\": \"f\", \"parameters\": {}}; {\"name\": \"g\", \"arguments\": {\"k\": true}}",
       "",
       {{"f", "{}"}, {"g", "{\"k\": true}"}}},
      {L, " \n{\"name\": \"f\", \"parameters\": {\"a\": [1, 2]}}\n ", "", {{"f", "{\"a\": [1, 2]}"}}},
      {L, "{\"name\": \"f\", \"parameters\": {\"a\": 1}} and more", "and more", {{"f", "{\"a\": 1}"}}},
      {L, "{\"name\": \"f\", \"parameters\": {}}; oops", "oops", {{"f", "{}"}}},
      {L,
       "The weather is nice. {\"name\": \"f\", \"parameters\": {}}",
       "The weather is nice. {\"name\": \"f\", \"parameters\": {}}",
       {}},
      {L, "{\"answer\": 42}", "{\"answer\": 42}", {}},
      {L, "  {\"name\": \"f\", \"parameters\": {\"a\"", "  {\"name\": \"f\", \"parameters\": {\"a\"", {}},
      {L, "<|python_tag|>print(1)", "<|python_tag|>print(1)", {}},
      {L, "<|python", "<|python", {}},
      {L, "   ", "   ", {}},
  };
  for (const Case& c : cases) check_every_cutting(c);
}

TEST(ToolCalls, Mistral) {
  const std::vector<Case> cases = {
      {M,
       "[TOOL_CALLS][{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}]",
       "",
       {{"get_weather", "{\"city\": \"Paris\"}"}}},
      {M,
       "[TOOL_CALLS] [{\"name\": \"a\", \"arguments\": {}}, {\"name\": \"b\", \"arguments\": {\"n\": 2}, \"id\": "
       "\"abcdefghi\"}]",
       "",
       {{"a", "{}"}, {"b", "{\"n\": 2}"}}},
      {M, "Sure. [TOOL_CALLS]{\"name\": \"a\", \"arguments\": {}}", "Sure.", {{"a", "{}"}}},
      {M, "[TOOL_CALLS] nope", "[TOOL_CALLS] nope", {}},
      {M,
       "[TOOL_CALLS][{\"name\": \"a\", \"arguments\": {}}, {\"arguments\": {}}]",
       "[TOOL_CALLS][{\"name\": \"a\", \"arguments\": {}}, {\"arguments\": {}}]",
       {}},
      {M, "[TOOL_CALLS][]", "[TOOL_CALLS][]", {}},
      {M, "a [TOOL_CALL] b [TOOL_CALLS", "a [TOOL_CALL] b [TOOL_CALLS", {}},
  };
  for (const Case& c : cases) check_every_cutting(c);
}

TEST(ToolCalls, NoFormatIsAllContent) {
  check_every_cutting({ToolCallFormat::None,
                       "<tool_call>{\"name\": \"f\", \"arguments\": {}}</tool_call>",
                       "<tool_call>{\"name\": \"f\", \"arguments\": {}}</tool_call>",
                       {}});
}

// Random texts from pieces of the formats' syntax: any cutting gives what the
// whole gives, and nothing escapes.
TEST(ToolCalls, RandomTextsParseTheSameInAnyPieces) {
  const std::vector<std::string> atoms = {"<tool_call>",
                                          "</tool_call>",
                                          "[TOOL_CALLS]",
                                          "<|python_tag|>",
                                          "{\"name\": \"f\", \"arguments\": {\"a\": 1}}",
                                          "{\"name\": \"g\", \"parameters\": {}}",
                                          "{",
                                          "}",
                                          "[",
                                          "]",
                                          "\"",
                                          "\\",
                                          ";",
                                          ", ",
                                          " ",
                                          "\n",
                                          "x",
                                          "<tool",
                                          "\xc3\xa9"};
  std::mt19937_64 rng(2024);
  for (int iter = 0; iter < 3000; ++iter) {
    std::string text;
    for (size_t n = rng() % 12; n > 0; --n) text += atoms[rng() % atoms.size()];
    for (ToolCallFormat f : {H, L, M}) {
      const ParsedToolCalls whole = parse_tool_calls(f, text);
      std::vector<std::string_view> pieces;
      const std::string_view t = text;
      for (size_t i = 0; i < t.size();) {
        const size_t n = 1 + rng() % 5;
        pieces.push_back(t.substr(i, n));
        i += n;
      }
      const ParsedToolCalls got = streamed(f, pieces);
      ASSERT_EQ(got.content, whole.content) << kToolCallFormats[f] << ": " << text;
      ASSERT_EQ(names_and_args(got.calls), names_and_args(whole.calls)) << kToolCallFormats[f] << ": " << text;
      for (const ToolCall& c : whole.calls) {
        EXPECT_TRUE(nlohmann::json::accept(c.arguments)) << text;
        EXPECT_FALSE(c.name.empty());
      }
    }
  }
}

std::string read_template(const std::string& name) {
  std::ifstream in(std::string(TPINFER_SHARED_DIR) + "/models/templates/" + name + ".jinja", std::ios::binary);
  EXPECT_TRUE(in) << name;
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

TEST(ToolCalls, FormatIsDetectedFromTheRealTemplates) {
  const std::vector<std::pair<std::string, ToolCallFormat>> expected = {
      {"NousResearch-Hermes-3-Llama-3.1-8B-tool_use", H},
      {"Qwen-Qwen2.5-7B-Instruct", H},
      {"Qwen-Qwen3-0.6B", H},
      {"meta-llama-Llama-3.1-8B-Instruct", L},
      {"meta-llama-Llama-3.2-3B-Instruct", L},
      {"mistralai-Mistral-Nemo-Instruct-2407", M},
      // No tools rendered, or calls in formats not parsed here.
      {"chatml", ToolCallFormat::None},
      {"microsoft-Phi-3.5-mini-instruct", ToolCallFormat::None},
      {"google-gemma-2-2b-it", ToolCallFormat::None},
      {"HuggingFaceTB-SmolLM3-3B", ToolCallFormat::None},
      {"deepseek-ai-DeepSeek-R1-Distill-Llama-8B", ToolCallFormat::None},
      {"openai-gpt-oss-120b", ToolCallFormat::None},
  };
  for (const auto& [name, format] : expected) {
    EXPECT_EQ(kToolCallFormats[detect_tool_call_format(read_template(name))], kToolCallFormats[format]) << name;
  }
}

ojson two_tools() {
  return ojson::parse(R"([
    {"type": "function", "function": {"name": "get_weather", "description": "Weather",
      "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}},
    {"type": "function", "function": {"name": "now"}}])");
}

TEST(ToolCalls, ConstraintSchemas) {
  const ojson tools = two_tools();
  EXPECT_FALSE(tool_call_constraint(H, tools, {ToolChoice::Auto, ""}, true));
  EXPECT_FALSE(tool_call_constraint(H, tools, {ToolChoice::None, ""}, true));
  EXPECT_FALSE(tool_call_constraint(ToolCallFormat::None, tools, {ToolChoice::Required, ""}, true));
  EXPECT_FALSE(tool_call_constraint(H, nullptr, {ToolChoice::Required, ""}, true));

  const std::optional<ToolCallConstraint> named =
      tool_call_constraint(H, tools, {ToolChoice::Named, "get_weather"}, true);
  ASSERT_TRUE(named);
  EXPECT_EQ(named->call_schema.dump(),
            R"({"type":"object","properties":{"name":{"const":"get_weather"},"arguments":{"type":"object",)"
            R"("properties":{"city":{"type":"string"}},"required":["city"]}},"required":["name","arguments"],)"
            R"("additionalProperties":false})");
  EXPECT_EQ(named->max_calls, 1) << "a named function is called once";
  EXPECT_EQ(tool_call_constraint(H, tools, {ToolChoice::Required, ""}, true)->max_calls, kUnboundedCalls);

  const std::optional<ToolCallConstraint> required = tool_call_constraint(L, tools, {ToolChoice::Required, ""}, true);
  ASSERT_TRUE(required);
  ASSERT_EQ(required->call_schema["anyOf"].size(), 2u);
  EXPECT_EQ(required->call_schema["anyOf"][1].dump(),
            R"({"type":"object","properties":{"name":{"const":"now"},"parameters":{"type":"object","properties":{}}},)"
            R"("required":["name","parameters"],"additionalProperties":false})");
  EXPECT_EQ(required->max_calls, 1) << "Llama's templates take one call per turn";
  EXPECT_EQ(tool_call_constraint(M, tools, {ToolChoice::Required, ""}, false)->max_calls, 1);
}

// $defs of the parameters move to the call schema's root, named after the
// tool, and every $ref follows them (or the parameters' new place, for "#").
TEST(ToolCalls, ConstraintSchemasKeepTheirRefsWhole) {
  const ojson tools = ojson::parse(R"([
    {"type": "function", "function": {"name": "order", "parameters": {"type": "object",
      "properties": {"item": {"$ref": "#/$defs/Item"}, "next": {"$ref": "#"},
        "note": {"const": {"$ref": "#/$defs/Item"}}},
      "$defs": {"Item": {"type": "object", "properties": {"sku": {"type": "string"},
        "parts": {"type": "array", "items": {"$ref": "#/$defs/Item"}}}}}}}},
    {"type": "function", "function": {"name": "old", "parameters": {"type": "object",
      "properties": {"p": {"$ref": "#/definitions/P"}}, "definitions": {"P": {"type": "integer"}}}}}])");
  const ToolCallConstraint c = *tool_call_constraint(H, tools, {ToolChoice::Required, ""}, true);
  const ojson& order = c.call_schema["anyOf"][0]["properties"]["arguments"];
  EXPECT_EQ(order["properties"]["item"]["$ref"], "#/$defs/order.Item");
  EXPECT_EQ(order["properties"]["next"]["$ref"], "#/anyOf/0/properties/arguments");
  EXPECT_EQ(order["properties"]["note"]["const"]["$ref"], "#/$defs/Item") << "data is not rewritten";
  EXPECT_FALSE(order.contains("$defs"));
  EXPECT_EQ(c.call_schema["$defs"]["order.Item"]["properties"]["parts"]["items"]["$ref"], "#/$defs/order.Item");
  EXPECT_EQ(c.call_schema["anyOf"][1]["properties"]["arguments"]["properties"]["p"]["$ref"], "#/$defs/old.P");
  EXPECT_EQ(c.call_schema["$defs"]["old.P"]["type"], "integer");
  const ToolCallConstraint named = *tool_call_constraint(H, tools, {ToolChoice::Named, "order"}, true);
  EXPECT_EQ(named.call_schema["properties"]["arguments"]["properties"]["next"]["$ref"], "#/properties/arguments");
  EXPECT_FALSE(named.call_schema["$defs"].contains("old.P"));
}

// The grammar layer compiles every call schema the seam makes, $defs included.
TEST(ToolCalls, ConstraintSchemasCompileToGrammars) {
  const ojson with_defs = ojson::parse(R"([
    {"type": "function", "function": {"name": "order", "parameters": {"type": "object",
      "properties": {"item": {"$ref": "#/$defs/Item"}}, "required": ["item"],
      "$defs": {"Item": {"type": "object", "properties": {"sku": {"type": "string"},
        "parts": {"type": "array", "items": {"$ref": "#/$defs/Item"}}}, "required": ["sku"]}}}}}])");
  for (ToolCallFormat f : {H, L, M}) {
    for (const ojson& tools : {two_tools(), with_defs}) {
      for (const ToolChoice& choice :
           {ToolChoice{ToolChoice::Required, ""},
            ToolChoice{ToolChoice::Named, tools[0]["function"]["name"].get<std::string>()}}) {
        const ToolCallConstraint c = *tool_call_constraint(f, tools, choice, true);
        EXPECT_NO_THROW(compile_json_schema(c.call_schema)) << c.call_schema.dump();
      }
    }
  }
}

// What the constraint describes parses back into the calls it was built from.
TEST(ToolCalls, ConstraintWrappersParseBack) {
  const ojson tools = two_tools();
  for (ToolCallFormat f : {H, L, M}) {
    const ToolCallConstraint c = *tool_call_constraint(f, tools, {ToolChoice::Required, ""}, true);
    const char* key = f == L ? "parameters" : "arguments";
    const std::string one = ojson{{"name", "get_weather"}, {key, {{"city", "Paris"}}}}.dump();
    const std::string two = ojson{{"name", "now"}, {key, ojson::object()}}.dump();
    const std::string text =
        c.max_calls == 1 ? c.prefix + one + c.suffix : c.prefix + one + c.separator + two + c.suffix;
    const ParsedToolCalls parsed = parse_tool_calls(f, text);
    EXPECT_EQ(parsed.content, "") << text;
    ASSERT_EQ(parsed.calls.size(), c.max_calls == 1 ? 1u : 2u) << text;
    EXPECT_EQ(parsed.calls[0].name, "get_weather");
    EXPECT_EQ(parsed.calls[0].arguments, "{\"city\":\"Paris\"}");
  }
}

TEST(ToolCalls, MistralIdsAreCutToNine) {
  ojson messages = ojson::parse(R"([
    {"role": "assistant", "content": "", "tool_calls": [{"id": "call_abcdefghijklmnopqrstuvwx", "type": "function",
      "function": {"name": "f", "arguments": {}}}]},
    {"role": "tool", "content": "1", "tool_call_id": "call_abcdefghijklmnopqrstuvwx"},
    {"role": "tool", "content": "2", "tool_call_id": "short"}])");
  ojson same = messages;
  prepare_messages_for_format(H, same);
  EXPECT_EQ(same, messages);
  prepare_messages_for_format(M, messages);
  EXPECT_EQ(messages[0]["tool_calls"][0]["id"], "pqrstuvwx");
  EXPECT_EQ(messages[1]["tool_call_id"], "pqrstuvwx");
  EXPECT_EQ(messages[2]["tool_call_id"], "short");
}

TEST(ToolCalls, IdsAreCallAndAlphanumerics) {
  const std::string a = tool_call_id(1, 2), b = tool_call_id(1, 3);
  EXPECT_NE(a, b);
  ASSERT_EQ(a.size(), 29u);
  EXPECT_EQ(a.substr(0, 5), "call_");
  for (char c : a.substr(5)) EXPECT_TRUE(std::isalnum(static_cast<unsigned char>(c))) << a;
}

// The streamed deltas, merged as OpenAI's clients merge them (content
// appended; a call created by its first delta with id, type and name, its
// arguments appended), equal the whole message: same content, same calls.
TEST(ToolCalls, StreamedDeltasMergeIntoTheWholeMessage) {
  const std::string text =
      "Checking.\n<tool_call>\n{\"name\": \"a\", \"arguments\": {\"x\": \"\xc3\xa9\"}}\n</tool_call>\n"
      "<tool_call>\n{\"name\": \"b\", \"arguments\": {}}\n</tool_call>";
  const ParsedToolCalls whole = parse_tool_calls(H, text);
  ASSERT_EQ(whole.calls.size(), 2u);
  for (size_t piece = 1; piece <= 5; ++piece) {
    ToolCallStream stream(H);
    size_t calls = 0;
    int ids = 0;
    std::string content;
    ojson merged = ojson::array();
    auto merge = [&](const std::vector<ToolCallPiece>& pieces) {
      for (const ToolStreamDelta& d : tool_stream_deltas(pieces, calls, [&] { return "id" + std::to_string(ids++); })) {
        content += d.content;
        if (!d.tool_calls.is_array()) continue;
        ASSERT_TRUE(d.content.empty());
        for (const ojson& t : d.tool_calls) {
          const size_t k = t["index"];
          if (k == merged.size()) {
            ASSERT_TRUE(t.contains("id")) << "a call's first delta names it";
            EXPECT_EQ(t["type"], "function");
            EXPECT_EQ(t["function"]["arguments"], "");
            merged.push_back({{"id", t["id"]},
                              {"type", "function"},
                              {"function", {{"name", t["function"]["name"]}, {"arguments", ""}}}});
          } else {
            ASSERT_LT(k, merged.size());
            EXPECT_FALSE(t.contains("id"));
            merged[k]["function"]["arguments"] =
                merged[k]["function"]["arguments"].get<std::string>() + t["function"]["arguments"].get<std::string>();
          }
        }
      }
    };
    for (size_t i = 0; i < text.size(); i += piece) merge(stream.push(std::string_view(text).substr(i, piece)));
    merge(stream.finish());
    EXPECT_EQ(content, whole.content);
    ojson want = ojson::array();
    for (size_t k = 0; k < whole.calls.size(); ++k)
      want.push_back(tool_call_json("id" + std::to_string(k), whole.calls[k]));
    EXPECT_EQ(merged, want) << piece;
  }
}

}  // namespace
}  // namespace tpinfer::server
