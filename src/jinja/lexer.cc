#include "jinja/lexer.h"

#include <algorithm>
#include <charconv>
#include <optional>
#include <tuple>

#include "core/error.h"
#include "jinja/text.h"

namespace tpinfer::jinja {

namespace {

bool is_digit(char c) { return c >= '0' && c <= '9'; }
// Python identifiers: ASCII letters, digits and '_', and non-ASCII letters,
// digits and combining marks (an approximation of Unicode's XID classes).
bool is_name_start(char32_t c) {
  if (c < 0x80) return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
  return py_isalpha(c);
}
bool is_name_char(char32_t c) {
  if (c < 0x80) return is_name_start(c) || is_digit(static_cast<char>(c));
  return py_isalnum(c) || (c >= 0x300 && c <= 0x36F);
}

class Lexer {
 public:
  Lexer(std::string_view source, const LexOptions& options) : o_(options) {
    // Jinja splits on \r\n, \r and \n, joins with \n and drops one trailing newline.
    src_.reserve(source.size());
    for (size_t i = 0; i < source.size(); ++i) {
      if (source[i] == '\r') {
        if (i + 1 < source.size() && source[i + 1] == '\n') ++i;
        src_.push_back('\n');
      } else {
        src_.push_back(source[i]);
      }
    }
    if (!o_.keep_trailing_newline && !src_.empty() && src_.back() == '\n') src_.pop_back();
    line_starts_.push_back(0);
    for (size_t i = 0; i < src_.size(); ++i) {
      if (src_[i] == '\n') line_starts_.push_back(i + 1);
    }
  }

  std::vector<Token> run() {
    size_t pos = 0;
    bool line_starting = true;
    while (pos < src_.size()) {
      const size_t tag = find_tag(pos);
      if (tag == std::string::npos) {
        emit_data(pos, src_.substr(pos));
        break;
      }
      const char kind = src_[tag + 1];
      size_t after = tag + 2;
      char sign = 0;
      if (after < src_.size() && (src_[after] == '-' || src_[after] == '+')) sign = src_[after++];
      std::string text = src_.substr(pos, tag - pos);
      if (kind == '%') {
        if (const auto raw_end = match_raw_begin(tag)) {
          emit_data(pos, strip_before(text, sign, line_starting, true));
          pos = *raw_end;
          line_starting = src_[pos - 1] == '\n';
          pos = lex_raw_body(pos, line_starting);
          line_starting = src_[pos - 1] == '\n';
          continue;
        }
      }
      emit_data(pos, strip_before(text, sign, line_starting, kind != '{'));
      if (kind == '#') {
        pos = skip_comment(tag, after);
      } else {
        push(kind == '{' ? TokenType::kVarBegin : TokenType::kBlockBegin, tag);
        pos = lex_tag(after, kind == '%');
        if (tokens_.back().type == TokenType::kEof) return std::move(tokens_);
      }
      line_starting = pos > 0 && src_[pos - 1] == '\n';
    }
    push(TokenType::kEof, src_.size());
    return std::move(tokens_);
  }

 private:
  [[noreturn]] void fail(size_t pos, const std::string& message) const {
    const auto [line, col] = line_col(pos);
    throw FormatError(cat("template syntax error at line ", line, ", column ", col, ": ", message));
  }

  std::pair<int, int> line_col(size_t pos) const {
    const auto it = std::upper_bound(line_starts_.begin(), line_starts_.end(), pos);
    const auto line = static_cast<int>(it - line_starts_.begin());
    return {line, static_cast<int>(pos - line_starts_[static_cast<size_t>(line - 1)]) + 1};
  }

  Token& push(TokenType type, size_t pos, std::string text = {}) {
    Token t;
    t.type = type;
    t.text = std::move(text);
    std::tie(t.line, t.column) = line_col(pos);
    tokens_.push_back(std::move(t));
    return tokens_.back();
  }

  void emit_data(size_t pos, std::string text) {
    if (!text.empty()) push(TokenType::kData, pos, std::move(text));
  }

  // The next "{{", "{%" or "{#" at or after pos.
  size_t find_tag(size_t pos) const {
    for (size_t i = src_.find('{', pos); i != std::string::npos; i = src_.find('{', i + 1)) {
      if (i + 1 < src_.size() && (src_[i + 1] == '{' || src_[i + 1] == '%' || src_[i + 1] == '#')) return i;
    }
    return std::string::npos;
  }

  bool space_at(size_t pos, size_t* next) const {
    if (pos >= src_.size()) return false;
    size_t p = pos;
    if (!py_isspace(next_code_point(src_, &p))) return false;
    *next = p;
    return true;
  }
  size_t skip_space(size_t pos) const {
    size_t next;
    while (space_at(pos, &next)) pos = next;
    return pos;
  }

  // Whitespace control on the text before a tag: "-" strips all whitespace;
  // lstrip_blocks strips the spaces between the line start and a block tag.
  std::string strip_before(std::string& text, char sign, bool line_starting, bool lstrip_applies) const {
    if (sign == '-') return py_strip(text, std::nullopt, false, true);
    if (sign != '+' && o_.lstrip_blocks && lstrip_applies) {
      const size_t nl = text.rfind('\n');
      const size_t l_pos = nl == std::string::npos ? 0 : nl + 1;
      if ((l_pos > 0 || line_starting) && l_pos < text.size()) {
        const std::string_view tail = std::string_view(text).substr(l_pos);
        bool all_space = true;
        for (size_t i = 0; i < tail.size() && all_space;) all_space = py_isspace(next_code_point(tail, &i));
        if (all_space) text.resize(l_pos);
      }
    }
    return std::move(text);
  }

  // The end of a "{%[-+]? raw [-]?%}" opening at tag, if that is what is there.
  std::optional<size_t> match_raw_begin(size_t tag) const {
    size_t p = tag + 2;
    if (p < src_.size() && (src_[p] == '-' || src_[p] == '+')) ++p;
    p = skip_space(p);
    if (src_.compare(p, 3, "raw") != 0) return std::nullopt;
    p = skip_space(p + 3);
    if (src_.compare(p, 3, "-%}") == 0) return skip_space(p + 3);
    if (src_.compare(p, 2, "%}") == 0) return p + 2;
    return std::nullopt;
  }

  // Emits the body of a raw block starting at pos; returns the position after
  // its {% endraw %}.
  size_t lex_raw_body(size_t pos, bool line_starting) {
    if (pos >= src_.size()) return pos;  // like a comment, a raw block may open at the very end
    for (size_t at = src_.find("{%", pos); at != std::string::npos; at = src_.find("{%", at + 1)) {
      size_t p = at + 2;
      char sign = 0;
      if (p < src_.size() && (src_[p] == '-' || src_[p] == '+')) sign = src_[p++];
      p = skip_space(p);
      if (src_.compare(p, 6, "endraw") != 0) continue;
      p = skip_space(p + 6);
      size_t end;
      if (src_.compare(p, 3, "+%}") == 0) {
        end = p + 3;
      } else if (src_.compare(p, 3, "-%}") == 0) {
        end = skip_space(p + 3);
      } else if (src_.compare(p, 2, "%}") == 0) {
        end = p + 2;
        if (o_.trim_blocks && end < src_.size() && src_[end] == '\n') ++end;
      } else {
        continue;
      }
      std::string text = src_.substr(pos, at - pos);
      emit_data(pos, strip_before(text, sign, line_starting, true));
      return end;
    }
    fail(pos, "missing end of raw directive");
  }

  size_t skip_comment(size_t tag, size_t pos) const {
    // Jinja ends quietly when a comment opens at the very end of the source.
    if (pos >= src_.size()) return pos;
    const size_t at = src_.find("#}", pos);
    if (at == std::string::npos) fail(tag, "missing end of comment tag");
    const char before = at > pos ? src_[at - 1] : 0;
    size_t end = at + 2;
    if (before == '-') {
      end = skip_space(end);
    } else if (before != '+' && o_.trim_blocks && end < src_.size() && src_[end] == '\n') {
      ++end;
    }
    return end;
  }

  // Lexes the inside of a {{ }} or {% %} tag from pos; returns the position
  // after its end. At the end of the source it pushes kEof instead.
  size_t lex_tag(size_t pos, bool block) {
    std::vector<char> balance;
    while (true) {
      if (pos >= src_.size()) {
        push(TokenType::kEof, pos);
        return pos;
      }
      if (balance.empty()) {
        if (block) {
          if (src_.compare(pos, 3, "+%}") == 0) {
            push(TokenType::kBlockEnd, pos);
            return pos + 3;
          }
          if (src_.compare(pos, 3, "-%}") == 0) {
            push(TokenType::kBlockEnd, pos);
            return skip_space(pos + 3);
          }
          if (src_.compare(pos, 2, "%}") == 0) {
            push(TokenType::kBlockEnd, pos);
            pos += 2;
            if (o_.trim_blocks && pos < src_.size() && src_[pos] == '\n') ++pos;
            return pos;
          }
        } else {
          if (src_.compare(pos, 3, "-}}") == 0) {
            push(TokenType::kVarEnd, pos);
            return skip_space(pos + 3);
          }
          if (src_.compare(pos, 2, "}}") == 0) {
            push(TokenType::kVarEnd, pos);
            return pos + 2;
          }
        }
      }
      size_t next;
      if (space_at(pos, &next)) {
        pos = skip_space(next);
        continue;
      }
      const char c = src_[pos];
      if (is_digit(c)) {
        pos = lex_number(pos);
        continue;
      }
      size_t after_first = pos;
      if (is_name_start(next_code_point(src_, &after_first))) {
        size_t e = after_first;
        for (size_t next = e; e < src_.size() && is_name_char(next_code_point(src_, &next)); next = e) e = next;
        push(TokenType::kName, pos, src_.substr(pos, e - pos));
        pos = e;
        continue;
      }
      if (c == '\'' || c == '"') {
        if (const auto end = lex_string(pos)) {
          pos = *end;
          continue;
        }
      }
      pos = lex_operator(pos, balance);
    }
  }

  // Digits with single underscores between them, as (\d+_)*\d+; returns the end
  // or npos when there is no digit at pos.
  size_t digits(size_t pos) const {
    if (pos >= src_.size() || !is_digit(src_[pos])) return std::string::npos;
    while (true) {
      while (pos < src_.size() && is_digit(src_[pos])) ++pos;
      if (pos + 1 < src_.size() && src_[pos] == '_' && is_digit(src_[pos + 1])) {
        ++pos;
        continue;
      }
      return pos;
    }
  }

  size_t exponent(size_t pos) const {
    if (pos >= src_.size() || (src_[pos] != 'e' && src_[pos] != 'E')) return std::string::npos;
    ++pos;
    if (pos < src_.size() && (src_[pos] == '+' || src_[pos] == '-')) ++pos;
    return digits(pos);
  }

  static std::string without_underscores(std::string_view s) {
    std::string out;
    for (char c : s) {
      if (c != '_') out.push_back(c);
    }
    return out;
  }

  size_t lex_number(size_t pos) {
    // A float, as Jinja's float_re (not directly after a '.').
    if (pos == 0 || src_[pos - 1] != '.') {
      const size_t int_end = digits(pos);
      size_t end = std::string::npos;
      if (int_end < src_.size() && src_[int_end] == '.') {
        const size_t frac_end = digits(int_end + 1);
        if (frac_end != std::string::npos) {
          end = exponent(frac_end);
          if (end == std::string::npos) end = exponent(int_end);
          if (end == std::string::npos) end = frac_end;
        }
      }
      if (end == std::string::npos) end = exponent(int_end);
      if (end != std::string::npos) {
        const std::string text = without_underscores(std::string_view(src_).substr(pos, end - pos));
        double v = 0;
        std::from_chars(text.data(), text.data() + text.size(), v);
        push(TokenType::kFloat, pos, text).float_value = v;
        return end;
      }
    }
    // An integer: 0b..., 0o..., 0x..., [1-9](_?\d)*, 0(_?0)*.
    int base = 10;
    size_t end = pos;
    if (src_[pos] == '0' && pos + 1 < src_.size()) {
      const char p = static_cast<char>(src_[pos + 1] | 0x20);
      base = p == 'b' ? 2 : p == 'o' ? 8 : p == 'x' ? 16 : 10;
    }
    auto is_base_digit = [&](char c, int b) {
      if (b == 2) return c == '0' || c == '1';
      if (b == 8) return c >= '0' && c <= '7';
      if (b == 16) return is_digit(c) || ((c | 0x20) >= 'a' && (c | 0x20) <= 'f');
      return is_digit(c);
    };
    size_t digits_start = pos;
    if (base != 10) {
      size_t p = pos + 2;
      size_t last = std::string::npos;
      while (true) {
        size_t q = p;
        if (q < src_.size() && src_[q] == '_') ++q;
        if (q < src_.size() && is_base_digit(src_[q], base)) {
          p = last = q + 1;
        } else {
          break;
        }
      }
      if (last == std::string::npos) {
        base = 10;  // "0b" without digits: the integer 0, then a name
      } else {
        end = last;
        digits_start = pos + 2;
      }
    }
    if (base == 10) {
      const char zero_or_digit = src_[pos] == '0' ? '0' : 0;
      end = pos + 1;
      while (true) {
        size_t q = end;
        if (q < src_.size() && src_[q] == '_') ++q;
        const bool ok = q < src_.size() && (zero_or_digit ? src_[q] == '0' : is_digit(src_[q]));
        if (!ok) break;
        end = q + 1;
      }
    }
    const std::string text = without_underscores(std::string_view(src_).substr(digits_start, end - digits_start));
    int64_t v = 0;
    const auto res = std::from_chars(text.data(), text.data() + text.size(), v, base);
    if (res.ec != std::errc()) fail(pos, "integer literal too large");
    push(TokenType::kInteger, pos, src_.substr(pos, end - pos)).int_value = v;
    return end;
  }

  static int hex_value(char c) {
    if (is_digit(c)) return c - '0';
    c = static_cast<char>(c | 0x20);
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
  }

  // A quoted string at pos, unescaped as Python's "unicode-escape" codec does.
  std::optional<size_t> lex_string(size_t pos) {
    const char quote = src_[pos];
    size_t p = pos + 1;
    while (p < src_.size() && src_[p] != quote) p += src_[p] == '\\' ? 2 : 1;
    if (p >= src_.size()) return std::nullopt;
    const std::string_view body = std::string_view(src_).substr(pos + 1, p - pos - 1);
    std::string out;
    for (size_t i = 0; i < body.size();) {
      if (body[i] != '\\') {
        out.push_back(body[i++]);
        continue;
      }
      const char e = body[i + 1];
      i += 2;
      switch (e) {
        case '\n':
          break;
        case '\\':
        case '\'':
        case '"':
          out.push_back(e);
          break;
        case 'a':
          out.push_back('\a');
          break;
        case 'b':
          out.push_back('\b');
          break;
        case 'f':
          out.push_back('\f');
          break;
        case 'n':
          out.push_back('\n');
          break;
        case 'r':
          out.push_back('\r');
          break;
        case 't':
          out.push_back('\t');
          break;
        case 'v':
          out.push_back('\v');
          break;
        case 'x':
        case 'u':
        case 'U': {
          const size_t n = e == 'x' ? 2 : e == 'u' ? 4 : 8;
          char32_t cp = 0;
          for (size_t k = 0; k < n; ++k) {
            const int h = i + k < body.size() ? hex_value(body[i + k]) : -1;
            if (h < 0) fail(pos, cat("truncated \\", e, " escape in string literal"));
            cp = cp * 16 + static_cast<char32_t>(h);
          }
          if (cp > 0x10FFFF) fail(pos, "illegal Unicode character in string literal");
          i += n;
          append_utf8(out, cp);
          break;
        }
        case 'N':
          fail(pos, "\\N{...} escapes are not supported");
        default:
          if (e >= '0' && e <= '7') {
            char32_t cp = static_cast<char32_t>(e - '0');
            for (int k = 0; k < 2 && i < body.size() && body[i] >= '0' && body[i] <= '7'; ++k) {
              cp = cp * 8 + static_cast<char32_t>(body[i++] - '0');
            }
            append_utf8(out, cp);
          } else if (static_cast<unsigned char>(e) >= 0x80) {
            // Python first writes non-ASCII characters as escapes ("\xe9"), so a
            // backslash before one leaves that escape's text behind literally.
            size_t q = i - 1;
            const char32_t cp = next_code_point(body, &q);
            char buf[16];
            std::snprintf(buf, sizeof buf,
                          cp < 0x100     ? "\\x%02x"
                          : cp < 0x10000 ? "\\u%04x"
                                         : "\\U%08x",
                          static_cast<unsigned>(cp));
            out += buf;
            i = q;
          } else {
            out.push_back('\\');
            out.push_back(e);
          }
      }
    }
    push(TokenType::kString, pos, std::move(out));
    return p + 1;
  }

  size_t lex_operator(size_t pos, std::vector<char>& balance) {
    static constexpr std::string_view kTwo[] = {"//", "**", "==", "!=", ">=", "<="};
    for (std::string_view op : kTwo) {
      if (src_.compare(pos, 2, op) == 0) {
        push(TokenType::kOperator, pos, std::string(op));
        return pos + 2;
      }
    }
    const char c = src_[pos];
    if (std::string_view("+-/*%~[](){}><=.:|,;").find(c) == std::string_view::npos) {
      size_t q = pos;
      const char32_t cp = next_code_point(src_, &q);
      std::string shown;
      append_utf8(shown, cp);
      fail(pos, cat("unexpected character '", shown, "'"));
    }
    if (c == '(' || c == '[' || c == '{') {
      balance.push_back(c == '(' ? ')' : c == '[' ? ']' : '}');
    } else if (c == ')' || c == ']' || c == '}') {
      if (balance.empty()) fail(pos, cat("unexpected '", c, "'"));
      if (balance.back() != c) fail(pos, cat("unexpected '", c, "', expected '", balance.back(), "'"));
      balance.pop_back();
    }
    push(TokenType::kOperator, pos, std::string(1, c));
    return pos + 1;
  }

  const LexOptions o_;
  std::string src_;
  std::vector<size_t> line_starts_;
  std::vector<Token> tokens_;
};

}  // namespace

std::vector<Token> lex(std::string_view source, const LexOptions& options) { return Lexer(source, options).run(); }

}  // namespace tpinfer::jinja
