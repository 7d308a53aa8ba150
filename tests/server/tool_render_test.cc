// Tools through the request parser and the real chat templates: an OpenAI
// request (tools; an assistant turn whose tool_calls carry `arguments` as a
// JSON string and null content; a tool result) parsed, adapted to the
// template's tool-call format and rendered must give byte for byte what
// Python's jinja2 rendered from the same conversation written the way the
// templates expect it (arguments as an object, content ""):
// tests/tokenizer/data/chat_cases.json, conversation "tool-roundtrip", made
// by make_chat_cases.py with jinja2. The tools keep their key order.
#include <gtest/gtest.h>

#include <ctime>
#include <fstream>
#include <sstream>

#include "server/request_parser.h"
#include "server/tool_calls.h"
#include "tokenizer/chat_template.h"

namespace tpinfer::server {
namespace {

using ojson = nlohmann::ordered_json;

std::string read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  EXPECT_TRUE(f) << path;
  std::stringstream s;
  s << f.rdbuf();
  return s.str();
}

// render.py's strftime_now: 26 Jul 2024.
std::string fixed_strftime(const std::string& format) {
  std::tm tm{};
  tm.tm_year = 2024 - 1900;
  tm.tm_mon = 6;
  tm.tm_mday = 26;
  tm.tm_wday = 5;
  tm.tm_yday = 207;
  char buf[256];
  const size_t n = std::strftime(buf, sizeof buf, format.c_str(), &tm);
  return std::string(buf, n);
}

// The conversation as an OpenAI client sends it.
ojson openai_request(const ojson& conv) {
  ojson messages = ojson::array();
  for (ojson m : conv["messages"]) {
    if (m.contains("tool_calls")) {
      m["content"] = nullptr;
      for (ojson& call : m["tool_calls"]) {
        call["id"] = "call_xyz" + call["id"].get<std::string>();  // longer than Mistral's 9
        // A JSON string, compact: the template writes the object with its own separators.
        call["function"]["arguments"] = call["function"]["arguments"].dump();
      }
    }
    if (m.contains("tool_call_id")) m["tool_call_id"] = "call_xyz" + m["tool_call_id"].get<std::string>();
    messages.push_back(m);
  }
  return {{"model", "m"}, {"messages", messages}, {"tools", conv["tools"]}, {"tool_choice", "auto"}};
}

TEST(ToolRender, OpenAiRequestsRenderAsJinja2DoesThroughEveryToolTemplate) {
  const std::string shared = std::string(TPINFER_SHARED_DIR) + "/models/templates/";
  const ojson data = ojson::parse(read_file(std::string(TPINFER_SOURCE_DIR) + "/tests/tokenizer/data/chat_cases.json"));
  const ojson tokens = ojson::parse(read_file(shared + "tokens.json"));
  const ojson& conv = data["conversations"]["tool-roundtrip"];
  const std::string body = openai_request(conv).dump();

  ParserLimits limits;
  GenerationParse parsed = parse_generation_request(Endpoint::ChatCompletions, body, limits);
  ASSERT_TRUE(std::holds_alternative<GenerationRequest>(parsed)) << std::get<ApiError>(parsed).message;
  const GenerationRequest& request = std::get<GenerationRequest>(parsed);
  ASSERT_TRUE(request.tools.is_array());
  EXPECT_EQ(request.tools.dump(), conv["tools"].dump()) << "the tools keep their key order";

  int compared = 0;
  for (const char* name : {"NousResearch-Hermes-3-Llama-3.1-8B-tool_use", "Qwen-Qwen2.5-7B-Instruct", "Qwen-Qwen3-0.6B",
                           "meta-llama-Llama-3.1-8B-Instruct", "meta-llama-Llama-3.2-3B-Instruct",
                           "mistralai-Mistral-Nemo-Instruct-2407"}) {
    SCOPED_TRACE(name);
    const std::string source = read_file(shared + name + ".jinja");
    const ToolCallFormat format = detect_tool_call_format(source);
    ASSERT_NE(format, ToolCallFormat::None);
    ojson messages = request.messages;
    prepare_messages_for_format(format, messages);
    ojson ctx = tokens.contains(name) ? tokens[name] : ojson::object();
    ctx["tools"] = request.tools;
    ChatTemplateOptions options;
    options.strftime_now = fixed_strftime;
    const ChatTemplate tmpl(source, options);
    std::string want;
    for (const ojson& c : data["cases"]) {
      if (c["template"] == name && c["conversation"] == "tool-roundtrip") want = c["expected"];
    }
    ASSERT_FALSE(want.empty());
    EXPECT_EQ(tmpl.render(messages, conv.value("add_generation_prompt", false), ctx), want);
    ++compared;
  }
  EXPECT_EQ(compared, 6);
}

}  // namespace
}  // namespace tpinfer::server
