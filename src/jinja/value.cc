#include "jinja/value.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "jinja/text.h"

namespace tpinfer::jinja {

namespace {

[[noreturn]] void type_error(const std::string& message) { throw TemplateError("TypeError: " + message); }

[[noreturn]] void too_deep() {
  throw TemplateError(cat("value nested too deeply (more than ", kMaxValueDepth, " levels)"));
}

}  // namespace

// ---- containers ------------------------------------------------------------------

List::List(std::vector<Value> items, Flavor flavor) : items_(std::move(items)), flavor_(flavor) {
  int deepest = 0;
  for (const Value& v : items_) {
    deepest = std::max(deepest, v.depth());
    holds_objects_ = holds_objects_ || v.holds_objects();
  }
  depth_ = deepest + 1;
  if (depth_ > kMaxValueDepth) too_deep();
}

const Value* Dict::find(const Value& key) const {
  const std::optional<std::string> k = hash_key(key);
  if (!k) type_error(cat("unhashable type: '", type_name(key), "'"));
  const auto it = index_.find(*k);
  return it == index_.end() ? nullptr : &items_[it->second].second;
}

const Value* Dict::find_str(std::string_view key) const {
  std::string k;
  k.reserve(key.size() + 1);
  k.push_back('s');
  k.append(key);
  const auto it = index_.find(k);
  return it == index_.end() ? nullptr : &items_[it->second].second;
}

void Dict::set(const Value& key, Value value) {
  const std::optional<std::string> k = hash_key(key);
  if (!k) type_error(cat("unhashable type: '", type_name(key), "'"));
  const int d = 1 + std::max(key.depth(), value.depth());
  if (d > kMaxValueDepth) too_deep();
  depth_ = std::max(depth_, d);
  holds_objects_ = holds_objects_ || key.holds_objects() || value.holds_objects();
  const auto [it, inserted] = index_.emplace(*k, items_.size());
  if (inserted) {
    items_.emplace_back(key, std::move(value));
  } else {
    items_[it->second].second = std::move(value);
  }
}

// ---- Value -----------------------------------------------------------------------

Value Value::undefined(std::string hint) { return undefined_error("UndefinedError: " + hint); }

Value Value::undefined_error(std::string message) {
  Value v;
  v.v_ = Undef{std::make_shared<const std::string>(std::move(message))};
  return v;
}

Value Value::list(std::vector<Value> items, List::Flavor flavor) {
  Value v;
  v.v_ = std::make_shared<const List>(std::move(items), flavor);
  return v;
}

Value Value::dict(Dict d) {
  Value v;
  v.v_ = std::make_shared<const Dict>(std::move(d));
  return v;
}

Value Value::object(std::shared_ptr<Object> o) {
  Value v;
  v.v_ = std::move(o);
  return v;
}

namespace {

Value json_to_value(const nlohmann::ordered_json& j, int depth) {
  using T = nlohmann::ordered_json::value_t;
  switch (j.type()) {
    case T::null:
    case T::discarded:
      return Value::none();
    case T::boolean:
      return Value(j.get<bool>());
    case T::number_integer:
      return Value(j.get<int64_t>());
    case T::number_unsigned: {
      const auto u = j.get<uint64_t>();
      if (u <= static_cast<uint64_t>(INT64_MAX)) return Value(static_cast<int64_t>(u));
      return Value(static_cast<double>(u));
    }
    case T::number_float:
      return Value(j.get<double>());
    case T::string:
      return Value(j.get_ref<const std::string&>());
    case T::array: {
      if (depth >= kMaxValueDepth) too_deep();
      std::vector<Value> items;
      items.reserve(j.size());
      for (const auto& e : j) items.push_back(json_to_value(e, depth + 1));
      return Value::list(std::move(items));
    }
    case T::object: {
      if (depth >= kMaxValueDepth) too_deep();
      Dict d;
      for (const auto& [k, e] : j.items()) d.set(Value(k), json_to_value(e, depth + 1));
      return Value::dict(std::move(d));
    }
    case T::binary:
      break;
  }
  throw TemplateError("binary JSON values are not supported in templates");
}

}  // namespace

Value Value::from_json(const nlohmann::ordered_json& j) { return json_to_value(j, 0); }

double Value::to_double() const {
  switch (kind()) {
    case Kind::kBool:
      return as_bool() ? 1.0 : 0.0;
    case Kind::kInt:
      return static_cast<double>(as_int());
    case Kind::kFloat:
      return as_float();
    default:
      type_error(cat("must be real number, not ", type_name(*this)));
  }
}

int64_t Value::to_int() const {
  switch (kind()) {
    case Kind::kBool:
      return as_bool() ? 1 : 0;
    case Kind::kInt:
      return as_int();
    default:
      type_error(cat("'", type_name(*this), "' object cannot be interpreted as an integer"));
  }
}

std::string Value::undefined_message() const {
  const auto& u = std::get<Undef>(v_);
  return u.message ? *u.message : std::string("UndefinedError: value is undefined");
}

void Value::fail_undefined() const { throw TemplateError(undefined_message()); }

int Value::depth() const {
  switch (kind()) {
    case Kind::kList:
      return list().depth();
    case Kind::kDict:
      return dict().depth();
    case Kind::kObject:
      return object().depth();
    default:
      return 0;
  }
}

bool Value::holds_objects() const {
  switch (kind()) {
    case Kind::kList:
      return list().holds_objects();
    case Kind::kDict:
      return dict().holds_objects();
    case Kind::kObject:
      return object().holds_values();
    default:
      return false;
  }
}

// ---- objects ---------------------------------------------------------------------

Value Object::get_attr(const std::string& name) const {
  return Value::undefined(cat("'", type_name(), " object' has no attribute '", name, "'"));
}

Value Object::call(Interpreter&, CallArgs&) { type_error(cat("'", type_name(), "' object is not callable")); }

std::string Namespace::repr() const { return cat("<Namespace ", jinja::repr(Value::dict(attrs_)), ">"); }

Value Namespace::get_attr(const std::string& name) const {
  if (const Value* v = attrs_.find_str(name)) return *v;
  return Value::undefined(cat("'jinja2.utils.Namespace object' has no attribute '", name, "'"));
}

void Namespace::set_attr(const std::string& name, Value v) {
  if (v.holds_objects()) {
    throw TemplateError(cat("a namespace attribute can hold plain data or macros, not a ", jinja::type_name(v),
                            " (assigning '", name, "')"));
  }
  attrs_.set(Value(name), std::move(v));
}

// ---- Python semantics --------------------------------------------------------------

std::string type_name(const Value& v) {
  switch (v.kind()) {
    case Value::Kind::kUndefined:
      return "Undefined";
    case Value::Kind::kNone:
      return "NoneType";
    case Value::Kind::kBool:
      return "bool";
    case Value::Kind::kInt:
      return "int";
    case Value::Kind::kFloat:
      return "float";
    case Value::Kind::kString:
      return "str";
    case Value::Kind::kList:
      switch (v.list().flavor()) {
        case List::Flavor::kList:
          return "list";
        case List::Flavor::kTuple:
          return "tuple";
        case List::Flavor::kIterator:
          return "generator";
      }
      return "list";
    case Value::Kind::kDict:
      return "dict";
    case Value::Kind::kObject:
      return v.object().type_name();
  }
  return "object";
}

bool truthy(const Value& v) {
  switch (v.kind()) {
    case Value::Kind::kUndefined:
    case Value::Kind::kNone:
      return false;
    case Value::Kind::kBool:
      return v.as_bool();
    case Value::Kind::kInt:
      return v.as_int() != 0;
    case Value::Kind::kFloat:
      return v.as_float() != 0.0;
    case Value::Kind::kString:
      return !v.str().empty();
    case Value::Kind::kList:
      return v.is_iterator() || !v.list().items().empty();  // a generator is always true
    case Value::Kind::kDict:
      return v.dict().size() != 0;
    case Value::Kind::kObject:
      return true;
  }
  return false;
}

namespace {

struct Sink {
  std::string out;
  size_t max_size;
  void check() const {
    if (out.size() > max_size) throw TemplateError(cat("string exceeds the limit of ", max_size, " bytes"));
  }
};

void append_repr(Sink& s, const Value& v);

void append_str(Sink& s, const Value& v) {
  std::string& out = s.out;
  switch (v.kind()) {
    case Value::Kind::kUndefined:
      return;
    case Value::Kind::kNone:
      out += "None";
      return;
    case Value::Kind::kBool:
      out += v.as_bool() ? "True" : "False";
      return;
    case Value::Kind::kInt:
      out += std::to_string(v.as_int());
      return;
    case Value::Kind::kFloat:
      out += py_float_repr(v.as_float());
      return;
    case Value::Kind::kString:
      out += v.str();
      s.check();
      return;
    case Value::Kind::kList: {
      const List& l = v.list();
      if (l.flavor() == List::Flavor::kIterator) {
        out += "<generator object>";
        return;
      }
      const bool tuple = l.flavor() == List::Flavor::kTuple;
      out += tuple ? '(' : '[';
      for (size_t i = 0; i < l.items().size(); ++i) {
        if (i) out += ", ";
        append_repr(s, l.items()[i]);
        s.check();
      }
      if (tuple && l.items().size() == 1) out += ',';
      out += tuple ? ')' : ']';
      return;
    }
    case Value::Kind::kDict: {
      out += '{';
      bool first = true;
      for (const auto& [k, e] : v.dict().items()) {
        if (!first) out += ", ";
        first = false;
        append_repr(s, k);
        out += ": ";
        append_repr(s, e);
        s.check();
      }
      out += '}';
      return;
    }
    case Value::Kind::kObject:
      out += v.object().repr();
      s.check();
      return;
  }
}

void append_repr(Sink& s, const Value& v) {
  if (v.is_string()) {
    s.out += py_repr(v.str());
    s.check();
  } else if (v.is_undefined()) {
    s.out += "Undefined";
  } else {
    append_str(s, v);
  }
}

// Compares an int with a float exactly, as Python does: -1, 0 or 1 (2: unordered NaN).
int compare_int_float(int64_t i, double f) {
  if (std::isnan(f)) return 2;
  if (f >= 9223372036854775808.0) return -1;
  if (f < -9223372036854775808.0) return 1;
  const double fl = std::floor(f);
  const auto fi = static_cast<int64_t>(fl);
  if (i < fi) return -1;
  if (i > fi) return 1;
  return fl == f ? 0 : -1;  // i == floor(f) < f
}

// -1, 0, 1 for numbers, 2 when unordered (NaN).
int compare_numbers(const Value& a, const Value& b) {
  if (!a.is_float() && !b.is_float()) {
    const int64_t x = a.to_int(), y = b.to_int();
    return x < y ? -1 : (x > y ? 1 : 0);
  }
  if (a.is_float() && b.is_float()) {
    const double x = a.as_float(), y = b.as_float();
    if (std::isnan(x) || std::isnan(y)) return 2;
    return x < y ? -1 : (x > y ? 1 : 0);
  }
  if (a.is_float()) {
    const int c = compare_int_float(b.to_int(), a.as_float());
    return c == 2 ? 2 : -c;
  }
  return compare_int_float(a.to_int(), b.as_float());
}

}  // namespace

std::string to_str(const Value& v, size_t max_size) {
  if (v.is_string()) return v.str();
  Sink s{{}, max_size};
  append_str(s, v);
  s.check();
  return std::move(s.out);
}

std::string repr(const Value& v, size_t max_size) {
  Sink s{{}, max_size};
  append_repr(s, v);
  s.check();
  return std::move(s.out);
}

bool equals(const Value& a, const Value& b) {
  if (a.is_number() && b.is_number()) return compare_numbers(a, b) == 0;
  if (a.kind() != b.kind()) return false;
  switch (a.kind()) {
    case Value::Kind::kUndefined:
    case Value::Kind::kNone:
      return true;
    case Value::Kind::kString:
      return a.str() == b.str();
    case Value::Kind::kList: {
      const List& x = a.list();
      const List& y = b.list();
      if (&x == &y) return true;
      if (x.flavor() != y.flavor() || x.flavor() == List::Flavor::kIterator) return false;
      if (x.items().size() != y.items().size()) return false;
      for (size_t i = 0; i < x.items().size(); ++i) {
        if (!equals(x.items()[i], y.items()[i])) return false;
      }
      return true;
    }
    case Value::Kind::kDict: {
      const Dict& x = a.dict();
      const Dict& y = b.dict();
      if (&x == &y) return true;
      if (x.size() != y.size()) return false;
      for (const auto& [k, e] : x.items()) {
        const Value* other = y.find(k);
        if (!other || !equals(e, *other)) return false;
      }
      return true;
    }
    case Value::Kind::kObject:
      return &a.object() == &b.object();
    default:
      return false;
  }
}

int compare(const Value& a, const Value& b, const char* op) {
  if (a.is_undefined()) a.fail_undefined();
  if (b.is_undefined()) b.fail_undefined();
  if (a.is_number() && b.is_number()) return compare_numbers(a, b);
  if (a.is_string() && b.is_string()) {
    const int c = a.str().compare(b.str());
    return c < 0 ? -1 : (c > 0 ? 1 : 0);
  }
  if (a.is_list() && b.is_list() && a.list().flavor() == b.list().flavor() && !a.is_iterator()) {
    const auto& x = a.list().items();
    const auto& y = b.list().items();
    for (size_t i = 0; i < x.size() && i < y.size(); ++i) {
      if (!equals(x[i], y[i])) return compare(x[i], y[i], op);
    }
    return x.size() < y.size() ? -1 : (x.size() > y.size() ? 1 : 0);
  }
  type_error(cat("'", op, "' not supported between instances of '", type_name(a), "' and '", type_name(b), "'"));
}

std::optional<std::string> hash_key(const Value& v) {
  switch (v.kind()) {
    case Value::Kind::kUndefined:
      return std::string("u");
    case Value::Kind::kNone:
      return std::string("n");
    case Value::Kind::kBool:
    case Value::Kind::kInt:
      return cat("i", v.to_int());
    case Value::Kind::kFloat: {
      const double f = v.as_float();
      if (std::floor(f) == f && std::fabs(f) < 9.2e18) return cat("i", static_cast<int64_t>(f));
      return cat("f", py_float_repr(f));
    }
    case Value::Kind::kString: {
      std::string k;
      k.reserve(v.str().size() + 1);
      k.push_back('s');
      k += v.str();
      return k;
    }
    case Value::Kind::kList: {
      if (!v.is_tuple()) return std::nullopt;
      std::string k = "t";
      for (const Value& e : v.list().items()) {
        const auto ek = hash_key(e);
        if (!ek) return std::nullopt;
        k += std::to_string(ek->size());
        k.push_back(':');
        k += *ek;
      }
      return k;
    }
    case Value::Kind::kDict:
      return std::nullopt;
    case Value::Kind::kObject: {
      char buf[32];
      std::snprintf(buf, sizeof buf, "o%p", static_cast<const void*>(&v.object()));
      return std::string(buf);
    }
  }
  return std::nullopt;
}

int64_t length(const Value& v) {
  switch (v.kind()) {
    case Value::Kind::kUndefined:
      return 0;
    case Value::Kind::kString:
      return static_cast<int64_t>(utf8_length(v.str()));
    case Value::Kind::kList:
      if (!v.is_iterator()) return static_cast<int64_t>(v.list().items().size());
      break;
    case Value::Kind::kDict:
      return static_cast<int64_t>(v.dict().size());
    default:
      break;
  }
  type_error(cat("object of type '", type_name(v), "' has no len()"));
}

std::vector<Value> iterate(const Value& v) {
  switch (v.kind()) {
    case Value::Kind::kUndefined:
      return {};
    case Value::Kind::kString: {
      std::vector<Value> out;
      const std::string& s = v.str();
      for (size_t i = 0; i < s.size();) {
        const size_t b = i;
        next_code_point(s, &i);
        out.emplace_back(s.substr(b, i - b));
      }
      return out;
    }
    case Value::Kind::kList: {
      const List& l = v.list();
      if (l.flavor() != List::Flavor::kIterator) return l.items();
      std::vector<Value> rest(l.items().begin() + static_cast<std::ptrdiff_t>(l.consumed()), l.items().end());
      l.consume(rest.size());
      return rest;
    }
    case Value::Kind::kDict: {
      std::vector<Value> out;
      out.reserve(v.dict().size());
      for (const auto& kv : v.dict().items()) out.push_back(kv.first);
      return out;
    }
    default:
      type_error(cat("'", type_name(v), "' object is not iterable"));
  }
}

// ---- json.dumps ---------------------------------------------------------------------

namespace {

void json_string(std::string& out, std::string_view s, bool ensure_ascii) {
  out.push_back('"');
  char buf[16];
  for (size_t i = 0; i < s.size();) {
    const auto byte = static_cast<unsigned char>(s[i]);
    if (byte >= 0x80) {
      const size_t b = i;
      const char32_t c = next_code_point(s, &i);
      if (!ensure_ascii) {
        out.append(s.substr(b, i - b));
      } else if (c >= 0x10000) {
        const char32_t u = c - 0x10000;
        std::snprintf(buf, sizeof buf, "\\u%04x\\u%04x", static_cast<unsigned>(0xD800 + (u >> 10)),
                      static_cast<unsigned>(0xDC00 + (u & 0x3FF)));
        out += buf;
      } else {
        std::snprintf(buf, sizeof buf, "\\u%04x", static_cast<unsigned>(c));
        out += buf;
      }
      continue;
    }
    ++i;
    switch (byte) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      case '\b':
        out += "\\b";
        break;
      case '\f':
        out += "\\f";
        break;
      default:
        if (byte < 0x20 || (ensure_ascii && byte == 0x7F)) {
          std::snprintf(buf, sizeof buf, "\\u%04x", static_cast<unsigned>(byte));
          out += buf;
        } else {
          out.push_back(static_cast<char>(byte));
        }
    }
  }
  out.push_back('"');
}

std::string json_float(double f) {
  if (std::isnan(f)) return "NaN";
  if (std::isinf(f)) return f < 0 ? "-Infinity" : "Infinity";
  return py_float_repr(f);
}

[[noreturn]] void not_serializable(const Value& v) {
  type_error(cat("Object of type ", type_name(v), " is not JSON serializable"));
}

void dump(Sink& sink, const Value& v, const JsonOptions& o, int level) {
  std::string& out = sink.out;
  auto newline = [&](int lvl) {
    out.push_back('\n');
    for (int i = 0; i < lvl; ++i) out += *o.indent;
  };
  switch (v.kind()) {
    case Value::Kind::kNone:
      out += "null";
      return;
    case Value::Kind::kBool:
      out += v.as_bool() ? "true" : "false";
      return;
    case Value::Kind::kInt:
      out += std::to_string(v.as_int());
      return;
    case Value::Kind::kFloat:
      out += json_float(v.as_float());
      return;
    case Value::Kind::kString:
      json_string(out, v.str(), o.ensure_ascii);
      return;
    case Value::Kind::kList: {
      if (v.is_iterator()) not_serializable(v);
      const auto& items = v.list().items();
      if (items.empty()) {
        out += "[]";
        return;
      }
      out.push_back('[');
      for (size_t i = 0; i < items.size(); ++i) {
        if (i) out += o.item_separator;
        if (o.indent) newline(level + 1);
        dump(sink, items[i], o, level + 1);
        sink.check();
      }
      if (o.indent) newline(level);
      out.push_back(']');
      return;
    }
    case Value::Kind::kDict: {
      const auto& items = v.dict().items();
      if (items.empty()) {
        out += "{}";
        return;
      }
      std::vector<const std::pair<Value, Value>*> order;
      order.reserve(items.size());
      for (const auto& kv : items) order.push_back(&kv);
      if (o.sort_keys) {
        std::stable_sort(order.begin(), order.end(),
                         [](const auto* a, const auto* b) { return compare(a->first, b->first, "<") == -1; });
      }
      out.push_back('{');
      bool first = true;
      for (const auto* kv : order) {
        if (!first) out += o.item_separator;
        first = false;
        if (o.indent) newline(level + 1);
        const Value& k = kv->first;
        switch (k.kind()) {
          case Value::Kind::kString:
            json_string(out, k.str(), o.ensure_ascii);
            break;
          case Value::Kind::kNone:
            out += "\"null\"";
            break;
          case Value::Kind::kBool:
            out += k.as_bool() ? "\"true\"" : "\"false\"";
            break;
          case Value::Kind::kInt:
            out += cat("\"", k.as_int(), "\"");
            break;
          case Value::Kind::kFloat:
            out += cat("\"", json_float(k.as_float()), "\"");
            break;
          default:
            type_error(cat("keys must be str, int, float, bool or None, not ", type_name(k)));
        }
        out += o.key_separator;
        dump(sink, kv->second, o, level + 1);
        sink.check();
      }
      if (o.indent) newline(level);
      out.push_back('}');
      return;
    }
    default:
      not_serializable(v);
  }
}

}  // namespace

std::string to_json(const Value& v, const JsonOptions& options, size_t max_size) {
  Sink s{{}, max_size};
  dump(s, v, options, 0);
  s.check();
  return std::move(s.out);
}

}  // namespace tpinfer::jinja
