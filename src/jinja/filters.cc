// Jinja's built-in filters and tests.
#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <unordered_set>

#include "jinja/builtins.h"
#include "jinja/text.h"

namespace tpinfer::jinja {

namespace {

[[noreturn]] void type_error(const std::string& message) { throw TemplateError("TypeError: " + message); }
[[noreturn]] void value_error(const std::string& message) { throw TemplateError("ValueError: " + message); }
[[noreturn]] void filter_error(const std::string& message) { throw TemplateError("FilterArgumentError: " + message); }

Value iterator(std::vector<Value> items) { return Value::list(std::move(items), List::Flavor::kIterator); }

// str() of a value as Jinja's soft_str does it: undefined is "".
std::string text_of(const Value& v) { return to_str(v); }

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
  if (res.ec == std::errc::result_out_of_range)
    d = clean.find_first_of("eE") != std::string::npos && clean.find("e-") == std::string::npos &&
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
    // An index too long for int64 stays a string key: Jinja2 would look up a
    // Python int that no list or dict can hold either.
    if (!p.empty() && p.size() <= 18 && p.find_first_not_of("0123456789") == std::string::npos) {
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

Value f_abs(Interpreter& in, const Value& v, CallArgs& args) {
  no_args(args, "abs");
  if (v.is_float()) return Value(std::fabs(v.as_float()));
  if (v.is_int() || v.is_bool()) {
    const int64_t i = v.to_int();
    if (i == INT64_MIN) throw TemplateError("OverflowError: integer result does not fit in 64 bits");
    return Value(i < 0 ? -i : i);
  }
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
  return Value::undefined(
      cat(py_repr(v.is_none() ? "None" : type_name(v) + " object"), " has no attribute ", py_repr(name)));
}

Value f_batch(Interpreter& in, const Value& v, CallArgs& args) {
  const auto a = bind_args(args, {"linecount", "fill_with"}, "batch");
  const int64_t n = int_arg(a[0], 0, "batch");
  if (n <= 0) value_error("batch size must be positive");
  std::vector<Value> out, cur;
  for (Value& item : in.iterate(v)) {
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

Value f_capitalize(Interpreter& in, const Value& v, CallArgs& args) {
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

Value f_length(Interpreter& in, const Value& v, CallArgs& args) {
  no_args(args, "length");
  return Value(length(v));
}

Value f_default(Interpreter& in, const Value& v, CallArgs& args) {
  const auto a = bind_args(args, {"default_value", "boolean"}, "default");
  if (v.is_undefined() || (bool_arg(a[1], false) && !truthy(v))) return a[0] ? *a[0] : Value("");
  return v;
}

Value f_dictsort(Interpreter& in, const Value& v, CallArgs& args) {
  const auto a = bind_args(args, {"case_sensitive", "by", "reverse"}, "dictsort");
  if (v.is_undefined()) v.fail_undefined();
  if (!v.is_dict()) throw TemplateError(cat("AttributeError: '", type_name(v), "' object has no attribute 'items'"));
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

Value f_first(Interpreter& in, const Value& v, CallArgs& args) {
  no_args(args, "first");
  if (v.is_undefined()) return Value::undefined("No first item, sequence was empty.");
  if (v.is_list()) {
    const List& l = v.list();
    const size_t at = v.is_iterator() ? l.consumed() : 0;  // next(iter(x)) takes one from an iterator
    if (at >= l.items().size()) return Value::undefined("No first item, sequence was empty.");
    if (v.is_iterator()) l.consume(1);
    return l.items()[at];
  }
  const std::vector<Value> items = in.iterate(v);
  return items.empty() ? Value::undefined("No first item, sequence was empty.") : items.front();
}

Value f_last(Interpreter& in, const Value& v, CallArgs& args) {
  no_args(args, "last");
  if (v.is_iterator()) type_error("'generator' object is not reversible");
  if (v.is_undefined()) return Value::undefined("No last item, sequence was empty.");
  if (v.is_list()) {
    const auto& items = v.list().items();
    return items.empty() ? Value::undefined("No last item, sequence was empty.") : items.back();
  }
  if (!v.is_string() && !v.is_dict()) type_error(cat("'", type_name(v), "' object is not reversible"));
  const std::vector<Value> items = in.iterate(v);
  return items.empty() ? Value::undefined("No last item, sequence was empty.") : items.back();
}

Value f_float(Interpreter& in, const Value& v, CallArgs& args) {
  const auto a = bind_args(args, {"default"}, "float");
  const Value dflt = a[0] ? *a[0] : Value(0.0);
  if (v.is_undefined()) v.fail_undefined();  // float(Undefined) raises, uncaught
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
  // Jinja appends "\n" to the value itself (for splitlines), so only strings work.
  if (v.is_undefined()) v.fail_undefined();
  if (v.is_list() && !v.is_tuple() && !v.is_iterator()) {
    throw TemplateError("AttributeError: 'list' object has no attribute 'splitlines'");
  }
  if (v.is_tuple()) type_error("can only concatenate tuple (not \"str\") to tuple");
  if (!v.is_string()) type_error(cat("unsupported operand type(s) for +=: '", type_name(v), "' and 'str'"));
  const std::string s = v.str() + "\n";
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

Value f_int(Interpreter& in, const Value& v, CallArgs& args) {
  const auto a = bind_args(args, {"default", "base"}, "int");
  const Value dflt = a[0] ? *a[0] : Value(0);
  const int64_t base = int_arg(a[1], 10, "int");
  if (v.is_undefined()) v.fail_undefined();  // int(Undefined) raises, uncaught
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

Value f_items(Interpreter& in, const Value& v, CallArgs& args) {
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
  std::vector<Value> items = in.iterate(v);
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
  std::vector<Value> items = in.iterate(v);
  in.charge(items.size() * sizeof(Value));
  return Value::list(std::move(items));
}

Value f_lower(Interpreter& in, const Value& v, CallArgs& args) {
  no_args(args, "lower");
  return Value(py_lower(text_of(v)));
}

Value f_upper(Interpreter& in, const Value& v, CallArgs& args) {
  no_args(args, "upper");
  return Value(py_upper(text_of(v)));
}

Value f_map(Interpreter& in, const Value& v, CallArgs& args) {
  if (!truthy(v)) return iterator({});  // Jinja maps nothing over a false value
  std::vector<Value> items = in.iterate(v);
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
  const std::vector<Value> items = in.iterate(v);
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
  if (!truthy(v)) return iterator({});  // Jinja selects nothing from a false value
  std::vector<Value> items = in.iterate(v);
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
    test_args.positional.assign(args.positional.begin() + static_cast<std::ptrdiff_t>(next) + 1, args.positional.end());
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
  if (!v.is_list() && !v.is_dict() && !v.is_undefined()) {
    throw TemplateError("FilterArgumentError: argument must be iterable");
  }
  std::vector<Value> items = in.iterate(v);
  std::reverse(items.begin(), items.end());
  in.charge(items.size() * sizeof(Value));
  // reversed(list) is an iterator; a generator is materialized into a list.
  return Value::list(std::move(items), v.is_iterator() ? List::Flavor::kList : List::Flavor::kIterator);
}

Value f_round(Interpreter& in, const Value& v, CallArgs& args) {
  const auto a = bind_args(args, {"precision", "method"}, "round");
  const int64_t precision = int_arg(a[0], 0, "round");
  const std::string method = a[1] ? text_of(*a[1]) : "common";
  if (method != "common" && method != "ceil" && method != "floor") {
    filter_error("method must be common, ceil or floor");
  }
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

Value f_safe(Interpreter& in, const Value& v, CallArgs& args) {
  no_args(args, "safe");
  return Value(text_of(v));
}

Value f_slice(Interpreter& in, const Value& v, CallArgs& args) {
  const auto a = bind_args(args, {"slices", "fill_with"}, "slice");
  const int64_t slices = int_arg(a[0], 0, "slice");
  if (slices <= 0) value_error("slice count must be positive");
  const std::vector<Value> seq = in.iterate(v);
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
  std::vector<Value> items = in.iterate(v);
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
  // Sorting costs n log n comparisons; account for them like bytes of work.
  size_t log2n = 1;
  while ((size_t{1} << log2n) < keyed.size()) ++log2n;
  in.charge_work(keyed.size() * log2n * sizeof(Value));
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
  for (const Value& item : in.iterate(v)) total = binary_op(in, BinaryOp::kAdd, total, get(in, item));
  return total;
}

Value f_title(Interpreter& in, const Value& v, CallArgs& args) {
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
    const std::vector<Value> seps = in.iterate(*a[2]);
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

Value f_trim(Interpreter& in, const Value& v, CallArgs& args) {
  const auto a = bind_args(args, {"chars"}, "trim");
  return Value(py_strip(text_of(v), opt_str_arg(a[0]), true, true));
}

Value f_truncate(Interpreter& in, const Value& v, CallArgs& args) {
  const auto a = bind_args(args, {"length", "killwords", "end", "leeway"}, "truncate");
  const int64_t len = int_arg(a[0], 255, "truncate");
  const std::string end = a[2] ? text_of(*a[2]) : "...";
  const int64_t leeway = int_arg(a[3], 5, "truncate");
  const auto end_len = static_cast<int64_t>(utf8_length(end));
  if (len < end_len) throw TemplateError(cat("AssertionError: expected length >= ", end_len, ", got ", len));
  if (leeway < 0) throw TemplateError(cat("AssertionError: expected leeway >= 0, got ", leeway));
  // Jinja measures the value itself: a short list passes through, a number fails.
  if (!v.is_string()) {
    if (length(v) <= len + leeway) return v;
    if (bool_arg(a[1], false))
      type_error(cat("can only concatenate ", type_name(v), " (not \"str\") to ", type_name(v)));
    throw TemplateError(cat("AttributeError: '", type_name(v), "' object has no attribute 'rsplit'"));
  }
  const std::u32string cps = decode_utf8(v.str());
  in.charge(v.str().size());
  if (static_cast<int64_t>(cps.size()) <= len + leeway) return v;
  const std::string head = encode_utf8(std::u32string_view(cps).substr(0, static_cast<size_t>(len - end_len)));
  if (bool_arg(a[1], false)) return Value(head + end);
  return Value(py_rsplit(head, std::string(" "), 1)[0] + end);
}

Value f_unique(Interpreter& in, const Value& v, CallArgs& args) {
  const auto a = bind_args(args, {"case_sensitive", "attribute"}, "unique");
  const AttrGetter get{a[1] ? attribute_parts(*a[1]) : std::vector<Value>{}, !bool_arg(a[0], false)};
  std::unordered_set<std::string> seen;
  std::vector<Value> out;
  for (Value& item : in.iterate(v)) {
    const Value k = get(in, item);
    const auto h = hash_key(k);
    if (!h) type_error(cat("unhashable type: '", type_name(k), "'"));
    if (seen.insert(*h).second) out.push_back(std::move(item));
  }
  return iterator(std::move(out));
}

Value f_wordcount(Interpreter& in, const Value& v, CallArgs& args) {
  no_args(args, "wordcount");
  const std::string s = text_of(v);
  int64_t n = 0;
  bool in_word = false;
  for (size_t i = 0; i < s.size();) {
    const char32_t c = next_code_point(s, &i);
    const bool w = c == '_' || py_isalnum(c) ||
                   (c >= 0x80 && !py_isspace(c) && !(c >= 0x2000 && c <= 0x206F) && !(c >= 0x3000 && c <= 0x303F) &&
                    !(c >= 0xFF00 && c <= 0xFF0F));
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

bool t_defined(Interpreter& in, const Value& v, CallArgs&) { return !v.is_undefined(); }
bool t_undefined(Interpreter& in, const Value& v, CallArgs&) { return v.is_undefined(); }
bool t_none(Interpreter& in, const Value& v, CallArgs&) { return v.is_none(); }
bool t_boolean(Interpreter& in, const Value& v, CallArgs&) { return v.is_bool(); }
bool t_false(Interpreter& in, const Value& v, CallArgs&) { return v.is_bool() && !v.as_bool(); }
bool t_true(Interpreter& in, const Value& v, CallArgs&) { return v.is_bool() && v.as_bool(); }
bool t_integer(Interpreter& in, const Value& v, CallArgs&) { return v.is_int(); }
bool t_float(Interpreter& in, const Value& v, CallArgs&) { return v.is_float(); }
bool t_number(Interpreter& in, const Value& v, CallArgs&) { return v.is_number(); }
bool t_string(Interpreter& in, const Value& v, CallArgs&) { return v.is_string(); }
bool t_mapping(Interpreter& in, const Value& v, CallArgs&) { return v.is_dict(); }
bool t_iterable(Interpreter& in, const Value& v, CallArgs&) {
  return v.is_string() || v.is_list() || v.is_dict() || v.is_undefined() ||
         (v.is_object() && v.object().type_name() == "LoopContext");
}
bool t_sequence(Interpreter& in, const Value& v, CallArgs&) {
  return v.is_string() || (v.is_list() && !v.is_iterator()) || v.is_dict() || v.is_undefined();
}
bool t_callable(Interpreter& in, const Value& v, CallArgs&) {
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
bool t_eq(Interpreter& in, const Value& v, CallArgs& a) { return equals(v, one_arg(a, "eq")); }
bool t_ne(Interpreter& in, const Value& v, CallArgs& a) { return !equals(v, one_arg(a, "ne")); }
bool t_lt(Interpreter& in, const Value& v, CallArgs& a) { return compare(v, one_arg(a, "lt"), "<") == -1; }
bool t_le(Interpreter& in, const Value& v, CallArgs& a) {
  const int c = compare(v, one_arg(a, "le"), "<=");
  return c == -1 || c == 0;
}
bool t_gt(Interpreter& in, const Value& v, CallArgs& a) { return compare(v, one_arg(a, "gt"), ">") == 1; }
bool t_ge(Interpreter& in, const Value& v, CallArgs& a) {
  const int c = compare(v, one_arg(a, "ge"), ">=");
  return c == 1 || c == 0;
}
bool t_in(Interpreter& in, const Value& v, CallArgs& a) { return contains(one_arg(a, "in"), v); }
bool t_sameas(Interpreter& in, const Value& v, CallArgs& a) {
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
bool t_lower(Interpreter& in, const Value& v, CallArgs&) { return py_islower(to_str(v)); }
bool t_upper(Interpreter& in, const Value& v, CallArgs&) { return py_isupper(to_str(v)); }
bool t_escaped(Interpreter& in, const Value&, CallArgs&) { return false; }
bool t_filter(Interpreter& in, const Value& v, CallArgs&) { return v.is_string() && find_filter(v.str()) != nullptr; }
bool t_test(Interpreter& in, const Value& v, CallArgs&) { return v.is_string() && find_test(v.str()) != nullptr; }

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

}  // namespace

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
}  // namespace tpinfer::jinja
