// Helpers for the structured-output tests: a small vocabulary whose tokens
// span grammar boundaries, a plain reference recognizer (explicit stacks, no
// interning, no tail calls: the oracle for the matcher's fast path), random
// generation by uniform sampling among allowed tokens, and a JSON Schema
// validator written independently of the schema compiler.
#pragma once

#include <gtest/gtest.h>

#include <memory>
#include <nlohmann/json.hpp>
#include <random>
#include <regex>
#include <set>
#include <string>
#include <vector>

#include "core/utf8.h"
#include "structured/grammar.h"
#include "structured/grammar_matcher.h"

namespace tpinfer::testing_structured {

// Every single byte, then multi-byte tokens, then one end-of-generation token.
struct TestVocab {
  std::vector<std::string> tokens;
  int32_t eog = -1;
  std::vector<int32_t> closers;  // preferred when a generation must end
  std::shared_ptr<const TokenVocabulary> vocab;
};

inline const TestVocab& test_vocab() {
  static const TestVocab tv = [] {
    TestVocab v;
    for (int b = 0; b < 256; ++b) v.tokens.push_back(std::string(1, static_cast<char>(b)));
    const std::vector<std::string> multi = {"{\"",
                                            "\":",
                                            "\"},",
                                            "\"}",
                                            "\",",
                                            "],\"",
                                            "]}",
                                            "true",
                                            "nul",
                                            "null",
                                            "false",
                                            "fal",
                                            "ab",
                                            "abc",
                                            "name",
                                            "\"name\":",
                                            "\":\"",
                                            ", \"",
                                            "{ \"",
                                            " \"",
                                            "\n  ",
                                            "  ",
                                            "\n",
                                            "12",
                                            "0.",
                                            ".5",
                                            "e+",
                                            "-1",
                                            "\"]",
                                            "[\"",
                                            "[]",
                                            "{}",
                                            "[{",
                                            "}]",
                                            "},{\"",
                                            "\":[",
                                            "\":{\"",
                                            "\\n",
                                            "\\\"",
                                            "\\u00",
                                            "\\u",
                                            "é",
                                            "\xC3",
                                            "\xA9",
                                            "€",
                                            "\xE2\x82",
                                            "\x82\xAC",
                                            "😀",
                                            "\xF0\x9F",
                                            "\x98\x80",
                                            "2024-",
                                            "-01-",
                                            "T12:",
                                            ":00Z",
                                            "@example.com",
                                            "user",
                                            "red",
                                            "green",
                                            "blue",
                                            "\"red\"",
                                            "id",
                                            "\"id\":",
                                            "children",
                                            "value",
                                            "type",
                                            "\":1",
                                            "\":\"a",
                                            "1,",
                                            "0}",
                                            "\"},{\"",
                                            "\"]}",
                                            "null}",
                                            "true,",
                                            "12345",
                                            "AB-",
                                            "-A",
                                            ".com",
                                            "@",
                                            "192.",
                                            "168.",
                                            "ffff",
                                            "-4a",
                                            "T",
                                            ":30",
                                            "+01:00",
                                            "abc\"",
                                            "\"\"",
                                            "\" }",
                                            " }",
                                            "  \"",
                                            "x",
                                            "xy",
                                            "Z\"",
                                            "\"v\":",
                                            "\"next\":",
                                            "\"1",
                                            "1\"",
                                            "a\"b",
                                            "\"a\"",
                                            "ère",
                                            "日本",
                                            "\xE6\x97",
                                            "\xA5\xE6\x9C\xAC"};
    for (const std::string& t : multi) v.tokens.push_back(t);
    v.eog = static_cast<int32_t>(v.tokens.size());
    v.tokens.push_back("");  // EOG matches no bytes
    for (const char c : std::string("\"}],")) v.closers.push_back(static_cast<unsigned char>(c));
    v.vocab = TokenVocabulary::build(v.tokens, {v.eog});
    return v;
  }();
  return tv;
}

// The plain reference: a set of explicit stacks of grammar positions.
class NaiveRecognizer {
 public:
  explicit NaiveRecognizer(const Grammar& g) : g_(&g) {
    for (const uint32_t alt : g.alternatives(g.root())) expand({alt}, stacks_);
  }
  bool advance(uint8_t b) {
    std::set<std::vector<uint32_t>> next;
    for (const auto& s : stacks_) {
      if (s.empty()) continue;
      const Grammar::Element& e = g_->elements()[s.back()];
      if (e.kind != Grammar::Kind::Bytes || !g_->byte_sets()[e.value].has(b)) continue;
      std::vector<uint32_t> t = s;
      ++t.back();
      expand(std::move(t), next);
    }
    stacks_ = std::move(next);
    return !stacks_.empty();
  }
  bool advance(std::string_view bytes) {
    for (const char c : bytes) {
      if (!advance(static_cast<uint8_t>(c))) return false;
    }
    return true;
  }
  bool complete() const { return stacks_.count({}) > 0; }

 private:
  void expand(std::vector<uint32_t> s, std::set<std::vector<uint32_t>>& out) const {
    while (!s.empty() && g_->elements()[s.back()].kind == Grammar::Kind::End) s.pop_back();
    if (s.empty() || g_->elements()[s.back()].kind == Grammar::Kind::Bytes) {
      out.insert(s);
      return;
    }
    const uint32_t rule = g_->elements()[s.back()].value;
    ++s.back();  // the return position
    for (const uint32_t alt : g_->alternatives(rule)) {
      std::vector<uint32_t> t = s;
      t.push_back(alt);
      expand(std::move(t), out);
    }
  }
  const Grammar* g_;
  std::set<std::vector<uint32_t>> stacks_;
};

struct Generated {
  std::string text;
  bool complete = false;
  int tokens = 0;
};

// Samples uniformly among the allowed tokens until the end-of-generation token
// is drawn; after `soft_cap` tokens often takes EOG or a closer instead.
inline Generated generate(const std::shared_ptr<CompiledGrammar>& g, std::mt19937& rng, int soft_cap = 150,
                          int hard_cap = 3000) {
  const TestVocab& tv = test_vocab();
  GrammarMatcher m(g);
  TokenBitmask mask;
  Generated out;
  std::vector<int32_t> allowed;
  for (int step = 0; step < hard_cap; ++step) {
    m.fill_mask(mask);
    allowed.clear();
    for (size_t i = 0; i < mask.size(); ++i) {
      if (mask.test(i)) allowed.push_back(static_cast<int32_t>(i));
    }
    if (allowed.empty()) {
      ADD_FAILURE() << "no token allowed after " << out.text;
      return out;
    }
    int32_t pick = -1;
    // Past the soft cap, half the draws take a closer: always taking one
    // could loop (a '}' inside a string that still needs a character).
    if (step >= soft_cap && rng() % 2 == 0) {
      if (mask.test(static_cast<size_t>(tv.eog))) pick = tv.eog;
      for (size_t k = 0; pick < 0 && k < tv.closers.size(); ++k) {
        if (mask.test(static_cast<size_t>(tv.closers[k]))) pick = tv.closers[k];
      }
    }
    if (pick < 0) pick = allowed[std::uniform_int_distribution<size_t>(0, allowed.size() - 1)(rng)];
    if (!m.accept_token(pick)) {
      ADD_FAILURE() << "a masked-in token was refused: " << pick << " after " << out.text;
      return out;
    }
    ++out.tokens;
    if (pick == tv.eog) {
      out.complete = true;
      return out;
    }
    out.text += tv.tokens[static_cast<size_t>(pick)];
  }
  return out;
}

// --- an independent JSON Schema validator (the subset the tests use) ---

inline size_t code_points(const std::string& s) {
  size_t n = 0;
  for (size_t i = 0; i < s.size(); i += utf8::char_len(s, i)) ++n;
  return n;
}

inline const nlohmann::json& resolve(const nlohmann::json& root, const std::string& ref) {
  return root.at(nlohmann::json::json_pointer(ref.substr(1)));
}

// "" when `v` is valid, else why not. strict: a missing additionalProperties
// means false (OpenAI's strict mode), else true (JSON Schema).
inline std::string validate(const nlohmann::json& v, const nlohmann::json& s, const nlohmann::json& root,
                            bool strict = true, const std::string& where = "$") {
  using nlohmann::json;
  if (s.is_boolean()) return s.get<bool>() ? "" : where + ": false schema";
  if (s.contains("$ref")) return validate(v, resolve(root, s["$ref"].get<std::string>()), root, strict, where);
  if (s.contains("const") && v != s["const"]) return where + ": not the const";
  if (s.contains("enum")) {
    bool found = false;
    for (const json& e : s["enum"]) found = found || e == v;
    if (!found) return where + ": not in enum";
  }
  if (s.contains("anyOf")) {
    bool any = false;
    for (const json& a : s["anyOf"]) any = any || validate(v, a, root, strict, where).empty();
    if (!any) return where + ": matches no anyOf";
  }
  if (s.contains("oneOf")) {
    int n = 0;
    for (const json& a : s["oneOf"]) n += validate(v, a, root, strict, where).empty();
    if (n != 1) return where + ": matches " + std::to_string(n) + " of oneOf";
  }
  if (s.contains("allOf")) {
    for (const json& a : s["allOf"]) {
      if (std::string e = validate(v, a, root, strict, where); !e.empty()) return e;
    }
  }
  if (s.contains("type")) {
    std::vector<std::string> types;
    if (s["type"].is_string()) {
      types.push_back(s["type"]);
    } else {
      for (const json& t : s["type"]) types.push_back(t);
    }
    bool ok = false;
    for (const std::string& t : types) {
      ok = ok || (t == "object" && v.is_object()) || (t == "array" && v.is_array()) ||
           (t == "string" && v.is_string()) || (t == "integer" && v.is_number_integer()) ||
           (t == "number" && v.is_number()) || (t == "boolean" && v.is_boolean()) || (t == "null" && v.is_null());
    }
    if (!ok) return where + ": wrong type " + v.type_name();
  }
  if (v.is_object() && (s.contains("properties") || s.contains("additionalProperties") || s.contains("required"))) {
    const json props = s.value("properties", json::object());
    for (const json& r : s.value("required", json::array())) {
      if (!v.contains(r.get<std::string>())) return where + ": missing " + r.get<std::string>();
    }
    for (const auto& [k, x] : v.items()) {
      if (props.contains(k)) {
        if (std::string e = validate(x, props[k], root, strict, where + "." + k); !e.empty()) return e;
      } else if (s.contains("additionalProperties")) {
        if (std::string e = validate(x, s["additionalProperties"], root, strict, where + "." + k); !e.empty()) return e;
      } else if (strict) {
        return where + ": unexpected property " + k;
      }
    }
  }
  if (v.is_array()) {
    const size_t n = v.size();
    if (s.contains("minItems") && n < s["minItems"].get<size_t>()) return where + ": too few items";
    if (s.contains("maxItems") && n > s["maxItems"].get<size_t>()) return where + ": too many items";
    const json prefix = s.value("prefixItems", json::array());
    for (size_t i = 0; i < n; ++i) {
      const std::string w = where + "[" + std::to_string(i) + "]";
      const json& sub = i < prefix.size() ? prefix[i] : s.contains("items") ? s["items"] : json(true);
      if (std::string e = validate(v[i], sub, root, strict, w); !e.empty()) return e;
    }
  }
  if (v.is_string()) {
    const std::string str = v.get<std::string>();
    if (s.contains("minLength") && code_points(str) < s["minLength"].get<size_t>()) return where + ": too short";
    if (s.contains("maxLength") && code_points(str) > s["maxLength"].get<size_t>()) return where + ": too long";
    if (s.contains("pattern") && !std::regex_search(str, std::regex(s["pattern"].get<std::string>()))) {
      return where + ": does not match the pattern: " + str;
    }
    if (s.contains("format")) {
      static const std::map<std::string, std::string> kFormats = {
          {"date", R"(\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01]))"},
          {"time", R"(([01]\d|2[0-3]):[0-5]\d:[0-5]\d(\.\d+)?(Z|[+-]([01]\d|2[0-3]):[0-5]\d))"},
          {"date-time",
           R"(\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])T([01]\d|2[0-3]):[0-5]\d:[0-5]\d(\.\d+)?(Z|[+-]([01]\d|2[0-3]):[0-5]\d))"},
          {"uuid", R"([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})"},
          {"email", R"([A-Za-z0-9_%+.-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+)"},
          {"ipv4", R"(((25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d))"},
          {"hostname", R"([A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*)"}};
      if (!std::regex_match(str, std::regex(kFormats.at(s["format"].get<std::string>())))) {
        return where + ": not a " + s["format"].get<std::string>() + ": " + str;
      }
    }
  }
  if (v.is_number()) {
    const double d = v.get<double>();
    if (s.contains("minimum") && d < s["minimum"].get<double>()) return where + ": below minimum";
    if (s.contains("maximum") && d > s["maximum"].get<double>()) return where + ": above maximum";
    if (s.contains("exclusiveMinimum") && d <= s["exclusiveMinimum"].get<double>())
      return where + ": <= exclusiveMinimum";
    if (s.contains("exclusiveMaximum") && d >= s["exclusiveMaximum"].get<double>())
      return where + ": >= exclusiveMaximum";
  }
  return "";
}

}  // namespace tpinfer::testing_structured
