#include "jinja/text.h"

#include <charconv>
#include <cmath>
#include <cstring>

#include "core/utf8.h"
#include "jinja/error.h"

namespace tpinfer::jinja {

// ---- UTF-8 (core/utf8, plus Python's surrogateescape) ------------------------

char32_t next_code_point(std::string_view s, size_t* pos) {
  const size_t i = *pos;
  const auto b0 = static_cast<unsigned char>(s[i]);
  if (b0 < 0x80) {
    *pos = i + 1;
    return b0;
  }
  const utf8::Char c = utf8::classify(s, i);
  if (c.kind != utf8::Kind::Complete) {  // surrogateescape: one invalid byte becomes U+DC80 + byte
    *pos = i + 1;
    return 0xDC00 + b0;
  }
  *pos = i + c.len;
  return utf8::decode(s, i, c.len);
}

std::u32string decode_utf8(std::string_view s) {
  std::u32string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size();) out.push_back(next_code_point(s, &i));
  return out;
}

void append_utf8(std::string& out, char32_t cp) {
  if (cp >= 0xDC80 && cp <= 0xDCFF) {  // an escaped invalid byte goes back as itself
    out.push_back(static_cast<char>(cp - 0xDC00));
  } else {
    utf8::append(out, cp);
  }
}

std::string encode_utf8(std::u32string_view cps) {
  std::string out;
  out.reserve(cps.size());
  for (char32_t c : cps) append_utf8(out, c);
  return out;
}

size_t utf8_length(std::string_view s) {
  size_t n = 0;
  for (size_t i = 0; i < s.size(); ++n) {
    if (static_cast<unsigned char>(s[i]) < 0x80) {
      ++i;
    } else {
      next_code_point(s, &i);
    }
  }
  return n;
}

bool is_ascii(std::string_view s) {
  for (char c : s) {
    if (static_cast<unsigned char>(c) >= 0x80) return false;
  }
  return true;
}

// ---- character classes -----------------------------------------------------

bool py_isspace(char32_t c) {
  if (c <= 0x7F) return c == ' ' || (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x1F);
  return c == 0x85 || c == 0xA0 || c == 0x1680 || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 ||
         c == 0x202F || c == 0x205F || c == 0x3000;
}

namespace {

// Simple (one code point to one code point) case pairs. Returns the other case
// of c, or c itself when it has none; *upper says whether c is the upper one.
struct CaseInfo {
  char32_t upper;
  char32_t lower;
  bool cased;
};

// Ranges where upper and lower case alternate: even = upper (or odd = upper).
bool alternating(char32_t c, char32_t lo, char32_t hi, bool even_upper, CaseInfo* info) {
  if (c < lo || c > hi) return false;
  const bool is_even = (c % 2) == 0;
  const bool is_upper = is_even == even_upper;
  info->upper = is_upper ? c : c - 1;
  info->lower = is_upper ? c + 1 : c;
  info->cased = true;
  return true;
}

bool offset_pair(char32_t c, char32_t upper_lo, char32_t upper_hi, char32_t delta, CaseInfo* info) {
  if (c >= upper_lo && c <= upper_hi) {
    *info = {c, c + delta, true};
    return true;
  }
  if (c >= upper_lo + delta && c <= upper_hi + delta) {
    *info = {c - delta, c, true};
    return true;
  }
  return false;
}

CaseInfo case_info(char32_t c) {
  CaseInfo info{c, c, false};
  if (c < 0x80) {
    if (c >= 'A' && c <= 'Z') return {c, c + 32, true};
    if (c >= 'a' && c <= 'z') return {c - 32, c, true};
    return info;
  }
  if (c < 0x100) {
    if (c == 0xD7 || c == 0xF7) return info;
    if (c >= 0xC0 && c <= 0xDE) return {c, c + 32, true};
    if (c >= 0xE0 && c <= 0xFE) return {c - 32, c, true};
    if (c == 0xFF) return {0x178, 0xFF, true};
    if (c == 0xB5) return {0x39C, 0xB5, true};
    if (c == 0xDF) return {0xDF, 0xDF, true};  // sharp s: upper case is "SS" (see py_upper)
    return info;
  }
  if (c <= 0x17F) {
    if (c == 0x130) return {0x130, 'i', true};
    if (c == 0x131) return {'I', 0x131, true};
    if (c == 0x138 || c == 0x149) return {c, c, true};
    if (c == 0x178) return {0x178, 0xFF, true};
    if (c == 0x17F) return {'S', 0x17F, true};
    if (alternating(c, 0x100, 0x12F, true, &info) || alternating(c, 0x132, 0x137, true, &info) ||
        alternating(c, 0x139, 0x148, false, &info) || alternating(c, 0x14A, 0x177, true, &info) ||
        alternating(c, 0x179, 0x17E, false, &info)) {
      return info;
    }
    return info;
  }
  if (c >= 0x180 && c <= 0x24F) {
    // Digraphs come in upper, title and lower forms (Ǆ ǅ ǆ).
    for (char32_t d : {0x1C4u, 0x1C7u, 0x1CAu, 0x1F1u}) {
      if (c >= d && c <= d + 2) return {d, d + 2, true};
    }
    if (alternating(c, 0x1CD, 0x1DC, false, &info) || alternating(c, 0x1DE, 0x1EF, true, &info) ||
        alternating(c, 0x1F4, 0x1F5, true, &info) || alternating(c, 0x1F8, 0x21F, true, &info) ||
        alternating(c, 0x222, 0x233, true, &info) || alternating(c, 0x246, 0x24F, true, &info)) {
      return info;
    }
    return info;
  }
  if (c >= 0x370 && c <= 0x3FF) {
    if (c == 0x3A2) return info;
    if (c == 0x3C2) return {0x3A3, 0x3C2, true};
    if (c == 0x386) return {0x386, 0x3AC, true};
    if (c == 0x3AC) return {0x386, 0x3AC, true};
    if (offset_pair(c, 0x388, 0x38A, 0x25, &info)) return info;
    if (c == 0x38C) return {0x38C, 0x3CC, true};
    if (c == 0x3CC) return {0x38C, 0x3CC, true};
    if (offset_pair(c, 0x38E, 0x38F, 0x3F, &info)) return info;
    if (offset_pair(c, 0x391, 0x3AB, 0x20, &info)) return info;
    return info;
  }
  if (c >= 0x400 && c <= 0x52F) {
    if (offset_pair(c, 0x400, 0x40F, 0x50, &info) || offset_pair(c, 0x410, 0x42F, 0x20, &info)) return info;
    if (c == 0x4C0) return {0x4C0, 0x4CF, true};
    if (c == 0x4CF) return {0x4C0, 0x4CF, true};
    if (alternating(c, 0x460, 0x481, true, &info) || alternating(c, 0x48A, 0x4BF, true, &info) ||
        alternating(c, 0x4C1, 0x4CE, false, &info) || alternating(c, 0x4D0, 0x52F, true, &info)) {
      return info;
    }
    return info;
  }
  if (offset_pair(c, 0x531, 0x556, 0x30, &info)) return info;
  if (c >= 0x1E00 && c <= 0x1EFF) {
    if (alternating(c, 0x1E00, 0x1E95, true, &info) || alternating(c, 0x1EA0, 0x1EFF, true, &info)) return info;
    return info;
  }
  if (offset_pair(c, 0xFF21, 0xFF3A, 0x20, &info)) return info;
  return info;
}

char32_t to_upper(char32_t c) { return case_info(c).upper; }
// Title case differs from upper case only for the digraphs (ǅ).
char32_t to_title(char32_t c) {
  for (char32_t d : {0x1C4u, 0x1C7u, 0x1CAu, 0x1F1u}) {
    if (c >= d && c <= d + 2) return d + 1;
  }
  return to_upper(c);
}
char32_t to_lower(char32_t c) { return case_info(c).lower; }

void append_upper(std::string& out, char32_t c) {
  if (c == 0xDF) {
    out += "SS";
  } else {
    append_utf8(out, to_upper(c));
  }
}

void append_lower(std::string& out, char32_t c) {
  if (c == 0x130) {
    out += "i\xCC\x87";  // 'i' + COMBINING DOT ABOVE, as Python lowers U+0130
  } else {
    append_utf8(out, to_lower(c));
  }
}

bool is_cased(char32_t c) { return case_info(c).cased; }

bool in_ranges(char32_t c, std::initializer_list<std::pair<char32_t, char32_t>> ranges) {
  for (const auto& [lo, hi] : ranges) {
    if (c >= lo && c <= hi) return true;
  }
  return false;
}

}  // namespace

bool py_isupper_char(char32_t c) {
  const CaseInfo i = case_info(c);
  return i.cased && i.upper == c && (i.lower != c || c == 0x130);
}

bool py_islower_char(char32_t c) {
  const CaseInfo i = case_info(c);
  return i.cased && i.lower == c && (i.upper != c || c == 0xDF || c == 0x138 || c == 0x149);
}

bool py_isalpha(char32_t c) {
  if (c < 0x80) return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
  if (is_cased(c)) return true;
  return in_ranges(c, {{0xAA, 0xAA},
                       {0xBA, 0xBA},
                       {0x180, 0x24F},
                       {0x5D0, 0x5EA},
                       {0x620, 0x64A},
                       {0x671, 0x6D3},
                       {0x904, 0x939},
                       {0xE01, 0xE30},
                       {0x1100, 0x11FF},
                       {0x3041, 0x3096},
                       {0x30A1, 0x30FA},
                       {0x3400, 0x4DBF},
                       {0x4E00, 0x9FFF},
                       {0xAC00, 0xD7A3},
                       {0xF900, 0xFAFF},
                       {0x20000, 0x2FFFF}});
}

bool py_isdigit(char32_t c) {
  if (c < 0x80) return c >= '0' && c <= '9';
  return in_ranges(c, {{0xB2, 0xB3},
                       {0xB9, 0xB9},
                       {0x660, 0x669},
                       {0x6F0, 0x6F9},
                       {0x966, 0x96F},
                       {0x2070, 0x2070},
                       {0x2074, 0x2079},
                       {0x2080, 0x2089},
                       {0xFF10, 0xFF19}});
}

bool py_isalnum(char32_t c) { return py_isalpha(c) || py_isdigit(c); }

bool py_isprintable(char32_t c) {
  if (c < 0x20 || (c >= 0x7F && c <= 0xA0) || c == 0xAD) return false;
  if (c < 0x370) return true;
  return !in_ranges(c, {{0x378, 0x379},
                        {0x600, 0x605},
                        {0x61C, 0x61C},
                        {0x6DD, 0x6DD},
                        {0x70F, 0x70F},
                        {0x180E, 0x180E},
                        {0x1680, 0x1680},
                        {0x2000, 0x200F},
                        {0x2028, 0x202F},
                        {0x205F, 0x2064},
                        {0x2066, 0x206F},
                        {0x3000, 0x3000},
                        {0xD7FC, 0xF8FF},
                        {0xFEFF, 0xFEFF},
                        {0xFFF0, 0xFFFB},
                        {0xFFFE, 0xFFFF},
                        {0x1D173, 0x1D17A},
                        {0xE0000, 0xE0FFF},
                        {0xF0000, 0x10FFFF}});
}

// ---- case ------------------------------------------------------------------

std::string py_upper(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size();) append_upper(out, next_code_point(s, &i));
  return out;
}

std::string py_lower(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size();) append_lower(out, next_code_point(s, &i));
  return out;
}

std::string py_swapcase(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size();) {
    const char32_t c = next_code_point(s, &i);
    if (py_isupper_char(c)) {
      append_lower(out, c);
    } else if (py_islower_char(c)) {
      append_upper(out, c);
    } else {
      append_utf8(out, c);
    }
  }
  return out;
}

std::string py_title(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  bool previous_cased = false;
  for (size_t i = 0; i < s.size();) {
    const char32_t c = next_code_point(s, &i);
    if (previous_cased) {
      append_lower(out, c);
    } else if (c == 0xDF) {
      out += "Ss";
    } else {
      append_utf8(out, to_title(c));
    }
    previous_cased = is_cased(c);
  }
  return out;
}

std::string py_capitalize(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  bool first = true;
  for (size_t i = 0; i < s.size();) {
    const char32_t c = next_code_point(s, &i);
    if (first) {
      if (c == 0xDF) {
        out += "Ss";
      } else {
        append_utf8(out, to_title(c));
      }
      first = false;
    } else {
      append_lower(out, c);
    }
  }
  return out;
}

bool py_isupper(std::string_view s) {
  bool any = false;
  for (size_t i = 0; i < s.size();) {
    const char32_t c = next_code_point(s, &i);
    if (py_islower_char(c)) return false;
    if (py_isupper_char(c)) any = true;
  }
  return any;
}

bool py_islower(std::string_view s) {
  bool any = false;
  for (size_t i = 0; i < s.size();) {
    const char32_t c = next_code_point(s, &i);
    if (py_isupper_char(c)) return false;
    if (py_islower_char(c)) any = true;
  }
  return any;
}

// ---- strip / split ------------------------------------------------------------

std::string py_strip(std::string_view s, const std::optional<std::string>& chars, bool left, bool right) {
  const std::u32string cps = decode_utf8(s);
  std::u32string set;
  if (chars) set = decode_utf8(*chars);
  auto strip_it = [&](char32_t c) { return chars ? set.find(c) != std::u32string::npos : py_isspace(c); };
  size_t b = 0, e = cps.size();
  if (left) {
    while (b < e && strip_it(cps[b])) ++b;
  }
  if (right) {
    while (e > b && strip_it(cps[e - 1])) --e;
  }
  return encode_utf8(std::u32string_view(cps).substr(b, e - b));
}

std::vector<std::string> py_split(std::string_view s, const std::optional<std::string>& sep, int64_t maxsplit) {
  std::vector<std::string> out;
  if (sep) {
    if (sep->empty()) throw TemplateError("ValueError: empty separator");
    size_t start = 0;
    while (maxsplit < 0 || static_cast<int64_t>(out.size()) < maxsplit) {
      const size_t at = s.find(*sep, start);
      if (at == std::string_view::npos) break;
      out.emplace_back(s.substr(start, at - start));
      start = at + sep->size();
    }
    out.emplace_back(s.substr(start));
    return out;
  }
  const std::u32string cps = decode_utf8(s);
  size_t i = 0;
  const size_t n = cps.size();
  while (true) {
    while (i < n && py_isspace(cps[i])) ++i;
    if (i == n) break;
    if (maxsplit >= 0 && static_cast<int64_t>(out.size()) == maxsplit) {
      out.push_back(encode_utf8(std::u32string_view(cps).substr(i)));
      break;
    }
    const size_t b = i;
    while (i < n && !py_isspace(cps[i])) ++i;
    out.push_back(encode_utf8(std::u32string_view(cps).substr(b, i - b)));
  }
  return out;
}

std::vector<std::string> py_rsplit(std::string_view s, const std::optional<std::string>& sep, int64_t maxsplit) {
  std::vector<std::string> out;
  if (sep) {
    if (sep->empty()) throw TemplateError("ValueError: empty separator");
    size_t end = s.size();
    while (maxsplit < 0 || static_cast<int64_t>(out.size()) < maxsplit) {
      if (end < sep->size()) break;
      const size_t at = s.rfind(*sep, end - sep->size());
      if (at == std::string_view::npos) break;
      out.emplace_back(s.substr(at + sep->size(), end - at - sep->size()));
      end = at;
    }
    out.emplace_back(s.substr(0, end));
  } else {
    const std::u32string cps = decode_utf8(s);
    size_t i = cps.size();
    while (true) {
      while (i > 0 && py_isspace(cps[i - 1])) --i;
      if (i == 0) break;
      if (maxsplit >= 0 && static_cast<int64_t>(out.size()) == maxsplit) {
        out.push_back(encode_utf8(std::u32string_view(cps).substr(0, i)));
        break;
      }
      const size_t e = i;
      while (i > 0 && !py_isspace(cps[i - 1])) --i;
      out.push_back(encode_utf8(std::u32string_view(cps).substr(i, e - i)));
    }
  }
  return {out.rbegin(), out.rend()};
}

std::vector<std::string> py_splitlines(std::string_view s, bool keepends) {
  const std::u32string cps = decode_utf8(s);
  std::vector<std::string> out;
  size_t start = 0, i = 0;
  const size_t n = cps.size();
  auto is_break = [](char32_t c) {
    return c == '\n' || c == '\r' || c == 0x0B || c == 0x0C || c == 0x1C || c == 0x1D || c == 0x1E || c == 0x85 ||
           c == 0x2028 || c == 0x2029;
  };
  while (i < n) {
    if (!is_break(cps[i])) {
      ++i;
      continue;
    }
    size_t eol = i + 1;
    if (cps[i] == '\r' && eol < n && cps[eol] == '\n') ++eol;
    const size_t end = keepends ? eol : i;
    out.push_back(encode_utf8(std::u32string_view(cps).substr(start, end - start)));
    start = i = eol;
  }
  if (start < n) out.push_back(encode_utf8(std::u32string_view(cps).substr(start)));
  return out;
}

std::string py_replace(std::string_view s, std::string_view old_s, std::string_view new_s, int64_t count) {
  std::string out;
  if (old_s.empty()) {
    int64_t done = 0;
    size_t i = 0;
    while (true) {
      if (count < 0 || done < count) {
        out += new_s;
        ++done;
      }
      if (i >= s.size()) break;
      const size_t b = i;
      next_code_point(s, &i);
      out += s.substr(b, i - b);
    }
    return out;
  }
  size_t start = 0;
  int64_t done = 0;
  while (count < 0 || done < count) {
    const size_t at = s.find(old_s, start);
    if (at == std::string_view::npos) break;
    out += s.substr(start, at - start);
    out += new_s;
    start = at + old_s.size();
    ++done;
  }
  out += s.substr(start);
  return out;
}

int64_t py_count(std::string_view s, std::string_view needle) {
  if (needle.empty()) return static_cast<int64_t>(utf8_length(s)) + 1;
  int64_t n = 0;
  for (size_t at = s.find(needle); at != std::string_view::npos; at = s.find(needle, at + needle.size())) ++n;
  return n;
}

// ---- repr ----------------------------------------------------------------------

std::string py_repr(std::string_view s) {
  const bool has_single = s.find('\'') != std::string_view::npos;
  const bool has_double = s.find('"') != std::string_view::npos;
  const char quote = has_single && !has_double ? '"' : '\'';
  std::string out;
  out.reserve(s.size() + 2);
  out.push_back(quote);
  for (size_t i = 0; i < s.size();) {
    const char32_t c = next_code_point(s, &i);
    char buf[16];
    if (c == static_cast<char32_t>(quote) || c == '\\') {
      out.push_back('\\');
      out.push_back(static_cast<char>(c));
    } else if (c == '\t') {
      out += "\\t";
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\r') {
      out += "\\r";
    } else if (py_isprintable(c)) {
      append_utf8(out, c);
    } else {
      if (c < 0x100) {
        std::snprintf(buf, sizeof buf, "\\x%02x", static_cast<unsigned>(c));
      } else if (c < 0x10000) {
        std::snprintf(buf, sizeof buf, "\\u%04x", static_cast<unsigned>(c));
      } else {
        std::snprintf(buf, sizeof buf, "\\U%08x", static_cast<unsigned>(c));
      }
      out += buf;
    }
  }
  out.push_back(quote);
  return out;
}

std::string py_float_repr(double v) {
  if (std::isnan(v)) return "nan";
  if (std::isinf(v)) return v < 0 ? "-inf" : "inf";
  char buf[64];
  const auto res = std::to_chars(buf, buf + sizeof buf, v, std::chars_format::scientific);
  std::string_view sci(buf, static_cast<size_t>(res.ptr - buf));  // "-d.ddde+XX", shortest round trip
  std::string out;
  if (!sci.empty() && sci[0] == '-') {
    out.push_back('-');
    sci.remove_prefix(1);
  }
  const size_t e_at = sci.find('e');
  std::string digits;
  for (char c : sci.substr(0, e_at)) {
    if (c != '.') digits.push_back(c);
  }
  int exp = 0;
  std::from_chars(sci.data() + e_at + 1 + (sci[e_at + 1] == '+' ? 1 : 0), sci.data() + sci.size(), exp);
  const int decpt = exp + 1;
  const int nd = static_cast<int>(digits.size());
  if (decpt > -4 && decpt <= 16) {
    if (decpt <= 0) {
      out += "0.";
      out.append(static_cast<size_t>(-decpt), '0');
      out += digits;
    } else if (decpt >= nd) {
      out += digits;
      out.append(static_cast<size_t>(decpt - nd), '0');
      out += ".0";
    } else {
      out += digits.substr(0, static_cast<size_t>(decpt));
      out.push_back('.');
      out += digits.substr(static_cast<size_t>(decpt));
    }
    return out;
  }
  out.push_back(digits[0]);
  if (nd > 1) {
    out.push_back('.');
    out += digits.substr(1);
  }
  std::snprintf(buf, sizeof buf, "e%c%02d", exp < 0 ? '-' : '+', exp < 0 ? -exp : exp);
  out += buf;
  return out;
}

}  // namespace tpinfer::jinja
