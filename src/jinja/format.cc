// Python's two string formatting mini-languages, as templates use them:
// "fmt % args" (and the format filter) and "fmt".format(...).
#include <cmath>
#include <cstdio>

#include "jinja/builtins.h"
#include "jinja/text.h"

namespace tpinfer::jinja {

namespace {

[[noreturn]] void type_error(const std::string& message) { throw TemplateError("TypeError: " + message); }
[[noreturn]] void value_error(const std::string& message) { throw TemplateError("ValueError: " + message); }

// Pads s (measured in code points) to width: align is '<', '>' or '^'.
std::string pad(std::string s, size_t width, char align, const std::string& fill) {
  const size_t len = utf8_length(s);
  if (len >= width) return s;
  const size_t total = width - len;
  size_t left = 0;
  if (align == '>') {
    left = total;
  } else if (align == '^') {
    left = total / 2;
  }
  std::string out;
  for (size_t i = 0; i < left; ++i) out += fill;
  out += s;
  for (size_t i = 0; i < total - left; ++i) out += fill;
  return out;
}

std::string c_format(const std::string& spec, double v) {
  char buf[512];
  const int n = std::snprintf(buf, sizeof buf, spec.c_str(), v);
  if (n < 0 || static_cast<size_t>(n) >= sizeof buf) value_error("formatted number too long");
  return std::string(buf, static_cast<size_t>(n));
}

std::string c_format(const std::string& spec, long long v) {
  char buf[512];
  const int n = std::snprintf(buf, sizeof buf, spec.c_str(), v);
  if (n < 0 || static_cast<size_t>(n) >= sizeof buf) value_error("formatted number too long");
  return std::string(buf, static_cast<size_t>(n));
}

std::string chr_of(const Value& v, const char* what) {
  if (v.is_string()) {
    if (utf8_length(v.str()) != 1) type_error(cat(what, " requires int or char"));
    return v.str();
  }
  if (!v.is_int() && !v.is_bool()) type_error(cat(what, " requires int or char"));
  const int64_t c = v.to_int();
  if (c < 0 || c > 0x10FFFF) throw TemplateError("OverflowError: %c arg not in range(0x110000)");
  std::string out;
  append_utf8(out, static_cast<char32_t>(c));
  return out;
}

}  // namespace

std::string percent_format(const std::string& fmt, const Value& args) {
  std::vector<Value> values;
  const Dict* mapping = nullptr;
  if (args.is_tuple()) {
    values = args.list().items();
  } else {
    if (args.is_dict()) mapping = &args.dict();
    values.push_back(args);
  }
  auto fail_if_undefined = [](const Value& v) {
    if (v.is_undefined()) v.fail_undefined();
  };
  size_t next = 0;
  auto take = [&]() -> const Value& {
    if (next >= values.size()) type_error("not enough arguments for format string");
    return values[next++];
  };
  std::string out;
  for (size_t i = 0; i < fmt.size(); ++i) {
    if (fmt[i] != '%') {
      out.push_back(fmt[i]);
      continue;
    }
    if (++i >= fmt.size()) value_error("incomplete format");
    const Value* arg = nullptr;
    if (fmt[i] == '(') {
      fail_if_undefined(args);
      if (!mapping) type_error("format requires a mapping");
      const size_t close = fmt.find(')', i);
      if (close == std::string::npos) value_error("incomplete format key");
      const Value* v = mapping->find_str(fmt.substr(i + 1, close - i - 1));
      if (!v) throw TemplateError(cat("KeyError: ", py_repr(fmt.substr(i + 1, close - i - 1))));
      arg = v;
      i = close + 1;
    }
    std::string flags;
    while (i < fmt.size() && std::string_view("-+ #0").find(fmt[i]) != std::string_view::npos) flags += fmt[i++];
    std::string width, precision;
    bool has_precision = false;
    if (i < fmt.size() && fmt[i] == '*') {
      width = std::to_string(take().to_int());
      ++i;
    } else {
      while (i < fmt.size() && fmt[i] >= '0' && fmt[i] <= '9') width += fmt[i++];
    }
    if (i < fmt.size() && fmt[i] == '.') {
      has_precision = true;
      ++i;
      if (i < fmt.size() && fmt[i] == '*') {
        precision = std::to_string(take().to_int());
        ++i;
      } else {
        while (i < fmt.size() && fmt[i] >= '0' && fmt[i] <= '9') precision += fmt[i++];
      }
      if (precision.empty()) precision = "0";
    }
    while (i < fmt.size() && (fmt[i] == 'h' || fmt[i] == 'l' || fmt[i] == 'L')) ++i;
    if (i >= fmt.size()) value_error("incomplete format");
    const char conv = fmt[i];
    if (conv == '%') {
      out.push_back('%');
      continue;
    }
    const Value& v = arg ? *arg : take();
    if (width.size() > 6 || precision.size() > 6) value_error("width or precision too large");
    const std::string num_spec = "%" + flags + width + (has_precision ? "." + precision : "");
    switch (conv) {
      case 's':
      case 'r':
      case 'a': {
        std::string s = conv == 's' ? to_str(v) : repr(v);
        if (has_precision) {
          const std::u32string cps = decode_utf8(s);
          s = encode_utf8(std::u32string_view(cps).substr(0, std::stoul(precision)));
        }
        const size_t w = width.empty() ? 0 : std::stoul(width);
        out += pad(std::move(s), w, flags.find('-') != std::string::npos ? '<' : '>', " ");
        break;
      }
      case 'c': {
        fail_if_undefined(v);
        const size_t w = width.empty() ? 0 : std::stoul(width);
        out += pad(chr_of(v, "%c"), w, flags.find('-') != std::string::npos ? '<' : '>', " ");
        break;
      }
      case 'd':
      case 'i':
      case 'u':
      case 'x':
      case 'X':
      case 'o': {
        fail_if_undefined(v);
        if (!v.is_number()) {
          type_error(cat("%", conv,
                         " format: ", conv == 'd' || conv == 'i' || conv == 'u' ? "a real number" : "an integer",
                         " is required, not ", type_name(v)));
        }
        if (v.is_float() && conv != 'd' && conv != 'i' && conv != 'u') {
          type_error(cat("%", conv, " format: an integer is required, not float"));
        }
        long long n;
        if (v.is_float()) {
          const double f = v.as_float();
          if (!std::isfinite(f)) throw TemplateError("OverflowError: cannot convert float to integer");
          n = static_cast<long long>(std::trunc(f));
        } else {
          n = v.to_int();
        }
        const char c = conv == 'u' || conv == 'i' ? 'd' : conv;
        std::string s = c_format(num_spec + "ll" + c, n);
        if (c == 'o' && flags.find('#') != std::string::npos) {  // Python writes 0o17, C writes 017
          const size_t at = s.find_first_of("01234567");
          if (at != std::string::npos) s.insert(at + 1, s[at] == '0' ? "o" : "");
        }
        out += s;
        break;
      }
      case 'e':
      case 'E':
      case 'f':
      case 'F':
      case 'g':
      case 'G':
        fail_if_undefined(v);
        if (!v.is_number()) type_error(cat("must be real number, not ", type_name(v)));
        out += c_format(num_spec + conv, v.to_double());
        break;
      default:
        value_error(cat("unsupported format character '", conv, "'"));
    }
  }
  // Python only complains about unused arguments when they are not a mapping
  // (for it, a list counts as one).
  const bool mapping_like = mapping || (args.is_list() && !args.is_tuple()) || args.is_undefined();
  if (!mapping_like && next < values.size()) type_error("not all arguments converted during string formatting");
  return out;
}

// ---- str.format ----------------------------------------------------------------------

namespace {

struct Spec {
  std::string fill = " ";
  char align = 0;
  char sign = 0;
  bool alternate = false;
  bool zero = false;
  size_t width = 0;
  char grouping = 0;
  std::optional<size_t> precision;
  char type = 0;
};

Spec parse_spec(const std::string& s) {
  Spec spec;
  size_t i = 0;
  // [[fill]align]
  if (!s.empty()) {
    size_t p = 0;
    next_code_point(s, &p);  // a fill character may be any code point
    if (p < s.size() && std::string_view("<>=^").find(s[p]) != std::string_view::npos) {
      spec.fill = s.substr(0, p);
      spec.align = s[p];
      i = p + 1;
    } else if (std::string_view("<>=^").find(s[0]) != std::string_view::npos) {
      spec.align = s[0];
      i = 1;
    }
  }
  if (i < s.size() && (s[i] == '+' || s[i] == '-' || s[i] == ' ')) spec.sign = s[i++];
  if (i < s.size() && s[i] == '#') {
    spec.alternate = true;
    ++i;
  }
  if (i < s.size() && s[i] == '0') {
    spec.zero = true;
    ++i;
  }
  std::string digits;
  while (i < s.size() && s[i] >= '0' && s[i] <= '9') digits += s[i++];
  if (digits.size() > 6) value_error("too many decimal digits in format string");
  if (!digits.empty()) spec.width = std::stoul(digits);
  if (i < s.size() && (s[i] == ',' || s[i] == '_')) spec.grouping = s[i++];
  if (i < s.size() && s[i] == '.') {
    ++i;
    digits.clear();
    while (i < s.size() && s[i] >= '0' && s[i] <= '9') digits += s[i++];
    if (digits.empty()) value_error("Format specifier missing precision");
    if (digits.size() > 6) value_error("too many decimal digits in format string");
    spec.precision = std::stoul(digits);
  }
  if (i < s.size()) spec.type = s[i++];
  if (i != s.size()) value_error("Invalid format specifier");
  return spec;
}

std::string group_digits(const std::string& digits, char sep) {
  std::string out;
  const size_t n = digits.size();
  for (size_t i = 0; i < n; ++i) {
    if (i && (n - i) % 3 == 0) out.push_back(sep);
    out.push_back(digits[i]);
  }
  return out;
}

// Applies sign, grouping and padding to a formatted number ("-123.5").
std::string finish_number(std::string body, bool negative, const Spec& spec, const std::string& prefix) {
  if (spec.grouping) {
    const size_t end = body.find_first_not_of("0123456789");
    body = group_digits(body.substr(0, end), spec.grouping) + (end == std::string::npos ? "" : body.substr(end));
  }
  std::string sign;
  if (negative) {
    sign = "-";
  } else if (spec.sign == '+') {
    sign = "+";
  } else if (spec.sign == ' ') {
    sign = " ";
  }
  char align = spec.align ? spec.align : '>';
  std::string fill = spec.fill;
  if (spec.zero && !spec.align) {
    align = '=';
    fill = "0";
  }
  if (align == '=') {
    const size_t len = sign.size() + prefix.size() + body.size();
    std::string pad_text;
    for (size_t i = len; i < spec.width; ++i) pad_text += fill;
    return sign + prefix + pad_text + body;
  }
  return pad(sign + prefix + body, spec.width, align, fill);
}

std::string format_int(int64_t v, const Spec& spec) {
  const bool negative = v < 0;
  const uint64_t mag = negative ? 0 - static_cast<uint64_t>(v) : static_cast<uint64_t>(v);
  std::string body, prefix;
  const char type = spec.type ? spec.type : 'd';
  switch (type) {
    case 'd':
    case 'n':
      body = std::to_string(mag);
      break;
    case 'x':
    case 'X':
    case 'o':
    case 'b': {
      const int base = type == 'o' ? 8 : type == 'b' ? 2 : 16;
      const char* digits = type == 'X' ? "0123456789ABCDEF" : "0123456789abcdef";
      uint64_t m = mag;
      do {
        body.insert(body.begin(), digits[m % static_cast<uint64_t>(base)]);
        m /= static_cast<uint64_t>(base);
      } while (m);
      if (spec.alternate) prefix = type == 'o' ? "0o" : type == 'b' ? "0b" : type == 'X' ? "0X" : "0x";
      break;
    }
    case 'c': {
      std::string out;
      if (v < 0 || v > 0x10FFFF) throw TemplateError("OverflowError: %c arg not in range(0x110000)");
      append_utf8(out, static_cast<char32_t>(v));
      return pad(out, spec.width, spec.align ? spec.align : '<', spec.fill);
    }
    default:
      value_error(cat("Unknown format code '", type, "' for object of type 'int'"));
  }
  return finish_number(body, negative, spec, prefix);
}

std::string format_float(double v, const Spec& spec) {
  const bool negative = std::signbit(v) && !std::isnan(v);
  const double mag = std::fabs(v);
  std::string body;
  const char type = spec.type;
  if (type == 0 && !spec.precision) {
    body = py_float_repr(mag);
  } else if (type == 0 || type == 'g' || type == 'G' || type == 'n') {
    const size_t p = spec.precision.value_or(6);
    body = c_format(cat("%", spec.alternate ? "#" : "", ".", p == 0 ? 1 : p, type == 'G' ? 'G' : 'g'), mag);
    if (type == 0 && body.find_first_of(".eEn") == std::string::npos && std::isfinite(mag)) body += ".0";
  } else if (type == 'e' || type == 'E' || type == 'f' || type == 'F') {
    body = c_format(cat("%", spec.alternate ? "#" : "", ".", spec.precision.value_or(6), type), mag);
  } else if (type == '%') {
    body = c_format(cat("%.", spec.precision.value_or(6), "f"), mag * 100) + "%";
  } else {
    value_error(cat("Unknown format code '", type, "' for object of type 'float'"));
  }
  return finish_number(body, negative, spec, "");
}

std::string format_value(const Value& v, const std::string& spec_text) {
  if (spec_text.empty()) return to_str(v);
  const Spec spec = parse_spec(spec_text);
  if (v.is_string()) {
    if (spec.type && spec.type != 's')
      value_error(cat("Unknown format code '", spec.type, "' for object of type 'str'"));
    if (spec.align == '=') value_error("'=' alignment not allowed in string format specifier");
    std::string s = v.str();
    if (spec.precision) {
      const std::u32string cps = decode_utf8(s);
      s = encode_utf8(std::u32string_view(cps).substr(0, *spec.precision));
    }
    return pad(std::move(s), spec.width, spec.align ? spec.align : '<', spec.fill);
  }
  if (v.is_int() || v.is_bool()) {
    if (spec.type && std::string_view("eEfFgG%").find(spec.type) != std::string_view::npos) {
      return format_float(static_cast<double>(v.to_int()), spec);
    }
    return format_int(v.to_int(), spec);
  }
  if (v.is_float()) return format_float(v.as_float(), spec);
  type_error(cat("unsupported format string passed to ", type_name(v), ".__format__"));
}

}  // namespace

std::string str_format(Interpreter& in, const std::string& fmt, CallArgs& args) {
  std::string out;
  size_t auto_index = 0;
  bool manual = false, automatic = false;
  for (size_t i = 0; i < fmt.size(); ++i) {
    const char c = fmt[i];
    if (c == '}') {
      if (i + 1 < fmt.size() && fmt[i + 1] == '}') {
        out.push_back('}');
        ++i;
        continue;
      }
      value_error("Single '}' encountered in format string");
    }
    if (c != '{') {
      out.push_back(c);
      continue;
    }
    if (i + 1 < fmt.size() && fmt[i + 1] == '{') {
      out.push_back('{');
      ++i;
      continue;
    }
    const size_t close = fmt.find('}', i);
    if (close == std::string::npos) value_error("expected '}' before end of string");
    const std::string field = fmt.substr(i + 1, close - i - 1);
    if (field.find('{') != std::string::npos) value_error("nested replacement fields are not supported");
    i = close;
    // field_name[!conv][:spec]
    size_t name_end = field.find_first_of("!:");
    std::string spec, conversion;
    if (name_end != std::string::npos) {
      if (field[name_end] == '!') {
        const size_t colon = field.find(':', name_end);
        conversion = field.substr(name_end + 1, colon == std::string::npos ? std::string::npos : colon - name_end - 1);
        if (colon != std::string::npos) spec = field.substr(colon + 1);
      } else {
        spec = field.substr(name_end + 1);
      }
    } else {
      name_end = field.size();
    }
    const std::string name = field.substr(0, name_end);
    size_t p = 0;
    while (p < name.size() && name[p] != '.' && name[p] != '[') ++p;
    const std::string head = name.substr(0, p);
    Value v;
    if (head.empty()) {
      if (manual) value_error("cannot switch from manual field specification to automatic field numbering");
      automatic = true;
      if (auto_index >= args.positional.size()) {
        throw TemplateError(
            cat("IndexError: Replacement index ", auto_index, " out of range for positional args tuple"));
      }
      v = args.positional[auto_index++];
    } else if (head.find_first_not_of("0123456789") == std::string::npos) {
      if (automatic) value_error("cannot switch from automatic field numbering to manual field specification");
      manual = true;
      // More digits than an index can have (Python: beyond Py_ssize_t).
      if (head.size() > 18) value_error("Too many decimal digits in format string");
      const size_t idx = std::stoul(head);
      if (idx >= args.positional.size()) {
        throw TemplateError(cat("IndexError: Replacement index ", idx, " out of range for positional args tuple"));
      }
      v = args.positional[idx];
    } else {
      bool found = false;
      for (const auto& [k, kv] : args.keyword) {
        if (k == head) {
          v = kv;
          found = true;
        }
      }
      if (!found) throw TemplateError(cat("KeyError: ", py_repr(head)));
    }
    while (p < name.size()) {
      if (name[p] == '.') {
        size_t e = p + 1;
        while (e < name.size() && name[e] != '.' && name[e] != '[') ++e;
        v = in.get_attr(v, name.substr(p + 1, e - p - 1));
        p = e;
      } else {
        const size_t e = name.find(']', p);
        if (e == std::string::npos) value_error("Missing ']' in format string");
        const std::string key = name.substr(p + 1, e - p - 1);
        const bool numeric = !key.empty() && key.find_first_not_of("0123456789") == std::string::npos;
        if (numeric && key.size() > 18) value_error("Too many decimal digits in format string");
        v = in.get_item(v, numeric ? Value(static_cast<int64_t>(std::stoll(key))) : Value(key));
        p = e + 1;
      }
    }
    if (v.is_undefined()) v.fail_undefined();
    if (conversion == "r" || conversion == "a") {
      v = Value(repr(v));
    } else if (conversion == "s") {
      v = Value(to_str(v));
    } else if (!conversion.empty()) {
      value_error("Unknown conversion specifier " + conversion);
    }
    out += format_value(v, spec);
    in.charge(out.size());
  }
  return out;
}

}  // namespace tpinfer::jinja
