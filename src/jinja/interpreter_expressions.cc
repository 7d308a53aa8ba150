// The Interpreter's expressions: literals, names, lists and dicts, slices,
// calls (with *args and **kwargs), filters and tests, comparisons and
// concatenation; and attribute and item access as Jinja's sandbox does it
// (methods of str, list and dict first, unsafe ones refused).
#include <algorithm>

#include "jinja/builtins.h"
#include "jinja/interpreter.h"
#include "jinja/interpreter_internal.h"
#include "jinja/text.h"

namespace tpinfer::jinja {

namespace {

[[noreturn]] void type_error(const std::string& message) { throw TemplateError("TypeError: " + message); }

std::string object_type_repr(const Value& v) { return v.is_none() ? "None" : type_name(v) + " object"; }

Value no_attribute(const Value& obj, const std::string& name) {
  return Value::undefined(cat(py_repr(object_type_repr(obj)), " has no attribute ", py_repr(name)));
}

Value no_item(const Value& obj, const Value& key) {
  if (key.is_string()) return no_attribute(obj, key.str());
  return Value::undefined(cat(object_type_repr(obj), " has no element ", repr(key)));
}

Value unsafe_method(const Value& obj, const std::string& name) {
  return Value::undefined_error(
      cat("SecurityError: access to attribute '", name, "' of '", type_name(obj), "' object is unsafe."));
}

}  // namespace

// ---- expressions --------------------------------------------------------------------

Value Interpreter::eval(const Expr& e) {
  tick();
  DepthGuard depth(this);
  switch (e.kind) {
    case ExprKind::kLiteral:
      return static_cast<const LiteralExpr&>(e).value;
    case ExprKind::kName:
      return eval_name(static_cast<const NameExpr&>(e));
    case ExprKind::kList:
      return eval_list(static_cast<const ListExpr&>(e));
    case ExprKind::kDict:
      return eval_dict(static_cast<const DictExpr&>(e));
    case ExprKind::kGetAttr: {
      const auto& g = static_cast<const GetAttrExpr&>(e);
      return get_attr(eval(*g.object), g.name);
    }
    case ExprKind::kGetItem:
      return eval_get_item(static_cast<const GetItemExpr&>(e));
    case ExprKind::kSlice:
      throw TemplateError("a slice is only valid inside []");
    case ExprKind::kCall:
      return eval_call(static_cast<const CallExpr&>(e));
    case ExprKind::kFilter:
      return eval_filter(static_cast<const FilterExpr&>(e), nullptr);
    case ExprKind::kTest:
      return eval_test(static_cast<const TestExpr&>(e));
    case ExprKind::kUnary:
      return eval_unary(static_cast<const UnaryExpr&>(e));
    case ExprKind::kBinary: {
      const auto& b = static_cast<const BinaryExpr&>(e);
      const Value l = eval(*b.left);
      const Value r = eval(*b.right);
      return binary_op(*this, b.op, l, r);
    }
    case ExprKind::kCompare:
      return eval_compare(static_cast<const CompareExpr&>(e));
    case ExprKind::kLogical: {
      const auto& l = static_cast<const LogicalExpr&>(e);
      Value left = eval(*l.left);
      if (l.is_and ? !truthy(left) : truthy(left)) return left;
      return eval(*l.right);
    }
    case ExprKind::kCondExpr: {
      const auto& c = static_cast<const CondExpr&>(e);
      if (truthy(eval(*c.test))) return eval(*c.then);
      if (c.otherwise) return eval(*c.otherwise);
      return Value::undefined(
          cat("the inline if-expression on line ", c.line, " evaluated to false and no else section was defined."));
    }
    case ExprKind::kConcat:
      return eval_concat(static_cast<const ConcatExpr&>(e));
  }
  throw TemplateError("unknown expression");
}

Value Interpreter::eval_name(const NameExpr& e) {
  if (const Value* v = scope_->find(e.name)) return *v;
  return Value::undefined(cat(py_repr(e.name), " is undefined"));
}

Value Interpreter::eval_list(const ListExpr& e) {
  std::vector<Value> items;
  items.reserve(e.items.size());
  for (const ExprPtr& x : e.items) items.push_back(eval(*x));
  return Value::list(std::move(items), e.tuple ? List::Flavor::kTuple : List::Flavor::kList);
}

Value Interpreter::eval_dict(const DictExpr& e) {
  Dict d;
  for (const auto& [k, v] : e.items) {
    Value key = eval(*k);
    d.set(key, eval(*v));
  }
  return Value::dict(std::move(d));
}

Value Interpreter::eval_get_item(const GetItemExpr& e) {
  const Value obj = eval(*e.object);
  if (e.index->kind == ExprKind::kSlice) return slice(obj, static_cast<const SliceExpr&>(*e.index));
  return get_item(obj, eval(*e.index));
}

Value Interpreter::slice(const Value& obj, const SliceExpr& s) {
  if (obj.is_undefined()) obj.fail_undefined();
  auto bound = [this](const ExprPtr& x) -> std::optional<int64_t> {
    if (!x) return std::nullopt;
    const Value v = eval(*x);
    if (v.is_none()) return std::nullopt;
    if (!v.is_int() && !v.is_bool()) {
      type_error("slice indices must be integers or None or have an __index__ method");
    }
    return v.to_int();
  };
  const std::optional<int64_t> start = bound(s.start), stop = bound(s.stop), step_opt = bound(s.step);
  const int64_t step = step_opt.value_or(1);
  if (step == 0) throw TemplateError("ValueError: slice step cannot be zero");
  if (!obj.is_string() && !(obj.is_list() && !obj.is_iterator())) {
    return Value::undefined(cat(object_type_repr(obj), " has no element slice"));
  }
  std::u32string cps;
  if (obj.is_string()) {
    charge_scan(obj.str());
    cps = decode_utf8(obj.str());
  }
  const int64_t len =
      obj.is_string() ? static_cast<int64_t>(cps.size()) : static_cast<int64_t>(obj.list().items().size());
  auto adjust = [&](std::optional<int64_t> v, int64_t dflt, int64_t lo, int64_t hi) {
    if (!v) return dflt;
    int64_t x = *v;
    if (x < 0) {
      x += len;
      if (x < 0) x = lo;
    } else if (x > hi) {
      x = hi;
    }
    return x;
  };
  int64_t b, e;
  if (step > 0) {
    b = adjust(start, 0, 0, len);
    e = adjust(stop, len, 0, len);
  } else {
    b = adjust(start, len - 1, -1, len - 1);
    e = adjust(stop, -1, -1, len - 1);
  }
  std::vector<int64_t> idx;
  for (int64_t i = b; step > 0 ? i < e : i > e; i += step) idx.push_back(i);
  if (obj.is_string()) {
    std::u32string out;
    out.reserve(idx.size());
    for (int64_t i : idx) out.push_back(cps[static_cast<size_t>(i)]);
    return Value(encode_utf8(out));
  }
  std::vector<Value> out;
  out.reserve(idx.size());
  for (int64_t i : idx) out.push_back(obj.list().items()[static_cast<size_t>(i)]);
  charge(out.size() * sizeof(Value));
  return Value::list(std::move(out), obj.list().flavor());
}

CallArgs Interpreter::eval_args(const CallArgsExpr& a) {
  CallArgs args;
  for (const ExprPtr& x : a.positional) args.positional.push_back(eval(*x));
  if (a.star_args) {
    for (Value& v : this->iterate(eval(*a.star_args))) args.positional.push_back(std::move(v));
  }
  for (const auto& [k, x] : a.keyword) args.keyword.emplace_back(k, eval(*x));
  if (a.star_kwargs) {
    const Value d = eval(*a.star_kwargs);
    if (!d.is_dict()) type_error(cat("argument after ** must be a mapping, not ", type_name(d)));
    for (const auto& [k, v] : d.dict().items()) {
      if (!k.is_string()) type_error("keywords must be strings");
      args.keyword.emplace_back(k.str(), v);
    }
  }
  return args;
}

Value Interpreter::eval_call(const CallExpr& e, std::optional<Value> caller) {
  Value fn;
  if (e.callee->kind == ExprKind::kGetAttr) {
    const auto& g = static_cast<const GetAttrExpr&>(*e.callee);
    const Value obj = eval(*g.object);
    if ((obj.is_string() || obj.is_list() || obj.is_dict()) && find_method(obj, g.name) == MethodKind::kSafe) {
      CallArgs args = eval_args(e.args);
      if (caller) args.keyword.emplace_back("caller", std::move(*caller));
      return call_method(*this, obj, g.name, args);
    }
    fn = get_attr(obj, g.name);
  } else {
    fn = eval(*e.callee);
  }
  CallArgs args = eval_args(e.args);
  if (caller) args.keyword.emplace_back("caller", std::move(*caller));
  return call(fn, args);
}

Value Interpreter::call(const Value& callee, CallArgs& args) {
  if (callee.is_undefined()) callee.fail_undefined();
  if (callee.is_object() && callee.object().is_callable()) return callee.object().call(*this, args);
  type_error(cat("'", type_name(callee), "' object is not callable"));
}

Value Interpreter::eval_filter(const FilterExpr& e, const Value* base) {
  Value operand;
  if (!e.operand) {
    if (!base) throw TemplateError("filter without a value");
    operand = *base;
  } else if (e.operand->kind == ExprKind::kFilter) {
    operand = eval_filter(static_cast<const FilterExpr&>(*e.operand), base);
  } else {
    operand = eval(*e.operand);
  }
  CallArgs args = eval_args(e.args);
  return filter(e.name, operand, args);
}

// What reading v once costs: filters, tests and comparisons scan their operands.
static size_t scan_cost(const Value& v) {
  if (v.is_string()) return v.str().size() * Interpreter::kPerCodePointWork;
  if (v.is_list()) return v.list().items().size() * sizeof(Value);
  if (v.is_dict()) return v.dict().size() * sizeof(Value);
  return 0;
}

Value Interpreter::filter(const std::string& name, const Value& operand, CallArgs& args) {
  const FilterFn f = find_filter(name);
  if (!f) throw TemplateError(cat("TemplateRuntimeError: No filter named '", name, "' found."));
  charge_work(scan_cost(operand));
  return f(*this, operand, args);
}

bool Interpreter::test(const std::string& name, const Value& operand, CallArgs& args) {
  const TestFn t = find_test(name);
  if (!t) throw TemplateError(cat("TemplateRuntimeError: No test named '", name, "' found."));
  charge_work(scan_cost(operand));
  for (const Value& a : args.positional) charge_work(scan_cost(a));
  return t(*this, operand, args);
}

Value Interpreter::eval_test(const TestExpr& e) {
  const Value operand = eval(*e.operand);
  CallArgs args = eval_args(e.args);
  return Value(test(e.name, operand, args));
}

Value Interpreter::eval_unary(const UnaryExpr& e) {
  const Value v = eval(*e.operand);
  if (e.op == UnaryOp::kNot) return Value(!truthy(v));
  if (v.is_undefined()) v.fail_undefined();
  const bool neg = e.op == UnaryOp::kNeg;
  if (v.is_float()) return Value(neg ? -v.as_float() : v.as_float());
  if (v.is_int() || v.is_bool()) {
    const int64_t i = v.to_int();
    return Value(neg ? sub_checked(0, i) : i);
  }
  type_error(cat("bad operand type for unary ", neg ? "-" : "+", ": '", type_name(v), "'"));
}

Value Interpreter::eval_compare(const CompareExpr& e) {
  Value left = eval(*e.first);
  for (const auto& [op, expr] : e.rest) {
    Value right = eval(*expr);
    // Comparing strings is a memcmp: bytes, not code points.
    charge_work(left.is_string() && right.is_string() ? std::min(left.str().size(), right.str().size())
                                                      : std::min(scan_cost(left), scan_cost(right)));
    bool ok = false;
    switch (op) {
      case CompareOp::kEq:
        ok = equals(left, right);
        break;
      case CompareOp::kNe:
        ok = !equals(left, right);
        break;
      case CompareOp::kLt:
        ok = compare(left, right, "<") == -1;
        break;
      case CompareOp::kLe: {
        const int c = compare(left, right, "<=");
        ok = c == -1 || c == 0;
        break;
      }
      case CompareOp::kGt:
        ok = compare(left, right, ">") == 1;
        break;
      case CompareOp::kGe: {
        const int c = compare(left, right, ">=");
        ok = c == 1 || c == 0;
        break;
      }
      case CompareOp::kIn:
      case CompareOp::kNotIn:
        charge_work(right.is_string() ? right.str().size() : scan_cost(right) + scan_cost(left));
        ok = contains(right, left) == (op == CompareOp::kIn);
        break;
    }
    if (!ok) return Value(false);
    left = std::move(right);
  }
  return Value(true);
}

Value Interpreter::eval_concat(const ConcatExpr& e) {
  std::string out;
  for (const ExprPtr& x : e.items) {
    const Value v = eval(*x);
    out += v.is_string() ? v.str() : to_str(v, config_.limits.max_output_bytes);
    charge(out.size());
  }
  return Value(std::move(out));
}

// ---- attribute and item access ---------------------------------------------------------

Value Interpreter::get_attr(const Value& obj, const std::string& name) {
  switch (obj.kind()) {
    case Value::Kind::kUndefined:
      obj.fail_undefined();
    case Value::Kind::kObject:
      return obj.object().get_attr(name);
    case Value::Kind::kString:
    case Value::Kind::kList:
    case Value::Kind::kDict: {
      const MethodKind m = find_method(obj, name);
      if (m == MethodKind::kSafe) return Value::object(std::make_shared<BoundMethod>(obj, name));
      if (m == MethodKind::kUnsafe) return unsafe_method(obj, name);
      if (obj.is_dict()) {
        if (const Value* v = obj.dict().find_str(name)) return *v;
      }
      return no_attribute(obj, name);
    }
    default:
      return no_attribute(obj, name);
  }
}

Value Interpreter::get_item(const Value& obj, const Value& key) {
  if (key.is_string()) charge_work(key.str().size());  // hashed to look it up
  switch (obj.kind()) {
    case Value::Kind::kUndefined:
      obj.fail_undefined();
    case Value::Kind::kDict:
      if (hash_key(key)) {
        if (const Value* v = obj.dict().find(key)) return *v;
      }
      break;
    case Value::Kind::kList:
      if (!obj.is_iterator() && (key.is_int() || key.is_bool())) {
        const auto& items = obj.list().items();
        int64_t i = key.to_int();
        if (i < 0) i += static_cast<int64_t>(items.size());
        if (i >= 0 && i < static_cast<int64_t>(items.size())) return items[static_cast<size_t>(i)];
      }
      break;
    case Value::Kind::kString:
      if (key.is_int() || key.is_bool()) {
        const std::string& s = obj.str();
        int64_t i = key.to_int();
        charge_scan(s);
        if (i < 0) i += static_cast<int64_t>(utf8_length(s));
        if (i >= 0) {
          size_t pos = 0;
          for (int64_t k = 0; k < i && pos < s.size(); ++k) next_code_point(s, &pos);
          if (pos < s.size()) {
            const size_t b = pos;
            next_code_point(s, &pos);
            return Value(s.substr(b, pos - b));
          }
        }
      }
      break;
    case Value::Kind::kObject:
      if (key.is_string()) return obj.object().get_attr(key.str());
      break;
    default:
      break;
  }
  if (key.is_string() && (obj.is_string() || obj.is_list() || obj.is_dict())) {
    const MethodKind m = find_method(obj, key.str());
    if (m == MethodKind::kSafe) return Value::object(std::make_shared<BoundMethod>(obj, key.str()));
    if (m == MethodKind::kUnsafe) return unsafe_method(obj, key.str());
  }
  return no_item(obj, key);
}

}  // namespace tpinfer::jinja
