// Values of the Jinja interpreter, with Python's semantics: undefined (carrying
// the hint Jinja prints when it is misused), None, bool, int, float, str, list
// (also standing for tuples and for the one-shot iterators that filters such as
// select and map return), dict (insertion-ordered, like Python's), and objects
// (namespaces, macros, loop contexts, bound methods, built-in functions).
//
// Strings, lists and dicts are immutable and shared: copying a Value is O(1)
// (an iterator only advances, as a Python generator is used up). Namespaces
// are the only mutable values; they may hold plain data and macros but
// not other namespaces or objects, so values never form reference cycles and
// their nesting depth stays bounded (kMaxValueDepth) — destruction, repr and
// tojson recurse at most that deep whatever a template does.
//
// Type and value errors are thrown as TemplateError with Python's message.
#pragma once

#include <algorithm>
#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <variant>
#include <vector>

#include "jinja/error.h"

namespace tpinfer::jinja {

class Value;
class Object;
class Interpreter;

// Lists and dicts nested deeper than this are refused (Python would hit its
// recursion limit on such values too).
inline constexpr int kMaxValueDepth = 200;

class List {
 public:
  enum class Flavor : uint8_t { kList, kTuple, kIterator };
  List(std::vector<Value> items, Flavor flavor);
  // All items; for an iterator, including those already consumed.
  const std::vector<Value>& items() const { return items_; }
  Flavor flavor() const { return flavor_; }
  int depth() const { return depth_; }
  bool holds_objects() const { return holds_objects_; }

  // An iterator (what select, map, items ... return) is used up as Python's
  // generators are: iterating it again yields only what is left. This is the
  // one mutable part of a list; iterators are never shared between renders.
  size_t consumed() const { return consumed_; }
  void consume(size_t n) const;  // defined below, where Value is complete (clang needs that)

 private:
  std::vector<Value> items_;
  Flavor flavor_;
  int depth_ = 1;
  bool holds_objects_ = false;
  mutable size_t consumed_ = 0;
};

// An insertion-ordered dict. Keys are hashable values (None, bool, int, float,
// str, tuples of those); equal numbers are the same key, as in Python.
class Dict {
 public:
  Dict() = default;
  size_t size() const;  // defined below, where Value is complete (clang needs that)
  const std::vector<std::pair<Value, Value>>& items() const { return items_; }
  const Value* find(const Value& key) const;          // nullptr when absent; throws if unhashable
  void set(const Value& key, Value value);            // replaces in place, or appends
  const Value* find_str(std::string_view key) const;  // a string key
  int depth() const { return depth_; }
  bool holds_objects() const { return holds_objects_; }

 private:
  std::vector<std::pair<Value, Value>> items_;
  std::unordered_map<std::string, size_t> index_;
  int depth_ = 1;
  bool holds_objects_ = false;
};

struct CallArgs {
  std::vector<Value> positional;
  std::vector<std::pair<std::string, Value>> keyword;
};

class Value {
 public:
  enum class Kind : uint8_t { kUndefined, kNone, kBool, kInt, kFloat, kString, kList, kDict, kObject };

  Value() : v_(Undef{}) {}  // undefined without a hint
  Value(bool b) : v_(b) {}
  Value(int i) : v_(static_cast<int64_t>(i)) {}
  Value(int64_t i) : v_(i) {}
  Value(double d) : v_(d) {}
  Value(std::string s) : v_(std::make_shared<const std::string>(std::move(s))) {}
  Value(const char* s) : Value(std::string(s)) {}
  Value(std::string_view s) : Value(std::string(s)) {}

  // An undefined value; misusing it throws "UndefinedError: <hint>".
  static Value undefined(std::string hint);
  // An undefined value whose misuse throws exactly `message` ("SecurityError: ...").
  static Value undefined_error(std::string message);
  static Value none() { return Value(NoneT{}); }
  static Value list(std::vector<Value> items, List::Flavor flavor = List::Flavor::kList);
  static Value tuple(std::vector<Value> items) { return list(std::move(items), List::Flavor::kTuple); }
  static Value dict(Dict d);
  static Value object(std::shared_ptr<Object> o);
  // Converts parsed JSON (objects keep their key order). Throws TemplateError
  // when nested deeper than kMaxValueDepth.
  static Value from_json(const nlohmann::ordered_json& j);

  Kind kind() const { return static_cast<Kind>(v_.index()); }
  bool is_undefined() const { return kind() == Kind::kUndefined; }
  bool is_none() const { return kind() == Kind::kNone; }
  bool is_bool() const { return kind() == Kind::kBool; }
  bool is_int() const { return kind() == Kind::kInt; }
  bool is_float() const { return kind() == Kind::kFloat; }
  bool is_number() const { return kind() == Kind::kInt || kind() == Kind::kFloat || kind() == Kind::kBool; }
  bool is_string() const { return kind() == Kind::kString; }
  bool is_list() const { return kind() == Kind::kList; }  // list, tuple or iterator
  bool is_dict() const { return kind() == Kind::kDict; }
  bool is_object() const { return kind() == Kind::kObject; }
  bool is_tuple() const { return is_list() && list().flavor() == List::Flavor::kTuple; }
  bool is_iterator() const { return is_list() && list().flavor() == List::Flavor::kIterator; }

  bool as_bool() const { return std::get<bool>(v_); }
  int64_t as_int() const { return std::get<int64_t>(v_); }
  double as_float() const { return std::get<double>(v_); }
  // bool, int or float as a double / as an int (bool is an int in Python).
  double to_double() const;
  int64_t to_int() const;
  const std::string& str() const { return *std::get<StrPtr>(v_); }
  const List& list() const { return *std::get<ListPtr>(v_); }
  const Dict& dict() const { return *std::get<DictPtr>(v_); }
  Object& object() const { return *std::get<ObjPtr>(v_); }
  const std::shared_ptr<Object>& object_ptr() const { return std::get<ObjPtr>(v_); }
  // The error misusing this undefined value raises ("UndefinedError: 'x' is undefined").
  std::string undefined_message() const;
  [[noreturn]] void fail_undefined() const;  // throws that error

  int depth() const;           // 0 for scalars, 1 + deepest element for containers
  bool holds_objects() const;  // is or contains an object

 private:
  struct Undef {
    std::shared_ptr<const std::string> message;
  };
  struct NoneT {};
  using StrPtr = std::shared_ptr<const std::string>;
  using ListPtr = std::shared_ptr<const List>;
  using DictPtr = std::shared_ptr<const Dict>;
  using ObjPtr = std::shared_ptr<Object>;
  explicit Value(NoneT n) : v_(n) {}

  std::variant<Undef, NoneT, bool, int64_t, double, StrPtr, ListPtr, DictPtr, ObjPtr> v_;
};

inline size_t Dict::size() const { return items_.size(); }
inline void List::consume(size_t n) const { consumed_ = std::min(items_.size(), consumed_ + n); }

// Objects: everything that is not plain data.
class Object {
 public:
  virtual ~Object() = default;
  virtual std::string type_name() const = 0;  // Python's type(x).__name__
  virtual std::string repr() const { return cat("<", type_name(), " object>"); }
  // Attribute access; undefined when there is no such attribute.
  virtual Value get_attr(const std::string& name) const;
  virtual bool is_callable() const { return false; }
  virtual Value call(Interpreter& in, CallArgs& args);
  virtual int depth() const { return 1; }
  // False for objects that hold no values (macros, built-in functions): those
  // may be stored in namespaces, since they cannot close a reference cycle.
  virtual bool holds_values() const { return true; }
};

// namespace(...): the one mutable value, whose attributes `set ns.x = ...` assigns.
class Namespace : public Object {
 public:
  std::string type_name() const override { return "Namespace"; }
  std::string repr() const override;
  Value get_attr(const std::string& name) const override;
  int depth() const override { return 1 + attrs_.depth(); }
  // Throws TemplateError for values a namespace may not hold (see the header).
  void set_attr(const std::string& name, Value v);
  const Dict& attrs() const { return attrs_; }

 private:
  Dict attrs_;
};

// ---- Python semantics ----------------------------------------------------------

std::string type_name(const Value& v);  // 'int', 'str', 'NoneType', 'list', ...
bool truthy(const Value& v);
// str(v) (undefined prints as ""), and repr(v). Throw TemplateError when the
// result would exceed max_size bytes.
std::string to_str(const Value& v, size_t max_size = SIZE_MAX);
std::string repr(const Value& v, size_t max_size = SIZE_MAX);
bool equals(const Value& a, const Value& b);
// Python's ordering: -1, 0 or 1 as a is less than, equal to or greater than b,
// 2 when they are unordered (NaN). Throws TypeError for types without an order
// between them (op is the operator named in the message) and UndefinedError for
// undefined operands.
int compare(const Value& a, const Value& b, const char* op);
// The key under which a dict stores v; nullopt for unhashable values.
std::optional<std::string> hash_key(const Value& v);
// Python's len(); throws TypeError for values without one.
int64_t length(const Value& v);
// Elements of iterating v (a str gives its characters, a dict its keys,
// undefined nothing, an iterator what is left of it, using it up); throws
// TypeError for non-iterables.
std::vector<Value> iterate(const Value& v);

struct JsonOptions {
  bool ensure_ascii = false;
  std::optional<std::string> indent;  // nullopt: one line
  std::string item_separator = ", ";
  std::string key_separator = ": ";
  bool sort_keys = false;
};
// Python's json.dumps; throws TypeError for values JSON cannot hold, and
// TemplateError when the result would exceed max_size bytes.
std::string to_json(const Value& v, const JsonOptions& options, size_t max_size = SIZE_MAX);

}  // namespace tpinfer::jinja
