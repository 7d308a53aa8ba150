#include "jinja/interpreter.h"

#include <cmath>
#include <ctime>

#include "jinja/builtins.h"
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

// A macro, or the `caller` of a call block. It reaches the scope it was defined
// in through a weak pointer, so that a scope holding its own macros is no cycle.
class Macro : public Object {
 public:
  Macro(const MacroDef* def, std::weak_ptr<Scope> closure) : def_(def), closure_(std::move(closure)) {}
  std::string type_name() const override { return "Macro"; }
  std::string repr() const override {
    return def_->name.empty() ? "<Macro anonymous>" : cat("<Macro ", py_repr(def_->name), ">");
  }
  bool is_callable() const override { return true; }
  bool holds_values() const override { return false; }
  Value call(Interpreter& in, CallArgs& args) override { return in.invoke_macro(*def_, closure_, args); }
  Value get_attr(const std::string& name) const override {
    if (name == "name") return def_->name.empty() ? Value::none() : Value(def_->name);
    if (name == "arguments") {
      std::vector<Value> names;
      for (const auto& p : def_->params) names.emplace_back(p.name);
      return Value::tuple(std::move(names));
    }
    if (name == "caller") return Value(def_->uses_caller);
    if (name == "catch_kwargs") return Value(def_->uses_kwargs);
    if (name == "catch_varargs") return Value(def_->uses_varargs);
    return Object::get_attr(name);
  }

 private:
  const MacroDef* def_;
  std::weak_ptr<Scope> closure_;
};

// The `loop` variable of a for loop.
class LoopContext : public Object, public std::enable_shared_from_this<LoopContext> {
 public:
  LoopContext(std::vector<Value> items, const ForStmt* stmt, int depth0, std::weak_ptr<Scope> scope)
      : items_(std::move(items)), stmt_(stmt), depth0_(depth0), scope_(std::move(scope)) {
    for (const Value& v : items_) depth_ = std::max(depth_, 1 + v.depth());
    if (depth_ > kMaxValueDepth) throw TemplateError("value nested too deeply");
  }
  const std::vector<Value>& items() const { return items_; }
  void set_index(size_t i) { index0_ = i; }

  std::string type_name() const override { return "LoopContext"; }
  std::string repr() const override { return cat("<LoopContext ", index0_ + 1, "/", items_.size(), ">"); }
  int depth() const override { return depth_; }
  bool is_callable() const override { return true; }

  Value get_attr(const std::string& name) const override {
    const auto n = static_cast<int64_t>(items_.size());
    const auto i = static_cast<int64_t>(index0_);
    if (name == "index") return Value(i + 1);
    if (name == "index0") return Value(i);
    if (name == "revindex") return Value(n - i);
    if (name == "revindex0") return Value(n - i - 1);
    if (name == "first") return Value(i == 0);
    if (name == "last") return Value(i == n - 1);
    if (name == "length") return Value(n);
    if (name == "depth") return Value(depth0_ + 1);
    if (name == "depth0") return Value(depth0_);
    if (name == "previtem") {
      return i > 0 ? items_[index0_ - 1] : Value::undefined("there is no previous item");
    }
    if (name == "nextitem") {
      return i + 1 < n ? items_[index0_ + 1] : Value::undefined("there is no next item");
    }
    if (name == "cycle" || name == "changed") {
      auto self = std::const_pointer_cast<LoopContext>(shared_from_this());
      return Value::object(std::make_shared<LoopMethod>(std::move(self), name));
    }
    return Object::get_attr(name);
  }

  // loop(items) in a recursive loop renders the loop body over items.
  Value call(Interpreter& in, CallArgs& args) override {
    if (!stmt_->recursive) {
      type_error("Tried to call non recursive loop. Maybe you forgot the 'recursive' modifier.");
    }
    if (args.positional.size() != 1 || !args.keyword.empty()) type_error("loop() takes exactly one argument");
    return in.run_recursive_loop(*stmt_, scope_, args.positional[0], depth0_ + 1);
  }

 private:
  class LoopMethod : public Object {
   public:
    LoopMethod(std::shared_ptr<LoopContext> loop, std::string name) : loop_(std::move(loop)), name_(std::move(name)) {}
    std::string type_name() const override { return "method"; }
    bool is_callable() const override { return true; }
    int depth() const override { return 1 + loop_->depth(); }
    Value call(Interpreter&, CallArgs& args) override {
      if (!args.keyword.empty()) type_error(cat("loop.", name_, "() takes no keyword arguments"));
      if (name_ == "cycle") {
        if (args.positional.empty()) type_error("no items for cycling given");
        return args.positional[loop_->index0_ % args.positional.size()];
      }
      Value now = Value::tuple(args.positional);
      if (loop_->last_changed_ && equals(*loop_->last_changed_, now)) return Value(false);
      loop_->last_changed_ = std::move(now);
      return Value(true);
    }

   private:
    std::shared_ptr<LoopContext> loop_;
    std::string name_;
  };

  std::vector<Value> items_;
  const ForStmt* stmt_;
  int depth0_;
  std::weak_ptr<Scope> scope_;
  size_t index0_ = 0;
  int depth_ = 1;
  std::optional<Value> last_changed_;
};

[[noreturn]] void overflow() { throw TemplateError("OverflowError: integer result does not fit in 64 bits"); }

int64_t add_checked(int64_t a, int64_t b) {
  int64_t r = 0;
  if (__builtin_add_overflow(a, b, &r)) overflow();
  return r;
}
int64_t sub_checked(int64_t a, int64_t b) {
  int64_t r = 0;
  if (__builtin_sub_overflow(a, b, &r)) overflow();
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

const char* op_symbol(BinaryOp op) {
  switch (op) {
    case BinaryOp::kAdd:
      return "+";
    case BinaryOp::kSub:
      return "-";
    case BinaryOp::kMul:
      return "*";
    case BinaryOp::kDiv:
      return "/";
    case BinaryOp::kFloorDiv:
      return "//";
    case BinaryOp::kMod:
      return "%";
    case BinaryOp::kPow:
      return "** or pow()";
  }
  return "?";
}

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

// ---- scopes and guards ------------------------------------------------------------

const Value* Scope::find(const std::string& name) const {
  for (const Scope* s = this; s; s = s->parent_.get()) {
    const auto it = s->vars_.find(name);
    if (it != s->vars_.end()) return &it->second;
  }
  return nullptr;
}

class Interpreter::DepthGuard {
 public:
  explicit DepthGuard(Interpreter* in) : in_(in) {
    if (++in_->depth_ > in_->config_.limits.max_depth) {
      --in_->depth_;
      throw TemplateError(cat("template nesting exceeds ", in_->config_.limits.max_depth, " levels"));
    }
  }
  ~DepthGuard() { --in_->depth_; }
  DepthGuard(const DepthGuard&) = delete;
  DepthGuard& operator=(const DepthGuard&) = delete;

 private:
  Interpreter* in_;
};

class Interpreter::ScopeGuard {
 public:
  ScopeGuard(Interpreter* in, std::shared_ptr<Scope> s) : in_(in), saved_(std::move(in->scope_)) {
    in_->scope_ = std::move(s);
  }
  ~ScopeGuard() { in_->scope_ = std::move(saved_); }
  ScopeGuard(const ScopeGuard&) = delete;
  ScopeGuard& operator=(const ScopeGuard&) = delete;

 private:
  Interpreter* in_;
  std::shared_ptr<Scope> saved_;
};

class Interpreter::OutputGuard {
 public:
  OutputGuard(Interpreter* in, std::string* out) : in_(in), saved_(in->out_) { in_->out_ = out; }
  ~OutputGuard() { in_->out_ = saved_; }
  OutputGuard(const OutputGuard&) = delete;
  OutputGuard& operator=(const OutputGuard&) = delete;

 private:
  Interpreter* in_;
  std::string* saved_;
};

// ---- interpreter --------------------------------------------------------------------

Interpreter::Interpreter(const RenderConfig& config) : config_(config) {
  globals_ = std::make_shared<Scope>(nullptr);
  for (auto& [name, v] : builtin_globals()) globals_->set(name, std::move(v));
}

std::string Interpreter::render(const Body& body, const Dict& vars) {
  auto context = std::make_shared<Scope>(globals_);
  for (const auto& [k, v] : vars.items()) {
    if (k.is_string()) context->set(k.str(), v);
  }
  std::string out;
  ScopeGuard scope(this, std::move(context));
  OutputGuard output(this, &out);
  exec_body(body);
  return out;
}

void Interpreter::tick() {
  if (++steps_ > config_.limits.max_steps) {
    throw TemplateError(cat("template exceeded ", config_.limits.max_steps, " evaluation steps"));
  }
}

void Interpreter::charge(size_t bytes) {
  if (bytes > config_.limits.max_output_bytes) {
    throw TemplateError(
        cat("template built a value over the size limit of ", config_.limits.max_output_bytes, " bytes"));
  }
  charge_work(bytes);
}

void Interpreter::charge_work(size_t bytes) {
  if (bytes > static_cast<uint64_t>(config_.limits.max_work_bytes)) bytes = config_.limits.max_work_bytes + 1;
  work_ += static_cast<int64_t>(bytes);
  if (work_ > config_.limits.max_work_bytes) {
    throw TemplateError(cat("template exceeded its work limit of ", config_.limits.max_work_bytes, " bytes"));
  }
}

std::vector<Value> Interpreter::iterate(const Value& v) {
  // A string becomes one value per character: charge for that before building it.
  if (v.is_string()) charge(v.str().size() * (sizeof(Value) + 32));
  if (v.is_list()) charge(v.list().items().size() * sizeof(Value));
  if (v.is_dict()) charge(v.dict().size() * sizeof(Value));
  return jinja::iterate(v);
}

void Interpreter::write(std::string_view text) {
  if (out_->size() + text.size() > config_.limits.max_output_bytes) {
    throw TemplateError(cat("template output exceeds ", config_.limits.max_output_bytes, " bytes"));
  }
  charge(text.size());
  out_->append(text);
}

std::string Interpreter::strftime_now(const std::string& format) const {
  if (config_.strftime_now) return config_.strftime_now(format);
  const std::time_t now = std::time(nullptr);
  std::tm tm{};
  localtime_r(&now, &tm);
  char buf[512];
  const size_t n = std::strftime(buf, sizeof buf, format.c_str(), &tm);
  return std::string(buf, n);
}

// ---- statements ---------------------------------------------------------------------

Interpreter::Flow Interpreter::exec_body(const Body& body) {
  for (const StmtPtr& s : body) {
    tick();
    const Flow f = exec(*s);
    if (f != Flow::kNormal) return f;
  }
  return Flow::kNormal;
}

Interpreter::Flow Interpreter::capture_body(const Body& body, std::string* text) {
  ScopeGuard scope(this, std::make_shared<Scope>(scope_));
  OutputGuard output(this, text);
  return exec_body(body);
}

Interpreter::Flow Interpreter::exec(const Stmt& s) {
  DepthGuard depth(this);
  try {
    switch (s.kind) {
      case StmtKind::kText:
        write(static_cast<const TextStmt&>(s).text);
        return Flow::kNormal;
      case StmtKind::kPrint: {
        const Value v = eval(*static_cast<const PrintStmt&>(s).expr);
        if (v.is_string()) {
          write(v.str());
        } else {
          write(to_str(v, config_.limits.max_output_bytes));
        }
        return Flow::kNormal;
      }
      case StmtKind::kIf: {
        const auto& st = static_cast<const IfStmt&>(s);
        for (const auto& [test, body] : st.branches) {
          if (truthy(eval(*test))) return exec_body(body);
        }
        return exec_body(st.otherwise);
      }
      case StmtKind::kFor: {
        const auto& st = static_cast<const ForStmt&>(s);
        return exec_for(st, eval(*st.iter), 0);
      }
      case StmtKind::kSet: {
        const auto& st = static_cast<const SetStmt&>(s);
        assign(st.target, eval(*st.value));
        return Flow::kNormal;
      }
      case StmtKind::kSetBlock: {
        const auto& st = static_cast<const SetBlockStmt&>(s);
        std::string text;
        // A break or continue in the body leaves the loop at once, as in Jinja.
        if (const Flow f = capture_body(st.body, &text); f != Flow::kNormal) return f;
        Value v(std::move(text));
        if (st.filter) v = eval_filter(static_cast<const FilterExpr&>(*st.filter), &v);
        assign(st.target, v);
        return Flow::kNormal;
      }
      case StmtKind::kMacro: {
        const auto& st = static_cast<const MacroStmt&>(s);
        scope_->set(st.def.name, Value::object(std::make_shared<Macro>(&st.def, scope_)));
        return Flow::kNormal;
      }
      case StmtKind::kCallBlock:
        exec_call_block(static_cast<const CallBlockStmt&>(s));
        return Flow::kNormal;
      case StmtKind::kFilterBlock: {
        const auto& st = static_cast<const FilterBlockStmt&>(s);
        std::string text;
        if (const Flow f = capture_body(st.body, &text); f != Flow::kNormal) return f;
        const Value body_text(std::move(text));
        const Value v = eval_filter(static_cast<const FilterExpr&>(*st.filter), &body_text);
        write(to_str(v, config_.limits.max_output_bytes));
        return Flow::kNormal;
      }
      case StmtKind::kWith: {
        const auto& st = static_cast<const WithStmt&>(s);
        std::vector<Value> values;
        for (const auto& a : st.assignments) values.push_back(eval(*a.second));
        ScopeGuard scope(this, std::make_shared<Scope>(scope_));
        for (size_t i = 0; i < values.size(); ++i) assign(st.assignments[i].first, values[i]);
        return exec_body(st.body);
      }
      case StmtKind::kBreak:
        return Flow::kBreak;
      case StmtKind::kContinue:
        return Flow::kContinue;
      case StmtKind::kScope:
        return exec_body(static_cast<const ScopeStmt&>(s).body);
    }
  } catch (const TemplateError& e) {
    if (e.raised() || e.line() > 0) throw;
    throw TemplateError(e.message(), false, s.line);
  }
  return Flow::kNormal;
}

Interpreter::Flow Interpreter::exec_for(const ForStmt& s, const Value& iterable, int depth) {
  std::vector<Value> items = this->iterate(iterable);
  const std::shared_ptr<Scope> parent = scope_;
  auto count_iteration = [this] {
    if (++iterations_ > config_.limits.max_loop_iterations) {
      throw TemplateError(cat("template exceeded ", config_.limits.max_loop_iterations, " loop iterations"));
    }
  };
  if (s.filter) {
    std::vector<Value> kept;
    for (Value& item : items) {
      count_iteration();
      ScopeGuard scope(this, std::make_shared<Scope>(parent));
      assign(s.target, item);
      if (truthy(eval(*s.filter))) kept.push_back(std::move(item));
    }
    items = std::move(kept);
  }
  // Jinja runs the else block unless some iteration reached the end of the
  // body: an empty loop, but also one whose every iteration broke or continued.
  bool completed_an_iteration = false;
  if (!items.empty()) {
    auto loop = std::make_shared<LoopContext>(std::move(items), &s, depth, parent);
    const Value loop_value = Value::object(loop);
    for (size_t i = 0; i < loop->items().size(); ++i) {
      count_iteration();
      loop->set_index(i);
      ScopeGuard scope(this, std::make_shared<Scope>(parent));
      scope_->set("loop", loop_value);
      assign(s.target, loop->items()[i]);
      const Flow f = exec_body(s.body);
      if (f == Flow::kNormal) completed_an_iteration = true;
      if (f == Flow::kBreak) break;
    }
  }
  if (completed_an_iteration || s.otherwise.empty()) return Flow::kNormal;
  ScopeGuard scope(this, std::make_shared<Scope>(parent));
  return exec_body(s.otherwise);
}

Value Interpreter::run_recursive_loop(const ForStmt& stmt, const std::weak_ptr<Scope>& scope, const Value& items,
                                      int depth) {
  std::shared_ptr<Scope> s = scope.lock();
  if (!s) throw TemplateError("a recursive loop was called after it ended");
  std::string buf;
  DepthGuard guard(this);
  ScopeGuard scope_guard(this, std::move(s));
  OutputGuard output(this, &buf);
  exec_for(stmt, items, depth);
  return Value(std::move(buf));
}

void Interpreter::exec_call_block(const CallBlockStmt& s) {
  auto caller = std::make_shared<Macro>(&s.def, scope_);
  const Value v = eval_call(static_cast<const CallExpr&>(*s.call), Value::object(std::move(caller)));
  write(to_str(v, config_.limits.max_output_bytes));
}

void Interpreter::assign(const Target& t, const Value& v) {
  switch (t.kind) {
    case Target::Kind::kName:
      scope_->set(t.name, v);
      return;
    case Target::Kind::kTuple: {
      if (!v.is_string() && !v.is_list() && !v.is_dict() && !v.is_undefined()) {
        type_error(cat("cannot unpack non-iterable ", type_name(v), " object"));
      }
      const std::vector<Value> items = this->iterate(v);
      if (items.size() < t.items.size()) {
        throw TemplateError(
            cat("ValueError: not enough values to unpack (expected ", t.items.size(), ", got ", items.size(), ")"));
      }
      if (items.size() > t.items.size()) {
        throw TemplateError(cat("ValueError: too many values to unpack (expected ", t.items.size(), ")"));
      }
      for (size_t i = 0; i < items.size(); ++i) assign(t.items[i], items[i]);
      return;
    }
    case Target::Kind::kNamespaceAttr: {
      const Value* ns = scope_->find(t.name);
      Namespace* target = ns && ns->is_object() ? dynamic_cast<Namespace*>(&ns->object()) : nullptr;
      if (!target) throw TemplateError("TemplateRuntimeError: cannot assign attribute on non-namespace object");
      target->set_attr(t.attr, v);
      return;
    }
  }
}

Value Interpreter::invoke_macro(const MacroDef& def, const std::weak_ptr<Scope>& closure, CallArgs& args) {
  if (call_depth_ >= config_.limits.max_call_depth) {
    throw TemplateError(
        cat("macro calls nested deeper than ", config_.limits.max_call_depth, " (infinite recursion?)"));
  }
  struct CallDepth {
    explicit CallDepth(int* d) : d_(d) { ++*d_; }
    ~CallDepth() { --*d_; }
    int* d_;
  } call_depth(&call_depth_);
  DepthGuard depth(this);

  // Binds the arguments as Jinja's Macro.__call__ does.
  const std::vector<MacroParam>& params = def.params;
  const std::string quoted = def.name.empty() ? std::string("None") : py_repr(def.name);
  std::vector<std::optional<Value>> values(params.size());
  const size_t consumed = std::min(args.positional.size(), params.size());
  for (size_t i = 0; i < consumed; ++i) values[i] = args.positional[i];
  std::vector<std::pair<std::string, Value>> keywords = std::move(args.keyword);
  auto pop_keyword = [&keywords](const std::string& name) -> std::optional<Value> {
    for (auto it = keywords.begin(); it != keywords.end(); ++it) {
      if (it->first == name) {
        Value v = std::move(it->second);
        keywords.erase(it);
        return v;
      }
    }
    return std::nullopt;
  };
  bool explicit_caller = false;
  for (size_t i = consumed; i < params.size(); ++i) {
    values[i] = pop_keyword(params[i].name);
    if (params[i].name == "caller") explicit_caller = true;
  }
  std::shared_ptr<Scope> parent = closure.lock();
  if (!parent) parent = globals_;
  ScopeGuard scope(this, std::make_shared<Scope>(std::move(parent)));
  if (def.uses_caller && !explicit_caller) {
    std::optional<Value> caller = pop_keyword("caller");
    scope_->set("caller", caller ? std::move(*caller) : Value::undefined("No caller defined"));
  }
  if (def.uses_kwargs) {
    Dict kwargs;
    for (auto& [k, v] : keywords) kwargs.set(Value(k), std::move(v));
    scope_->set("kwargs", Value::dict(std::move(kwargs)));
  } else if (!keywords.empty()) {
    if (pop_keyword("caller")) {
      type_error(cat("macro ", quoted,
                     " was invoked with two values for the special caller argument. This is most likely a bug."));
    }
    type_error(cat("macro ", quoted, " takes no keyword argument ", py_repr(keywords[0].first)));
  }
  if (def.uses_varargs) {
    std::vector<Value> rest;
    for (size_t i = params.size(); i < args.positional.size(); ++i) rest.push_back(args.positional[i]);
    scope_->set("varargs", Value::tuple(std::move(rest)));
  } else if (args.positional.size() > params.size()) {
    type_error(cat("macro ", quoted, " takes not more than ", params.size(), " argument(s)"));
  }
  // Parameters in order: a missing one takes its default, evaluated here, where
  // the parameters before it (and varargs, kwargs, caller) are already bound.
  for (size_t i = 0; i < params.size(); ++i) {
    if (values[i]) {
      scope_->set(params[i].name, std::move(*values[i]));
    } else if (params[i].default_value) {
      scope_->set(params[i].name, eval(*params[i].default_value));
    } else {
      scope_->set(params[i].name, Value::undefined(cat("parameter ", py_repr(params[i].name), " was not provided")));
    }
  }
  std::string buf;
  OutputGuard output(this, &buf);
  exec_body(def.body);
  return Value(std::move(buf));
}

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
