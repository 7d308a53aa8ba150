// The Jinja parser's expressions, with Jinja2's operator precedence (lowest
// first): conditional expression, or, and, not, comparisons and in, + and -,
// ~, * / // %, **, unary - and +, then filters, tests, calls, attributes and
// subscripts (slices) on literals, names, lists, dicts and parenthesized
// tuples. Every node records its height, which bounds the nesting.
#include "jinja/parser_internal.h"

namespace tpinfer::jinja {

// Sets the height of a new node from its children and bounds it.
ExprPtr Parser::finish(ExprPtr e) {
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

bool Parser::is_tuple_end(Names extra_end) const {
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

ExprPtr Parser::parse_tuple(bool simplified, bool with_condexpr, Names extra_end, bool explicit_parentheses) {
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

ExprPtr Parser::parse_condexpr() {
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

ExprPtr Parser::parse_or() {
  const int line = cur().line;
  ExprPtr left = parse_and();
  while (is_name("or")) {
    advance();
    left = finish(std::make_unique<LogicalExpr>(false, std::move(left), parse_and(), line));
  }
  return left;
}

ExprPtr Parser::parse_and() {
  const int line = cur().line;
  ExprPtr left = parse_not();
  while (is_name("and")) {
    advance();
    left = finish(std::make_unique<LogicalExpr>(true, std::move(left), parse_not(), line));
  }
  return left;
}

ExprPtr Parser::parse_not() {
  if (is_name("not")) {
    Nest nest(this);
    const int line = cur().line;
    advance();
    return finish(std::make_unique<UnaryExpr>(UnaryOp::kNot, parse_not(), line));
  }
  return parse_compare();
}

ExprPtr Parser::parse_compare() {
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

ExprPtr Parser::parse_math1() {
  const int line = cur().line;
  ExprPtr left = parse_concat();
  while (is_op("+") || is_op("-")) {
    const BinaryOp op = is_op("+") ? BinaryOp::kAdd : BinaryOp::kSub;
    advance();
    left = finish(std::make_unique<BinaryExpr>(op, std::move(left), parse_concat(), line));
  }
  return left;
}

ExprPtr Parser::parse_concat() {
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

ExprPtr Parser::parse_math2() {
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

ExprPtr Parser::parse_pow() {
  const int line = cur().line;
  ExprPtr left = parse_unary(true);
  while (is_op("**")) {
    advance();
    left = finish(std::make_unique<BinaryExpr>(BinaryOp::kPow, std::move(left), parse_unary(true), line));
  }
  return left;
}

ExprPtr Parser::parse_unary(bool with_filter) {
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

ExprPtr Parser::parse_primary() {
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

ExprPtr Parser::parse_list() {
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

ExprPtr Parser::parse_dict() {
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

ExprPtr Parser::parse_postfix(ExprPtr node) {
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

ExprPtr Parser::parse_filter_expr(ExprPtr node) {
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

ExprPtr Parser::parse_subscript(ExprPtr node) {
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

ExprPtr Parser::parse_subscribed() {
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

CallArgsExpr Parser::parse_call_args() {
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

ExprPtr Parser::parse_call(ExprPtr callee) {
  auto c = std::make_unique<CallExpr>(std::move(callee), cur().line);
  c->args = parse_call_args();
  return finish(std::move(c));
}

std::string Parser::dotted_name() {
  std::string name = expect_name();
  while (is_op(".")) {
    advance();
    name.push_back('.');
    name += expect_name();
  }
  return name;
}

ExprPtr Parser::parse_filter(ExprPtr node, bool start_inline) {
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

ExprPtr Parser::parse_test(ExprPtr node) {
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

}  // namespace tpinfer::jinja
