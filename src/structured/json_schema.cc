#include "structured/json_schema.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <optional>
#include <set>
#include <vector>

#include "core/utf8.h"
#include "structured/regex_to_gbnf.h"

namespace tpinfer {
namespace {

using Json = nlohmann::ordered_json;

// Keyword lists, as space-separated names.
std::set<std::string, std::less<>> words(std::string_view list) {
  std::set<std::string, std::less<>> out;
  for (size_t i = 0; i < list.size();) {
    const size_t end = std::min(list.find(' ', i), list.size());
    if (end > i) out.emplace(list.substr(i, end - i));
    i = end + 1;
  }
  return out;
}

// Keywords that constrain values (what may not stand beside $ref, anyOf, ...).
const auto kValidation = words(
    "type properties required additionalProperties items prefixItems enum const minLength maxLength pattern "
    "format minimum maximum exclusiveMinimum exclusiveMaximum minItems maxItems anyOf oneOf allOf $ref uniqueItems");
// Validation keywords this compiler does not implement. Everything else not
// in kValidation is an annotation (title, description, default, $defs, ...)
// and ignored, as JSON Schema ignores unknown keywords.
const auto kRejected = words(
    "patternProperties propertyNames if then else not contains minContains maxContains dependentRequired "
    "dependentSchemas dependencies multipleOf minProperties maxProperties unevaluatedProperties unevaluatedItems "
    "$dynamicRef $recursiveRef contentSchema");

[[noreturn]] void fail(const std::string& path, const std::string& keyword, const std::string& why) {
  throw SchemaError(cat("schema ", path, ": '", keyword, "' ", why));
}

// Decimal ranges of non-negative integers as GBNF, digit by digit.
std::string same_length_range(const std::string& a, const std::string& b) {
  if (a.empty()) return "";
  if (a == b) return gbnf_literal(a);
  if (a[0] == b[0]) return gbnf_literal(a.substr(0, 1)) + " " + same_length_range(a.substr(1), b.substr(1));
  const size_t rest = a.size() - 1;
  const std::string tail_any = rest ? cat(" [0-9]{", rest, "}") : "";
  std::vector<std::string> alts;
  char lo_full = a[0], hi_full = b[0];
  if (a.substr(1) != std::string(rest, '0')) {
    alts.push_back(gbnf_literal(a.substr(0, 1)) + " (" + same_length_range(a.substr(1), std::string(rest, '9')) + ")");
    ++lo_full;
  }
  std::string last;
  if (b.substr(1) != std::string(rest, '9')) {
    last = gbnf_literal(b.substr(0, 1)) + " (" + same_length_range(std::string(rest, '0'), b.substr(1)) + ")";
    --hi_full;
  }
  if (lo_full <= hi_full) alts.push_back(cat("[", lo_full, "-", hi_full, "]", tail_any));
  if (!last.empty()) alts.push_back(last);
  std::string out = "(";
  for (size_t i = 0; i < alts.size(); ++i) {
    out += i ? " | " : "";
    out += alts[i];
  }
  return out + ")";
}
std::string nonneg_range(int64_t lo, int64_t hi) {
  const std::string slo = std::to_string(lo), shi = std::to_string(hi);
  std::vector<std::string> alts;
  for (size_t len = slo.size(); len <= shi.size(); ++len) {
    std::string a = slo;
    if (len != slo.size()) {
      a.assign(len, '0');
      a[0] = '1';
    }
    const std::string b = len == shi.size() ? shi : std::string(len, '9');
    alts.push_back(same_length_range(a, b));
  }
  std::string out = "(";
  for (size_t i = 0; i < alts.size(); ++i) {
    out += i ? " | " : "";
    out += alts[i];
  }
  return out + ")";
}

constexpr int64_t kMaxInt = 9999999999999999;  // 16 digits, the unbounded integer rule's limit

class SchemaCompiler {
 public:
  SchemaCompiler(const Json& root, const JsonSchemaOptions& options) : root_(root), options_(options) {}

  std::string compile_schema() {
    const std::string top = visit(root_, "#", "root");
    return finish(top);
  }
  std::string compile_object() { return finish(primitive("object")); }

 private:
  std::string finish(const std::string& top) {
    std::string out = "root ::= " + top + "\n";
    for (const auto& [name, body] : rules_) out += name + " ::= " + body + "\n";
    return out;
  }

  // Adds a rule (or finds one with the same body) and returns its name.
  std::string rule(const std::string& hint, const std::string& body) {
    if (const auto it = by_body_.find(body); it != by_body_.end()) return it->second;
    const std::string name = fresh_name(hint);
    rules_.emplace_back(name, body);
    by_body_.emplace(body, name);
    return name;
  }
  std::string fresh_name(const std::string& hint) {
    std::string base;
    for (const char c : hint) base += std::isalnum(static_cast<unsigned char>(c)) ? c : '-';
    if (base.empty() || base == "root") base = "r-" + base;
    std::string name = base;
    for (int i = 2; !names_.insert(name).second; ++i) name = cat(base, "-", i);
    return name;
  }

  std::string primitive(const std::string& name) {
    if (defined_primitives_.count(name)) return name;
    defined_primitives_.insert(name);
    names_.insert(name);
    std::string body;
    if (name == "ws") {
      body = cat("( \" \" | \"\\n\" [ \\t]{0,", options_.max_indent, "} )?");
    } else if (name == "char") {
      body =
          R"([^"\\\x00-\x1F] | "\\" ( ["\\/bfnrt] | "u" ( [0-9a-cA-Ce-fE-F] [0-9a-fA-F]{3} | [dD] [0-7] [0-9a-fA-F]{2} ) ))";
    } else if (name == "string") {
      body = "\"\\\"\" " + primitive("char") + "* \"\\\"\"";
    } else if (name == "integer") {
      body = R"("-"? ( "0" | [1-9] [0-9]{0,15} ))";
    } else if (name == "number") {
      body = primitive("integer") + R"( ( "." [0-9]{1,16} )? ( [eE] [-+]? [0-9]{1,2} )?)";
    } else if (name == "boolean") {
      body = R"("true" | "false")";
    } else if (name == "null") {
      body = R"("null")";
    } else if (name == "value") {
      body = "object | array | string | number | boolean | null";
      for (const char* p : {"object", "array", "string", "number", "boolean", "null"}) primitive(p);
    } else if (name == "object") {
      const std::string ws = primitive("ws"), s = primitive("string");
      const std::string kv = cat(s, " ", ws, " \":\" ", ws, " value");
      body = cat("\"{\" ", ws, " ( ", kv, " ( ", ws, " \",\" ", ws, " ", kv, " )* ", ws, " )? \"}\"");
      primitive("value");
    } else if (name == "array") {
      const std::string ws = primitive("ws");
      body = cat("\"[\" ", ws, " ( value ( ", ws, " \",\" ", ws, " value )* ", ws, " )? \"]\"");
      primitive("value");
    } else {
      throw Error("json_schema: unknown primitive " + name);
    }
    rules_.emplace_back(name, body);
    return name;
  }

  void check_keywords(const Json& s, const std::string& path) {
    for (const auto& [key, value] : s.items()) {
      if (kRejected.count(key)) fail(path, key, "is not supported");
      if (key == "uniqueItems" && value != false) fail(path, key, "is not supported (only false)");
    }
  }
  std::string sibling_validation(const Json& s, std::string_view except) {
    for (const auto& [key, value] : s.items()) {
      if (key != except && kValidation.count(key)) return key;
    }
    return "";
  }

  std::string visit(const Json& s, const std::string& path, const std::string& hint) {
    if (s.is_boolean()) {
      if (!s.get<bool>()) fail(path, "false", "schema matches nothing");
      return primitive("value");
    }
    if (!s.is_object()) fail(path, "schema", "must be an object or a boolean");
    check_keywords(s, path);
    if (s.contains("$ref")) {
      if (const std::string other = sibling_validation(s, "$ref"); !other.empty()) {
        fail(path, "$ref", cat("beside '", other, "' is not supported"));
      }
      return ref(s["$ref"], path + "/$ref");
    }
    for (const char* kw : {"anyOf", "oneOf"}) {
      if (!s.contains(kw)) continue;
      if (const std::string other = sibling_validation(s, kw); !other.empty()) {
        fail(path, kw, cat("beside '", other, "' is not supported"));
      }
      const Json& alts = s[kw];
      if (!alts.is_array() || alts.empty()) fail(path, kw, "must be a non-empty array");
      std::string body;
      for (size_t i = 0; i < alts.size(); ++i) {
        {
          body += i ? " | " : "";
          body += visit(alts[i], cat(path, "/", kw, "/", i), cat(hint, "-", i));
        }
      }
      return rule(hint, body);
    }
    if (s.contains("allOf")) {
      const Json& all = s["allOf"];
      if (!all.is_array() || all.size() != 1) fail(path, "allOf", "is supported only with a single schema");
      if (const std::string other = sibling_validation(s, "allOf"); !other.empty()) {
        fail(path, "allOf", cat("beside '", other, "' is not supported"));
      }
      return visit(all[0], path + "/allOf/0", hint);
    }
    if (s.contains("const")) return rule(hint, literal(s["const"], path + "/const"));
    if (s.contains("enum")) {
      const Json& values = s["enum"];
      if (!values.is_array() || values.empty()) fail(path, "enum", "must be a non-empty array");
      std::string body;
      for (size_t i = 0; i < values.size(); ++i) {
        body += i ? " | " : "";
        body += literal(values[i], path + "/enum");
      }
      return rule(hint, body);
    }
    std::vector<std::string> types;
    if (s.contains("type")) {
      const Json& t = s["type"];
      if (t.is_string()) {
        types.push_back(t.get<std::string>());
      } else if (t.is_array() && !t.empty()) {
        for (const Json& x : t) {
          if (!x.is_string()) fail(path, "type", "must hold type names");
          types.push_back(x.get<std::string>());
        }
      } else {
        fail(path, "type", "must be a type name or a non-empty array of them");
      }
    } else if (s.contains("properties") || s.contains("additionalProperties") || s.contains("required")) {
      types = {"object"};
    } else if (s.contains("items") || s.contains("prefixItems") || s.contains("minItems") || s.contains("maxItems")) {
      types = {"array"};
    } else if (s.contains("pattern") || s.contains("format") || s.contains("minLength") || s.contains("maxLength")) {
      types = {"string"};
    } else if (s.contains("minimum") || s.contains("maximum") || s.contains("exclusiveMinimum") ||
               s.contains("exclusiveMaximum")) {
      types = {"number"};
    } else {
      return primitive("value");
    }
    std::string body;
    for (size_t i = 0; i < types.size(); ++i) {
      {
        body += i ? " | " : "";
        body += typed(s, types[i], path, types.size() > 1 ? hint + "-" + types[i] : hint);
      }
    }
    return types.size() == 1 ? body : rule(hint, body);
  }

  std::string typed(const Json& s, const std::string& type, const std::string& path, const std::string& hint) {
    if (type == "null" || type == "boolean") return primitive(type);
    if (type == "string") return string_rule(s, path, hint);
    if (type == "integer") return integer_rule(s, path, hint);
    if (type == "number") return number_rule(s, path, hint);
    if (type == "object") return object_rule(s, path, hint);
    if (type == "array") return array_rule(s, path, hint);
    fail(path, "type", cat("names an unknown type \"", type, "\""));
  }

  std::string literal(const Json& v, const std::string& path) {
    try {
      return gbnf_literal(v.dump());
    } catch (const Json::exception& e) {
      fail(path, "const", cat("cannot be written as JSON: ", e.what()));
    }
  }

  std::string ref(const Json& r, const std::string& path) {
    if (!r.is_string()) fail(path, "$ref", "must be a string");
    const std::string target = r.get<std::string>();
    if (const auto it = refs_.find(target); it != refs_.end()) return it->second;
    if (target.empty() || target[0] != '#')
      fail(path, "$ref", cat("to \"", target, "\": only local references (#/...) are supported"));
    Json::json_pointer pointer;
    try {
      pointer = Json::json_pointer(target.substr(1));
    } catch (const Json::exception&) {
      fail(path, "$ref", cat("\"", target, "\" is not a JSON pointer"));
    }
    if (!root_.contains(pointer)) fail(path, "$ref", cat("\"", target, "\" points at nothing"));
    // Name the rule before visiting the target, so that a recursive
    // reference finds it.
    const std::string last = target.substr(target.find_last_of('/') + 1);
    const std::string name = fresh_name("ref-" + (last.empty() || last == "#" ? std::string("root") : last));
    refs_.emplace(target, name);
    const size_t slot = rules_.size();
    rules_.emplace_back(name, "");
    const std::string body = visit(root_.at(pointer), target, name + "-body");
    rules_[slot].second = body;
    return name;
  }

  // --- strings ---
  std::string string_rule(const Json& s, const std::string& path, const std::string& hint) {
    const std::string q = "\"\\\"\"";
    if (s.contains("pattern")) {
      for (const char* kw : {"minLength", "maxLength", "format"}) {
        if (s.contains(kw)) fail(path, kw, "together with 'pattern' is not supported");
      }
      if (!s["pattern"].is_string()) fail(path, "pattern", "must be a string");
      const std::string re = s["pattern"].get<std::string>();
      return rule(hint, q + " " + regex_to_gbnf(re, path) + " " + q);
    }
    if (s.contains("format")) {
      for (const char* kw : {"minLength", "maxLength"}) {
        if (s.contains(kw)) fail(path, kw, "together with 'format' is not supported");
      }
      if (!s["format"].is_string()) fail(path, "format", "must be a string");
      return rule(hint, q + " " + format_body(s["format"].get<std::string>(), path) + " " + q);
    }
    const int64_t min = count(s, "minLength", path).value_or(0);
    const std::optional<int64_t> max = count(s, "maxLength", path);
    if (max && *max < min) fail(path, "maxLength", "is below minLength");
    if (min == 0 && !max) return primitive("string");
    const std::string reps = max ? cat("{", min, ",", *max, "}") : cat("{", min, ",}");
    return rule(hint, q + " " + primitive("char") + reps + " " + q);
  }

  std::optional<int64_t> count(const Json& s, const char* kw, const std::string& path) {
    if (!s.contains(kw)) return std::nullopt;
    const Json& v = s[kw];
    if (!v.is_number_integer() || v.get<int64_t>() < 0) fail(path, kw, "must be a non-negative integer");
    if (v.get<int64_t>() > 100000) fail(path, kw, "above 100000 is not supported");
    return v.get<int64_t>();
  }

  std::string format_body(const std::string& f, const std::string& path) {
    auto named = [&](const std::string& name, const std::string& body) {
      if (!defined_primitives_.count(name)) {
        defined_primitives_.insert(name);
        names_.insert(name);
        rules_.emplace_back(name, body);
      }
      return name;
    };
    auto date = [&] {
      return named("fmt-date", R"([0-9]{4} "-" ( "0" [1-9] | "1" [0-2] ) "-" ( "0" [1-9] | [12] [0-9] | "3" [01] ))");
    };
    auto time = [&] {
      return named("fmt-time", R"(( [01] [0-9] | "2" [0-3] ) ":" [0-5] [0-9] ":" [0-5] [0-9] ( "." [0-9]{1,9} )? )"
                               R"(( "Z" | [+-] ( [01] [0-9] | "2" [0-3] ) ":" [0-5] [0-9] ))");
    };
    auto label = [&] { return named("fmt-label", R"([a-zA-Z0-9]+ ( "-" [a-zA-Z0-9]+ )*)"); };
    if (f == "date") return date();
    if (f == "time") return time();
    if (f == "date-time") return date() + " \"T\" " + time();
    if (f == "uuid") {
      return R"([0-9a-fA-F]{8} "-" [0-9a-fA-F]{4} "-" [0-9a-fA-F]{4} "-" [0-9a-fA-F]{4} "-" [0-9a-fA-F]{12})";
    }
    if (f == "email")
      return cat("[a-zA-Z0-9_%+-]+ ( \".\" [a-zA-Z0-9_%+-]+ )* \"@\" ", label(), " ( \".\" ", label(), " )+");
    if (f == "hostname") return cat(label(), " ( \".\" ", label(), " )*");
    if (f == "ipv4") {
      const std::string octet =
          named("fmt-octet", R"("25" [0-5] | "2" [0-4] [0-9] | "1" [0-9] [0-9] | [1-9] [0-9] | [0-9])");
      return cat(octet, " ( \".\" ", octet, " ){3}");
    }
    fail(path, "format",
         cat("\"", f, "\" is not supported (supported: date, time, date-time, uuid, email, hostname, ipv4)"));
  }

  // --- numbers ---
  // An integer bound as an integer, rounded inward.
  std::optional<int64_t> bound(const Json& s, const char* kw, bool lower, const std::string& path) {
    if (!s.contains(kw)) return std::nullopt;
    const Json& v = s[kw];
    if (!v.is_number()) fail(path, kw, "must be a number");
    const double d = v.get<double>();
    const bool exclusive = std::string_view(kw).starts_with("exclusive");
    double r = lower ? std::ceil(d) : std::floor(d);
    if (exclusive && r == d) r += lower ? 1 : -1;
    return static_cast<int64_t>(std::clamp(r, -double(kMaxInt), double(kMaxInt)));
  }
  std::pair<std::optional<int64_t>, std::optional<int64_t>> int_bounds(const Json& s, const std::string& path) {
    std::optional<int64_t> lo = bound(s, "minimum", true, path), hi = bound(s, "maximum", false, path);
    if (const auto x = bound(s, "exclusiveMinimum", true, path)) lo = lo ? std::max(*lo, *x) : *x;
    if (const auto x = bound(s, "exclusiveMaximum", false, path)) hi = hi ? std::min(*hi, *x) : *x;
    return {lo, hi};
  }
  std::string int_range(int64_t lo, int64_t hi) {
    std::vector<std::string> alts;
    if (lo < 0) alts.push_back("\"-\" " + nonneg_range(std::max<int64_t>(1, -std::min<int64_t>(hi, -1)), -lo));
    if (hi >= 0) alts.push_back(nonneg_range(std::max<int64_t>(lo, 0), hi));
    std::string out;
    for (size_t i = 0; i < alts.size(); ++i) {
      out += i ? " | " : "";
      out += alts[i];
    }
    return out;
  }
  std::string integer_rule(const Json& s, const std::string& path, const std::string& hint) {
    const auto [lo, hi] = int_bounds(s, path);
    if (!lo && !hi) return primitive("integer");
    if (lo && hi && *lo > *hi) fail(path, "maximum", "leaves no integer above the minimum");
    return rule(hint, int_range(lo.value_or(-kMaxInt), hi.value_or(kMaxInt)));
  }
  std::string number_rule(const Json& s, const std::string& path, const std::string& hint) {
    for (const char* kw : {"exclusiveMinimum", "exclusiveMaximum"}) {
      if (s.contains(kw)) fail(path, kw, "is not supported for numbers (only for integers)");
    }
    if (!s.contains("minimum") && !s.contains("maximum")) return primitive("number");
    const Json* mn = s.contains("minimum") ? &s["minimum"] : nullptr;
    const Json* mx = s.contains("maximum") ? &s["maximum"] : nullptr;
    auto whole = [](const Json* v) { return v && v->is_number() && std::floor(v->get<double>()) == v->get<double>(); };
    if (mn && !mx && whole(mn) && mn->get<double>() == 0) {
      return rule(hint, R"(( "0" | [1-9] [0-9]{0,15} ) ( "." [0-9]{1,16} )? ( [eE] [-+]? [0-9]{1,2} )?)");
    }
    const char* bad = nullptr;
    if (mn && (!whole(mn) || mn->get<double>() < 0)) {
      bad = "minimum";
    } else if (mx && (!whole(mx) || mx->get<double>() > double(kMaxInt))) {
      bad = "maximum";
    } else if (!mn || !mx) {
      bad = mn ? "minimum" : "maximum";
    }
    if (bad) {
      fail(path, bad,
           "on a number is supported only as whole bounds with minimum >= 0 (both given), or minimum 0 alone");
    }
    const int64_t lo = mn->get<int64_t>(), hi = mx->get<int64_t>();
    if (lo > hi) fail(path, "maximum", "is below minimum");
    // x in [lo, hi] without an exponent: an integer part in [lo, hi - 1] with
    // any fraction, or exactly hi (a fraction of zeros only).
    std::string body = gbnf_literal(std::to_string(hi)) + R"( ( "." "0"{1,16} )?)";
    if (lo < hi) body = cat(int_range(lo, hi - 1), R"( ( "." [0-9]{1,16} )? | )", body);
    return rule(hint, body);
  }

  // --- objects ---
  bool additional_allowed(const Json& s) const {
    if (!s.contains("additionalProperties")) return !options_.strict;
    const Json& a = s["additionalProperties"];
    return !(a.is_boolean() && !a.get<bool>());
  }

  std::string object_rule(const Json& s, const std::string& path, const std::string& hint) {
    const Json empty = Json::object();
    const Json& props = s.contains("properties") ? s["properties"] : empty;
    if (!props.is_object()) fail(path, "properties", "must be an object");
    std::set<std::string> required;
    if (s.contains("required")) {
      if (!s["required"].is_array()) fail(path, "required", "must be an array");
      for (const Json& r : s["required"]) {
        if (!r.is_string()) fail(path, "required", "must hold property names");
        if (!props.contains(r.get<std::string>())) {
          fail(path, "required", cat("names \"", r.get<std::string>(), "\", which is not in 'properties'"));
        }
        required.insert(r.get<std::string>());
      }
    }
    const std::string ws = primitive("ws");
    const std::string sep = cat(ws, " \",\" ", ws, " ");
    std::vector<std::string> kvs;
    std::vector<bool> req;
    std::vector<std::string> keys;
    for (const auto& [key, sub] : props.items()) {
      const std::string value = visit(sub, path + "/properties/" + key, hint + "-" + key);
      kvs.push_back(rule(hint + "-" + key + "-kv", cat(literal(Json(key), path), " ", ws, " \":\" ", ws, " ", value)));
      req.push_back(required.count(key) > 0);
      keys.push_back(key);
    }
    std::string extra_kv;
    if (additional_allowed(s)) {
      std::string value = primitive("value");
      if (s.contains("additionalProperties") && !s["additionalProperties"].is_boolean()) {
        value = visit(s["additionalProperties"], path + "/additionalProperties", hint + "-additional");
      }
      extra_kv = rule(hint + "-extra-kv", cat(other_key(keys, hint), " ", ws, " \":\" ", ws, " ", value));
    }
    // tail: what follows once something was written (each item after a comma);
    // head: the first item and what follows it (empty if none: no head rule).
    std::string tail = extra_kv.empty() ? "" : cat("( ", sep, extra_kv, " )*");
    std::string head = extra_kv.empty() ? "" : rule(hint + "-h", extra_kv + (tail.empty() ? "" : " " + tail));
    if (!tail.empty()) tail = rule(hint + "-t", tail);
    for (size_t i = kvs.size(); i-- > 0;) {
      const std::string after = tail.empty() ? "" : " " + tail;
      const std::string first = kvs[i] + after;
      const std::string new_head = req[i] || head.empty() ? first : cat(first, " | ", head);
      const std::string new_tail = req[i] ? cat(sep, kvs[i], after) : cat("( ", sep, kvs[i], " )?", after);
      head = rule(cat(hint, "-h", i), new_head);
      tail = rule(cat(hint, "-t", i), new_tail);
    }
    const bool any_required = std::find(req.begin(), req.end(), true) != req.end();
    if (head.empty()) return rule(hint, cat("\"{\" ", ws, " \"}\""));
    if (any_required) return rule(hint, cat("\"{\" ", ws, " ", head, " ", ws, " \"}\""));
    return rule(hint, cat("\"{\" ", ws, " ( ", head, " ", ws, " )? \"}\""));
  }

  // A JSON string that is none of `keys`: a trie of the keys' characters where
  // leaving the trie (or ending where no key ends) is allowed.
  std::string other_key(const std::vector<std::string>& keys, const std::string& hint) {
    if (keys.empty()) return primitive("string");
    struct Node {
      std::map<uint32_t, size_t> next;
      bool end = false;
    };
    std::vector<Node> trie(1);
    for (const std::string& k : keys) {
      const std::string enc = Json(k).dump();
      const std::string_view body = std::string_view(enc).substr(1, enc.size() - 2);
      size_t n = 0;
      for (size_t i = 0; i < body.size();) {
        const size_t len = utf8::char_len(body, i);
        const uint32_t cp = utf8::decode(body, i, len);
        i += len;
        auto it = trie[n].next.find(cp);
        if (it == trie[n].next.end()) {
          trie.emplace_back();
          it = trie[n].next.emplace(cp, trie.size() - 1).first;
        }
        n = it->second;
      }
      trie[n].end = true;
    }
    const std::string q = "\"\\\"\"";
    const std::string ch = primitive("char");
    std::vector<std::string> names(trie.size());
    for (size_t n = 0; n < trie.size(); ++n) names[n] = fresh_name(cat(hint, "-other-key-", n));
    for (size_t n = 0; n < trie.size(); ++n) {
      std::vector<std::string> alts;
      if (!trie[n].end) alts.push_back(q);
      CodepointRanges children;
      for (const auto& [cp, child] : trie[n].next) {
        children.emplace_back(cp, cp);
        std::string c;
        utf8::append(c, cp);
        alts.push_back(gbnf_literal(c) + " " + names[child]);
      }
      // A character outside the trie, then anything.
      CodepointRanges other = invert_ranges(children);
      alts.push_back(
          cat("( ", json_string_char_gbnf(other), R"( | "\\" ( ["\\/bfnrt] | "u" [0-9a-fA-F]{4} ) ) )", ch, "* ", q));
      std::string body;
      for (size_t i = 0; i < alts.size(); ++i) {
        body += i ? " | " : "";
        body += alts[i];
      }
      rules_.emplace_back(names[n], body);
    }
    return rule(hint + "-other-key", q + " " + names[0]);
  }

  // --- arrays ---
  std::string array_rule(const Json& s, const std::string& path, const std::string& hint) {
    const std::string ws = primitive("ws");
    const std::string sep = cat(ws, " \",\" ", ws, " ");
    std::vector<std::string> prefix;
    if (s.contains("prefixItems")) {
      const Json& p = s["prefixItems"];
      if (!p.is_array()) fail(path, "prefixItems", "must be an array");
      for (size_t i = 0; i < p.size(); ++i)
        prefix.push_back(visit(p[i], cat(path, "/prefixItems/", i), cat(hint, "-", i)));
    }
    std::string item;  // empty: no items after the prefix
    if (!s.contains("items")) {
      item = primitive("value");
    } else if (s["items"].is_boolean()) {
      if (s["items"].get<bool>()) item = primitive("value");
      if (!s["items"].get<bool>() && prefix.empty()) item = "";
    } else if (s["items"].is_array()) {
      fail(path, "items", "as an array (draft 4 tuples) is not supported; use prefixItems");
    } else {
      item = visit(s["items"], path + "/items", hint + "-item");
    }
    const size_t p = prefix.size();
    const int64_t min = count(s, "minItems", path).value_or(0);
    std::optional<int64_t> max = count(s, "maxItems", path);
    if (item.empty()) max = max ? std::min<int64_t>(*max, static_cast<int64_t>(p)) : static_cast<int64_t>(p);
    if (max && *max < min) fail(path, "maxItems", "leaves no valid length (below minItems or the items allowed)");
    if (max && *max == 0) return rule(hint, cat("\"[\" ", ws, " \"]\""));
    auto elem = [&](size_t i) { return i < p ? prefix[i] : item; };
    // Elements after the prefix: (sep item){a,b}.
    std::string tail;
    if (!item.empty()) {
      const size_t from = std::max<size_t>(p, 1);  // element 0 is written by the head
      const int64_t a = std::max<int64_t>(0, min - static_cast<int64_t>(from));
      if (!max || *max > static_cast<int64_t>(from)) {
        const std::string reps = max ? cat("{", a, ",", *max - static_cast<int64_t>(from), "}") : cat("{", a, ",}");
        tail = rule(hint + "-rest", cat("( ", sep, item, " )", reps));
      }
    }
    for (size_t i = p; i-- > 1;) {
      const std::string after = tail.empty() ? "" : " " + tail;
      tail = rule(cat(hint, "-t", i),
                  static_cast<int64_t>(i) < min ? cat(sep, elem(i), after) : cat("( ", sep, elem(i), after, " )?"));
    }
    const std::string first = elem(0) + (tail.empty() ? "" : " " + tail);
    if (min >= 1) return rule(hint, cat("\"[\" ", ws, " ", first, " ", ws, " \"]\""));
    return rule(hint, cat("\"[\" ", ws, " ( ", first, " ", ws, " )? \"]\""));
  }

  const Json& root_;
  JsonSchemaOptions options_;
  std::vector<std::pair<std::string, std::string>> rules_;
  std::map<std::string, std::string> by_body_;
  std::set<std::string> names_{"root"};
  std::set<std::string> defined_primitives_;
  std::map<std::string, std::string> refs_;
};

}  // namespace

std::string json_object_gbnf(const JsonSchemaOptions& options) {
  const Json none;
  return SchemaCompiler(none, options).compile_object();
}

std::string json_schema_to_gbnf(const nlohmann::ordered_json& schema, const JsonSchemaOptions& options) {
  return SchemaCompiler(schema, options).compile_schema();
}

std::string json_schema_to_gbnf(std::string_view schema_text, const JsonSchemaOptions& options) {
  Json schema;
  try {
    schema = Json::parse(schema_text);
  } catch (const Json::exception& e) {
    throw SchemaError(cat("schema is not valid JSON: ", e.what()));
  }
  return json_schema_to_gbnf(schema, options);
}

namespace {
Grammar parse_generated(const std::string& gbnf) {
  try {
    return Grammar::parse_gbnf(gbnf);
  } catch (const GrammarError& e) {
    throw SchemaError(cat("schema compiles to a grammar that cannot be used: ", e.what()));
  }
}
}  // namespace

Grammar compile_json_schema(const nlohmann::ordered_json& schema, const JsonSchemaOptions& options) {
  return parse_generated(json_schema_to_gbnf(schema, options));
}
Grammar compile_json_schema(std::string_view schema_text, const JsonSchemaOptions& options) {
  return parse_generated(json_schema_to_gbnf(schema_text, options));
}
Grammar compile_json_object(const JsonSchemaOptions& options) { return parse_generated(json_object_gbnf(options)); }

}  // namespace tpinfer
