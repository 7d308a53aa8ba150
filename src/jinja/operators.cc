// Python's operators on template values, as the interpreter applies them:
// + - * / // % ** with Python's integer and float semantics (floor division and
// modulo, 64-bit integers that raise OverflowError instead of growing), string
// and list concatenation and repetition, str % args, and `in`.
#include <cmath>

#include "core/enum_names.h"
#include "jinja/builtins.h"
#include "jinja/interpreter.h"
#include "jinja/interpreter_internal.h"
#include "jinja/text.h"

namespace tpinfer::jinja {

namespace {

[[noreturn]] void type_error(const std::string& message) { throw TemplateError("TypeError: " + message); }

[[noreturn]] void overflow() { throw TemplateError("OverflowError: integer result does not fit in 64 bits"); }

int64_t add_checked(int64_t a, int64_t b) {
  int64_t r = 0;
  if (__builtin_add_overflow(a, b, &r)) overflow();
  return r;
}

int64_t mul_checked(int64_t a, int64_t b) {
  int64_t r = 0;
  if (__builtin_mul_overflow(a, b, &r)) overflow();
  return r;
}

int64_t int_floordiv(int64_t a, int64_t b) {
  if (b == 0) throw TemplateError("ZeroDivisionError: integer division or modulo by zero");
  if (a == INT64_MIN && b == -1) overflow();
  int64_t q = a / b;
  if ((a % b != 0) && ((a < 0) != (b < 0))) --q;
  return q;
}

int64_t int_mod(int64_t a, int64_t b) {
  if (b == 0) throw TemplateError("ZeroDivisionError: integer modulo by zero");
  if (b == -1) return 0;
  int64_t m = a % b;
  if (m != 0 && ((m < 0) != (b < 0))) m += b;
  return m;
}

// Python's float divmod.
void float_divmod(double vx, double wx, double* floordiv, double* mod) {
  if (wx == 0.0) throw TemplateError("ZeroDivisionError: float divmod()");
  double m = std::fmod(vx, wx);
  double div = (vx - m) / wx;
  if (m != 0.0) {
    if ((wx < 0) != (m < 0)) {
      m += wx;
      div -= 1.0;
    }
  } else {
    m = std::copysign(0.0, wx);
  }
  double fd;
  if (div != 0.0) {
    fd = std::floor(div);
    if (div - fd > 0.5) fd += 1.0;
  } else {
    fd = std::copysign(0.0, vx / wx);
  }
  *floordiv = fd;
  *mod = m;
}

constexpr EnumNames<BinaryOp, 7> kOpSymbols{{"+", "-", "*", "/", "//", "%", "** or pow()"}};

const char* op_symbol(BinaryOp op) { return kOpSymbols[op]; }

[[noreturn]] void unsupported(BinaryOp op, const Value& a, const Value& b) {
  type_error(cat("unsupported operand type(s) for ", op_symbol(op), ": '", type_name(a), "' and '", type_name(b), "'"));
}

Value repeat(Interpreter& in, const Value& seq, int64_t n) {
  if (n <= 0) return seq.is_string() ? Value("") : Value::list({}, seq.list().flavor());
  const auto count = static_cast<size_t>(n);
  if (seq.is_string()) {
    const std::string& unit = seq.str();
    if (unit.empty()) return Value("");
    if (count > SIZE_MAX / unit.size()) in.charge(SIZE_MAX);
    const size_t total = unit.size() * count;
    in.charge(total);
    std::string out;
    out.reserve(total);
    out += unit;
    while (out.size() * 2 <= total) out.append(out);  // doubling: O(log n) appends
    out.append(out, 0, total - out.size());
    return Value(std::move(out));
  }
  const auto& items = seq.list().items();
  if (!items.empty() && count > SIZE_MAX / (items.size() * sizeof(Value))) in.charge(SIZE_MAX);
  in.charge(items.size() * sizeof(Value) * count);
  std::vector<Value> out;
  out.reserve(items.size() * count);
  for (size_t i = 0; i < count; ++i) out.insert(out.end(), items.begin(), items.end());
  return Value::list(std::move(out), seq.list().flavor());
}

Value power(const Value& a, const Value& b) {
  if (!a.is_float() && !b.is_float()) {
    int64_t base = a.to_int(), e = b.to_int();
    if (e >= 0) {
      int64_t r = 1;
      while (e > 0) {
        if (e & 1) r = mul_checked(r, base);
        e >>= 1;
        if (e > 0) base = mul_checked(base, base);
      }
      return Value(r);
    }
  }
  const double x = a.to_double(), y = b.to_double();
  if (x == 0.0 && y < 0) throw TemplateError("ZeroDivisionError: 0.0 cannot be raised to a negative power");
  if (x < 0 && std::floor(y) != y && std::isfinite(y)) {
    throw TemplateError("ValueError: complex results are not supported");
  }
  const double r = std::pow(x, y);
  if (std::isinf(r) && std::isfinite(x) && std::isfinite(y)) {
    throw TemplateError("OverflowError: (34, 'Numerical result out of range')");
  }
  return Value(r);
}

}  // namespace

int64_t sub_checked(int64_t a, int64_t b) {
  int64_t r = 0;
  if (__builtin_sub_overflow(a, b, &r)) overflow();
  return r;
}

Value binary_op(Interpreter& in, BinaryOp op, const Value& a, const Value& b) {
  if (op == BinaryOp::kMod && a.is_string() && b.is_undefined()) {
    // str % Undefined: Python formats it (Undefined looks like a mapping) before
    // Undefined gets a say.
    std::string s = percent_format(a.str(), b);
    in.charge(s.size());
    return Value(std::move(s));
  }
  if (a.is_undefined()) a.fail_undefined();
  if (b.is_undefined()) b.fail_undefined();
  const bool numbers = a.is_number() && b.is_number();
  const bool ints = numbers && !a.is_float() && !b.is_float();
  switch (op) {
    case BinaryOp::kAdd:
      if (ints) return Value(add_checked(a.to_int(), b.to_int()));
      if (numbers) return Value(a.to_double() + b.to_double());
      if (a.is_string()) {
        if (!b.is_string()) type_error(cat("can only concatenate str (not \"", type_name(b), "\") to str"));
        in.charge(a.str().size() + b.str().size());
        return Value(a.str() + b.str());
      }
      if (a.is_list() && !a.is_iterator()) {
        if (!b.is_list() || b.list().flavor() != a.list().flavor()) {
          type_error(cat("can only concatenate ", type_name(a), " (not \"", type_name(b), "\") to ", type_name(a)));
        }
        std::vector<Value> items = a.list().items();
        items.insert(items.end(), b.list().items().begin(), b.list().items().end());
        in.charge(items.size() * sizeof(Value));
        return Value::list(std::move(items), a.list().flavor());
      }
      unsupported(op, a, b);
    case BinaryOp::kSub:
      if (ints) return Value(sub_checked(a.to_int(), b.to_int()));
      if (numbers) return Value(a.to_double() - b.to_double());
      unsupported(op, a, b);
    case BinaryOp::kMul:
      if (ints) return Value(mul_checked(a.to_int(), b.to_int()));
      if (numbers) return Value(a.to_double() * b.to_double());
      if (a.is_string() || (a.is_list() && !a.is_iterator())) {
        if (!b.is_int() && !b.is_bool())
          type_error(cat("can't multiply sequence by non-int of type '", type_name(b), "'"));
        return repeat(in, a, b.to_int());
      }
      if (b.is_string() || (b.is_list() && !b.is_iterator())) {
        if (!a.is_int() && !a.is_bool())
          type_error(cat("can't multiply sequence by non-int of type '", type_name(a), "'"));
        return repeat(in, b, a.to_int());
      }
      unsupported(op, a, b);
    case BinaryOp::kDiv:
      if (numbers) {
        const double y = b.to_double();
        if (y == 0.0) {
          throw TemplateError(ints ? "ZeroDivisionError: division by zero"
                                   : "ZeroDivisionError: float division by zero");
        }
        return Value(a.to_double() / y);
      }
      unsupported(op, a, b);
    case BinaryOp::kFloorDiv:
      if (ints) return Value(int_floordiv(a.to_int(), b.to_int()));
      if (numbers) {
        double fd, m;
        if (b.to_double() == 0.0) throw TemplateError("ZeroDivisionError: float floor division by zero");
        float_divmod(a.to_double(), b.to_double(), &fd, &m);
        return Value(fd);
      }
      unsupported(op, a, b);
    case BinaryOp::kMod:
      if (ints) return Value(int_mod(a.to_int(), b.to_int()));
      if (numbers) {
        double fd, m;
        if (b.to_double() == 0.0) throw TemplateError("ZeroDivisionError: float modulo");
        float_divmod(a.to_double(), b.to_double(), &fd, &m);
        return Value(m);
      }
      if (a.is_string()) {
        std::string s = percent_format(a.str(), b);
        in.charge(s.size());
        return Value(std::move(s));
      }
      unsupported(op, a, b);
    case BinaryOp::kPow:
      if (numbers) return power(a, b);
      unsupported(op, a, b);
  }
  unsupported(op, a, b);
}

bool contains(const Value& container, const Value& item) {
  switch (container.kind()) {
    case Value::Kind::kUndefined:
      return false;
    case Value::Kind::kString:
      if (!item.is_string()) {
        type_error(cat("'in <string>' requires string as left operand, not ", type_name(item)));
      }
      return container.str().find(item.str()) != std::string::npos;
    case Value::Kind::kList: {
      const List& l = container.list();
      if (l.flavor() == List::Flavor::kIterator) {  // consumed up to the match, as in Python
        while (l.consumed() < l.items().size()) {
          const Value& v = l.items()[l.consumed()];
          l.consume(1);
          if (equals(v, item)) return true;
        }
        return false;
      }
      for (const Value& v : l.items()) {
        if (equals(v, item)) return true;
      }
      return false;
    }
    case Value::Kind::kDict:
      return container.dict().find(item) != nullptr;
    default:
      type_error(cat("argument of type '", type_name(container), "' is not iterable"));
  }
}

}  // namespace tpinfer::jinja
