// Which of the special names caller, kwargs and varargs a macro's body reads,
// as Jinja2 decides it (find_undeclared): a walk over the body's statements and
// expressions, where a name assigned before it is read is not special. The
// interpreter binds only the ones a macro reads.
#include "jinja/parser_internal.h"

namespace tpinfer::jinja {

namespace {

struct SpecialNames {
  bool found[3] = {false, false, false};
  bool dropped[3] = {false, false, false};

  static int slot(const std::string& n) { return n == "caller" ? 0 : n == "kwargs" ? 1 : n == "varargs" ? 2 : -1; }
  void load(const std::string& n) {
    const int i = slot(n);
    if (i >= 0 && !dropped[i]) found[i] = true;
  }
  void store(const std::string& n) {
    const int i = slot(n);
    if (i >= 0 && !found[i]) dropped[i] = true;
  }
  void target(const Target& t) {
    if (t.kind == Target::Kind::kTuple) {
      for (const Target& x : t.items) target(x);
    } else if (t.kind == Target::Kind::kName) {
      store(t.name);
    } else {
      load(t.name);
    }
  }
  void args(const CallArgsExpr& a) {
    for (const auto& e : a.positional) visit(e);
    for (const auto& kv : a.keyword) visit(kv.second);
    visit(a.star_args);
    visit(a.star_kwargs);
  }
  void visit(const ExprPtr& e) {
    if (e) visit(*e);
  }
  void visit(const Expr& e) {
    switch (e.kind) {
      case ExprKind::kLiteral:
        return;
      case ExprKind::kName:
        return load(static_cast<const NameExpr&>(e).name);
      case ExprKind::kList:
        for (const auto& x : static_cast<const ListExpr&>(e).items) visit(x);
        return;
      case ExprKind::kDict:
        for (const auto& kv : static_cast<const DictExpr&>(e).items) {
          visit(kv.first);
          visit(kv.second);
        }
        return;
      case ExprKind::kGetAttr:
        return visit(static_cast<const GetAttrExpr&>(e).object);
      case ExprKind::kGetItem:
        visit(static_cast<const GetItemExpr&>(e).object);
        return visit(static_cast<const GetItemExpr&>(e).index);
      case ExprKind::kSlice: {
        const auto& x = static_cast<const SliceExpr&>(e);
        visit(x.start);
        visit(x.stop);
        return visit(x.step);
      }
      case ExprKind::kCall:
        visit(static_cast<const CallExpr&>(e).callee);
        return args(static_cast<const CallExpr&>(e).args);
      case ExprKind::kFilter:
        visit(static_cast<const FilterExpr&>(e).operand);
        return args(static_cast<const FilterExpr&>(e).args);
      case ExprKind::kTest:
        visit(static_cast<const TestExpr&>(e).operand);
        return args(static_cast<const TestExpr&>(e).args);
      case ExprKind::kUnary:
        return visit(static_cast<const UnaryExpr&>(e).operand);
      case ExprKind::kBinary:
        visit(static_cast<const BinaryExpr&>(e).left);
        return visit(static_cast<const BinaryExpr&>(e).right);
      case ExprKind::kCompare:
        visit(static_cast<const CompareExpr&>(e).first);
        for (const auto& r : static_cast<const CompareExpr&>(e).rest) visit(r.second);
        return;
      case ExprKind::kLogical:
        visit(static_cast<const LogicalExpr&>(e).left);
        return visit(static_cast<const LogicalExpr&>(e).right);
      case ExprKind::kCondExpr: {
        const auto& c = static_cast<const CondExpr&>(e);
        visit(c.test);
        visit(c.then);
        return visit(c.otherwise);
      }
      case ExprKind::kConcat:
        for (const auto& x : static_cast<const ConcatExpr&>(e).items) visit(x);
        return;
    }
  }
  void visit_body(const Body& b) {
    for (const StmtPtr& st : b) visit(*st);
  }
  void visit_def(const MacroDef& d) {
    for (const MacroParam& p : d.params) store(p.name);
    for (const MacroParam& p : d.params) visit(p.default_value);
    visit_body(d.body);
  }
  void visit(const Stmt& st) {
    switch (st.kind) {
      case StmtKind::kText:
      case StmtKind::kBreak:
      case StmtKind::kContinue:
        return;
      case StmtKind::kPrint:
        return visit(static_cast<const PrintStmt&>(st).expr);
      case StmtKind::kIf:
        for (const auto& [test, body] : static_cast<const IfStmt&>(st).branches) {
          visit(test);
          visit_body(body);
        }
        return visit_body(static_cast<const IfStmt&>(st).otherwise);
      case StmtKind::kFor: {
        const auto& f = static_cast<const ForStmt&>(st);
        target(f.target);
        visit(f.iter);
        visit_body(f.body);
        visit_body(f.otherwise);
        return visit(f.filter);
      }
      case StmtKind::kSet:
        target(static_cast<const SetStmt&>(st).target);
        return visit(static_cast<const SetStmt&>(st).value);
      case StmtKind::kSetBlock:
        target(static_cast<const SetBlockStmt&>(st).target);
        visit(static_cast<const SetBlockStmt&>(st).filter);
        return visit_body(static_cast<const SetBlockStmt&>(st).body);
      case StmtKind::kMacro:
        store(static_cast<const MacroStmt&>(st).def.name);
        return visit_def(static_cast<const MacroStmt&>(st).def);
      case StmtKind::kCallBlock:
        visit(static_cast<const CallBlockStmt&>(st).call);
        return visit_def(static_cast<const CallBlockStmt&>(st).def);
      case StmtKind::kFilterBlock:
        visit_body(static_cast<const FilterBlockStmt&>(st).body);
        return visit(static_cast<const FilterBlockStmt&>(st).filter);
      case StmtKind::kWith: {
        const auto& w = static_cast<const WithStmt&>(st);
        for (const auto& a : w.assignments) target(a.first);
        for (const auto& a : w.assignments) visit(a.second);
        return visit_body(w.body);
      }
      case StmtKind::kScope:
        return visit_body(static_cast<const ScopeStmt&>(st).body);
    }
  }
};

}  // namespace

// Which of caller, kwargs and varargs the body of a macro reads (Jinja's
// find_undeclared: a name assigned before it is read is not special).
void find_special_names(MacroDef* def) {
  SpecialNames names;
  for (const StmtPtr& st : def->body) names.visit(*st);
  def->uses_caller = names.found[0];
  def->uses_kwargs = names.found[1];
  def->uses_varargs = names.found[2];
}

}  // namespace tpinfer::jinja
