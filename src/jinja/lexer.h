// The Jinja lexer: splits a template into text and the tokens of its tags, as
// Jinja2's lexer does — newlines normalized to "\n", one trailing newline dropped,
// whitespace control ("{%-", "-%}", "{%+", "+%}"), trim_blocks (drop the newline
// after a block or comment tag) and lstrip_blocks (drop the spaces before one on
// its line), {% raw %}, comments, and tag ends that only count outside brackets.
// Throws FormatError with line and column on malformed input.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace tpinfer::jinja {

enum class TokenType : uint8_t {
  kData,        // template text
  kVarBegin,    // {{
  kVarEnd,      // }}
  kBlockBegin,  // {%
  kBlockEnd,    // %}
  kName,
  kString,    // text holds the unescaped value
  kInteger,   // int_value
  kFloat,     // float_value
  kOperator,  // text holds the operator: "+", "//", "(", ...
  kEof,
};

struct Token {
  TokenType type;
  std::string text;
  int64_t int_value = 0;
  double float_value = 0;
  int line = 1;
  int column = 1;
};

struct LexOptions {
  bool trim_blocks = true;    // what Hugging Face transformers sets
  bool lstrip_blocks = true;  // idem
  bool keep_trailing_newline = false;
};

// Ends with a kEof token.
std::vector<Token> lex(std::string_view source, const LexOptions& options);

}  // namespace tpinfer::jinja
