// Python's str semantics on UTF-8 bytes, for the Jinja interpreter: code point
// iteration, whitespace, case mapping, strip/split/splitlines, repr() of strings
// and of floats. Templates index, slice and measure strings in code points, and
// print values the way Python's str() does, so these must agree with CPython.
//
// Bytes that are not valid UTF-8 decode to U+DC80..U+DCFF (Python's
// "surrogateescape") and encode back to the same bytes: no input can make these
// functions fail or lose data.
//
// Case mapping and character classes cover ASCII, Latin-1, Latin Extended-A,
// Greek, Cyrillic and full-width Latin (what chat templates meet in practice);
// other scripts are treated as uncased letters.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace tpinfer::jinja {

// Decodes the code point starting at s[*pos] and advances *pos past it.
char32_t next_code_point(std::string_view s, size_t* pos);
std::u32string decode_utf8(std::string_view s);
void append_utf8(std::string& out, char32_t cp);
std::string encode_utf8(std::u32string_view cps);
size_t utf8_length(std::string_view s);  // in code points
bool is_ascii(std::string_view s);

// Character classes as Python's str.isspace() / isalpha() / isdigit() ... see them.
bool py_isspace(char32_t c);
bool py_isalpha(char32_t c);
bool py_isdigit(char32_t c);
bool py_isalnum(char32_t c);
bool py_isupper_char(char32_t c);  // a cased upper-case letter
bool py_islower_char(char32_t c);  // a cased lower-case letter
bool py_isprintable(char32_t c);   // as repr() decides whether to escape

// Whole-string operations with Python's names and semantics.
std::string py_upper(std::string_view s);
std::string py_lower(std::string_view s);
std::string py_swapcase(std::string_view s);
std::string py_title(std::string_view s);       // str.title()
std::string py_capitalize(std::string_view s);  // str.capitalize()
bool py_isupper(std::string_view s);            // str.isupper()
bool py_islower(std::string_view s);            // str.islower()

// str.strip / lstrip / rstrip; chars == nullopt strips whitespace.
std::string py_strip(std::string_view s, const std::optional<std::string>& chars, bool left, bool right);
// str.split / rsplit; sep == nullopt splits on runs of whitespace. maxsplit < 0: no limit.
// Throws TemplateError("empty separator") for an empty sep.
std::vector<std::string> py_split(std::string_view s, const std::optional<std::string>& sep, int64_t maxsplit);
std::vector<std::string> py_rsplit(std::string_view s, const std::optional<std::string>& sep, int64_t maxsplit);
std::vector<std::string> py_splitlines(std::string_view s, bool keepends);
// str.replace; count < 0 replaces all. An empty `old` inserts between code points.
std::string py_replace(std::string_view s, std::string_view old_s, std::string_view new_s, int64_t count);
// Number of non-overlapping occurrences (str.count); an empty needle counts code points + 1.
int64_t py_count(std::string_view s, std::string_view needle);

// repr() of a Python str: quotes chosen as Python does, escapes for non-printables.
std::string py_repr(std::string_view s);
// repr() / str() of a Python float: shortest round-trip digits, "1e-05", "1e+16", "2.0".
std::string py_float_repr(double v);

}  // namespace tpinfer::jinja
