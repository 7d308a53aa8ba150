// The Jinja parser: builds the syntax tree (jinja/ast.h) of a template with
// Jinja2's grammar and operator precedence — for/if/set/macro/call/filter/with,
// break/continue (the loopcontrols extension), {% generation %} (transformers'
// extension, rendered inline), filters, tests, slices, calls with keyword
// arguments. Template inheritance and includes (extends, block, include, import)
// need a loader that chat templates do not have and are rejected.
//
// Throws FormatError("template syntax error at line L, column C: ...") on any
// malformed input, including expressions or blocks nested deeper than
// max_nesting (so that no input can exhaust the stack).
#pragma once

#include <string_view>

#include "jinja/ast.h"
#include "jinja/lexer.h"

namespace tpinfer::jinja {

struct ParseOptions {
  LexOptions lex;
  int max_nesting = 128;  // expression and block nesting
};

Body parse(std::string_view source, const ParseOptions& options);

}  // namespace tpinfer::jinja
