// The Jinja parser (parser.h) as the files that define it share it: a
// recursive-descent Parser, one method a grammar rule, over the lexer's tokens.
// parser.cc holds the token stream and the statements, parser_expressions.cc the
// expressions (Jinja2's operator precedence), special_names.cc the analysis of
// which special names a macro body reads. Internal to the jinja layer.
#pragma once

#include <algorithm>
#include <initializer_list>
#include <string>
#include <string_view>
#include <vector>

#include "core/error.h"
#include "jinja/parser.h"

namespace tpinfer::jinja {

using Names = std::initializer_list<std::string_view>;

// Sets def's uses_caller, uses_kwargs and uses_varargs (special_names.cc).
void find_special_names(MacroDef* def);

class Parser {
 public:
  Parser(std::vector<Token> tokens, const ParseOptions& options)
      : tokens_(std::move(tokens)), max_nesting_(options.max_nesting) {}

  Body run() {
    Body body = subparse({});
    return body;
  }

 private:
  // ---- token stream (parser.cc)

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
  static std::string describe(const Token& t);
  [[noreturn]] void fail_at(const Token& t, const std::string& message) const;
  [[noreturn]] void fail(const std::string& message) const { fail_at(cur(), message); }
  void expect_op(std::string_view op);
  void expect(TokenType type, const char* what);
  std::string expect_name();

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

  // ---- statements (parser.cc)

  Body subparse(Names ends);
  Body parse_body(Names ends);
  std::string take_end_tag();
  void end_tag() { expect(TokenType::kBlockEnd, "end of statement block '%}'"); }
  void parse_statement(Body& out);
  StmtPtr parse_if(int line);
  StmtPtr parse_for(int line);
  StmtPtr parse_set(int line);
  std::vector<MacroParam> parse_signature();
  StmtPtr parse_macro(int line);
  StmtPtr parse_call_block(int line);
  StmtPtr parse_filter_block(int line);
  StmtPtr parse_with(int line);
  Target parse_target_item();
  Target parse_target(Names extra_end);

  // ---- expressions (parser_expressions.cc)

  ExprPtr finish(ExprPtr e);
  bool is_tuple_end(Names extra_end) const;
  ExprPtr parse_tuple(bool simplified, bool with_condexpr, Names extra_end, bool explicit_parentheses);
  ExprPtr parse_expression(bool with_condexpr) { return with_condexpr ? parse_condexpr() : parse_or(); }
  ExprPtr parse_condexpr();
  ExprPtr parse_or();
  ExprPtr parse_and();
  ExprPtr parse_not();
  ExprPtr parse_compare();
  ExprPtr parse_math1();
  ExprPtr parse_concat();
  ExprPtr parse_math2();
  ExprPtr parse_pow();
  ExprPtr parse_unary(bool with_filter);
  ExprPtr parse_primary();
  ExprPtr parse_list();
  ExprPtr parse_dict();
  ExprPtr parse_postfix(ExprPtr node);
  ExprPtr parse_filter_expr(ExprPtr node);
  ExprPtr parse_subscript(ExprPtr node);
  ExprPtr parse_subscribed();
  CallArgsExpr parse_call_args();
  ExprPtr parse_call(ExprPtr callee);
  std::string dotted_name();
  ExprPtr parse_filter(ExprPtr node, bool start_inline);
  ExprPtr parse_test(ExprPtr node);

  std::vector<Token> tokens_;
  size_t pos_ = 0;
  const int max_nesting_;
  int nesting_ = 0;
  int loop_depth_ = 0;
};

}  // namespace tpinfer::jinja
