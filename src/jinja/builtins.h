// Jinja's built-in filters, tests and globals, and the methods of str, list and
// dict that templates call (as the immutable sandbox allows them), for the
// interpreter (jinja/interpreter.h). Internal to the jinja layer.
#pragma once

#include <string>
#include <string_view>

#include "jinja/interpreter.h"

namespace tpinfer::jinja {

using FilterFn = Value (*)(Interpreter& in, const Value& operand, CallArgs& args);
using TestFn = bool (*)(Interpreter& in, const Value& operand, CallArgs& args);
using BuiltinFn = Value (*)(Interpreter& in, CallArgs& args);

FilterFn find_filter(std::string_view name);  // nullptr when unknown
TestFn find_test(std::string_view name);      // nullptr when unknown

// Whether `receiver.name` is a method: kUnsafe for the ones that would modify a
// value (list.append, dict.update, ...), which the sandbox refuses.
enum class MethodKind { kNone, kSafe, kUnsafe };
MethodKind find_method(const Value& receiver, std::string_view name);
Value call_method(Interpreter& in, const Value& receiver, const std::string& name, CallArgs& args);

// A built-in function value (range, namespace, raise_exception, ...).
class BuiltinFunction : public Object {
 public:
  BuiltinFunction(std::string name, BuiltinFn fn) : name_(std::move(name)), fn_(fn) {}
  std::string type_name() const override { return "function"; }
  std::string repr() const override { return "<function " + name_ + ">"; }
  bool is_callable() const override { return true; }
  Value call(Interpreter& in, CallArgs& args) override { return fn_(in, args); }
  bool holds_values() const override { return false; }

 private:
  std::string name_;
  BuiltinFn fn_;
};

// A method bound to its receiver: "abc".upper, loop.cycle, ...
class BoundMethod : public Object {
 public:
  BoundMethod(Value receiver, std::string name) : receiver_(std::move(receiver)), name_(std::move(name)) {}
  std::string type_name() const override { return "builtin_function_or_method"; }
  std::string repr() const override { return "<built-in method " + name_ + ">"; }
  bool is_callable() const override { return true; }
  Value call(Interpreter& in, CallArgs& args) override { return call_method(in, receiver_, name_, args); }
  int depth() const override { return 1 + receiver_.depth(); }

 private:
  Value receiver_;
  std::string name_;
};

// The names and values of the globals every template sees.
std::vector<std::pair<std::string, Value>> builtin_globals();

// Python's printf-style formatting: fmt % args (a tuple for several values, a
// dict for %(name)s).
std::string percent_format(const std::string& fmt, const Value& args);
// Python's str.format(*args, **kwargs).
std::string str_format(Interpreter& in, const std::string& fmt, CallArgs& args);

// Binds call arguments to parameter names (positional first, then keyword),
// as Python does for a function `fn(names...)`. Unknown keywords and surplus
// positionals throw TypeError.
std::vector<std::optional<Value>> bind_args(CallArgs& args, std::initializer_list<const char*> names, const char* fn);
void no_args(CallArgs& args, const char* fn);  // fn() takes no arguments
// Optional arguments: an int (None or absent: dflt), a truth value, a str or None.
int64_t int_arg(const std::optional<Value>& v, int64_t dflt, const char* what);
bool bool_arg(const std::optional<Value>& v, bool dflt);
std::optional<std::string> opt_str_arg(const std::optional<Value>& v);

}  // namespace tpinfer::jinja
