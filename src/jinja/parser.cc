#include "jinja/parser.h"

#include <algorithm>
#include <initializer_list>

#include "core/error.h"

namespace tpinfer::jinja {

namespace {

using Names = std::initializer_list<std::string_view>;

class Parser {
 public:
  Parser(std::vector<Token> tokens, const ParseOptions& options)
      : tokens_(std::move(tokens)), max_nesting_(options.max_nesting) {}

  Body run() {
    Body body = subparse({});
    return body;
  }

 private:
  // ---- token stream ---------------------------------------------------------------

  const Token& cur() const { return tokens_[pos_]; }
  const Token& peek(size_t n = 1) const { return tokens_[std::min(pos_ + n, tokens_.size() - 1)]; }
  void advance() {
    if (pos_ + 1 < tokens_.size()) ++pos_;
  }
  bool is_op(std::string_view op) const { return cur().type == TokenType::kOperator && cur().text == op; }
  bool is_name(std::string_view name) const { return cur().type == TokenType::kName && cur().text == name; }
  static bool token_is_name(const Token& t, std::string_view name) {
    return t.type == TokenType::kName && t.text == name;
  }

  static std::string describe(const Token& t) {
    switch (t.type) {
      case TokenType::kData:
        return "template data";
      case TokenType::kVarBegin:
        return "begin of print statement";
      case TokenType::kVarEnd:
        return "end of print statement";
      case TokenType::kBlockBegin:
        return "begin of statement block";
      case TokenType::kBlockEnd:
        return "end of statement block";
      case TokenType::kEof:
        return "end of template";
      case TokenType::kString:
        return "string";
      default:
        return t.text;
    }
  }

  [[noreturn]] void fail_at(const Token& t, const std::string& message) const {
    throw FormatError(cat("template syntax error at line ", t.line, ", column ", t.column, ": ", message));
  }
  [[noreturn]] void fail(const std::string& message) const { fail_at(cur(), message); }

  void expect_op(std::string_view op) {
    if (!is_op(op)) fail(cat("expected '", op, "', got '", describe(cur()), "'"));
    advance();
  }
  void expect(TokenType type, const char* what) {
    if (cur().type != type) fail(cat("expected ", what, ", got '", describe(cur()), "'"));
    advance();
  }
  std::string expect_name() {
    if (cur().type != TokenType::kName) fail(cat("expected a name, got '", describe(cur()), "'"));
    std::string n = cur().text;
    advance();
    return n;
  }

  // Bounds the recursion of the parser (and so of the interpreter).
  struct Nest {
    explicit Nest(Parser* p) : p_(p) {
      if (++p_->nesting_ > p_->max_nesting_) p_->fail(cat("template nested too deeply (limit ", p_->max_nesting_, ")"));
    }
    ~Nest() { --p_->nesting_; }
    Nest(const Nest&) = delete;
    Nest& operator=(const Nest&) = delete;
    Parser* p_;
  };

  // Sets the height of a new node from its children and bounds it.
  ExprPtr finish(ExprPtr e) {
    int h = 0;
    auto see = [&h](const ExprPtr& c) {
      if (c) h = std::max(h, c->height);
    };
    auto see_args = [&](const CallArgsExpr& a) {
      for (const auto& c : a.positional) see(c);
      for (const auto& kv : a.keyword) see(kv.second);
      see(a.star_args);
      see(a.star_kwargs);
    };
    switch (e->kind) {
      case ExprKind::kLiteral:
      case ExprKind::kName:
        break;
      case ExprKind::kList:
        for (const auto& c : static_cast<ListExpr&>(*e).items) see(c);
        break;
      case ExprKind::kDict:
        for (const auto& kv : static_cast<DictExpr&>(*e).items) {
          see(kv.first);
          see(kv.second);
        }
        break;
      case ExprKind::kGetAttr:
        see(static_cast<GetAttrExpr&>(*e).object);
        break;
      case ExprKind::kGetItem:
        see(static_cast<GetItemExpr&>(*e).object);
        see(static_cast<GetItemExpr&>(*e).index);
        break;
      case ExprKind::kSlice: {
        auto& s = static_cast<SliceExpr&>(*e);
        see(s.start);
        see(s.stop);
        see(s.step);
        break;
      }
      case ExprKind::kCall:
        see(static_cast<CallExpr&>(*e).callee);
        see_args(static_cast<CallExpr&>(*e).args);
        break;
      case ExprKind::kFilter:
        see(static_cast<FilterExpr&>(*e).operand);
        see_args(static_cast<FilterExpr&>(*e).args);
        break;
      case ExprKind::kTest:
        see(static_cast<TestExpr&>(*e).operand);
        see_args(static_cast<TestExpr&>(*e).args);
        break;
      case ExprKind::kUnary:
        see(static_cast<UnaryExpr&>(*e).operand);
        break;
      case ExprKind::kBinary:
        see(static_cast<BinaryExpr&>(*e).left);
        see(static_cast<BinaryExpr&>(*e).right);
        break;
      case ExprKind::kCompare:
        see(static_cast<CompareExpr&>(*e).first);
        for (const auto& r : static_cast<CompareExpr&>(*e).rest) see(r.second);
        break;
      case ExprKind::kLogical:
        see(static_cast<LogicalExpr&>(*e).left);
        see(static_cast<LogicalExpr&>(*e).right);
        break;
      case ExprKind::kCondExpr: {
        auto& c = static_cast<CondExpr&>(*e);
        see(c.test);
        see(c.then);
        see(c.otherwise);
        break;
      }
      case ExprKind::kConcat:
        for (const auto& c : static_cast<ConcatExpr&>(*e).items) see(c);
        break;
    }
    e->height = h + 1;
    if (e->height > max_nesting_) fail(cat("expression nested too deeply (limit ", max_nesting_, ")"));
    return e;
  }

  // ---- statements ------------------------------------------------------------------

  // Parses statements until a block tag whose name is in `ends` (left unconsumed).
  Body subparse(Names ends) {
    Body body;
    while (true) {
      const Token& t = cur();
      switch (t.type) {
        case TokenType::kEof:
          if (ends.size() != 0) {
            std::string want;
            for (auto e : ends) want += (want.empty() ? "'" : " or '") + std::string(e) + "'";
            fail(cat("unexpected end of template, expected ", want));
          }
          return body;
        case TokenType::kData:
          body.push_back(std::make_unique<TextStmt>(t.text, t.line));
          advance();
          break;
        case TokenType::kVarBegin: {
          const int line = t.line;
          advance();
          ExprPtr e = parse_tuple(false, true, {}, false);
          expect(TokenType::kVarEnd, "end of print statement '}}'");
          body.push_back(std::make_unique<PrintStmt>(std::move(e), line));
          break;
        }
        case TokenType::kBlockBegin: {
          const Token& name = peek();
          if (name.type != TokenType::kName) fail_at(name, "tag name expected");
          if (std::find(ends.begin(), ends.end(), name.text) != ends.end()) return body;
          advance();
          parse_statement(body);
          break;
        }
        default:
          fail(cat("unexpected '", describe(t), "'"));
      }
    }
  }

  // After a tag's header: an optional ':' and the end of the tag, then the body.
  Body parse_body(Names ends) {
    if (is_op(":")) advance();
    expect(TokenType::kBlockEnd, "end of statement block '%}'");
    Nest nest(this);
    return subparse(ends);
  }

  // Consumes "{% name" of the tag that ended a body; returns the name.
  std::string take_end_tag() {
    expect(TokenType::kBlockBegin, "'{%'");
    return expect_name();
  }
  void end_tag() { expect(TokenType::kBlockEnd, "end of statement block '%}'"); }

  void parse_statement(Body& out) {
    const Token& t = cur();
    const int line = t.line;
    const std::string name = t.text;
    advance();
    if (name == "if") return out.push_back(parse_if(line));
    if (name == "for") return out.push_back(parse_for(line));
    if (name == "set") return out.push_back(parse_set(line));
    if (name == "macro") return out.push_back(parse_macro(line));
    if (name == "call") return out.push_back(parse_call_block(line));
    if (name == "filter") return out.push_back(parse_filter_block(line));
    if (name == "with") return out.push_back(parse_with(line));
    if (name == "generation") {
      auto s = std::make_unique<ScopeStmt>(line);
      s->body = parse_body({"endgeneration"});
      take_end_tag();
      end_tag();
      return out.push_back(std::move(s));
    }
    if (name == "break" || name == "continue") {
      if (loop_depth_ == 0) fail_at(t, cat("'", name, "' outside of a for loop"));
      end_tag();
      return out.push_back(std::make_unique<LoopControlStmt>(name == "break", line));
    }
    if (name == "print") {
      bool first = true;
      while (cur().type != TokenType::kBlockEnd) {
        if (!first) expect_op(",");
        first = false;
        out.push_back(std::make_unique<PrintStmt>(parse_expression(true), line));
      }
      end_tag();
      return;
    }
    for (const char* unsupported : {"extends", "block", "include", "import", "from", "autoescape"}) {
      if (name == unsupported) fail_at(t, cat("the '", name, "' tag is not supported in chat templates"));
    }
    fail_at(t, cat("unknown tag '", name, "'"));
  }

  StmtPtr parse_if(int line) {
    auto s = std::make_unique<IfStmt>(line);
    ExprPtr test = parse_tuple(false, false, {}, false);
    Body body = parse_body({"elif", "else", "endif"});
    s->branches.emplace_back(std::move(test), std::move(body));
    while (true) {
      const std::string tag = take_end_tag();
      if (tag == "elif") {
        ExprPtr t = parse_tuple(false, false, {}, false);
        Body b = parse_body({"elif", "else", "endif"});
        s->branches.emplace_back(std::move(t), std::move(b));
        continue;
      }
      if (tag == "else") {
        s->otherwise = parse_body({"endif"});
        take_end_tag();
      }
      end_tag();
      return s;
    }
  }

  StmtPtr parse_for(int line) {
    auto s = std::make_unique<ForStmt>(line);
    s->target = parse_target({"in"});
    if (!is_name("in")) fail(cat("expected 'in', got '", describe(cur()), "'"));
    advance();
    s->iter = parse_tuple(false, false, {"recursive"}, false);
    if (is_name("if")) {
      advance();
      s->filter = parse_expression(true);
    }
    if (is_name("recursive")) {
      advance();
      s->recursive = true;
    }
    ++loop_depth_;
    s->body = parse_body({"endfor", "else"});
    --loop_depth_;
    if (take_end_tag() == "else") {
      s->otherwise = parse_body({"endfor"});
      take_end_tag();
    }
    end_tag();
    return s;
  }

  StmtPtr parse_set(int line) {
    Target target;
    if (cur().type == TokenType::kName && peek().type == TokenType::kOperator && peek().text == ".") {
      target.kind = Target::Kind::kNamespaceAttr;
      target.line = cur().line;
      target.name = expect_name();
      advance();  // '.'
      target.attr = expect_name();
    } else {
      target = parse_target({});
    }
    if (is_op("=")) {
      advance();
      auto s = std::make_unique<SetStmt>(line);
      s->target = std::move(target);
      s->value = parse_tuple(false, true, {}, false);
      end_tag();
      return s;
    }
    auto s = std::make_unique<SetBlockStmt>(line);
    s->target = std::move(target);
    if (is_op("|")) s->filter = parse_filter(nullptr, false);
    s->body = parse_body({"endset"});
    take_end_tag();
    end_tag();
    return s;
  }

  std::vector<MacroParam> parse_signature() {
    std::vector<MacroParam> params;
    expect_op("(");
    bool any_default = false;
    while (!is_op(")")) {
      if (!params.empty()) expect_op(",");
      MacroParam p;
      p.name = expect_name();
      if (is_op("=")) {
        advance();
        p.default_value = parse_expression(true);
        any_default = true;
      } else if (any_default) {
        fail("non-default argument follows default argument");
      }
      params.push_back(std::move(p));
    }
    expect_op(")");
    return params;
  }

  StmtPtr parse_macro(int line) {
    auto s = std::make_unique<MacroStmt>(line);
    s->def.name = expect_name();
    s->def.params = parse_signature();
    const int saved = loop_depth_;
    loop_depth_ = 0;
    s->def.body = parse_body({"endmacro"});
    loop_depth_ = saved;
    take_end_tag();
    end_tag();
    find_special_names(&s->def);
    return s;
  }

  StmtPtr parse_call_block(int line) {
    auto s = std::make_unique<CallBlockStmt>(line);
    if (is_op("(")) s->def.params = parse_signature();
    const Token& at = cur();
    s->call = parse_expression(true);
    if (s->call->kind != ExprKind::kCall) fail_at(at, "expected a call after 'call'");
    const int saved = loop_depth_;
    loop_depth_ = 0;
    s->def.body = parse_body({"endcall"});
    loop_depth_ = saved;
    take_end_tag();
    end_tag();
    find_special_names(&s->def);
    return s;
  }

  // Which of caller, kwargs and varargs the body of a macro reads (Jinja's
  // find_undeclared: a name assigned before it is read is not special).
  static void find_special_names(MacroDef* def) {
    SpecialNames names;
    for (const StmtPtr& st : def->body) names.visit(*st);
    def->uses_caller = names.found[0];
    def->uses_kwargs = names.found[1];
    def->uses_varargs = names.found[2];
  }

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

  StmtPtr parse_filter_block(int line) {
    auto s = std::make_unique<FilterBlockStmt>(line);
    s->filter = parse_filter(nullptr, true);
    s->body = parse_body({"endfilter"});
    take_end_tag();
    end_tag();
    return s;
  }

  StmtPtr parse_with(int line) {
    auto s = std::make_unique<WithStmt>(line);
    while (cur().type != TokenType::kBlockEnd) {
      if (!s->assignments.empty()) expect_op(",");
      Target t = parse_target({});
      expect_op("=");
      s->assignments.emplace_back(std::move(t), parse_expression(true));
    }
    s->body = parse_body({"endwith"});
    take_end_tag();
    end_tag();
    return s;
  }

  // Names and (possibly parenthesized, nested) tuples of names.
  Target parse_target_item() {
    Target t;
    t.line = cur().line;
    if (cur().type == TokenType::kName) {
      const std::string& n = cur().text;
      if (n == "true" || n == "false" || n == "none" || n == "True" || n == "False" || n == "None") {
        fail("can't assign to a constant");
      }
      t.name = n;
      advance();
      return t;
    }
    if (is_op("(")) {
      Nest nest(this);
      advance();
      t.kind = Target::Kind::kTuple;
      while (!is_op(")")) {
        if (!t.items.empty()) {
          expect_op(",");
          if (is_op(")")) break;
        }
        t.items.push_back(parse_target_item());
      }
      advance();
      return t;
    }
    fail(cat("can't assign to '", describe(cur()), "'"));
  }

  Target parse_target(Names extra_end) {
    Target first = parse_target_item();
    if (!is_op(",")) return first;
    Target t;
    t.kind = Target::Kind::kTuple;
    t.line = first.line;
    t.items.push_back(std::move(first));
    while (is_op(",")) {
      advance();
      if (is_tuple_end(extra_end)) break;
      t.items.push_back(parse_target_item());
    }
    return t;
  }

  // ---- expressions ---------------------------------------------------------------------

  bool is_tuple_end(Names extra_end) const {
    const Token& t = cur();
    if (t.type == TokenType::kVarEnd || t.type == TokenType::kBlockEnd) return true;
    if (t.type == TokenType::kOperator && t.text == ")") return true;
    if (t.type == TokenType::kName) {
      for (auto e : extra_end) {
        if (t.text == e) return true;
      }
    }
    return false;
  }

  ExprPtr parse_tuple(bool simplified, bool with_condexpr, Names extra_end, bool explicit_parentheses) {
    const int line = cur().line;
    std::vector<ExprPtr> items;
    bool is_tuple = false;
    while (true) {
      if (!items.empty()) expect_op(",");
      if (is_tuple_end(extra_end)) break;
      items.push_back(simplified ? parse_primary() : parse_expression(with_condexpr));
      if (is_op(",")) {
        is_tuple = true;
      } else {
        break;
      }
    }
    if (!is_tuple) {
      if (!items.empty()) return std::move(items[0]);
      if (!explicit_parentheses) fail(cat("expected an expression, got '", describe(cur()), "'"));
    }
    auto l = std::make_unique<ListExpr>(true, line);
    l->items = std::move(items);
    return finish(std::move(l));
  }

  ExprPtr parse_expression(bool with_condexpr) { return with_condexpr ? parse_condexpr() : parse_or(); }

  ExprPtr parse_condexpr() {
    Nest nest(this);
    const int line = cur().line;
    ExprPtr expr1 = parse_or();
    while (is_name("if")) {
      advance();
      ExprPtr expr2 = parse_or();
      ExprPtr expr3;
      if (is_name("else")) {
        advance();
        expr3 = parse_condexpr();
      }
      expr1 = finish(std::make_unique<CondExpr>(std::move(expr2), std::move(expr1), std::move(expr3), line));
    }
    return expr1;
  }

  ExprPtr parse_or() {
    const int line = cur().line;
    ExprPtr left = parse_and();
    while (is_name("or")) {
      advance();
      left = finish(std::make_unique<LogicalExpr>(false, std::move(left), parse_and(), line));
    }
    return left;
  }

  ExprPtr parse_and() {
    const int line = cur().line;
    ExprPtr left = parse_not();
    while (is_name("and")) {
      advance();
      left = finish(std::make_unique<LogicalExpr>(true, std::move(left), parse_not(), line));
    }
    return left;
  }

  ExprPtr parse_not() {
    if (is_name("not")) {
      Nest nest(this);
      const int line = cur().line;
      advance();
      return finish(std::make_unique<UnaryExpr>(UnaryOp::kNot, parse_not(), line));
    }
    return parse_compare();
  }

  ExprPtr parse_compare() {
    const int line = cur().line;
    ExprPtr first = parse_math1();
    std::unique_ptr<CompareExpr> cmp;
    while (true) {
      CompareOp op;
      if (cur().type == TokenType::kOperator && cur().text == "==") {
        op = CompareOp::kEq;
      } else if (is_op("!=")) {
        op = CompareOp::kNe;
      } else if (is_op("<")) {
        op = CompareOp::kLt;
      } else if (is_op("<=")) {
        op = CompareOp::kLe;
      } else if (is_op(">")) {
        op = CompareOp::kGt;
      } else if (is_op(">=")) {
        op = CompareOp::kGe;
      } else if (is_name("in")) {
        op = CompareOp::kIn;
      } else if (is_name("not") && token_is_name(peek(), "in")) {
        advance();
        op = CompareOp::kNotIn;
      } else {
        break;
      }
      advance();
      if (!cmp) cmp = std::make_unique<CompareExpr>(std::move(first), line);
      cmp->rest.emplace_back(op, parse_math1());
    }
    if (!cmp) return first;
    return finish(std::move(cmp));
  }

  ExprPtr parse_math1() {
    const int line = cur().line;
    ExprPtr left = parse_concat();
    while (is_op("+") || is_op("-")) {
      const BinaryOp op = is_op("+") ? BinaryOp::kAdd : BinaryOp::kSub;
      advance();
      left = finish(std::make_unique<BinaryExpr>(op, std::move(left), parse_concat(), line));
    }
    return left;
  }

  ExprPtr parse_concat() {
    const int line = cur().line;
    ExprPtr first = parse_math2();
    if (!is_op("~")) return first;
    auto c = std::make_unique<ConcatExpr>(line);
    c->items.push_back(std::move(first));
    while (is_op("~")) {
      advance();
      c->items.push_back(parse_math2());
    }
    return finish(std::move(c));
  }

  ExprPtr parse_math2() {
    const int line = cur().line;
    ExprPtr left = parse_pow();
    while (true) {
      BinaryOp op;
      if (is_op("*")) {
        op = BinaryOp::kMul;
      } else if (is_op("/")) {
        op = BinaryOp::kDiv;
      } else if (is_op("//")) {
        op = BinaryOp::kFloorDiv;
      } else if (is_op("%")) {
        op = BinaryOp::kMod;
      } else {
        break;
      }
      advance();
      left = finish(std::make_unique<BinaryExpr>(op, std::move(left), parse_pow(), line));
    }
    return left;
  }

  ExprPtr parse_pow() {
    const int line = cur().line;
    ExprPtr left = parse_unary(true);
    while (is_op("**")) {
      advance();
      left = finish(std::make_unique<BinaryExpr>(BinaryOp::kPow, std::move(left), parse_unary(true), line));
    }
    return left;
  }

  ExprPtr parse_unary(bool with_filter) {
    Nest nest(this);
    const int line = cur().line;
    ExprPtr node;
    if (is_op("-")) {
      advance();
      node = finish(std::make_unique<UnaryExpr>(UnaryOp::kNeg, parse_unary(false), line));
    } else if (is_op("+")) {
      advance();
      node = finish(std::make_unique<UnaryExpr>(UnaryOp::kPos, parse_unary(false), line));
    } else {
      node = parse_primary();
    }
    node = parse_postfix(std::move(node));
    if (with_filter) node = parse_filter_expr(std::move(node));
    return node;
  }

  ExprPtr parse_primary() {
    const Token& t = cur();
    const int line = t.line;
    switch (t.type) {
      case TokenType::kName: {
        ExprPtr e;
        if (t.text == "true" || t.text == "True") {
          e = std::make_unique<LiteralExpr>(Value(true), line);
        } else if (t.text == "false" || t.text == "False") {
          e = std::make_unique<LiteralExpr>(Value(false), line);
        } else if (t.text == "none" || t.text == "None") {
          e = std::make_unique<LiteralExpr>(Value::none(), line);
        } else {
          e = std::make_unique<NameExpr>(t.text, line);
        }
        advance();
        return e;
      }
      case TokenType::kString: {
        std::string s;
        while (cur().type == TokenType::kString) {
          s += cur().text;
          advance();
        }
        return std::make_unique<LiteralExpr>(Value(std::move(s)), line);
      }
      case TokenType::kInteger: {
        auto e = std::make_unique<LiteralExpr>(Value(t.int_value), line);
        advance();
        return e;
      }
      case TokenType::kFloat: {
        auto e = std::make_unique<LiteralExpr>(Value(t.float_value), line);
        advance();
        return e;
      }
      case TokenType::kOperator:
        if (t.text == "(") {
          advance();
          ExprPtr e = parse_tuple(false, true, {}, true);
          expect_op(")");
          return e;
        }
        if (t.text == "[") return parse_list();
        if (t.text == "{") return parse_dict();
        break;
      default:
        break;
    }
    fail(cat("unexpected '", describe(t), "'"));
  }

  ExprPtr parse_list() {
    auto l = std::make_unique<ListExpr>(false, cur().line);
    expect_op("[");
    while (!is_op("]")) {
      if (!l->items.empty()) expect_op(",");
      if (is_op("]")) break;
      l->items.push_back(parse_expression(true));
    }
    expect_op("]");
    return finish(std::move(l));
  }

  ExprPtr parse_dict() {
    auto d = std::make_unique<DictExpr>(cur().line);
    expect_op("{");
    while (!is_op("}")) {
      if (!d->items.empty()) expect_op(",");
      if (is_op("}")) break;
      ExprPtr k = parse_expression(true);
      expect_op(":");
      ExprPtr v = parse_expression(true);
      d->items.emplace_back(std::move(k), std::move(v));
    }
    expect_op("}");
    return finish(std::move(d));
  }

  ExprPtr parse_postfix(ExprPtr node) {
    while (true) {
      if (is_op(".") || is_op("[")) {
        node = parse_subscript(std::move(node));
      } else if (is_op("(")) {
        node = parse_call(std::move(node));
      } else {
        return node;
      }
    }
  }

  ExprPtr parse_filter_expr(ExprPtr node) {
    while (true) {
      if (is_op("|")) {
        node = parse_filter(std::move(node), false);
      } else if (is_name("is")) {
        node = parse_test(std::move(node));
      } else if (is_op("(")) {
        node = parse_call(std::move(node));
      } else {
        return node;
      }
    }
  }

  ExprPtr parse_subscript(ExprPtr node) {
    const int line = cur().line;
    if (is_op(".")) {
      advance();
      const Token& a = cur();
      if (a.type == TokenType::kName) {
        std::string n = a.text;
        advance();
        return finish(std::make_unique<GetAttrExpr>(std::move(node), std::move(n), line));
      }
      if (a.type == TokenType::kInteger) {
        auto idx = std::make_unique<LiteralExpr>(Value(a.int_value), a.line);
        advance();
        return finish(std::make_unique<GetItemExpr>(std::move(node), std::move(idx), line));
      }
      fail("expected name or number after '.'");
    }
    expect_op("[");
    std::vector<ExprPtr> args;
    while (!is_op("]")) {
      if (!args.empty()) expect_op(",");
      args.push_back(parse_subscribed());
    }
    expect_op("]");
    ExprPtr index;
    if (args.size() == 1) {
      index = std::move(args[0]);
    } else {
      auto t = std::make_unique<ListExpr>(true, line);
      t->items = std::move(args);
      index = finish(std::move(t));
    }
    return finish(std::make_unique<GetItemExpr>(std::move(node), std::move(index), line));
  }

  ExprPtr parse_subscribed() {
    const int line = cur().line;
    auto s = std::make_unique<SliceExpr>(line);
    if (is_op(":")) {
      advance();
    } else {
      ExprPtr e = parse_expression(true);
      if (!is_op(":")) return e;
      advance();
      s->start = std::move(e);
    }
    if (!is_op(":") && !is_op("]") && !is_op(",")) s->stop = parse_expression(true);
    if (is_op(":")) {
      advance();
      if (!is_op("]") && !is_op(",")) s->step = parse_expression(true);
    }
    return finish(std::move(s));
  }

  CallArgsExpr parse_call_args() {
    CallArgsExpr a;
    const Token& open = cur();
    expect_op("(");
    bool require_comma = false;
    auto ensure = [&](bool ok) {
      if (!ok) fail_at(open, "invalid syntax for function call expression");
    };
    while (!is_op(")")) {
      if (require_comma) {
        expect_op(",");
        if (is_op(")")) break;
      }
      if (is_op("*")) {
        ensure(!a.star_args && !a.star_kwargs);
        advance();
        a.star_args = parse_expression(true);
      } else if (is_op("**")) {
        ensure(!a.star_kwargs);
        advance();
        a.star_kwargs = parse_expression(true);
      } else if (cur().type == TokenType::kName && peek().type == TokenType::kOperator && peek().text == "=") {
        ensure(!a.star_kwargs);
        std::string key = cur().text;
        advance();
        advance();
        a.keyword.emplace_back(std::move(key), parse_expression(true));
      } else {
        ensure(!a.star_args && !a.star_kwargs && a.keyword.empty());
        a.positional.push_back(parse_expression(true));
      }
      require_comma = true;
    }
    expect_op(")");
    return a;
  }

  ExprPtr parse_call(ExprPtr callee) {
    auto c = std::make_unique<CallExpr>(std::move(callee), cur().line);
    c->args = parse_call_args();
    return finish(std::move(c));
  }

  std::string dotted_name() {
    std::string name = expect_name();
    while (is_op(".")) {
      advance();
      name.push_back('.');
      name += expect_name();
    }
    return name;
  }

  ExprPtr parse_filter(ExprPtr node, bool start_inline) {
    while (is_op("|") || start_inline) {
      if (!start_inline) advance();
      start_inline = false;
      const int line = cur().line;
      auto f = std::make_unique<FilterExpr>(std::move(node), dotted_name(), line);
      if (is_op("(")) f->args = parse_call_args();
      node = finish(std::move(f));
    }
    return node;
  }

  ExprPtr parse_test(ExprPtr node) {
    const int line = cur().line;
    advance();  // 'is'
    bool negated = false;
    if (is_name("not")) {
      advance();
      negated = true;
    }
    auto t = std::make_unique<TestExpr>(std::move(node), dotted_name(), line);
    const Token& c = cur();
    if (is_op("(")) {
      t->args = parse_call_args();
    } else if ((c.type == TokenType::kName || c.type == TokenType::kString || c.type == TokenType::kInteger ||
                c.type == TokenType::kFloat || is_op("[") || is_op("{")) &&
               !is_name("else") && !is_name("or") && !is_name("and")) {
      if (is_name("is")) fail("you cannot chain multiple tests with 'is'");
      t->args.positional.push_back(parse_postfix(parse_primary()));
    }
    ExprPtr e = finish(std::move(t));
    if (negated) e = finish(std::make_unique<UnaryExpr>(UnaryOp::kNot, std::move(e), line));
    return e;
  }

  std::vector<Token> tokens_;
  size_t pos_ = 0;
  const int max_nesting_;
  int nesting_ = 0;
  int loop_depth_ = 0;
};

}  // namespace

Body parse(std::string_view source, const ParseOptions& options) {
  return Parser(lex(source, options.lex), options).run();
}

}  // namespace tpinfer::jinja
