// Jinja's built-in tests (`x is defined`, `n is divisibleby 3`, ...) and their
// table by name.
#include "jinja/builtins.h"
#include "jinja/text.h"

namespace tpinfer::jinja {

namespace {

[[noreturn]] void type_error(const std::string& message) { throw TemplateError("TypeError: " + message); }

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

TestFn find_test(std::string_view name) {
  for (const auto& t : kTests) {
    if (t.name == name) return t.fn;
  }
  return nullptr;
}
}  // namespace tpinfer::jinja
