// The Jinja interpreter: renders a parsed template (jinja/ast.h) with Jinja2's
// semantics as Hugging Face transformers configures it — an immutable sandbox
// (list.append, dict.update ... raise SecurityError), undefined values that print
// as "" and fail when used, Python operators and str()/repr(), and the scoping
// rules of Jinja2: `for` bodies (each iteration), macros, call blocks, filter
// blocks, block sets and `with` get their own scope; `if` does not; macros see
// the variables of the scope they were defined in at call time.
//
// Every render is bounded (Limits): evaluation steps, loop iterations, runtime
// nesting (macro recursion), output size, the size of any value built, and the
// work (bytes built, scanned or compared), so a hostile template ends with a
// TemplateError within seconds, never a crash or a hang. One Interpreter renders
// once; it is not thread-safe, the parsed template it reads is.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <unordered_map>

#include "jinja/ast.h"

namespace tpinfer::jinja {

struct Limits {
  int64_t max_steps = 50'000'000;             // statements + expression nodes evaluated
  int64_t max_loop_iterations = 1'000'000;    // over all loops of one render
  int max_depth = 400;                        // runtime nesting: statements, expressions, calls
  int max_call_depth = 150;                   // macro calls in progress
  size_t max_output_bytes = 64u << 20;        // the output, and any one value built
  int64_t max_work_bytes = int64_t{1} << 30;  // bytes built, scanned or compared (see charge)
};

struct RenderConfig {
  Limits limits;
  // strftime_now(format) of the template globals; empty: the local time now.
  std::function<std::string(const std::string& format)> strftime_now;
};

// A variable scope; lookups walk up the parents.
class Scope {
 public:
  explicit Scope(std::shared_ptr<Scope> parent) : parent_(std::move(parent)) {}
  const Value* find(const std::string& name) const;
  void set(const std::string& name, Value v) { vars_[name] = std::move(v); }

 private:
  std::shared_ptr<Scope> parent_;
  std::unordered_map<std::string, Value> vars_;
};

class Interpreter {
 public:
  explicit Interpreter(const RenderConfig& config);
  Interpreter(const Interpreter&) = delete;
  Interpreter& operator=(const Interpreter&) = delete;

  // Renders `body` with `vars` as the template's context (over the globals).
  std::string render(const Body& body, const Dict& vars);

  // ---- services for the built-in filters, tests and methods (builtins.h) ----
  // obj.name: an attribute (method) first, then an item (Jinja's sandboxed getattr).
  Value get_attr(const Value& obj, const std::string& name);
  // obj[key]: an item first, then, for a string key, an attribute.
  Value get_item(const Value& obj, const Value& key);
  Value call(const Value& callee, CallArgs& args);
  // The elements of iterating v (jinja::iterate), accounted for as work.
  std::vector<Value> iterate(const Value& v);
  Value filter(const std::string& name, const Value& operand, CallArgs& args);
  bool test(const std::string& name, const Value& operand, CallArgs& args);
  // Accounts for a value of `bytes` an operation builds; throws past the work
  // limit, or when the value would exceed max_output_bytes.
  void charge(size_t bytes);
  // Accounts for work that builds nothing (scanning, comparing); throws past
  // the work limit.
  void charge_work(size_t bytes);
  // Accounts for decoding s code point by code point (case mapping, strip,
  // split, slicing), which costs more than copying its bytes.
  void charge_scan(const std::string& s) { charge_work(s.size() * kPerCodePointWork); }
  static constexpr size_t kPerCodePointWork = 16;
  std::string strftime_now(const std::string& format) const;

  // ---- callables defined by the template ----
  Value invoke_macro(const MacroDef& def, const std::weak_ptr<Scope>& closure, CallArgs& args);
  Value run_recursive_loop(const ForStmt& stmt, const std::weak_ptr<Scope>& scope, const Value& items, int depth);

 private:
  enum class Flow { kNormal, kBreak, kContinue };
  class DepthGuard;
  class ScopeGuard;
  class OutputGuard;

  void tick();
  void write(std::string_view text);

  Flow exec_body(const Body& body);
  Flow exec(const Stmt& s);
  Flow exec_for(const ForStmt& s, const Value& iterable, int depth);
  void exec_call_block(const CallBlockStmt& s);
  void assign(const Target& t, const Value& v);
  Flow capture_body(const Body& body, std::string* text);  // in a new scope

  Value eval(const Expr& e);
  Value eval_name(const NameExpr& e);
  Value eval_list(const ListExpr& e);
  Value eval_dict(const DictExpr& e);
  Value eval_get_item(const GetItemExpr& e);
  Value eval_call(const CallExpr& e, std::optional<Value> caller = std::nullopt);
  Value eval_filter(const FilterExpr& e, const Value* base);
  Value eval_test(const TestExpr& e);
  Value eval_unary(const UnaryExpr& e);
  Value eval_compare(const CompareExpr& e);
  Value eval_concat(const ConcatExpr& e);
  CallArgs eval_args(const CallArgsExpr& a);
  Value slice(const Value& obj, const SliceExpr& s);

  const RenderConfig& config_;
  std::shared_ptr<Scope> globals_;
  std::shared_ptr<Scope> scope_;
  std::string* out_ = nullptr;
  int64_t steps_ = 0;
  int64_t iterations_ = 0;
  int64_t work_ = 0;
  int depth_ = 0;
  int call_depth_ = 0;
};

// Python operators on values (as the interpreter applies them).
Value binary_op(Interpreter& in, BinaryOp op, const Value& a, const Value& b);
bool contains(const Value& container, const Value& item);  // item in container

}  // namespace tpinfer::jinja
