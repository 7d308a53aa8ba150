#include "tokenizer/jinja_builtins.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <unordered_set>

#include "tokenizer/jinja_text.h"

namespace tpinfer::jinja {

namespace {

[[noreturn]] void type_error(const std::string& message) { throw TemplateError("TypeError: " + message); }
[[noreturn]] void value_error(const std::string& message) { throw TemplateError("ValueError: " + message); }
[[noreturn]] void filter_error(const std::string& message) {
  throw TemplateError("FilterArgumentError: " + message);
}

Value iterator(std::vector<Value> items) { return Value::list(std::move(items), List::Flavor::kIterator); }

// str() of a value as Jinja's soft_str does it: undefined is "".
std::string text_of(const Value& v) { return to_str(v); }

std::optional<std::string> opt_text(const std::optional<Value>& v) {
  if (!v || v->is_none()) return std::nullopt;
  if (!v->is_string()) type_error(cat("expected a string, not ", type_name(*v)));
  return v->str();
}

int64_t int_arg(const std::optional<Value>& v, int64_t dflt, const char* what) {
  if (!v || v->is_none()) return dflt;
  if (!v->is_int() && !v->is_bool()) type_error(cat(what, ": '", type_name(*v), "' object cannot be interpreted as an integer"));
  return v->to_int();
}

bool bool_arg(const std::optional<Value>& v, bool dflt) { return v ? truthy(*v) : dflt; }

void no_args(CallArgs& args, const char* fn) { bind_args(args, {}, fn); }

// Python's int(str, base): optional whitespace and sign, digits with single
// underscores between them, a 0x/0o/0b prefix when base allows it.
std::optional<int64_t> parse_py_int(std::string_view s, int base) {
  std::string t = py_strip(s, std::nullopt, true, true);
  std::string_view v = t;
  bool negative = false;
  if (!v.empty() && (v[0] == '+' || v[0] == '-')) {
    negative = v[0] == '-';
    v.remove_prefix(1);
  }
  if (v.size() >= 2 && v[0] == '0') {
    const char p = static_cast<char>(v[1] | 0x20);
    const int prefixed = p == 'x' ? 16 : p == 'o' ? 8 : p == 'b' ? 2 : 0;
    if (prefixed && (base == 0 || base == prefixed)) {
      base = prefixed;
      v.remove_prefix(2);
      if (!v.empty() && v[0] == '_') v.remove_prefix(1);
    }
  }
  if (base == 0) base = 10;
  std::string digits;
  for (size_t i = 0; i < v.size(); ++i) {
    if (v[i] == '_') {
      if (i == 0 || i + 1 == v.size() || v[i + 1] == '_') return std::nullopt;
      continue;
    }
    digits.push_back(v[i]);
  }
  if (digits.empty()) return std::nullopt;
  uint64_t mag = 0;
  const auto res = std::from_chars(digits.data(), digits.data() + digits.size(), mag, base);
  if (res.ec != std::errc() || res.ptr != digits.data() + digits.size()) return std::nullopt;
  if (mag > static_cast<uint64_t>(INT64_MAX) + (negative ? 1 : 0)) return std::nullopt;
  return negative ? static_cast<int64_t>(0 - mag) : static_cast<int64_t>(mag);
}

// Python's float(str).
std::optional<double> parse_py_float(std::string_view s) {
  std::string t = py_strip(s, std::nullopt, true, true);
  std::string_view v = t;
  bool negative = false;
  if (!v.empty() && (v[0] == '+' || v[0] == '-')) {
    negative = v[0] == '-';
    v.remove_prefix(1);
  }
  std::string lower = py_lower(v);
  if (lower == "inf" || lower == "infinity") return negative ? -INFINITY : INFINITY;
  if (lower == "nan") return NAN;
  std::string clean;
  bool digit_before = false;
  for (size_t i = 0; i < v.size(); ++i) {
    const char c = v[i];
    if (c == '_') {
      if (!digit_before || i + 1 == v.size() || !(v[i + 1] >= '0' && v[i + 1] <= '9')) return std::nullopt;
      continue;
    }
    if (!((c >= '0' && c <= '9') || c == '.' || c == 'e' || c == 'E' || c == '+' || c == '-')) return std::nullopt;
    digit_before = c >= '0' && c <= '9';
    clean.push_back(c);
  }
  if (clean.empty() || clean.find_first_of("0123456789") == std::string::npos) return std::nullopt;
  double d = 0;
  const auto res = std::from_chars(clean.data(), clean.data() + clean.size(), d);
  if (res.ptr != clean.data() + clean.size()) return std::nullopt;
  if (res.ec == std::errc::result_out_of_range) d = clean.find_first_of("eE") != std::string::npos &&
                                                            clean.find("e-") == std::string::npos &&
                                                            clean.find("E-") == std::string::npos
                                                        ? INFINITY
                                                        : 0.0;
  return negative ? -d : d;
}

// Jinja's attribute paths ("a.b.0"): each part an item lookup (then attribute).
std::vector<Value> attribute_parts(const Value& attribute) {
  std::vector<Value> parts;
  if (attribute.is_none() || attribute.is_undefined()) return parts;
  if (!attribute.is_string()) return {attribute};
  for (const std::string& p : py_split(attribute.str(), std::string("."), -1)) {
    if (!p.empty() && p.find_first_not_of("0123456789") == std::string::npos) {
      parts.emplace_back(static_cast<int64_t>(std::stoll(p)));
    } else {
      parts.emplace_back(p);
    }
  }
  return parts;
}

Value lower_if_string(const Value& v) { return v.is_string() ? Value(py_lower(v.str())) : v; }

struct AttrGetter {
  explicit AttrGetter(std::vector<Value> p, bool l = false, std::optional<Value> d = std::nullopt)
      : parts(std::move(p)), lower(l), dflt(std::move(d)) {}
  std::vector<Value> parts;
  bool lower;
  std::optional<Value> dflt;
  Value operator()(Interpreter& in, const Value& item) const {
    Value v = item;
    for (const Value& p : parts) {
      v = in.get_item(v, p);
      if (dflt && v.is_undefined()) {
        v = *dflt;
        break;
      }
    }
    return lower ? lower_if_string(v) : v;
  }
};

// Sorting keys for sort/dictsort (several attributes compare as a list).
bool key_less(const Value& a, const Value& b) { return compare(a, b, "<") == -1; }

// ---- filters -----------------------------------------------------------------------

Value f_abs(Interpreter&, const Value& v, CallArgs& args) {
  no_args(args, "abs");
  if (v.is_float()) return Value(std::fabs(v.as_float()));
  if (v.is_int() || v.is_bool()) {
    const int64_t i = v.to_int();
    if (i == INT64_MIN) throw TemplateError("OverflowError: integer result does not fit in 64 bits");
    return Value(i < 0 ? -i : i);
  }
  if (v.is_undefined()) v.fail_undefined();
  type_error(cat("bad operand type for abs(): '", type_name(v), "'"));
}

Value f_attr(Interpreter& in, const Value& v, CallArgs& args) {
  const auto a = bind_args(args, {"name"}, "attr");
  if (!a[0]) type_error("attr() missing required argument 'name'");
  const std::string name = text_of(*a[0]);
  // An attribute only, never an item: for a dict, d|attr("key") is undefined.
  if (v.is_object() || v.is_undefined()) return in.get_attr(v, name);
  if ((v.is_string() || v.is_list() || v.is_dict()) && find_method(v, name) != MethodKind::kNone) {
    return in.get_attr(v, name);
  }
  return Value::undefined(cat(py_repr(v.is_none() ? "None" : type_name(v) + " object"), " has no attribute ",
                              py_repr(name)));
}

Value f_batch(Interpreter&, const Value& v, CallArgs& args) {
  const auto a = bind_args(args, {"linecount", "fill_with"}, "batch");
  const int64_t n = int_arg(a[0], 0, "batch");
  if (n <= 0) value_error("batch size must be positive");
  std::vector<Value> out, cur;
  for (Value& item : iterate(v)) {
    cur.push_back(std::move(item));
    if (static_cast<int64_t>(cur.size()) == n) out.push_back(Value::list(std::exchange(cur, {})));
  }
  if (!cur.empty()) {
    if (a[1] && !a[1]->is_none()) {
      while (static_cast<int64_t>(cur.size()) < n) cur.push_back(*a[1]);
    }
    out.push_back(Value::list(std::move(cur)));
  }
  return iterator(std::move(out));
}

Value f_capitalize(Interpreter&, const Value& v, CallArgs& args) {
  no_args(args, "capitalize");
  return Value(py_capitalize(text_of(v)));
}

Value f_center(Interpreter& in, const Value& v, CallArgs& args) {
  const auto a = bind_args(args, {"width"}, "center");
  const std::string s = text_of(v);
  const int64_t width = int_arg(a[0], 80, "center");
  const auto len = static_cast<int64_t>(utf8_length(s));
  if (width <= len) return Value(s);
  in.charge(static_cast<size_t>(width));
  const int64_t marg = width - len;
  const int64_t left = marg / 2 + (marg & width & 1);
  return Value(std::string(static_cast<size_t>(left), ' ') + s + std::string(static_cast<size_t>(marg - left), ' '));
}

Value f_length(Interpreter&, const Value& v, CallArgs& args) {
  no_args(args, "length");
  return Value(length(v));
}

Value f_default(Interpreter&, const Value& v, CallArgs& args) {
  const auto a = bind_args(args, {"default_value", "boolean"}, "default");
  if (v.is_undefined() || (bool_arg(a[1], false) && !truthy(v))) return a[0] ? *a[0] : Value("");
  return v;
}

Value f_dictsort(Interpreter&, const Value& v, CallArgs& args) {
  const auto a = bind_args(args, {"case_sensitive", "by", "reverse"}, "dictsort");
  if (!v.is_dict()) type_error(cat("'", type_name(v), "' object has no attribute 'items'"));
  const bool case_sensitive = bool_arg(a[0], false);
  const std::string by = a[1] ? text_of(*a[1]) : "key";
  if (by != "key" && by != "value") filter_error("You can only sort by either 'key' or 'value'");
  const size_t pos = by == "key" ? 0 : 1;
  std::vector<std::pair<Value, Value>> items = v.dict().items();
  auto key = [&](const std::pair<Value, Value>& kv) {
    const Value& k = pos == 0 ? kv.first : kv.second;
    return case_sensitive ? k : lower_if_string(k);
  };
  const bool reverse = bool_arg(a[2], false);
  std::stable_sort(items.begin(), items.end(), [&](const auto& x, const auto& y) {
    return reverse ? key_less(key(y), key(x)) : key_less(key(x), key(y));
  });
  std::vector<Value> out;
  for (auto& [k, e] : items) out.push_back(Value::tuple({k, e}));
  return Value::list(std::move(out));
}

Value f_escape(Interpreter& in, const Value& v, CallArgs& args) {
  no_args(args, "escape");
  const std::string s = text_of(v);
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&#34;";
        break;
      case '\'':
        out += "&#39;";
        break;
      default:
        out.push_back(c);
    }
  }
  in.charge(out.size());
  return Value(std::move(out));
}

Value f_first(Interpreter&, const Value& v, CallArgs& args) {
  no_args(args, "first");
  if (v.is_undefined()) return Value::undefined("No first item, sequence was empty.");
  if (v.is_list()) {
    const auto& items = v.list().items();
    return items.empty() ? Value::undefined("No first item, sequence was empty.") : items.front();
  }
  const std::vector<Value> items = iterate(v);
  return items.empty() ? Value::undefined("No first item, sequence was empty.") : items.front();
}

Value f_last(Interpreter&, const Value& v, CallArgs& args) {
  no_args(args, "last");
  if (v.is_iterator()) type_error("'generator' object is not reversible");
  if (v.is_undefined()) return Value::undefined("No last item, sequence was empty.");
  if (v.is_list()) {
    const auto& items = v.list().items();
    return items.empty() ? Value::undefined("No last item, sequence was empty.") : items.back();
  }
  if (!v.is_string() && !v.is_dict()) type_error(cat("'", type_name(v), "' object is not reversible"));
  const std::vector<Value> items = iterate(v);
  return items.empty() ? Value::undefined("No last item, sequence was empty.") : items.back();
}

Value f_float(Interpreter&, const Value& v, CallArgs& args) {
  const auto a = bind_args(args, {"default"}, "float");
  const Value dflt = a[0] ? *a[0] : Value(0.0);
  if (v.is_number()) return Value(v.to_double());
  if (v.is_string()) {
    if (const auto d = parse_py_float(v.str())) return Value(*d);
  }
  return dflt;
}

Value f_format(Interpreter& in, const Value& v, CallArgs& args) {
  if (!args.positional.empty() && !args.keyword.empty()) {
    filter_error("can't handle positional and keyword arguments at the same time");
  }
  Value operands;
  if (!args.keyword.empty()) {
    Dict d;
    for (auto& [k, e] : args.keyword) d.set(Value(k), e);
    operands = Value::dict(std::move(d));
  } else {
    operands = Value::tuple(args.positional);
  }
  std::string s = percent_format(text_of(v), operands);
  in.charge(s.size());
  return Value(std::move(s));
}

Value f_indent(Interpreter& in, const Value& v, CallArgs& args) {
  const auto a = bind_args(args, {"width", "first", "blank"}, "indent");
  std::string indention;
  if (a[0] && a[0]->is_string()) {
    indention = a[0]->str();
  } else {
    const int64_t w = int_arg(a[0], 4, "indent");
    if (w > 0) {
      in.charge(static_cast<size_t>(w));
      indention.assign(static_cast<size_t>(w), ' ');
    }
  }
  const std::string s = text_of(v) + "\n";  // Jinja's quirk, for splitlines
  std::vector<std::string> lines = py_splitlines(s, false);
  std::string rv;
  if (bool_arg(a[2], false)) {
    for (size_t i = 0; i < lines.size(); ++i) {
      if (i) rv += "\n" + indention;
      rv += lines[i];
    }
  } else {
    rv = lines.empty() ? "" : lines[0];
    if (lines.size() > 1) {
      rv += "\n";
      for (size_t i = 1; i < lines.size(); ++i) {
        if (i > 1) rv += "\n";
        if (!lines[i].empty()) rv += indention;
        rv += lines[i];
      }
    }
  }
  if (bool_arg(a[1], false)) rv = indention + rv;
  in.charge(rv.size());
  return Value(std::move(rv));
}

Value f_int(Interpreter&, const Value& v, CallArgs& args) {
  const auto a = bind_args(args, {"default", "base"}, "int");
  const Value dflt = a[0] ? *a[0] : Value(0);
  const int64_t base = int_arg(a[1], 10, "int");
  if (v.is_int() || v.is_bool()) return Value(v.to_int());
  if (v.is_float()) {
    const double f = v.as_float();
    if (std::isnan(f)) return dflt;
    if (std::isinf(f)) throw TemplateError("OverflowError: cannot convert float infinity to integer");
    if (std::fabs(f) >= 9.2e18) throw TemplateError("OverflowError: integer result does not fit in 64 bits");
    return Value(static_cast<int64_t>(std::trunc(f)));
  }
  if (v.is_string()) {
    if (base == 0 || (base >= 2 && base <= 36)) {
      if (const auto i = parse_py_int(v.str(), static_cast<int>(base))) return Value(*i);
    }
    if (const auto d = parse_py_float(v.str())) {
      if (std::isnan(*d)) return dflt;
      if (std::isinf(*d)) throw TemplateError("OverflowError: cannot convert float infinity to integer");
      if (std::fabs(*d) >= 9.2e18) throw TemplateError("OverflowError: integer result does not fit in 64 bits");
      return Value(static_cast<int64_t>(std::trunc(*d)));
    }
  }
  return dflt;
}

Value f_items(Interpreter&, const Value& v, CallArgs& args) {
  no_args(args, "items");
  if (v.is_undefined()) return iterator({});
  if (!v.is_dict()) type_error("Can only get item pairs from a mapping.");
  std::vector<Value> out;
  out.reserve(v.dict().size());
  for (const auto& [k, e] : v.dict().items()) out.push_back(Value::tuple({k, e}));
  return iterator(std::move(out));
}

Value f_join(Interpreter& in, const Value& v, CallArgs& args) {
  const auto a = bind_args(args, {"d", "attribute"}, "join");
  const std::string sep = a[0] ? text_of(*a[0]) : "";
  std::vector<Value> items = iterate(v);
  if (a[1] && !a[1]->is_none()) {
    const AttrGetter get{attribute_parts(*a[1])};
    for (Value& item : items) item = get(in, item);
  }
  std::string out;
  for (size_t i = 0; i < items.size(); ++i) {
    if (i) out += sep;
    out += text_of(items[i]);
    in.charge(out.size() / 8 + 16);
    if (out.size() > SIZE_MAX / 2) in.charge(SIZE_MAX);
  }
  in.charge(out.size());
  return Value(std::move(out));
}

Value f_list(Interpreter& in, const Value& v, CallArgs& args) {
  no_args(args, "list");
  std::vector<Value> items = iterate(v);
  in.charge(items.size() * sizeof(Value));
  return Value::list(std::move(items));
}

Value f_lower(Interpreter&, const Value& v, CallArgs& args) {
  no_args(args, "lower");
  return Value(py_lower(text_of(v)));
}

Value f_upper(Interpreter&, const Value& v, CallArgs& args) {
  no_args(args, "upper");
  return Value(py_upper(text_of(v)));
}

Value f_map(Interpreter& in, const Value& v, CallArgs& args) {
  std::vector<Value> items = iterate(v);
  std::vector<Value> out;
  out.reserve(items.size());
  if (args.positional.empty()) {
    std::optional<Value> attribute, dflt;
    for (auto& [k, e] : args.keyword) {
      if (k == "attribute") {
        attribute = e;
      } else if (k == "default") {
        dflt = e;
      } else {
        filter_error(cat("Unexpected keyword argument ", py_repr(k)));
      }
    }
    if (!attribute) filter_error("map requires a filter argument");
    const AttrGetter get{attribute_parts(*attribute), false, dflt};
    for (const Value& item : items) out.push_back(get(in, item));
    return iterator(std::move(out));
  }
  const std::string name = text_of(args.positional[0]);
  CallArgs rest;
  rest.positional.assign(args.positional.begin() + 1, args.positional.end());
  rest.keyword = args.keyword;
  for (const Value& item : items) {
    CallArgs call_args = rest;
    out.push_back(in.filter(name, item, call_args));
  }
  return iterator(std::move(out));
}

Value min_or_max(Interpreter& in, const Value& v, CallArgs& args, bool want_max, const char* fn) {
  const auto a = bind_args(args, {"case_sensitive", "attribute"}, fn);
  const AttrGetter get{a[1] ? attribute_parts(*a[1]) : std::vector<Value>{}, !bool_arg(a[0], false)};
  const std::vector<Value> items = iterate(v);
  if (items.empty()) return Value::undefined("No aggregated item, sequence was empty.");
  size_t best = 0;
  Value best_key = get(in, items[0]);
  for (size_t i = 1; i < items.size(); ++i) {
    Value k = get(in, items[i]);
    const int c = compare(k, best_key, want_max ? ">" : "<");
    if (want_max ? c == 1 : c == -1) {
      best = i;
      best_key = std::move(k);
    }
  }
  return items[best];
}

Value f_max(Interpreter& in, const Value& v, CallArgs& args) { return min_or_max(in, v, args, true, "max"); }
Value f_min(Interpreter& in, const Value& v, CallArgs& args) { return min_or_max(in, v, args, false, "min"); }

Value select_impl(Interpreter& in, const Value& v, CallArgs& args, bool by_attribute, bool keep) {
  std::vector<Value> items = iterate(v);
  std::optional<AttrGetter> get;
  size_t next = 0;
  if (by_attribute) {
    if (args.positional.empty()) type_error("selectattr() missing the attribute argument");
    get = AttrGetter{attribute_parts(args.positional[0])};
    next = 1;
  }
  std::optional<std::string> test_name;
  CallArgs test_args;
  if (next < args.positional.size()) {
    test_name = text_of(args.positional[next]);
    test_args.positional.assign(args.positional.begin() + static_cast<std::ptrdiff_t>(next) + 1,
                                args.positional.end());
    test_args.keyword = args.keyword;
  }
  std::vector<Value> out;
  for (Value& item : items) {
    const Value probe = get ? (*get)(in, item) : item;
    bool ok;
    if (test_name) {
      CallArgs ta = test_args;
      ok = in.test(*test_name, probe, ta);
    } else {
      ok = truthy(probe);
    }
    if (ok == keep) out.push_back(std::move(item));
  }
  return iterator(std::move(out));
}

Value f_select(Interpreter& in, const Value& v, CallArgs& a) { return select_impl(in, v, a, false, true); }
Value f_reject(Interpreter& in, const Value& v, CallArgs& a) { return select_impl(in, v, a, false, false); }
Value f_selectattr(Interpreter& in, const Value& v, CallArgs& a) { return select_impl(in, v, a, true, true); }
Value f_rejectattr(Interpreter& in, const Value& v, CallArgs& a) { return select_impl(in, v, a, true, false); }

Value f_replace(Interpreter& in, const Value& v, CallArgs& args) {
  const auto a = bind_args(args, {"old", "new", "count"}, "replace");
  if (!a[0] || !a[1]) type_error("replace() missing required arguments 'old' and 'new'");
  const std::string s = text_of(v);
  const std::string old_s = text_of(*a[0]), new_s = text_of(*a[1]);
  const int64_t count = int_arg(a[2], -1, "replace");
  // Bound the result before building it.
  const int64_t hits = old_s.empty() ? static_cast<int64_t>(utf8_length(s)) + 1 : py_count(s, old_s);
  const int64_t n = count < 0 ? hits : std::min(count, hits);
  in.charge(s.size() + static_cast<size_t>(n) * new_s.size());
  return Value(py_replace(s, old_s, new_s, count));
}

Value f_reverse(Interpreter& in, const Value& v, CallArgs& args) {
  no_args(args, "reverse");
  if (v.is_string()) {
    std::u32string cps = decode_utf8(v.str());
    std::reverse(cps.begin(), cps.end());
    in.charge(v.str().size());
    return Value(encode_utf8(cps));
  }
  std::vector<Value> items = iterate(v);
  std::reverse(items.begin(), items.end());
  in.charge(items.size() * sizeof(Value));
  // reversed(list) is an iterator; a generator is materialized into a list.
  return Value::list(std::move(items), v.is_iterator() ? List::Flavor::kList : List::Flavor::kIterator);
}

Value f_round(Interpreter&, const Value& v, CallArgs& args) {
  const auto a = bind_args(args, {"precision", "method"}, "round");
  const int64_t precision = int_arg(a[0], 0, "round");
  const std::string method = a[1] ? text_of(*a[1]) : "common";
  if (method != "common" && method != "ceil" && method != "floor") {
    filter_error("method must be common, ceil or floor");
  }
  if (v.is_undefined()) v.fail_undefined();
  if (!v.is_number()) type_error(cat("type ", type_name(v), " doesn't define __round__ method"));
  if (method != "common") {
    const double scale = std::pow(10.0, static_cast<double>(precision));
    const double x = v.to_double() * scale;
    return Value((method == "ceil" ? std::ceil(x) : std::floor(x)) / scale);
  }
  if (!v.is_float()) {  // round(int, n) stays an int
    int64_t i = v.to_int();
    if (precision >= 0) return Value(i);
    if (precision < -18) return Value(int64_t{0});
    int64_t p = 1;
    for (int64_t k = 0; k < -precision; ++k) p *= 10;
    const int64_t q = i / p, r = i % p;
    int64_t rounded = q;
    const int64_t twice = 2 * (r < 0 ? -r : r);
    if (twice > p || (twice == p && (q % 2 != 0))) rounded += i < 0 ? -1 : 1;
    return Value(rounded * p);
  }
  const double x = v.as_float();
  if (!std::isfinite(x)) return Value(x);
  if (precision >= 0) {
    if (precision > 300) return Value(x);
    char buf[512];
    std::snprintf(buf, sizeof buf, "%.*f", static_cast<int>(precision), x);  // correctly rounded, half-even
    double r = 0;
    std::from_chars(buf, buf + std::strlen(buf), r);
    return Value(r);
  }
  if (precision < -308) return Value(0.0 * x);
  const double p = std::pow(10.0, static_cast<double>(-precision));
  return Value(std::nearbyint(x / p) * p);
}

Value f_safe(Interpreter&, const Value& v, CallArgs& args) {
  no_args(args, "safe");
  return Value(text_of(v));
}

Value f_slice(Interpreter&, const Value& v, CallArgs& args) {
  const auto a = bind_args(args, {"slices", "fill_with"}, "slice");
  const int64_t slices = int_arg(a[0], 0, "slice");
  if (slices <= 0) value_error("slice count must be positive");
  const std::vector<Value> seq = iterate(v);
  const auto length = static_cast<int64_t>(seq.size());
  const int64_t per = length / slices, extra = length % slices;
  int64_t offset = 0;
  std::vector<Value> out;
  for (int64_t n = 0; n < slices; ++n) {
    const int64_t start = offset + n * per;
    if (n < extra) ++offset;
    const int64_t end = offset + (n + 1) * per;
    std::vector<Value> part(seq.begin() + start, seq.begin() + end);
    if (a[1] && !a[1]->is_none() && n >= extra) part.push_back(*a[1]);
    out.push_back(Value::list(std::move(part)));
  }
  return iterator(std::move(out));
}

Value f_sort(Interpreter& in, const Value& v, CallArgs& args) {
  const auto a = bind_args(args, {"reverse", "case_sensitive", "attribute"}, "sort");
  const bool reverse = bool_arg(a[0], false);
  const bool lower = !bool_arg(a[1], false);
  std::vector<AttrGetter> getters;
  if (a[2] && a[2]->is_string()) {
    for (const std::string& part : py_split(a[2]->str(), std::string(","), -1)) {
      getters.push_back(AttrGetter{attribute_parts(Value(part)), lower});
    }
  } else {
    getters.push_back(AttrGetter{a[2] ? attribute_parts(*a[2]) : std::vector<Value>{}, lower});
  }
  std::vector<Value> items = iterate(v);
  std::vector<std::pair<Value, size_t>> keyed;
  keyed.reserve(items.size());
  for (size_t i = 0; i < items.size(); ++i) {
    if (getters.size() == 1) {
      keyed.emplace_back(getters[0](in, items[i]), i);
    } else {
      std::vector<Value> ks;
      for (const AttrGetter& g : getters) ks.push_back(g(in, items[i]));
      keyed.emplace_back(Value::list(std::move(ks)), i);
    }
  }
  std::stable_sort(keyed.begin(), keyed.end(), [&](const auto& x, const auto& y) {
    return reverse ? key_less(y.first, x.first) : key_less(x.first, y.first);
  });
  std::vector<Value> out;
  out.reserve(items.size());
  for (const auto& k : keyed) out.push_back(items[k.second]);
  in.charge(out.size() * sizeof(Value));
  return Value::list(std::move(out));
}

Value f_string(Interpreter& in, const Value& v, CallArgs& args) {
  no_args(args, "string");
  std::string s = to_str(v, 64u << 20);
  in.charge(s.size());
  return Value(std::move(s));
}

Value f_sum(Interpreter& in, const Value& v, CallArgs& args) {
  const auto a = bind_args(args, {"attribute", "start"}, "sum");
  Value total = a[1] ? *a[1] : Value(0);
  const AttrGetter get{a[0] ? attribute_parts(*a[0]) : std::vector<Value>{}};
  for (const Value& item : iterate(v)) total = binary_op(in, BinaryOp::kAdd, total, get(in, item));
  return total;
}

Value f_title(Interpreter&, const Value& v, CallArgs& args) {
  no_args(args, "title");
  // Jinja's title: words start after runs of whitespace, '-', '(', '{', '[' or '<'.
  const std::string s = text_of(v);
  std::string out, word;
  auto is_sep = [](char32_t c) { return py_isspace(c) || c == '-' || c == '(' || c == '{' || c == '[' || c == '<'; };
  bool in_sep = true;
  auto flush = [&] {
    if (word.empty()) return;
    size_t p = 0;
    const char32_t first = next_code_point(word, &p);
    out += py_upper(encode_utf8(std::u32string(1, first)));
    out += py_lower(std::string_view(word).substr(p));
    word.clear();
  };
  for (size_t i = 0; i < s.size();) {
    const size_t b = i;
    const char32_t c = next_code_point(s, &i);
    if (is_sep(c)) {
      if (!in_sep) flush();
      out.append(s, b, i - b);
      in_sep = true;
    } else {
      word.append(s, b, i - b);
      in_sep = false;
    }
  }
  flush();
  return Value(std::move(out));
}

Value f_tojson(Interpreter& in, const Value& v, CallArgs& args) {
  const auto a = bind_args(args, {"ensure_ascii", "indent", "separators", "sort_keys"}, "tojson");
  JsonOptions o;
  o.ensure_ascii = bool_arg(a[0], false);
  if (a[1] && !a[1]->is_none()) {
    if (a[1]->is_string()) {
      o.indent = a[1]->str();
    } else {
      const int64_t n = int_arg(a[1], 0, "tojson");
      if (n > 1000) value_error("tojson indent too large");
      o.indent = std::string(n > 0 ? static_cast<size_t>(n) : 0, ' ');
    }
    o.item_separator = ",";
  }
  if (a[2] && !a[2]->is_none()) {
    const std::vector<Value> seps = iterate(*a[2]);
    if (seps.size() != 2 || !seps[0].is_string() || !seps[1].is_string()) {
      value_error("separators must be a pair of strings");
    }
    o.item_separator = seps[0].str();
    o.key_separator = seps[1].str();
  }
  o.sort_keys = bool_arg(a[3], false);
  std::string s = to_json(v, o, 64u << 20);
  in.charge(s.size());
  return Value(std::move(s));
}

Value f_trim(Interpreter&, const Value& v, CallArgs& args) {
  const auto a = bind_args(args, {"chars"}, "trim");
  return Value(py_strip(text_of(v), opt_text(a[0]), true, true));
}

Value f_truncate(Interpreter&, const Value& v, CallArgs& args) {
  const auto a = bind_args(args, {"length", "killwords", "end", "leeway"}, "truncate");
  const std::string s = text_of(v);
  const int64_t len = int_arg(a[0], 255, "truncate");
  const std::string end = a[2] ? text_of(*a[2]) : "...";
  const int64_t leeway = int_arg(a[3], 5, "truncate");
  const auto end_len = static_cast<int64_t>(utf8_length(end));
  if (len < end_len) throw TemplateError(cat("AssertionError: expected length >= ", end_len, ", got ", len));
  if (leeway < 0) throw TemplateError(cat("AssertionError: expected leeway >= 0, got ", leeway));
  const std::u32string cps = decode_utf8(s);
  if (static_cast<int64_t>(cps.size()) <= len + leeway) return Value(s);
  const std::string head = encode_utf8(std::u32string_view(cps).substr(0, static_cast<size_t>(len - end_len)));
  if (bool_arg(a[1], false)) return Value(head + end);
  return Value(py_rsplit(head, std::string(" "), 1)[0] + end);
}

Value f_unique(Interpreter& in, const Value& v, CallArgs& args) {
  const auto a = bind_args(args, {"case_sensitive", "attribute"}, "unique");
  const AttrGetter get{a[1] ? attribute_parts(*a[1]) : std::vector<Value>{}, !bool_arg(a[0], false)};
  std::unordered_set<std::string> seen;
  std::vector<Value> out;
  for (Value& item : iterate(v)) {
    const Value k = get(in, item);
    const auto h = hash_key(k);
    if (!h) type_error(cat("unhashable type: '", type_name(k), "'"));
    if (seen.insert(*h).second) out.push_back(std::move(item));
  }
  return iterator(std::move(out));
}

Value f_wordcount(Interpreter&, const Value& v, CallArgs& args) {
  no_args(args, "wordcount");
  const std::string s = text_of(v);
  int64_t n = 0;
  bool in_word = false;
  for (size_t i = 0; i < s.size();) {
    const char32_t c = next_code_point(s, &i);
    const bool w = c == '_' || py_isalnum(c) || (c >= 0x80 && !py_isspace(c) && !(c >= 0x2000 && c <= 0x206F) &&
                                                  !(c >= 0x3000 && c <= 0x303F) && !(c >= 0xFF00 && c <= 0xFF0F));
    if (w && !in_word) ++n;
    in_word = w;
  }
  return Value(n);
}

struct FilterEntry {
  std::string_view name;
  FilterFn fn;
};

constexpr FilterEntry kFilters[] = {
    {"abs", f_abs},
    {"attr", f_attr},
    {"batch", f_batch},
    {"capitalize", f_capitalize},
    {"center", f_center},
    {"count", f_length},
    {"d", f_default},
    {"default", f_default},
    {"dictsort", f_dictsort},
    {"e", f_escape},
    {"escape", f_escape},
    {"first", f_first},
    {"float", f_float},
    {"forceescape", f_escape},
    {"format", f_format},
    {"indent", f_indent},
    {"int", f_int},
    {"items", f_items},
    {"join", f_join},
    {"last", f_last},
    {"length", f_length},
    {"list", f_list},
    {"lower", f_lower},
    {"map", f_map},
    {"max", f_max},
    {"min", f_min},
    {"reject", f_reject},
    {"rejectattr", f_rejectattr},
    {"replace", f_replace},
    {"reverse", f_reverse},
    {"round", f_round},
    {"safe", f_safe},
    {"select", f_select},
    {"selectattr", f_selectattr},
    {"slice", f_slice},
    {"sort", f_sort},
    {"string", f_string},
    {"sum", f_sum},
    {"title", f_title},
    {"tojson", f_tojson},
    {"trim", f_trim},
    {"truncate", f_truncate},
    {"unique", f_unique},
    {"upper", f_upper},
    {"wordcount", f_wordcount},
};

// ---- tests -------------------------------------------------------------------------

const Value& one_arg(CallArgs& args, const char* test) {
  if (args.positional.size() + args.keyword.size() != 1) type_error(cat(test, "() takes exactly one argument"));
  return args.positional.empty() ? args.keyword[0].second : args.positional[0];
}

bool t_defined(Interpreter&, const Value& v, CallArgs&) { return !v.is_undefined(); }
bool t_undefined(Interpreter&, const Value& v, CallArgs&) { return v.is_undefined(); }
bool t_none(Interpreter&, const Value& v, CallArgs&) { return v.is_none(); }
bool t_boolean(Interpreter&, const Value& v, CallArgs&) { return v.is_bool(); }
bool t_false(Interpreter&, const Value& v, CallArgs&) { return v.is_bool() && !v.as_bool(); }
bool t_true(Interpreter&, const Value& v, CallArgs&) { return v.is_bool() && v.as_bool(); }
bool t_integer(Interpreter&, const Value& v, CallArgs&) { return v.is_int(); }
bool t_float(Interpreter&, const Value& v, CallArgs&) { return v.is_float(); }
bool t_number(Interpreter&, const Value& v, CallArgs&) { return v.is_number(); }
bool t_string(Interpreter&, const Value& v, CallArgs&) { return v.is_string(); }
bool t_mapping(Interpreter&, const Value& v, CallArgs&) { return v.is_dict(); }
bool t_iterable(Interpreter&, const Value& v, CallArgs&) {
  return v.is_string() || v.is_list() || v.is_dict() || v.is_undefined() ||
         (v.is_object() && v.object().type_name() == "LoopContext");
}
bool t_sequence(Interpreter&, const Value& v, CallArgs&) {
  return v.is_string() || (v.is_list() && !v.is_iterator()) || v.is_dict() || v.is_undefined();
}
bool t_callable(Interpreter&, const Value& v, CallArgs&) {
  return v.is_undefined() || (v.is_object() && v.object().is_callable());
}
bool t_odd(Interpreter& in, const Value& v, CallArgs&) {
  return equals(binary_op(in, BinaryOp::kMod, v, Value(2)), Value(1));
}
bool t_even(Interpreter& in, const Value& v, CallArgs&) {
  return equals(binary_op(in, BinaryOp::kMod, v, Value(2)), Value(0));
}
bool t_divisibleby(Interpreter& in, const Value& v, CallArgs& a) {
  return equals(binary_op(in, BinaryOp::kMod, v, one_arg(a, "divisibleby")), Value(0));
}
bool t_eq(Interpreter&, const Value& v, CallArgs& a) { return equals(v, one_arg(a, "eq")); }
bool t_ne(Interpreter&, const Value& v, CallArgs& a) { return !equals(v, one_arg(a, "ne")); }
bool t_lt(Interpreter&, const Value& v, CallArgs& a) { return compare(v, one_arg(a, "lt"), "<") == -1; }
bool t_le(Interpreter&, const Value& v, CallArgs& a) {
  const int c = compare(v, one_arg(a, "le"), "<=");
  return c == -1 || c == 0;
}
bool t_gt(Interpreter&, const Value& v, CallArgs& a) { return compare(v, one_arg(a, "gt"), ">") == 1; }
bool t_ge(Interpreter&, const Value& v, CallArgs& a) {
  const int c = compare(v, one_arg(a, "ge"), ">=");
  return c == 1 || c == 0;
}
bool t_in(Interpreter&, const Value& v, CallArgs& a) { return contains(one_arg(a, "in"), v); }
bool t_sameas(Interpreter&, const Value& v, CallArgs& a) {
  const Value& o = one_arg(a, "sameas");
  if (v.kind() != o.kind()) return false;
  switch (v.kind()) {
    case Value::Kind::kList:
      return &v.list() == &o.list();
    case Value::Kind::kDict:
      return &v.dict() == &o.dict();
    case Value::Kind::kObject:
      return &v.object() == &o.object();
    default:
      return equals(v, o);
  }
}
bool t_lower(Interpreter&, const Value& v, CallArgs&) { return py_islower(to_str(v)); }
bool t_upper(Interpreter&, const Value& v, CallArgs&) { return py_isupper(to_str(v)); }
bool t_escaped(Interpreter&, const Value&, CallArgs&) { return false; }
bool t_filter(Interpreter&, const Value& v, CallArgs&) { return v.is_string() && find_filter(v.str()) != nullptr; }
bool t_test(Interpreter&, const Value& v, CallArgs&) { return v.is_string() && find_test(v.str()) != nullptr; }

struct TestEntry {
  std::string_view name;
  TestFn fn;
};

constexpr TestEntry kTests[] = {
    {"!=", t_ne},
    {"<", t_lt},
    {"<=", t_le},
    {"==", t_eq},
    {">", t_gt},
    {">=", t_ge},
    {"boolean", t_boolean},
    {"callable", t_callable},
    {"defined", t_defined},
    {"divisibleby", t_divisibleby},
    {"eq", t_eq},
    {"equalto", t_eq},
    {"escaped", t_escaped},
    {"even", t_even},
    {"false", t_false},
    {"filter", t_filter},
    {"float", t_float},
    {"ge", t_ge},
    {"greaterthan", t_gt},
    {"gt", t_gt},
    {"in", t_in},
    {"integer", t_integer},
    {"iterable", t_iterable},
    {"le", t_le},
    {"lessthan", t_lt},
    {"lower", t_lower},
    {"lt", t_lt},
    {"mapping", t_mapping},
    {"ne", t_ne},
    {"none", t_none},
    {"number", t_number},
    {"odd", t_odd},
    {"sameas", t_sameas},
    {"sequence", t_sequence},
    {"string", t_string},
    {"test", t_test},
    {"true", t_true},
    {"undefined", t_undefined},
    {"upper", t_upper},
};

// ---- methods -----------------------------------------------------------------------

constexpr std::string_view kStrMethods[] = {
    "capitalize", "center",     "count",     "endswith",     "find",    "format",     "index",  "isalnum",
    "isalpha",    "isdecimal",  "isdigit",   "islower",      "isnumeric", "isspace",  "istitle", "isupper",
    "join",       "ljust",      "lower",     "lstrip",       "partition", "removeprefix", "removesuffix", "replace",
    "rfind",      "rindex",     "rjust",     "rpartition",   "rsplit",  "rstrip",     "split",  "splitlines",
    "startswith", "strip",      "swapcase",  "title",        "upper",   "zfill",      "casefold"};
constexpr std::string_view kListMethods[] = {"count", "index", "copy"};
constexpr std::string_view kListUnsafe[] = {"append", "clear", "extend", "insert", "pop", "remove", "reverse", "sort"};
constexpr std::string_view kDictMethods[] = {"copy", "get", "items", "keys", "values"};
constexpr std::string_view kDictUnsafe[] = {"clear", "pop", "popitem", "setdefault", "update"};

template <size_t N>
bool in_list(const std::string_view (&names)[N], std::string_view name) {
  return std::find(std::begin(names), std::end(names), name) != std::end(names);
}

const std::string& str_arg(const std::optional<Value>& v, const char* method) {
  if (!v || !v->is_string()) {
    type_error(cat(method, "() argument must be str, not ", v ? type_name(*v) : std::string("nothing")));
  }
  return v->str();
}

// Code point offsets for find/index with optional start/end.
int64_t find_in(const std::string& s, const std::string& sub, const std::optional<Value>& start,
                const std::optional<Value>& end, bool reverse) {
  const std::u32string cps = decode_utf8(s);
  const auto n = static_cast<int64_t>(cps.size());
  auto clamp = [n](int64_t x) {
    if (x < 0) x += n;
    return std::clamp<int64_t>(x, 0, n);
  };
  const int64_t b = clamp(int_arg(start, 0, "find"));
  const int64_t e = end && !end->is_none() ? clamp(end->to_int()) : n;
  if (b > e) return -1;
  const std::u32string hay = cps.substr(static_cast<size_t>(b), static_cast<size_t>(e - b));
  const std::u32string needle = decode_utf8(sub);
  const size_t at = reverse ? hay.rfind(needle) : hay.find(needle);
  return at == std::u32string::npos ? -1 : b + static_cast<int64_t>(at);
}

bool affix_match(const std::string& s, const Value& affix, bool at_start, const char* method) {
  auto one = [&](const Value& a) {
    if (!a.is_string()) {
      type_error(cat(method, " first arg must be str or a tuple of str, not ", type_name(a)));
    }
    const std::string& x = a.str();
    if (x.size() > s.size()) return false;
    return at_start ? s.compare(0, x.size(), x) == 0 : s.compare(s.size() - x.size(), x.size(), x) == 0;
  };
  if (affix.is_tuple()) {
    for (const Value& a : affix.list().items()) {
      if (one(a)) return true;
    }
    return false;
  }
  return one(affix);
}

std::string justify(const std::string& s, int64_t width, const std::string& fill, char align) {
  const auto len = static_cast<int64_t>(utf8_length(s));
  if (width <= len) return s;
  const int64_t marg = width - len;
  int64_t left = 0;
  if (align == '>') left = marg;
  if (align == '^') left = marg / 2 + (marg & width & 1);
  std::string out;
  for (int64_t i = 0; i < left; ++i) out += fill;
  out += s;
  for (int64_t i = 0; i < marg - left; ++i) out += fill;
  return out;
}

Value str_method(Interpreter& in, const std::string& s, const std::string& name, CallArgs& args) {
  in.charge(s.size());
  auto strings = [](std::vector<std::string> parts) {
    std::vector<Value> out;
    out.reserve(parts.size());
    for (auto& p : parts) out.emplace_back(std::move(p));
    return Value::list(std::move(out));
  };
  if (name == "strip" || name == "lstrip" || name == "rstrip") {
    const auto a = bind_args(args, {"chars"}, name.c_str());
    return Value(py_strip(s, opt_text(a[0]), name != "rstrip", name != "lstrip"));
  }
  if (name == "split" || name == "rsplit") {
    const auto a = bind_args(args, {"sep", "maxsplit"}, name.c_str());
    const int64_t maxsplit = int_arg(a[1], -1, name.c_str());
    return strings(name == "split" ? py_split(s, opt_text(a[0]), maxsplit) : py_rsplit(s, opt_text(a[0]), maxsplit));
  }
  if (name == "splitlines") {
    const auto a = bind_args(args, {"keepends"}, "splitlines");
    return strings(py_splitlines(s, bool_arg(a[0], false)));
  }
  if (name == "startswith" || name == "endswith") {
    const auto a = bind_args(args, {"prefix", "start", "end"}, name.c_str());
    if (!a[0]) type_error(cat(name, "() takes at least 1 argument (0 given)"));
    std::string sub = s;
    if ((a[1] && !a[1]->is_none()) || (a[2] && !a[2]->is_none())) {
      const std::u32string cps = decode_utf8(s);
      const auto n = static_cast<int64_t>(cps.size());
      auto clamp = [n](int64_t x) {
        if (x < 0) x += n;
        return std::clamp<int64_t>(x, 0, n);
      };
      const int64_t b = clamp(int_arg(a[1], 0, name.c_str()));
      const int64_t e = a[2] && !a[2]->is_none() ? clamp(a[2]->to_int()) : n;
      if (b > e) return Value(false);
      sub = encode_utf8(std::u32string_view(cps).substr(static_cast<size_t>(b), static_cast<size_t>(e - b)));
    }
    return Value(affix_match(sub, *a[0], name == "startswith", name.c_str()));
  }
  if (name == "upper" || name == "lower" || name == "casefold" || name == "title" || name == "capitalize" ||
      name == "swapcase") {
    no_args(args, name.c_str());
    if (name == "upper") return Value(py_upper(s));
    if (name == "title") return Value(py_title(s));
    if (name == "capitalize") return Value(py_capitalize(s));
    if (name == "swapcase") return Value(py_swapcase(s));
    return Value(py_lower(s));
  }
  if (name == "replace") {
    const auto a = bind_args(args, {"old", "new", "count"}, "replace");
    const std::string& o = str_arg(a[0], "replace");
    const std::string& n = str_arg(a[1], "replace");
    const int64_t count = int_arg(a[2], -1, "replace");
    const int64_t hits = o.empty() ? static_cast<int64_t>(utf8_length(s)) + 1 : py_count(s, o);
    in.charge(static_cast<size_t>(count < 0 ? hits : std::min(count, hits)) * n.size());
    return Value(py_replace(s, o, n, count));
  }
  if (name == "find" || name == "rfind" || name == "index" || name == "rindex") {
    const auto a = bind_args(args, {"sub", "start", "end"}, name.c_str());
    const int64_t at = find_in(s, str_arg(a[0], name.c_str()), a[1], a[2], name[0] == 'r');
    if (at < 0 && (name == "index" || name == "rindex")) value_error("substring not found");
    return Value(at);
  }
  if (name == "count") {
    const auto a = bind_args(args, {"sub"}, "count");
    return Value(py_count(s, str_arg(a[0], "count")));
  }
  if (name == "join") {
    const auto a = bind_args(args, {"iterable"}, "join");
    if (!a[0]) type_error("join() takes exactly one argument (0 given)");
    const std::vector<Value> items = iterate(*a[0]);
    std::string out;
    for (size_t i = 0; i < items.size(); ++i) {
      if (!items[i].is_string()) {
        type_error(cat("sequence item ", i, ": expected str instance, ", type_name(items[i]), " found"));
      }
      if (i) out += s;
      out += items[i].str();
      in.charge(s.size() + items[i].str().size());
    }
    return Value(std::move(out));
  }
  if (name == "format") {
    std::string out = str_format(in, s, args);
    return Value(std::move(out));
  }
  if (name == "ljust" || name == "rjust" || name == "center") {
    const auto a = bind_args(args, {"width", "fillchar"}, name.c_str());
    const int64_t width = int_arg(a[0], 0, name.c_str());
    const std::string fill = a[1] ? str_arg(a[1], name.c_str()) : " ";
    if (utf8_length(fill) != 1) type_error("The fill character must be exactly one character long");
    if (width > 0) in.charge(static_cast<size_t>(width) * fill.size());
    return Value(justify(s, width, fill, name == "ljust" ? '<' : name == "rjust" ? '>' : '^'));
  }
  if (name == "zfill") {
    const auto a = bind_args(args, {"width"}, "zfill");
    const int64_t width = int_arg(a[0], 0, "zfill");
    const auto len = static_cast<int64_t>(utf8_length(s));
    if (width <= len) return Value(s);
    in.charge(static_cast<size_t>(width));
    const bool sign = !s.empty() && (s[0] == '+' || s[0] == '-');
    std::string out = sign ? s.substr(0, 1) : "";
    out.append(static_cast<size_t>(width - len), '0');
    out += sign ? s.substr(1) : s;
    return Value(std::move(out));
  }
  if (name == "removeprefix" || name == "removesuffix") {
    const auto a = bind_args(args, {"affix"}, name.c_str());
    const std::string& x = str_arg(a[0], name.c_str());
    if (name == "removeprefix") return Value(s.compare(0, x.size(), x) == 0 ? s.substr(x.size()) : s);
    if (x.size() <= s.size() && s.compare(s.size() - x.size(), x.size(), x) == 0 && !x.empty()) {
      return Value(s.substr(0, s.size() - x.size()));
    }
    return Value(s);
  }
  if (name == "partition" || name == "rpartition") {
    const auto a = bind_args(args, {"sep"}, name.c_str());
    const std::string& sep = str_arg(a[0], name.c_str());
    if (sep.empty()) value_error("empty separator");
    const size_t at = name == "partition" ? s.find(sep) : s.rfind(sep);
    if (at == std::string::npos) {
      return name == "partition" ? Value::tuple({Value(s), Value(""), Value("")})
                                 : Value::tuple({Value(""), Value(""), Value(s)});
    }
    return Value::tuple({Value(s.substr(0, at)), Value(sep), Value(s.substr(at + sep.size()))});
  }
  no_args(args, name.c_str());
  const std::u32string cps = decode_utf8(s);
  auto all = [&](bool (*pred)(char32_t)) {
    if (cps.empty()) return false;
    for (char32_t c : cps) {
      if (!pred(c)) return false;
    }
    return true;
  };
  if (name == "isalnum") return Value(all(py_isalnum));
  if (name == "isalpha") return Value(all(py_isalpha));
  if (name == "isdigit" || name == "isdecimal" || name == "isnumeric") return Value(all(py_isdigit));
  if (name == "isspace") return Value(all(py_isspace));
  if (name == "islower") return Value(py_islower(s));
  if (name == "isupper") return Value(py_isupper(s));
  if (name == "istitle") {
    bool cased = false, previous_cased = false;
    for (char32_t c : cps) {
      if (py_isupper_char(c)) {
        if (previous_cased) return Value(false);
        previous_cased = cased = true;
      } else if (py_islower_char(c)) {
        if (!previous_cased) return Value(false);
        previous_cased = cased = true;
      } else {
        previous_cased = false;
      }
    }
    return Value(cased);
  }
  type_error(cat("'str' object has no method '", name, "'"));
}

Value list_method(Interpreter&, const Value& receiver, const std::string& name, CallArgs& args) {
  const auto& items = receiver.list().items();
  if (name == "copy") {
    no_args(args, "copy");
    return Value::list(items);
  }
  if (name == "count") {
    const auto a = bind_args(args, {"value"}, "count");
    if (!a[0]) type_error("count() takes exactly one argument (0 given)");
    int64_t n = 0;
    for (const Value& v : items) n += equals(v, *a[0]) ? 1 : 0;
    return Value(n);
  }
  const auto a = bind_args(args, {"value", "start", "stop"}, "index");
  if (!a[0]) type_error("index expected at least 1 argument, got 0");
  const auto n = static_cast<int64_t>(items.size());
  auto clamp = [n](int64_t x) {
    if (x < 0) x += n;
    return std::clamp<int64_t>(x, 0, n);
  };
  const int64_t b = clamp(int_arg(a[1], 0, "index"));
  const int64_t e = a[2] && !a[2]->is_none() ? clamp(a[2]->to_int()) : n;
  for (int64_t i = b; i < e; ++i) {
    if (equals(items[static_cast<size_t>(i)], *a[0])) return Value(i);
  }
  value_error(cat(repr(*a[0]), " is not in list"));
}

Value dict_method(const Value& receiver, const std::string& name, CallArgs& args) {
  const Dict& d = receiver.dict();
  if (name == "get") {
    const auto a = bind_args(args, {"key", "default"}, "get");
    if (!a[0]) type_error("get expected at least 1 argument, got 0");
    if (!hash_key(*a[0])) type_error(cat("unhashable type: '", type_name(*a[0]), "'"));
    if (const Value* v = d.find(*a[0])) return *v;
    return a[1] ? *a[1] : Value::none();
  }
  no_args(args, name.c_str());
  if (name == "copy") return receiver;
  std::vector<Value> out;
  out.reserve(d.size());
  for (const auto& [k, v] : d.items()) {
    if (name == "keys") {
      out.push_back(k);
    } else if (name == "values") {
      out.push_back(v);
    } else {
      out.push_back(Value::tuple({k, v}));
    }
  }
  return Value::list(std::move(out));
}

// ---- globals -------------------------------------------------------------------------

Value g_range(Interpreter& in, CallArgs& args) {
  if (!args.keyword.empty()) type_error("range() takes no keyword arguments");
  const auto& p = args.positional;
  if (p.empty() || p.size() > 3) type_error(cat("range expected at most 3 arguments, got ", p.size()));
  for (const Value& v : p) {
    if (!v.is_int() && !v.is_bool()) type_error(cat("'", type_name(v), "' object cannot be interpreted as an integer"));
  }
  int64_t start = 0, stop, step = 1;
  if (p.size() == 1) {
    stop = p[0].to_int();
  } else {
    start = p[0].to_int();
    stop = p[1].to_int();
    if (p.size() == 3) step = p[2].to_int();
  }
  if (step == 0) value_error("range() arg 3 must not be zero");
  std::vector<Value> out;
  // The sandbox's limit on range() sizes.
  constexpr int64_t kMaxRange = 100000;
  const long double count = step > 0 ? (static_cast<long double>(stop) - start) / step
                                      : (static_cast<long double>(start) - stop) / -step;
  if (count > kMaxRange) {
    throw TemplateError("OverflowError: Range too big. The sandbox blocks ranges larger than MAX_RANGE (100000).");
  }
  for (int64_t i = start; step > 0 ? i < stop : i > stop; i += step) out.emplace_back(i);
  in.charge(out.size() * sizeof(Value));
  return Value::list(std::move(out));
}

Value g_dict(Interpreter&, CallArgs& args) {
  Dict d;
  if (args.positional.size() > 1) type_error("dict expected at most 1 argument");
  if (!args.positional.empty()) {
    const Value& src = args.positional[0];
    if (src.is_dict()) {
      for (const auto& [k, v] : src.dict().items()) d.set(k, v);
    } else {
      for (const Value& pair : iterate(src)) {
        const std::vector<Value> kv = iterate(pair);
        if (kv.size() != 2) value_error("dictionary update sequence element has the wrong length; 2 is required");
        d.set(kv[0], kv[1]);
      }
    }
  }
  for (const auto& [k, v] : args.keyword) d.set(Value(k), v);
  return Value::dict(std::move(d));
}

Value g_namespace(Interpreter& in, CallArgs& args) {
  const Value init = g_dict(in, args);
  auto ns = std::make_shared<Namespace>();
  for (const auto& [k, v] : init.dict().items()) {
    if (!k.is_string()) type_error("namespace attribute names must be strings");
    ns->set_attr(k.str(), v);
  }
  return Value::object(std::move(ns));
}

Value g_raise_exception(Interpreter&, CallArgs& args) {
  const auto a = bind_args(args, {"message"}, "raise_exception");
  throw TemplateError(a[0] ? to_str(*a[0]) : std::string(), /*raised=*/true);
}

Value g_strftime_now(Interpreter& in, CallArgs& args) {
  const auto a = bind_args(args, {"format"}, "strftime_now");
  if (!a[0] || !a[0]->is_string()) type_error("strftime_now() argument must be str");
  return Value(in.strftime_now(a[0]->str()));
}

// joiner(sep): "" on the first call, sep afterwards.
class Joiner : public Object {
 public:
  explicit Joiner(std::string sep) : sep_(std::move(sep)) {}
  std::string type_name() const override { return "Joiner"; }
  bool is_callable() const override { return true; }
  bool holds_values() const override { return false; }
  Value call(Interpreter&, CallArgs& args) override {
    no_args(args, "joiner");
    if (!used_) {
      used_ = true;
      return Value("");
    }
    return Value(sep_);
  }

 private:
  std::string sep_;
  bool used_ = false;
};

Value g_joiner(Interpreter&, CallArgs& args) {
  const auto a = bind_args(args, {"sep"}, "joiner");
  return Value::object(std::make_shared<Joiner>(a[0] ? to_str(*a[0]) : ", "));
}

// cycler(*items): .next() walks the items round robin; .current, .reset().
class Cycler : public Object, public std::enable_shared_from_this<Cycler> {
 public:
  explicit Cycler(std::vector<Value> items) : items_(std::move(items)) {
    for (const Value& v : items_) depth_ = std::max(depth_, 1 + v.depth());
    if (depth_ > kMaxValueDepth) throw TemplateError("value nested too deeply");
  }
  std::string type_name() const override { return "Cycler"; }
  int depth() const override { return depth_; }
  Value get_attr(const std::string& name) const override {
    if (name == "current") return items_[pos_];
    if (name == "next" || name == "reset") {
      return Value::object(std::make_shared<Method>(std::const_pointer_cast<Cycler>(shared_from_this()), name));
    }
    return Object::get_attr(name);
  }

 private:
  class Method : public Object {
   public:
    Method(std::shared_ptr<Cycler> c, std::string name) : c_(std::move(c)), name_(std::move(name)) {}
    std::string type_name() const override { return "method"; }
    bool is_callable() const override { return true; }
    int depth() const override { return 1 + c_->depth(); }
    Value call(Interpreter&, CallArgs& args) override {
      no_args(args, name_.c_str());
      if (name_ == "reset") {
        c_->pos_ = 0;
        return Value::none();
      }
      Value v = c_->items_[c_->pos_];
      c_->pos_ = (c_->pos_ + 1) % c_->items_.size();
      return v;
    }

   private:
    std::shared_ptr<Cycler> c_;
    std::string name_;
  };
  std::vector<Value> items_;
  size_t pos_ = 0;
  int depth_ = 1;
};

Value g_cycler(Interpreter&, CallArgs& args) {
  if (args.positional.empty()) type_error("cycler() requires at least one item");
  if (!args.keyword.empty()) type_error("cycler() takes no keyword arguments");
  return Value::object(std::make_shared<Cycler>(args.positional));
}

}  // namespace

std::vector<std::optional<Value>> bind_args(CallArgs& args, std::initializer_list<const char*> names, const char* fn) {
  std::vector<std::optional<Value>> out(names.size());
  if (args.positional.size() > names.size()) {
    type_error(cat(fn, "() takes at most ", names.size(), " argument(s) (", args.positional.size(), " given)"));
  }
  for (size_t i = 0; i < args.positional.size(); ++i) out[i] = args.positional[i];
  for (auto& [k, v] : args.keyword) {
    size_t i = 0;
    for (const char* n : names) {
      if (k == n) break;
      ++i;
    }
    if (i == names.size()) type_error(cat(fn, "() got an unexpected keyword argument '", k, "'"));
    if (out[i]) type_error(cat(fn, "() got multiple values for argument '", k, "'"));
    out[i] = v;
  }
  return out;
}

FilterFn find_filter(std::string_view name) {
  for (const auto& f : kFilters) {
    if (f.name == name) return f.fn;
  }
  return nullptr;
}

TestFn find_test(std::string_view name) {
  for (const auto& t : kTests) {
    if (t.name == name) return t.fn;
  }
  return nullptr;
}

MethodKind find_method(const Value& receiver, std::string_view name) {
  if (receiver.is_string()) return in_list(kStrMethods, name) ? MethodKind::kSafe : MethodKind::kNone;
  if (receiver.is_list()) {
    if (receiver.is_iterator()) return MethodKind::kNone;
    if (receiver.is_tuple()) return name == "count" || name == "index" ? MethodKind::kSafe : MethodKind::kNone;
    if (in_list(kListMethods, name)) return MethodKind::kSafe;
    return in_list(kListUnsafe, name) ? MethodKind::kUnsafe : MethodKind::kNone;
  }
  if (receiver.is_dict()) {
    if (in_list(kDictMethods, name)) return MethodKind::kSafe;
    return in_list(kDictUnsafe, name) ? MethodKind::kUnsafe : MethodKind::kNone;
  }
  return MethodKind::kNone;
}

Value call_method(Interpreter& in, const Value& receiver, const std::string& name, CallArgs& args) {
  if (find_method(receiver, name) != MethodKind::kSafe) {
    type_error(cat("'", type_name(receiver), "' object has no attribute '", name, "'"));
  }
  if (receiver.is_string()) return str_method(in, receiver.str(), name, args);
  if (receiver.is_list()) return list_method(in, receiver, name, args);
  return dict_method(receiver, name, args);
}

std::vector<std::pair<std::string, Value>> builtin_globals() {
  auto fn = [](const char* name, BuiltinFn f) {
    return std::pair<std::string, Value>(name, Value::object(std::make_shared<BuiltinFunction>(name, f)));
  };
  return {fn("range", g_range),
          fn("dict", g_dict),
          fn("namespace", g_namespace),
          fn("raise_exception", g_raise_exception),
          fn("strftime_now", g_strftime_now),
          fn("joiner", g_joiner),
          fn("cycler", g_cycler)};
}

}  // namespace tpinfer::jinja
