// UTF-8 helpers for every layer that handles text (the tokenizers, the Jinja
// engine): validating a character, splitting text into characters (an invalid
// byte counts as a one-byte character so that every byte of the input stays
// represented), decoding and encoding code points, and replacing ill-formed
// sequences with U+FFFD the way the Unicode standard recommends (one U+FFFD per
// "maximal subpart"), which is what a stream decoder must produce.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace tpinfer::utf8 {

// What starts at s[i]: a complete character of `len` bytes, a valid prefix of a
// character cut off by the end of s (`len` bytes present), or an ill-formed
// sequence whose maximal subpart is `len` bytes (replaced by one U+FFFD).
enum class Kind { Complete, Truncated, Invalid };
struct Char {
  Kind kind;
  size_t len;  // >= 1 (for Truncated: the bytes present)
};
Char classify(std::string_view s, size_t i);

// Bytes of the character at s[i] (1 for an invalid byte). s[i] must exist.
inline size_t char_len(std::string_view s, size_t i) {
  const Char c = classify(s, i);
  return c.kind == Kind::Complete ? c.len : 1;
}

bool is_valid(std::string_view s);

// Decodes the complete character at s[i] (caller checked classify()).
uint32_t decode(std::string_view s, size_t i, size_t len);
void append(std::string& out, uint32_t codepoint);

inline constexpr std::string_view kReplacement = "\xEF\xBF\xBD";  // U+FFFD

// s with every ill-formed sequence (including a truncated one at the end)
// replaced by U+FFFD: the plain reference for StreamDecoder.
std::string sanitize(std::string_view s);

}  // namespace tpinfer::utf8
