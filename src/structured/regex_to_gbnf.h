// JSON Schema's `pattern` (an ECMA-262 regex subset) as GBNF over the text
// between a JSON string's quotes: each regex character stands for the
// decoded code point, so '"' and '\\' and control characters appear in their
// escaped forms (\" \\ \n \t \r \b \f, \u00XX for the other controls) and
// every other character raw. Anchors follow ECMAScript: ^ and $ bind to their
// top-level alternative, and an unanchored side may be surrounded by any
// characters (the pattern matches anywhere in the string).
//
// Supported: literals, escapes \d \w \s \D \W \S \n \r \t \f \v \0 \xNN
// \uNNNN and escaped punctuation, classes [...] / [^...] with ranges, '.'
// (any character but line terminators), groups (...) and (?:...), '|', the
// quantifiers * + ? {m} {m,} {m,n} (a lazy '?' suffix is ignored: the same
// language), ^ at the start and $ at the end of a top-level alternative.
// Anything else (lookaround, backreferences, \b, \p{..}, named groups,
// possessive quantifiers) throws SchemaError naming 'pattern', the feature and
// its offset.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace tpinfer {

using CodepointRanges = std::vector<std::pair<uint32_t, uint32_t>>;  // inclusive

// The GBNF of one JSON string character (as written between the quotes)
// whose decoded code point is in `set`.
std::string json_string_char_gbnf(const CodepointRanges& set);
// The code points (0 .. U+10FFFF) outside `set`.
CodepointRanges invert_ranges(const CodepointRanges& set);

// `path` is the schema's JSON pointer, for the error message.
std::string regex_to_gbnf(std::string_view pattern, const std::string& path);

}  // namespace tpinfer
