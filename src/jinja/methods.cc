// Methods of str, list and dict values, Jinja's globals, and the argument
// binding they share with the filters.
#include <algorithm>
#include <cmath>

#include "jinja/builtins.h"
#include "jinja/text.h"

namespace tpinfer::jinja {

namespace {

[[noreturn]] void type_error(const std::string& message) { throw TemplateError("TypeError: " + message); }
[[noreturn]] void value_error(const std::string& message) { throw TemplateError("ValueError: " + message); }

// ---- methods -----------------------------------------------------------------------

constexpr std::string_view kStrMethods[] = {
    "capitalize", "center",    "count",    "endswith",   "find",      "format",       "index",        "isalnum",
    "isalpha",    "isdecimal", "isdigit",  "islower",    "isnumeric", "isspace",      "istitle",      "isupper",
    "join",       "ljust",     "lower",    "lstrip",     "partition", "removeprefix", "removesuffix", "replace",
    "rfind",      "rindex",    "rjust",    "rpartition", "rsplit",    "rstrip",       "split",        "splitlines",
    "startswith", "strip",     "swapcase", "title",      "upper",     "zfill",        "casefold"};
constexpr std::string_view kListMethods[] = {"count", "index", "copy"};
constexpr std::string_view kListUnsafe[] = {"append", "clear", "extend", "insert", "pop", "remove", "reverse", "sort"};
constexpr std::string_view kDictMethods[] = {"copy", "get", "items", "keys", "values"};
constexpr std::string_view kDictUnsafe[] = {"clear", "pop", "popitem", "setdefault", "update"};

template <size_t N>
bool in_list(const std::string_view (&names)[N], std::string_view name) {
  return std::find(std::begin(names), std::end(names), name) != std::end(names);
}

// A str argument; `what` is the start of Python's error ("must be str",
// "replace() argument 1 must be str").
const std::string& str_arg(const std::optional<Value>& v, const std::string& what) {
  if (!v) type_error(what.substr(0, what.find(' ')) + " missing a required argument");
  if (!v->is_string()) type_error(cat(what, ", not ", type_name(*v)));
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
  in.charge_scan(s);
  auto strings = [](std::vector<std::string> parts) {
    std::vector<Value> out;
    out.reserve(parts.size());
    for (auto& p : parts) out.emplace_back(std::move(p));
    return Value::list(std::move(out));
  };
  if (name == "strip" || name == "lstrip" || name == "rstrip") {
    const auto a = bind_args(args, {"chars"}, name.c_str());
    return Value(py_strip(s, opt_str_arg(a[0]), name != "rstrip", name != "lstrip"));
  }
  if (name == "split" || name == "rsplit") {
    const auto a = bind_args(args, {"sep", "maxsplit"}, name.c_str());
    const int64_t maxsplit = int_arg(a[1], -1, name.c_str());
    return strings(name == "split" ? py_split(s, opt_str_arg(a[0]), maxsplit)
                                   : py_rsplit(s, opt_str_arg(a[0]), maxsplit));
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
    const std::string& o = str_arg(a[0], "replace() argument 1 must be str");
    const std::string& n = str_arg(a[1], "replace() argument 2 must be str");
    const int64_t count = int_arg(a[2], -1, "replace");
    const int64_t hits = o.empty() ? static_cast<int64_t>(utf8_length(s)) + 1 : py_count(s, o);
    in.charge(static_cast<size_t>(count < 0 ? hits : std::min(count, hits)) * n.size());
    return Value(py_replace(s, o, n, count));
  }
  if (name == "find" || name == "rfind" || name == "index" || name == "rindex") {
    const auto a = bind_args(args, {"sub", "start", "end"}, name.c_str());
    const int64_t at = find_in(s, str_arg(a[0], "must be str"), a[1], a[2], name[0] == 'r');
    if (at < 0 && (name == "index" || name == "rindex")) value_error("substring not found");
    return Value(at);
  }
  if (name == "count") {
    const auto a = bind_args(args, {"sub"}, "count");
    return Value(py_count(s, str_arg(a[0], "must be str")));
  }
  if (name == "join") {
    const auto a = bind_args(args, {"iterable"}, "join");
    if (!a[0]) type_error("join() takes exactly one argument (0 given)");
    const std::vector<Value> items = in.iterate(*a[0]);
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
    const std::string fill = a[1] ? str_arg(a[1], name + "() argument 2 must be str") : " ";
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
    const std::string& x = str_arg(a[0], name + "() argument must be str");
    if (name == "removeprefix") return Value(s.compare(0, x.size(), x) == 0 ? s.substr(x.size()) : s);
    if (x.size() <= s.size() && s.compare(s.size() - x.size(), x.size(), x) == 0 && !x.empty()) {
      return Value(s.substr(0, s.size() - x.size()));
    }
    return Value(s);
  }
  if (name == "partition" || name == "rpartition") {
    const auto a = bind_args(args, {"sep"}, name.c_str());
    const std::string& sep = str_arg(a[0], "must be str");
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

Value list_method(Interpreter& in, const Value& receiver, const std::string& name, CallArgs& args) {
  const auto& items = receiver.list().items();
  in.charge_work(items.size() * sizeof(Value));
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
  const long double count =
      step > 0 ? (static_cast<long double>(stop) - start) / step : (static_cast<long double>(start) - stop) / -step;
  if (count > kMaxRange) {
    throw TemplateError("OverflowError: Range too big. The sandbox blocks ranges larger than MAX_RANGE (100000).");
  }
  for (int64_t i = start; step > 0 ? i < stop : i > stop; i += step) out.emplace_back(i);
  in.charge(out.size() * sizeof(Value));
  return Value::list(std::move(out));
}

Value g_dict(Interpreter& in, CallArgs& args) {
  Dict d;
  if (args.positional.size() > 1) type_error("dict expected at most 1 argument");
  if (!args.positional.empty()) {
    const Value& src = args.positional[0];
    if (src.is_dict()) {
      for (const auto& [k, v] : src.dict().items()) d.set(k, v);
    } else {
      for (const Value& pair : in.iterate(src)) {
        const std::vector<Value> kv = in.iterate(pair);
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

Value g_raise_exception(Interpreter& in, CallArgs& args) {
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
  Value call(Interpreter& in, CallArgs& args) override {
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

Value g_joiner(Interpreter& in, CallArgs& args) {
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
    Value call(Interpreter& in, CallArgs& args) override {
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

Value g_cycler(Interpreter& in, CallArgs& args) {
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

std::optional<std::string> opt_str_arg(const std::optional<Value>& v) {
  if (!v || v->is_none()) return std::nullopt;
  if (!v->is_string()) type_error(cat("expected a string, not ", type_name(*v)));
  return v->str();
}

int64_t int_arg(const std::optional<Value>& v, int64_t dflt, const char* what) {
  if (!v || v->is_none()) return dflt;
  if (!v->is_int() && !v->is_bool())
    type_error(cat(what, ": '", type_name(*v), "' object cannot be interpreted as an integer"));
  return v->to_int();
}

bool bool_arg(const std::optional<Value>& v, bool dflt) { return v ? truthy(*v) : dflt; }

void no_args(CallArgs& args, const char* fn) { bind_args(args, {}, fn); }

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
