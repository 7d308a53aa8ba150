#include "jinja/template.h"

#include "jinja/builtins.h"

namespace tpinfer::jinja {

namespace {

// Jinja refuses to compile a template that uses an unknown filter or test,
// unless the use sits directly in an if statement or an inline if expression
// (a "soft" frame): there the error waits until the code runs. Loops, macros,
// call/filter/set blocks and `with` bodies open frames that are not soft.
class FilterTestCheck {
 public:
  void body(const Body& b, bool soft) {
    for (const StmtPtr& s : b) stmt(*s, soft);
  }

 private:
  [[noreturn]] static void fail(int line, const char* what, const std::string& name) {
    throw FormatError(cat("template syntax error at line ", line, ": no ", what, " named '", name, "'"));
  }

  void args(const CallArgsExpr& a, bool soft) {
    for (const auto& e : a.positional) expr(e, soft);
    for (const auto& kv : a.keyword) expr(kv.second, soft);
    expr(a.star_args, soft);
    expr(a.star_kwargs, soft);
  }

  void expr(const ExprPtr& e, bool soft) {
    if (!e) return;
    switch (e->kind) {
      case ExprKind::kLiteral:
      case ExprKind::kName:
        return;
      case ExprKind::kList:
        for (const auto& x : static_cast<const ListExpr&>(*e).items) expr(x, soft);
        return;
      case ExprKind::kDict:
        for (const auto& kv : static_cast<const DictExpr&>(*e).items) {
          expr(kv.first, soft);
          expr(kv.second, soft);
        }
        return;
      case ExprKind::kGetAttr:
        return expr(static_cast<const GetAttrExpr&>(*e).object, soft);
      case ExprKind::kGetItem:
        expr(static_cast<const GetItemExpr&>(*e).object, soft);
        return expr(static_cast<const GetItemExpr&>(*e).index, soft);
      case ExprKind::kSlice: {
        const auto& x = static_cast<const SliceExpr&>(*e);
        expr(x.start, soft);
        expr(x.stop, soft);
        return expr(x.step, soft);
      }
      case ExprKind::kCall:
        expr(static_cast<const CallExpr&>(*e).callee, soft);
        return args(static_cast<const CallExpr&>(*e).args, soft);
      case ExprKind::kFilter: {
        const auto& f = static_cast<const FilterExpr&>(*e);
        if (!soft && !find_filter(f.name)) fail(f.line, "filter", f.name);
        expr(f.operand, soft);
        return args(f.args, soft);
      }
      case ExprKind::kTest: {
        const auto& t = static_cast<const TestExpr&>(*e);
        if (!soft && !find_test(t.name)) fail(t.line, "test", t.name);
        expr(t.operand, soft);
        return args(t.args, soft);
      }
      case ExprKind::kUnary:
        return expr(static_cast<const UnaryExpr&>(*e).operand, soft);
      case ExprKind::kBinary:
        expr(static_cast<const BinaryExpr&>(*e).left, soft);
        return expr(static_cast<const BinaryExpr&>(*e).right, soft);
      case ExprKind::kCompare:
        expr(static_cast<const CompareExpr&>(*e).first, soft);
        for (const auto& r : static_cast<const CompareExpr&>(*e).rest) expr(r.second, soft);
        return;
      case ExprKind::kLogical:
        expr(static_cast<const LogicalExpr&>(*e).left, soft);
        return expr(static_cast<const LogicalExpr&>(*e).right, soft);
      case ExprKind::kCondExpr: {
        const auto& c = static_cast<const CondExpr&>(*e);
        expr(c.test, true);
        expr(c.then, true);
        return expr(c.otherwise, true);
      }
      case ExprKind::kConcat:
        for (const auto& x : static_cast<const ConcatExpr&>(*e).items) expr(x, soft);
        return;
    }
  }

  void macro(const MacroDef& d) {
    for (const MacroParam& p : d.params) expr(p.default_value, false);
    body(d.body, false);
  }

  void stmt(const Stmt& s, bool soft) {
    switch (s.kind) {
      case StmtKind::kText:
      case StmtKind::kBreak:
      case StmtKind::kContinue:
        return;
      case StmtKind::kPrint:
        return expr(static_cast<const PrintStmt&>(s).expr, soft);
      case StmtKind::kIf: {
        const auto& st = static_cast<const IfStmt&>(s);
        for (const auto& [test, b] : st.branches) {
          expr(test, true);
          body(b, true);
        }
        return body(st.otherwise, true);
      }
      case StmtKind::kFor: {
        const auto& st = static_cast<const ForStmt&>(s);
        expr(st.iter, soft);
        expr(st.filter, false);
        body(st.body, false);
        return body(st.otherwise, false);
      }
      case StmtKind::kSet:
        return expr(static_cast<const SetStmt&>(s).value, soft);
      case StmtKind::kSetBlock:
        expr(static_cast<const SetBlockStmt&>(s).filter, false);
        return body(static_cast<const SetBlockStmt&>(s).body, false);
      case StmtKind::kMacro:
        return macro(static_cast<const MacroStmt&>(s).def);
      case StmtKind::kCallBlock:
        expr(static_cast<const CallBlockStmt&>(s).call, soft);
        return macro(static_cast<const CallBlockStmt&>(s).def);
      case StmtKind::kFilterBlock:
        expr(static_cast<const FilterBlockStmt&>(s).filter, false);
        return body(static_cast<const FilterBlockStmt&>(s).body, false);
      case StmtKind::kWith: {
        const auto& st = static_cast<const WithStmt&>(s);
        for (const auto& a : st.assignments) expr(a.second, soft);
        return body(st.body, false);
      }
      case StmtKind::kScope:
        return body(static_cast<const ScopeStmt&>(s).body, soft);
    }
  }
};

std::shared_ptr<const Body> parse_and_check(std::string_view source, const ParseOptions& options) {
  auto body = std::make_shared<const Body>(parse(source, options));
  FilterTestCheck().body(*body, false);
  return body;
}

}  // namespace

Template::Template(std::string_view source, const ParseOptions& options) : body_(parse_and_check(source, options)) {}

std::string Template::render(const nlohmann::ordered_json& context, const RenderConfig& config) const {
  if (!context.is_object() && !context.is_null()) {
    throw TemplateError("the template context must be a JSON object");
  }
  Dict vars;
  if (context.is_object()) {
    for (const auto& [k, v] : context.items()) vars.set(Value(k), Value::from_json(v));
  }
  return render(vars, config);
}

std::string Template::render(const Dict& vars, const RenderConfig& config) const {
  Interpreter interpreter(config);
  return interpreter.render(*body_, vars);
}

}  // namespace tpinfer::jinja
