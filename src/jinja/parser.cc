// The Jinja parser's token stream (expecting tokens, syntax errors that name
// the line and column) and its statements: text, {{ print }}, and the tags
// if/for/set/macro/call/filter/with, break/continue, {% generation %}.
// Expressions are in parser_expressions.cc.
#include "jinja/parser.h"

#include "jinja/parser_internal.h"

namespace tpinfer::jinja {

// ---- token stream ---------------------------------------------------------------

std::string Parser::describe(const Token& t) {
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

void Parser::fail_at(const Token& t, const std::string& message) const {
  throw FormatError(cat("template syntax error at line ", t.line, ", column ", t.column, ": ", message));
}

void Parser::expect_op(std::string_view op) {
  if (!is_op(op)) fail(cat("expected '", op, "', got '", describe(cur()), "'"));
  advance();
}

void Parser::expect(TokenType type, const char* what) {
  if (cur().type != type) fail(cat("expected ", what, ", got '", describe(cur()), "'"));
  advance();
}

std::string Parser::expect_name() {
  if (cur().type != TokenType::kName) fail(cat("expected a name, got '", describe(cur()), "'"));
  std::string n = cur().text;
  advance();
  return n;
}

// ---- statements ------------------------------------------------------------------

// Parses statements until a block tag whose name is in `ends` (left unconsumed).
Body Parser::subparse(Names ends) {
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
Body Parser::parse_body(Names ends) {
  if (is_op(":")) advance();
  expect(TokenType::kBlockEnd, "end of statement block '%}'");
  Nest nest(this);
  return subparse(ends);
}

// Consumes "{% name" of the tag that ended a body; returns the name.
std::string Parser::take_end_tag() {
  expect(TokenType::kBlockBegin, "'{%'");
  return expect_name();
}

void Parser::parse_statement(Body& out) {
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

StmtPtr Parser::parse_if(int line) {
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

StmtPtr Parser::parse_for(int line) {
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

StmtPtr Parser::parse_set(int line) {
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

std::vector<MacroParam> Parser::parse_signature() {
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

StmtPtr Parser::parse_macro(int line) {
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

StmtPtr Parser::parse_call_block(int line) {
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

StmtPtr Parser::parse_filter_block(int line) {
  auto s = std::make_unique<FilterBlockStmt>(line);
  s->filter = parse_filter(nullptr, true);
  s->body = parse_body({"endfilter"});
  take_end_tag();
  end_tag();
  return s;
}

StmtPtr Parser::parse_with(int line) {
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
Target Parser::parse_target_item() {
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

Target Parser::parse_target(Names extra_end) {
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

Body parse(std::string_view source, const ParseOptions& options) {
  return Parser(lex(source, options.lex), options).run();
}

}  // namespace tpinfer::jinja
