// Renders every real model's chat template over every conversation of the
// shared test data and compares with what Python's jinja2 rendered
// (models/templates/expected, made by models/templates/render.py).
#include "tokenizer/chat_template.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

namespace tpinfer {
namespace {

namespace fs = std::filesystem;

const fs::path kTemplates = fs::path(TPINFER_SHARED_DIR) / "models" / "templates";

std::string read_file(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  if (!f) throw std::runtime_error("cannot open " + p.string());
  std::stringstream s;
  s << f.rdbuf();
  return s.str();
}

OrderedJson read_json(const fs::path& p) { return OrderedJson::parse(read_file(p)); }

// render.py's strftime_now: the date is fixed to 26 Jul 2024.
std::string fixed_strftime(const std::string& format) {
  std::tm tm{};
  tm.tm_year = 2024 - 1900;
  tm.tm_mon = 6;
  tm.tm_mday = 26;
  tm.tm_wday = 5;  // a Friday
  tm.tm_yday = 207;
  char buf[256];
  const size_t n = std::strftime(buf, sizeof buf, format.c_str(), &tm);
  return std::string(buf, n);
}

ChatTemplateOptions test_options() {
  ChatTemplateOptions o;
  o.strftime_now = fixed_strftime;
  return o;
}

// The context render.py builds: the template's special tokens, the
// conversation's extra variables and its tools (only when it has some).
OrderedJson extra_context(const OrderedJson& tokens, const std::string& name, const OrderedJson& conv) {
  OrderedJson ctx = OrderedJson::object();
  if (tokens.contains(name)) {
    for (const auto& [k, v] : tokens[name].items()) ctx[k] = v;
  }
  if (conv.contains("extra")) {
    for (const auto& [k, v] : conv["extra"].items()) ctx[k] = v;
  }
  if (conv.contains("tools")) ctx["tools"] = conv["tools"];
  return ctx;
}

std::vector<std::string> template_names(const fs::path& folder = kTemplates) {
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(folder)) {
    if (e.path().extension() == ".jinja") names.push_back(e.path().stem().string());
  }
  std::sort(names.begin(), names.end());
  return names;
}

// Renders every template of `folder` over every conversation of `convs` and
// compares with folder/expected/T.C.txt (the text) or T.C.error (what the
// template raised); every expected file must have been compared. Returns the
// number of templates.
size_t expect_folder_renders_like_jinja2(const fs::path& folder, const OrderedJson& convs, const OrderedJson& tokens) {
  const std::vector<std::string> names = template_names(folder);
  std::set<std::string> checked;
  for (const std::string& name : names) {
    const ChatTemplate tmpl(read_file(folder / (name + ".jinja")), test_options());
    for (const auto& [cname, conv] : convs.items()) {
      SCOPED_TRACE(name + "." + cname);
      const OrderedJson ctx = extra_context(tokens, name, conv);
      const bool agp = conv.value("add_generation_prompt", false);
      const fs::path txt = folder / "expected" / (name + "." + cname + ".txt");
      const fs::path err = folder / "expected" / (name + "." + cname + ".error");
      if (fs::exists(txt)) {
        EXPECT_EQ(tmpl.render(conv["messages"], agp, ctx), read_file(txt));
        checked.insert(txt.filename().string());
      } else {
        EXPECT_TRUE(fs::exists(err)) << err;
        if (!fs::exists(err)) continue;
        std::string want = read_file(err);
        EXPECT_EQ(want.rfind("TemplateRaised: ", 0), 0u) << want;
        want = want.substr(16, want.size() - 17);  // drop the type and the trailing newline
        try {
          tmpl.render(conv["messages"], agp, ctx);
          ADD_FAILURE() << "expected the template to raise: " << want;
        } catch (const TemplateError& e) {
          EXPECT_TRUE(e.raised());
          EXPECT_EQ(e.message(), want);
          EXPECT_STREQ(e.what(), want.c_str());
        }
        checked.insert(err.filename().string());
      }
    }
  }
  // Every expected file was compared.
  size_t expected_files = 0;
  for (const auto& e : fs::directory_iterator(folder / "expected")) {
    ++expected_files;
    EXPECT_TRUE(checked.count(e.path().filename().string())) << e.path();
  }
  EXPECT_EQ(checked.size(), expected_files);
  EXPECT_EQ(expected_files, names.size() * convs.size());
  return names.size();
}

// The shared folder's templates (Llama 3.1/3.2, Mistral Nemo, Qwen2.5, Qwen3,
// Phi-3.5, Gemma 2, ChatML, ...) over its conversations; then the supported
// models' templates that the shared folder lacks (Llama 2, Zephyr, Qwen2, Mistral
// v0.1/v0.2/v0.3: data/templates, sources in its README, expected files made
// by data/make_template_cases.py) over the shared conversations and their own
// (non-alternating turns, a system message where Mistral refuses one).
TEST(ChatTemplateTest, RendersEveryModelTemplateLikeJinja2) {
  const OrderedJson convs = read_json(kTemplates / "conversations.json");
  EXPECT_GE(expect_folder_renders_like_jinja2(kTemplates, convs, read_json(kTemplates / "tokens.json")), 12u);

  const fs::path local = fs::path(TPINFER_SOURCE_DIR) / "tests" / "tokenizer" / "data" / "templates";
  OrderedJson all = convs;
  const OrderedJson own = read_json(local / "conversations.json");
  for (const auto& [cname, conv] : own.items()) {
    ASSERT_FALSE(all.contains(cname)) << cname;
    all[cname] = conv;
  }
  const std::vector<std::string> names = template_names(local);
  for (const char* want : {"meta-llama-Llama-2-7b-chat-hf", "HuggingFaceH4-zephyr-7b-beta", "Qwen-Qwen2-7B-Instruct",
                           "mistralai-Mistral-7B-Instruct-v0.1", "mistralai-Mistral-7B-Instruct-v0.2",
                           "mistralai-Mistral-7B-Instruct-v0.3"}) {
    EXPECT_TRUE(std::find(names.begin(), names.end(), want) != names.end()) << want;
  }
  EXPECT_EQ(expect_folder_renders_like_jinja2(local, all, read_json(local / "tokens.json")), 6u);
}

// Tool calls, tool results, reasoning and template options over the same
// templates (data/chat_cases.json, made by data/make_chat_cases.py with jinja2).
TEST(ChatTemplateTest, RendersToolAndReasoningConversationsLikeJinja2) {
  const OrderedJson data = read_json(fs::path(TPINFER_SOURCE_DIR) / "tests" / "tokenizer" / "data" / "chat_cases.json");
  const OrderedJson tokens = read_json(kTemplates / "tokens.json");
  std::map<std::string, ChatTemplate> templates;
  size_t rendered = 0, raised = 0;
  for (const OrderedJson& c : data["cases"]) {
    const std::string name = c["template"], cname = c["conversation"];
    SCOPED_TRACE(name + "." + cname);
    auto it = templates.find(name);
    if (it == templates.end()) {
      it = templates.emplace(name, ChatTemplate(read_file(kTemplates / (name + ".jinja")), test_options())).first;
    }
    const OrderedJson& conv = data["conversations"][cname];
    const OrderedJson ctx = extra_context(tokens, name, conv);
    const bool agp = conv.value("add_generation_prompt", false);
    if (c.contains("expected")) {
      EXPECT_EQ(it->second.render(conv["messages"], agp, ctx), c["expected"].get<std::string>());
      ++rendered;
    } else {
      const std::string want = c["error"];
      ASSERT_EQ(want.rfind("TemplateRaised: ", 0), 0u) << want;
      try {
        it->second.render(conv["messages"], agp, ctx);
        ADD_FAILURE() << "expected: " << want;
      } catch (const TemplateError& e) {
        EXPECT_TRUE(e.raised());
        EXPECT_EQ(e.message(), want.substr(16));
      }
      ++raised;
    }
  }
  EXPECT_EQ(rendered + raised, templates.size() * data["conversations"].size());
  EXPECT_GE(rendered, 50u);
}

TEST(ChatTemplateTest, DefaultTemplateIsChatML) {
  EXPECT_EQ(default_chat_template(), read_file(kTemplates / "chatml.jinja"));
  const ChatTemplate tmpl(default_chat_template());
  const OrderedJson convs = read_json(kTemplates / "conversations.json");
  for (const auto& [cname, conv] : convs.items()) {
    if (conv.contains("tools")) continue;
    SCOPED_TRACE(cname);
    EXPECT_EQ(tmpl.render(conv["messages"], conv.value("add_generation_prompt", false)),
              read_file(kTemplates / "expected" / ("chatml." + cname + ".txt")));
  }
}

TEST(ChatTemplateTest, ChatMessagesRenderLikeTheirJson) {
  const ChatTemplate tmpl(read_file(kTemplates / "Qwen-Qwen3-0.6B.jinja"));
  std::vector<ChatMessage> messages;
  messages.push_back({"system", "Be brief.", OrderedJson::object()});
  messages.push_back({"user", "What is 2+2?", OrderedJson::object()});
  OrderedJson call = {{"name", "calc"}, {"arguments", {{"expr", "2+2"}}}};
  messages.push_back({"assistant", "", {{"tool_calls", OrderedJson::array({{{"function", call}}})}}});
  messages.push_back({"tool", "4", {{"tool_call_id", "abc"}}});
  OrderedJson as_json = OrderedJson::array();
  for (const ChatMessage& m : messages) as_json.push_back(m.to_json());
  EXPECT_EQ(as_json[2]["role"], "assistant");
  EXPECT_EQ(as_json[2]["content"], "");
  EXPECT_EQ(as_json[3]["tool_call_id"], "abc");
  const std::string a = tmpl.render(messages, true);
  EXPECT_EQ(a, tmpl.render(as_json, true));
  // What Python's jinja2 renders for this conversation with this template.
  EXPECT_EQ(a,
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nWhat is 2+2?<|im_end|>\n"
            "<|im_start|>assistant\n<tool_call>\n{\"name\": \"calc\", \"arguments\": {\"expr\": \"2+2\"}}\n"
            "</tool_call><|im_end|>\n<|im_start|>user\n<tool_response>\n4\n</tool_response><|im_end|>\n"
            "<|im_start|>assistant\n");
  // With null content this template tests '</think>' in None, which Python
  // rejects too ("argument of type 'NoneType' is not iterable").
  messages[2].content = nullptr;
  try {
    tmpl.render(messages, true);
    FAIL() << "expected TemplateError";
  } catch (const TemplateError& e) {
    EXPECT_FALSE(e.raised());
    EXPECT_EQ(e.message(), "TypeError: argument of type 'NoneType' is not iterable");
  }
}

TEST(ChatTemplateTest, ExtraContextAndOverrides) {
  const ChatTemplate tmpl("{{ bos_token }}{{ messages|length }}{{ add_generation_prompt }}{{ enable_thinking }}");
  const OrderedJson msgs = OrderedJson::array({{{"role", "user"}, {"content", "x"}}});
  EXPECT_EQ(tmpl.render(msgs, false, {{"bos_token", "<s>"}, {"enable_thinking", false}}), "<s>1FalseFalse");
  // messages and add_generation_prompt win over extra members of the same name.
  EXPECT_EQ(tmpl.render(msgs, true, {{"messages", "nope"}, {"add_generation_prompt", false}}), "1True");
  EXPECT_EQ(tmpl.render(msgs, true, nullptr), "1True");
  EXPECT_THROW(tmpl.render(OrderedJson::object(), true), TemplateError);
  EXPECT_THROW(tmpl.render(msgs, true, OrderedJson::array()), TemplateError);
}

TEST(ChatTemplateTest, RaiseExceptionKeepsTheTemplatesMessage) {
  const ChatTemplate tmpl(read_file(kTemplates / "google-gemma-2-2b-it.jinja"));
  const OrderedJson msgs =
      OrderedJson::array({{{"role", "user"}, {"content", "a"}}, {{"role", "user"}, {"content", "b"}}});
  try {
    tmpl.render(msgs, true, {{"bos_token", "<bos>"}});
    FAIL() << "expected TemplateError";
  } catch (const TemplateError& e) {
    EXPECT_TRUE(e.raised());
    EXPECT_STREQ(e.what(), "Conversation roles must alternate user/assistant/user/assistant/...");
  }
}

TEST(ChatTemplateTest, SyntaxErrorsAreFormatErrorsWithLineAndColumn) {
  try {
    ChatTemplate tmpl("line one\n{% for m in messages %}\n{{ m.content + }}\n{% endfor %}");
    FAIL() << "expected FormatError";
  } catch (const FormatError& e) {
    EXPECT_NE(std::string(e.what()).find("line 3, column 16"), std::string::npos) << e.what();
  }
  EXPECT_THROW(ChatTemplate("{% if x %}never closed"), FormatError);
}

TEST(ChatTemplateTest, StrftimeNowDefaultsToTheClock) {
  const ChatTemplate tmpl("{{ strftime_now('%Y') }}");
  auto year_now = [] {
    const std::time_t now = std::time(nullptr);
    std::tm tm{};
    localtime_r(&now, &tm);
    return tm.tm_year + 1900;
  };
  const int before = year_now();
  const int rendered = std::stoi(tmpl.render(OrderedJson::array(), false));
  const int after = year_now();
  EXPECT_TRUE(rendered == before || rendered == after) << rendered;
  EXPECT_GE(rendered, 2024);
}

}  // namespace
}  // namespace tpinfer
