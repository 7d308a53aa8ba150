// A context-free grammar over BYTES, parsed from llama.cpp's GBNF notation.
//
// GBNF: rules `name ::= alternatives` (names of letters, digits, '-' and '_'),
// alternatives separated by `|`, sequences of items, `( ... )` groups, string
// literals "..." and character classes [a-z] / [^"\\] over Unicode code points,
// `.` (any code point), postfix repetition `* + ? {m} {m,} {m,n} {,n}`, and `#`
// comments to the end of the line. Escapes in literals and classes: \n \r \t,
// \\ \" \' \[ \] \- \^, \xNN \uNNNN \UNNNNNNNN (code points). A rule's body may span lines; a new
// rule starts at a line of the form `name ::=`. The start rule is `root`.
//
// The parsed grammar is lowered to bytes: every code-point class becomes the
// alternatives of its UTF-8 encodings (valid UTF-8 only: no surrogates, no
// overlong forms), literals become their UTF-8 bytes, and groups and
// repetitions become auxiliary rules (x* as r ::= x r | empty, a tail call). So
// a recognizer consumes one byte at a time and a token may end inside a code
// point. Left recursion (direct, or through a nullable prefix) is rejected: the
// stack-based matcher could not terminate on it.
//
// Errors: GrammarError "line L:C: expected ..., found ..." for syntax, and
// naming the rule for an undefined reference, a rule defined twice, a missing
// root or left recursion.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "core/error.h"

namespace tpinfer {

class GrammarError : public Error {
 public:
  using Error::Error;
};

// A set of byte values.
struct ByteSet {
  std::array<uint64_t, 4> bits{};
  bool has(uint8_t b) const { return (bits[b >> 6] >> (b & 63)) & 1; }
  void add(uint8_t b) { bits[b >> 6] |= uint64_t{1} << (b & 63); }
  void add_range(uint8_t lo, uint8_t hi) {
    for (unsigned b = lo; b <= hi; ++b) add(static_cast<uint8_t>(b));
  }
  bool operator==(const ByteSet&) const = default;
};

// The lowered grammar: every rule's alternatives laid out in one array of
// elements, each alternative closed by an End element. A position in that array
// is what a matcher's stack holds.
class Grammar {
 public:
  enum class Kind : uint8_t {
    End,    // end of an alternative: return to the caller
    Bytes,  // one byte out of byte_sets()[value]
    Rule,   // a call of rule `value`
  };
  struct Element {
    Kind kind;
    uint32_t value;
  };

  // Parses GBNF text (see above). Throws GrammarError.
  static Grammar parse_gbnf(std::string_view text);

  const std::vector<Element>& elements() const { return elements_; }
  const std::vector<ByteSet>& byte_sets() const { return byte_sets_; }
  // Start positions of rule r's alternatives (an empty alternative starts at
  // an End element).
  const std::vector<uint32_t>& alternatives(uint32_t rule) const { return rule_alts_[rule]; }
  uint32_t root() const { return root_; }
  size_t rule_count() const { return rule_alts_.size(); }
  const std::string& rule_name(uint32_t rule) const { return rule_names_[rule]; }

 private:
  friend class GrammarBuilder;
  std::vector<Element> elements_;
  std::vector<ByteSet> byte_sets_;
  std::vector<std::vector<uint32_t>> rule_alts_;
  std::vector<std::string> rule_names_;
  uint32_t root_ = 0;
};

// The text of a GBNF string literal holding `s` (quotes included, with escapes
// for '"', '\\' and control bytes; other bytes as they are).
std::string gbnf_literal(std::string_view s);

}  // namespace tpinfer
