// The Jinja interpreter: features checked against what Python's jinja2 renders
// (data/jinja_cases.json, made by data/make_jinja_cases.py), syntax errors with
// their positions, Python's str/float semantics on random inputs, and hostile
// templates, which must end with an error instead of a crash or a hang.
#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <cstring>
#include <fstream>
#include <random>
#include <sstream>
#include <thread>

#include "jinja/template.h"
#include "jinja/text.h"

namespace tpinfer::jinja {
namespace {

using Json = nlohmann::ordered_json;

std::string read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw std::runtime_error("cannot open " + path);
  std::stringstream s;
  s << f.rdbuf();
  return s.str();
}

std::string fixed_strftime(const std::string& format) {
  std::tm tm{};
  tm.tm_year = 2024 - 1900;
  tm.tm_mon = 6;
  tm.tm_mday = 26;
  tm.tm_wday = 5;
  tm.tm_yday = 207;
  char buf[256];
  return std::string(buf, std::strftime(buf, sizeof buf, format.c_str(), &tm));
}

std::string render(const std::string& source, const Json& context = Json::object(), RenderConfig config = {}) {
  if (!config.strftime_now) config.strftime_now = fixed_strftime;
  return Template(source).render(context, config);
}

// The message of the TemplateError rendering throws ("" if it renders).
std::string render_error(const std::string& source, const Json& context = Json::object(), RenderConfig config = {}) {
  try {
    render(source, context, std::move(config));
  } catch (const TemplateError& e) {
    return e.message();
  }
  return "";
}

// ---- behaviour checked against Python's jinja2 -------------------------------------

TEST(JinjaTest, MatchesPythonJinja2OnEveryCase) {
  const Json cases = Json::parse(read_file(std::string(TPINFER_SOURCE_DIR) + "/tests/jinja/data/jinja_cases.json"));
  ASSERT_GE(cases.size(), 200u);
  size_t rendered = 0, errors = 0, syntax = 0;
  for (const Json& c : cases) {
    const std::string name = c["name"];
    SCOPED_TRACE(name);
    const std::string source = c["template"];
    if (c.contains("expected")) {
      EXPECT_EQ(render(source, c["context"]), c["expected"].get<std::string>());
      ++rendered;
      continue;
    }
    const std::string want = c["error"];
    // Jinja's compile-time errors (TemplateAssertionError: an unknown filter)
    // are FormatErrors here, raised when the template is parsed.
    if (want.rfind("TemplateSyntaxError: ", 0) == 0 || want.rfind("SyntaxError: ", 0) == 0 ||
        want.rfind("TemplateAssertionError: ", 0) == 0) {
      EXPECT_THROW(Template{source}, FormatError) << want;
      ++syntax;
      continue;
    }
    try {
      render(source, c["context"]);
      ADD_FAILURE() << "expected an error: " << want;
    } catch (const TemplateError& e) {
      if (want.rfind("TemplateRaised: ", 0) == 0) {
        EXPECT_TRUE(e.raised());
        EXPECT_EQ(e.message(), want.substr(16));
      } else {
        EXPECT_FALSE(e.raised());
        EXPECT_EQ(e.message(), want);  // same exception type and message as Python
      }
    }
    ++errors;
  }
  EXPECT_GE(rendered, 150u);
  EXPECT_GE(errors, 20u);
  EXPECT_GE(syntax, 10u);
}

// ---- syntax errors -----------------------------------------------------------------

std::string syntax_error(const std::string& source) {
  try {
    Template t(source);
  } catch (const FormatError& e) {
    return e.what();
  }
  return "";
}

TEST(JinjaTest, SyntaxErrorsCarryLineAndColumn) {
  EXPECT_EQ(syntax_error("a\nb\n  {{ x + }}"),
            "template syntax error at line 3, column 10: unexpected 'end of print statement'");
  EXPECT_EQ(syntax_error("{% for x in y %}\n{% endif %}"),
            "template syntax error at line 2, column 4: unknown tag 'endif'");
  EXPECT_EQ(syntax_error("{% if a %}\n\nx"),
            "template syntax error at line 3, column 2: unexpected end of template, expected 'elif' or 'else' or "
            "'endif'");
  EXPECT_EQ(syntax_error("ok\n{{ 'unterminated }}"),
            "template syntax error at line 2, column 4: unexpected character '''");
  EXPECT_EQ(syntax_error("{# never closed"), "template syntax error at line 1, column 1: missing end of comment tag");
  EXPECT_EQ(syntax_error("{{ (1 ]}}"), "template syntax error at line 1, column 7: unexpected ']', expected ')'");
  EXPECT_EQ(syntax_error("{% include 'x' %}"),
            "template syntax error at line 1, column 4: the 'include' tag is not supported in chat templates");
  EXPECT_EQ(syntax_error("{% continue %}"),
            "template syntax error at line 1, column 4: 'continue' outside of a for loop");
  EXPECT_EQ(syntax_error("{% for x in y %}{% macro m() %}{% break %}{% endmacro %}{% endfor %}"),
            "template syntax error at line 1, column 35: 'break' outside of a for loop");
  EXPECT_EQ(syntax_error("{{ '\\x4' }}"),
            "template syntax error at line 1, column 4: truncated \\x escape in string literal");
  EXPECT_EQ(syntax_error("{% set 1 = 2 %}"), "template syntax error at line 1, column 8: can't assign to '1'");
  EXPECT_NE(syntax_error("{% raw %}no end"), "");
  EXPECT_EQ(syntax_error("{{ x }}{% raw %}{{ y }}{% endraw %}"), "");
}

// ---- features the data cases do not show well -------------------------------------------

TEST(JinjaTest, GenerationTagRendersItsBodyInline) {
  // transformers registers {% generation %} (AssistantTracker) for chat templates.
  EXPECT_EQ(render("{% for m in ms %}{% generation %}{{ m }}{% endgeneration %};{% endfor %}", {{"ms", {1, 2}}}),
            "1;2;");
}

TEST(JinjaTest, BytesThatAreNotUtf8PassThrough) {
  // Python cannot hold such text; here it must neither crash nor change.
  EXPECT_EQ(render("\xff\xfe{{ '\xc3' ~ s }}\xc0 {{ s|length }} {{ s[::-1]|length }}", {{"s", "\xe6\x97"}}),
            "\xff\xfe\xc3\xe6\x97\xc0 2 2");
  // Identifiers may be non-ASCII letters; ideographic space separates tokens.
  EXPECT_EQ(render("{% set größe = 2 %}{{\u3000größe\u3000}}"), "2");
}

TEST(JinjaTest, KeepsDictOrderOfTheContext) {
  const Json ctx = Json::parse(R"({"d": {"zeta": 1, "alpha": {"y": 2, "b": 3}, "mid": [3, 1]}})");
  EXPECT_EQ(render("{{ d|tojson }}|{% for k in d %}{{ k }},{% endfor %}|{{ d.alpha.keys()|list }}", ctx),
            "{\"zeta\": 1, \"alpha\": {\"y\": 2, \"b\": 3}, \"mid\": [3, 1]}|zeta,alpha,mid,|['y', 'b']");
}

TEST(JinjaTest, NamespacesHoldDataAndMacrosOnly) {
  EXPECT_EQ(render("{% set ns = namespace(items=[]) %}{% macro m() %}hi{% endmacro %}{% set ns.m = m %}"
                   "{% for i in range(3) %}{% set ns.items = ns.items + [{'i': i}] %}{% endfor %}"
                   "{{ ns.m() }} {{ ns.items|map(attribute='i')|list }}"),
            "hi [0, 1, 2]");
  // Values that could close a reference cycle are refused (Python would accept them).
  for (const char* src :
       {"{% set ns = namespace() %}{% set ns.me = ns %}", "{% set ns = namespace() %}{% set ns.l = [ns] %}",
        "{% set ns = namespace() %}{% for x in [1] %}{% set ns.l = loop %}{% endfor %}",
        "{% set a = namespace() %}{% set b = namespace(inner=a) %}"}) {
    SCOPED_TRACE(src);
    EXPECT_NE(render_error(src).find("a namespace attribute can hold plain data or macros"), std::string::npos);
  }
  EXPECT_EQ(render_error("{% set x = 1 %}{% set x.y = 2 %}"),
            "TemplateRuntimeError: cannot assign attribute on non-namespace object");
}

TEST(JinjaTest, RuntimeErrorsNameTheTemplateLine) {
  try {
    render("line 1\n{% for m in messages %}\n{{ m.content + 1 }}\n{% endfor %}", {{"messages", {{{"content", "x"}}}}});
    FAIL() << "expected TemplateError";
  } catch (const TemplateError& e) {
    EXPECT_EQ(e.line(), 3);
    EXPECT_STREQ(e.what(), "TypeError: can only concatenate str (not \"int\") to str (template line 3)");
  }
}

TEST(JinjaTest, MacroArgumentErrors) {
  // Jinja's wording (checked against jinja2 in the data cases too).
  EXPECT_EQ(render_error("{% macro m(a) %}{% endmacro %}{{ m(1, a=2) }}"),
            "TypeError: macro 'm' takes no keyword argument 'a'");
  EXPECT_EQ(render_error("{% macro m() %}{% endmacro %}{{ m(1) }}"),
            "TypeError: macro 'm' takes not more than 0 argument(s)");
  EXPECT_EQ(render_error("{{ 'abc'.strip('a', 'b') }}"), "TypeError: strip() takes at most 1 argument(s) (2 given)");
  EXPECT_EQ(render_error("{{ [1]|join(sep=',') }}"), "TypeError: join() got an unexpected keyword argument 'sep'");
}

TEST(JinjaTest, TemplatesRenderConcurrently) {
  const Template t(read_file(std::string(TPINFER_SHARED_DIR) + "/models/templates/openai-gpt-oss-120b.jinja"));
  const Json ctx = Json::parse(R"({"messages": [{"role": "user", "content": "hi"}], "add_generation_prompt": true,
      "tools": [{"type": "function", "function": {"name": "f", "description": "d",
                 "parameters": {"type": "object", "properties": {"a": {"type": "string"}}}}}]})");
  RenderConfig cfg;
  cfg.strftime_now = fixed_strftime;
  const std::string want = t.render(ctx, cfg);
  ASSERT_NE(want.find("type f = (_: {"), std::string::npos);
  std::vector<std::string> got(4);
  std::vector<std::thread> threads;
  for (size_t i = 0; i < got.size(); ++i) {
    threads.emplace_back([&, i] {
      for (int k = 0; k < 20; ++k) got[i] = t.render(ctx, cfg);
    });
  }
  for (auto& th : threads) th.join();
  for (const std::string& g : got) EXPECT_EQ(g, want);
}

// ---- Python's str and float semantics on random inputs ------------------------------------

// A plain reference for repr(float): the shortest "%.*e" that reads back the
// same double, laid out as Python does (fixed for 1e-4 <= |x| < 1e16).
std::string reference_float_repr(double x) {
  char buf[64];
  int p = 1;
  for (; p <= 17; ++p) {
    std::snprintf(buf, sizeof buf, "%.*e", p - 1, x);
    if (std::strtod(buf, nullptr) == x) break;
  }
  std::string s = buf;
  std::string sign;
  if (s[0] == '-') {
    sign = "-";
    s = s.substr(1);
  }
  const size_t e = s.find('e');
  std::string digits = s.substr(0, 1) + (e > 2 ? s.substr(2, e - 2) : "");
  while (digits.size() > 1 && digits.back() == '0') digits.pop_back();
  const int exp = std::stoi(s.substr(e + 1));
  std::string out;
  if (exp >= -4 && exp < 16) {
    if (exp < 0) {
      out = "0." + std::string(static_cast<size_t>(-exp - 1), '0') + digits;
    } else if (static_cast<int>(digits.size()) <= exp + 1) {
      out = digits + std::string(static_cast<size_t>(exp + 1 - static_cast<int>(digits.size())), '0') + ".0";
    } else {
      out = digits.substr(0, static_cast<size_t>(exp + 1)) + "." + digits.substr(static_cast<size_t>(exp + 1));
    }
  } else {
    out = digits.substr(0, 1) + (digits.size() > 1 ? "." + digits.substr(1) : "");
    char eb[16];
    std::snprintf(eb, sizeof eb, "e%c%02d", exp < 0 ? '-' : '+', std::abs(exp));
    out += eb;
  }
  return sign + out;
}

TEST(JinjaTest, FloatReprMatchesReferenceOnRandomDoubles) {
  std::mt19937_64 rng(std::random_device{}());
  std::uniform_real_distribution<double> unit(-1.0, 1.0);
  std::uniform_int_distribution<int> exponent(-30, 30);
  for (int i = 0; i < 20000; ++i) {
    double x;
    if (i % 2) {
      uint64_t bits = rng();
      std::memcpy(&x, &bits, sizeof x);
      if (!std::isfinite(x)) continue;
    } else {
      x = unit(rng) * std::pow(10.0, exponent(rng));  // around the fixed/scientific switch
    }
    if (x == 0) continue;
    const std::string got = py_float_repr(x);
    ASSERT_EQ(got, reference_float_repr(x)) << std::hexfloat << x;
    ASSERT_EQ(std::strtod(got.c_str(), nullptr), x);
  }
  EXPECT_EQ(py_float_repr(0.0), "0.0");
  EXPECT_EQ(py_float_repr(-0.0), "-0.0");
  EXPECT_EQ(py_float_repr(1e16), "1e+16");
  EXPECT_EQ(py_float_repr(1e-5), "1e-05");
  EXPECT_EQ(py_float_repr(INFINITY), "inf");
  EXPECT_EQ(py_float_repr(NAN), "nan");
}

TEST(JinjaTest, Utf8RoundTripsAnyBytesOnRandomInputs) {
  std::mt19937 rng(std::random_device{}());
  std::uniform_int_distribution<int> byte(0, 255), len(0, 40);
  const Template twice_reversed("{{ s[::-1][::-1] }}|{{ s|length }}");
  const std::string pieces[] = {"a", "é", "日", "👍", "\xF0\x9F", "\xC3", "\xED\xA0\x80", "\xC0\xAF"};
  for (int i = 0; i < 5000; ++i) {
    std::string s;
    const int n = len(rng);
    for (int k = 0; k < n; ++k) {
      if (byte(rng) < 128) {
        s.push_back(static_cast<char>(byte(rng)));
      } else {
        s += pieces[static_cast<size_t>(byte(rng)) % std::size(pieces)];
      }
    }
    const std::u32string cps = decode_utf8(s);
    ASSERT_EQ(encode_utf8(cps), s);
    ASSERT_EQ(utf8_length(s), cps.size());
    const bool valid = std::none_of(cps.begin(), cps.end(), [](char32_t c) { return c >= 0xDC80 && c <= 0xDCFF; });
    const std::string twice = twice_reversed.render(Json{{"s", s}});
    // Reversed, invalid bytes may pair up into valid characters; valid text
    // comes back unchanged.
    if (valid) {
      ASSERT_EQ(twice, s + "|" + std::to_string(cps.size()));
    }
  }
  EXPECT_EQ(decode_utf8("\xE6\x97\xA5\xFF"), (std::u32string{0x65E5, 0xDCFF}));
}

TEST(JinjaTest, StringSlicesMatchCodePointReference) {
  std::mt19937 rng(std::random_device{}());
  std::uniform_int_distribution<int> pick(0, 5), idx(-8, 8), stepd(-3, 3);
  const std::string alphabet[] = {"a", "é", "日", "👍", " ", "z"};
  for (int i = 0; i < 300; ++i) {
    std::u32string ref;
    std::string s;
    const int n = pick(rng) * 2;
    for (int k = 0; k < n; ++k) {
      const std::string& c = alphabet[static_cast<size_t>(pick(rng))];
      s += c;
      ref += decode_utf8(c);
    }
    const int a = idx(rng), b = idx(rng);
    int step = stepd(rng);
    if (step == 0) step = 1;
    // Python's slice rules, written out plainly.
    const int len = static_cast<int>(ref.size());
    auto norm = [len](int x, bool neg_step) {
      if (x < 0) x += len;
      if (neg_step) return std::clamp(x, -1, len - 1);
      return std::clamp(x, 0, len);
    };
    const int start = norm(a, step < 0), stop = norm(b, step < 0);
    std::u32string want;
    for (int p = start; step > 0 ? p < stop : p > stop; p += step) want.push_back(ref[static_cast<size_t>(p)]);
    const std::string src = "{{ s[" + std::to_string(a) + ":" + std::to_string(b) + ":" + std::to_string(step) + "] }}";
    ASSERT_EQ(render(src, {{"s", s}}), encode_utf8(want)) << src << " on " << s;
  }
}

// ---- hostile templates -----------------------------------------------------------------------

// Renders a hostile template: it must fail with TemplateError (or FormatError at
// parse time), and in bounded time; returns the message. The bound is a
// hang-catcher, not a figure: the slowest case takes 0.6 s in a release build
// and 2 to 7 s under ASan + UBSan on two busy cores; 120 s is over 15 times that.
std::string hostile(const std::string& source, const Json& context = Json::object(), RenderConfig config = {}) {
  const auto start = std::chrono::steady_clock::now();
  std::string message;
  try {
    Template t(source);
    t.render(context, config);
    ADD_FAILURE() << "hostile template rendered without error";
  } catch (const FormatError& e) {
    message = e.what();
  } catch (const TemplateError& e) {
    message = e.what();
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_LT(seconds, 120.0) << message;
  return message;
}

TEST(JinjaTest, HostileRecursionIsBounded) {
  EXPECT_NE(hostile("{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}").find("nest"), std::string::npos);
  RenderConfig few_calls;
  few_calls.limits.max_call_depth = 10;
  EXPECT_EQ(hostile("{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}", Json::object(), few_calls),
            "macro calls nested deeper than 10 (infinite recursion?) (template line 1)");
  EXPECT_NE(hostile("{% macro f(n) %}{% for i in [1] %}{% if true %}{{ f(n + 1) ~ (((n))) }}{% endif %}{% endfor %}"
                    "{% endmacro %}{{ f(0) }}")
                .find("nest"),
            std::string::npos);
  EXPECT_NE(hostile("{% for x in [1] recursive %}{{ loop([1]) }}{% endfor %}").find("nesting exceeds"),
            std::string::npos);
  EXPECT_NE(hostile("{% macro m() %}{{ caller() }}{% endmacro %}"
                    "{% macro loop_me() %}{% call m() %}{{ loop_me() }}{% endcall %}{% endmacro %}{{ loop_me() }}")
                .find("nest"),
            std::string::npos);
}

TEST(JinjaTest, HostileNestingFailsToParse) {
  EXPECT_NE(
      hostile("{{ " + std::string(100000, '(') + "1" + std::string(100000, ')') + " }}").find("nested too deeply"),
      std::string::npos);
  EXPECT_NE(hostile("{{ " + std::string(100000, '[') + std::string(100000, ']') + " }}").find("nested too deeply"),
            std::string::npos);
  std::string ifs;
  for (int i = 0; i < 20000; ++i) ifs += "{% if true %}";
  EXPECT_NE(hostile(ifs).find("nested too deeply"), std::string::npos);
  std::string chain = "{{ 1";
  for (int i = 0; i < 100000; ++i) chain += " + 1";
  EXPECT_NE(hostile(chain + " }}").find("nested too deeply"), std::string::npos);
  std::string filters = "{{ x";
  for (int i = 0; i < 100000; ++i) filters += "|trim";
  EXPECT_NE(hostile(filters + " }}").find("nested too deeply"), std::string::npos);
  std::string nots = "{{ ";
  for (int i = 0; i < 100000; ++i) nots += "not ";
  EXPECT_NE(hostile(nots + "x }}").find("nested too deeply"), std::string::npos);
}

TEST(JinjaTest, HostileLoopsAndOutputAreBounded) {
  // Scaled-down limits keep this quick in sanitizer builds; the mechanisms are
  // the same at the defaults (see the last cases).
  RenderConfig tight;
  tight.limits.max_loop_iterations = 100000;
  tight.limits.max_output_bytes = 4u << 20;
  tight.limits.max_work_bytes = 64 << 20;
  auto tight_error = [&](const std::string& src) { return hostile(src, Json::object(), tight); };
  EXPECT_EQ(tight_error("{% for a in range(100000) %}{% for b in range(100000) %}{% endfor %}{% endfor %}"),
            "template exceeded 100000 loop iterations (template line 1)");
  EXPECT_EQ(tight_error("{% for a in range(100000) %}{{ 'x' * 100000 }}{% endfor %}"),
            "template output exceeds 4194304 bytes (template line 1)");
  EXPECT_EQ(
      tight_error("{% set ns = namespace(s='xy') %}{% for i in range(100) %}{% set ns.s = ns.s + ns.s %}{% endfor %}"),
      "template built a value over the size limit of 4194304 bytes (template line 1)");
  EXPECT_NE(tight_error("{{ ('x' * 1000000).replace('', 'yyyyyyyyyy') }}").find("size limit"), std::string::npos);
  EXPECT_NE(tight_error("{{ ('x' * 1000000)|list|length }}").find("size limit"), std::string::npos);
  EXPECT_NE(tight_error("{% set l = [1] * 100000 %}{% for i in range(1000) %}{{ l|sort|length }}{% endfor %}")
                .find("work limit"),
            std::string::npos);
  // Work is counted even when nothing is built or printed.
  for (const char* scan : {"{{ s|length }}", "{{ s|trim|length }}", "{% if s == s %}{% endif %}", "{{ s is lower }}",
                           "{{ d[s] is defined }}", "{{ s.upper()|length }}", "{% if 'y' in s %}{% endif %}"}) {
    SCOPED_TRACE(scan);
    EXPECT_EQ(tight_error(std::string("{% set s = 'x' * 3000000 %}{% set d = {} %}{% for i in range(100000) %}") +
                          scan + "{% endfor %}"),
              "template exceeded its work limit of 67108864 bytes (template line 1)");
  }
  // Many small steps: the step budget ends them.
  RenderConfig few_steps;
  few_steps.limits.max_steps = 100000;
  EXPECT_EQ(hostile("{% for a in range(50000) %}{{ a + a + a }}{% endfor %}", Json::object(), few_steps),
            "template exceeded 100000 evaluation steps (template line 1)");
  // The defaults.
  EXPECT_NE(hostile("{{ 'x' * 10000000000 }}").find("size limit"), std::string::npos);
  EXPECT_NE(hostile("{{ [1, 2] * 100000000000 }}").find("size limit"), std::string::npos);
  EXPECT_NE(hostile("{{ 'x'|center(100000000000) }}").find("size limit"), std::string::npos);
  EXPECT_NE(hostile("{{ '%999999999d' % 1 }}").find("too large"), std::string::npos);
  EXPECT_NE(hostile("{{ range(1000000)|list|length }}").find("Range too big"), std::string::npos);
  EXPECT_NE(hostile("{% for a in range(100000) %}{{ 'x' * 1000000 }}{% endfor %}").find("output exceeds 67108864"),
            std::string::npos);
  EXPECT_NE(hostile("{% set s = 'x' * 1000000 %}{% for i in range(100000) %}{{ s|trim|length }}{% endfor %}")
                .find("work limit of 1073741824"),
            std::string::npos);
}

TEST(JinjaTest, HostileValuesAreBounded) {
  EXPECT_NE(hostile("{% set ns = namespace(l=[]) %}{% for i in range(100000) %}{% set ns.l = [ns.l] %}{% endfor %}")
                .find("nested too deeply"),
            std::string::npos);
  EXPECT_NE(
      hostile("{% set ns = namespace(d={}) %}{% for i in range(100000) %}{% set ns.d = {'k': ns.d} %}{% endfor %}")
          .find("nested too deeply"),
      std::string::npos);
  // Deeply nested input data.
  std::string deep;
  for (int i = 0; i < 100000; ++i) deep += "[";
  for (int i = 0; i < 100000; ++i) deep += "]";
  EXPECT_NE(hostile("{{ x }}", Json::parse("{\"x\": " + deep + "}")).find("nested too deeply"), std::string::npos);
  EXPECT_NE(hostile("{{ 2 ** 64 }}").find("OverflowError"), std::string::npos);
  EXPECT_NE(hostile("{{ -9223372036854775807 - 2 }}").find("OverflowError"), std::string::npos);
  EXPECT_NE(hostile("{{ 99999999999999999999 }}").find("too large"), std::string::npos);
  EXPECT_NE(hostile("{{ {} }}{{ [[]]|unique|list }}").find("unhashable"), std::string::npos);
}

TEST(JinjaTest, LegitimateLongConversationsStayWithinLimits) {
  Json messages = Json::array();
  for (int i = 0; i < 2000; ++i) {
    messages.push_back({{"role", i % 2 ? "assistant" : "user"}, {"content", "message number " + std::to_string(i)}});
  }
  for (const char* name : {"Qwen-Qwen3-0.6B", "openai-gpt-oss-120b", "mistralai-Mistral-Nemo-Instruct-2407"}) {
    SCOPED_TRACE(name);
    const Template t(read_file(std::string(TPINFER_SHARED_DIR) + "/models/templates/" + name + ".jinja"));
    RenderConfig cfg;
    cfg.strftime_now = fixed_strftime;
    const Json ctx{
        {"messages", messages}, {"add_generation_prompt", true}, {"bos_token", "<s>"}, {"eos_token", "</s>"}};
    const std::string out = t.render(ctx, cfg);
    EXPECT_NE(out.find("message number 1999"), std::string::npos);
  }
}

}  // namespace
}  // namespace tpinfer::jinja
