// The Interpreter: rendering a template's statements (print, if, for with its
// loop variable, set, macro and call blocks, filter blocks, with) in Jinja2's
// scopes, macros with Jinja's argument binding, and the accounting that bounds
// every render (steps, loop iterations, work, output size). Expressions are in
// interpreter_expressions.cc, Python's operators in operators.cc.
#include "jinja/interpreter.h"

#include <ctime>

#include "jinja/builtins.h"
#include "jinja/interpreter_internal.h"
#include "jinja/text.h"

namespace tpinfer::jinja {

namespace {

[[noreturn]] void type_error(const std::string& message) { throw TemplateError("TypeError: " + message); }

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

}  // namespace

// ---- scopes ------------------------------------------------------------------------

const Value* Scope::find(const std::string& name) const {
  for (const Scope* s = this; s; s = s->parent_.get()) {
    const auto it = s->vars_.find(name);
    if (it != s->vars_.end()) return &it->second;
  }
  return nullptr;
}

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

}  // namespace tpinfer::jinja
