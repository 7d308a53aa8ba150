// Jinja's filters on strings and numbers: case, padding and indentation,
// escaping, replace/trim/truncate, word count, title; int, float, abs and
// round (with Python's parsing and rounding); string, format and tojson,
// which turn any value into a string.
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstring>

#include "jinja/filters_internal.h"
#include "jinja/text.h"

namespace tpinfer::jinja {

namespace {

[[noreturn]] void type_error(const std::string& message) { throw TemplateError("TypeError: " + message); }
[[noreturn]] void value_error(const std::string& message) { throw TemplateError("ValueError: " + message); }
[[noreturn]] void filter_error(const std::string& message) { throw TemplateError("FilterArgumentError: " + message); }

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

}  // namespace

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

Value f_lower(Interpreter& in, const Value& v, CallArgs& args) {
  no_args(args, "lower");
  return Value(py_lower(text_of(v)));
}

Value f_upper(Interpreter& in, const Value& v, CallArgs& args) {
  no_args(args, "upper");
  return Value(py_upper(text_of(v)));
}

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

Value f_string(Interpreter& in, const Value& v, CallArgs& args) {
  no_args(args, "string");
  std::string s = to_str(v, 64u << 20);
  in.charge(s.size());
  return Value(std::move(s));
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

}  // namespace tpinfer::jinja
