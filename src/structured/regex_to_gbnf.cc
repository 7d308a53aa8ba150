#include "structured/regex_to_gbnf.h"

#include <algorithm>
#include <cctype>
#include <map>

#include "core/utf8.h"
#include "structured/grammar.h"
#include "structured/json_schema.h"

namespace tpinfer {
namespace {

[[noreturn]] void fail(const std::string& path, const std::string& why) {
  throw SchemaError(cat("schema ", path, ": 'pattern' ", why));
}

// A code point as a GBNF class member.
std::string class_char(uint32_t cp) {
  if ((cp >= '0' && cp <= '9') || (cp >= 'a' && cp <= 'z') || (cp >= 'A' && cp <= 'Z')) {
    return std::string(1, static_cast<char>(cp));
  }
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string s = cp < 0x100 ? "\\x" : cp < 0x10000 ? "\\u" : "\\U";
  const int digits = cp < 0x100 ? 2 : cp < 0x10000 ? 4 : 8;
  for (int i = digits - 1; i >= 0; --i) s += kHex[(cp >> (4 * i)) & 15];
  return s;
}

using Ranges = CodepointRanges;

Ranges merge(Ranges r) {
  std::sort(r.begin(), r.end());
  Ranges out;
  for (const auto& [lo, hi] : r) {
    if (!out.empty() && lo <= out.back().second + 1) {
      out.back().second = std::max(out.back().second, hi);
    } else {
      out.emplace_back(lo, hi);
    }
  }
  return out;
}
}  // namespace

CodepointRanges invert_ranges(const CodepointRanges& in) {
  Ranges out;
  uint32_t next = 0;
  for (const auto& [lo, hi] : merge(in)) {
    if (lo > next) out.emplace_back(next, lo - 1);
    next = hi + 1;
  }
  if (next <= 0x10FFFF) out.emplace_back(next, 0x10FFFF);
  return out;
}
namespace {

bool contains(const Ranges& r, uint32_t cp) {
  return std::any_of(r.begin(), r.end(), [&](const auto& p) { return cp >= p.first && cp <= p.second; });
}

// The GBNF of one JSON string character (as written inside the quotes) whose
// decoded code point is in `set`: raw characters where JSON allows them, the
// short escape for '"', '\\' and common controls, \u00XX for other controls.
}  // namespace

std::string json_string_char_gbnf(const CodepointRanges& set) {
  Ranges raw;
  for (auto [lo, hi] : merge(set)) {
    // Cut out the controls, '"' and '\\'.
    Ranges pieces = {{lo, hi}};
    for (const auto& [xlo, xhi] : Ranges{{0, 0x1F}, {'"', '"'}, {'\\', '\\'}}) {
      Ranges next;
      for (const auto& [a, b] : pieces) {
        if (b < xlo || a > xhi) {
          next.emplace_back(a, b);
          continue;
        }
        if (a < xlo) next.emplace_back(a, xlo - 1);
        if (b > xhi) next.emplace_back(xhi + 1, b);
      }
      pieces = next;
    }
    raw.insert(raw.end(), pieces.begin(), pieces.end());
  }
  std::vector<std::string> alts;
  if (!raw.empty()) {
    std::string c = "[";
    for (const auto& [lo, hi] : raw) c += hi == lo ? class_char(lo) : class_char(lo) + "-" + class_char(hi);
    alts.push_back(c + "]");
  }
  static const std::map<uint32_t, std::string> kShort = {
      {'"', "\"\\\\\\\"\""}, {'\\', "\"\\\\\\\\\""}, {'\n', "\"\\\\n\""}, {'\r', "\"\\\\r\""},
      {'\t', "\"\\\\t\""},   {'\b', "\"\\\\b\""},    {'\f', "\"\\\\f\""}};
  for (const auto& [cp, lit] : kShort) {
    if (contains(set, cp)) alts.push_back(lit);
  }
  static constexpr char kHex[] = "0123456789abcdef";
  for (uint32_t cp = 0; cp < 0x20; ++cp) {
    if (contains(set, cp) && !kShort.count(cp)) alts.push_back(cat("\"\\\\u00", kHex[cp >> 4], kHex[cp & 15], "\""));
  }
  if (alts.empty()) return "[^\\x00-\\U0010FFFF]";  // matches nothing
  if (alts.size() == 1) return alts[0];
  std::string out = "(";
  for (size_t i = 0; i < alts.size(); ++i) {
    out += i ? " | " : "";
    out += alts[i];
  }
  return out + ")";
}

namespace {

// ECMA-262 regex subset -> GBNF over the JSON-encoded string content.
class RegexCompiler {
 public:
  RegexCompiler(std::string_view re, std::string path) : re_(re), path_(std::move(path)) {}

  // Top-level alternatives carry their own anchors: ^a|b$ is (^a)|(b$).
  std::string compile() {
    const std::string any = json_string_char_gbnf({{0, 0x10FFFF}}) + "*";
    std::string out = "(";
    while (true) {
      const bool anchored_start = !at_end() && re_[pos_] == '^';
      if (anchored_start) ++pos_;
      const std::string body = sequence();
      const bool anchored_end = !at_end() && re_[pos_] == '$';
      if (anchored_end) ++pos_;
      out += cat(anchored_start ? "" : any + " ", "(", body, ")", anchored_end ? "" : " " + any);
      if (at_end() || re_[pos_] != '|') break;
      ++pos_;
      out += " | ";
    }
    if (!at_end()) unsupported(cat("'", re_[pos_], "' here"));
    return out + ")";
  }

 private:
  [[noreturn]] void unsupported(const std::string& what) const {
    fail(path_, cat("uses an unsupported regex feature: ", what, " at offset ", pos_, " of \"", re_, "\""));
  }
  bool at_end() const { return pos_ >= re_.size(); }

  std::string alternation() {
    std::string out = sequence();
    while (!at_end() && re_[pos_] == '|') {
      ++pos_;
      out += " | " + sequence();
    }
    return out;
  }
  std::string sequence() {
    std::string out;
    while (!at_end() && re_[pos_] != '|' && re_[pos_] != ')') {
      // A '$' ending a top-level alternative is compile()'s.
      if (re_[pos_] == '$' && depth_ == 0 && (pos_ + 1 == re_.size() || re_[pos_ + 1] == '|')) break;
      std::string a = atom();
      if (!out.empty()) out += ' ';
      out += quantifier(std::move(a));
    }
    return out.empty() ? "\"\"" : out;
  }
  std::string quantifier(std::string atom) {
    if (at_end()) return atom;
    const char c = re_[pos_];
    std::string q;
    if (c == '*' || c == '+' || c == '?') {
      q = std::string(1, c);
      ++pos_;
    } else if (c == '{') {
      const size_t close = re_.find('}', pos_);
      if (close == std::string_view::npos) unsupported("'{' without '}'");
      const std::string_view inner = re_.substr(pos_ + 1, close - pos_ - 1);
      if (inner.empty() || inner.find_first_not_of("0123456789,") != std::string_view::npos) {
        unsupported(cat("quantifier {", inner, "}"));
      }
      q = cat("{", inner, "}");
      pos_ = close + 1;
    } else {
      return atom;
    }
    if (!at_end() && re_[pos_] == '?') ++pos_;  // lazy: the same language
    if (!at_end() && (re_[pos_] == '+' || re_[pos_] == '*' || re_[pos_] == '{'))
      unsupported("a quantifier on a quantifier");
    return "(" + atom + ")" + q;
  }

  uint32_t next_char() {
    const utf8::Char ch = utf8::classify(re_, pos_);
    if (ch.kind != utf8::Kind::Complete) unsupported("invalid UTF-8");
    const uint32_t cp = utf8::decode(re_, pos_, ch.len);
    pos_ += ch.len;
    return cp;
  }
  uint32_t hex(int digits) {
    uint32_t v = 0;
    for (int i = 0; i < digits; ++i) {
      if (at_end() || !std::isxdigit(static_cast<unsigned char>(re_[pos_]))) unsupported("a malformed hex escape");
      const char h = re_[pos_++];
      v = v * 16 + static_cast<uint32_t>(h <= '9' ? h - '0' : (h | 0x20) - 'a' + 10);
    }
    return v;
  }

  // An escape after '\\': the set of code points it stands for.
  Ranges escape(bool in_class) {
    if (at_end()) unsupported("a trailing backslash");
    const char e = re_[pos_++];
    static const Ranges kDigit = {{'0', '9'}};
    static const Ranges kWord = {{'0', '9'}, {'A', 'Z'}, {'_', '_'}, {'a', 'z'}};
    static const Ranges kSpace = {{'\t', '\r'}, {' ', ' '}, {0xA0, 0xA0}, {0x2028, 0x2029}, {0xFEFF, 0xFEFF}};
    switch (e) {
      case 'd':
        return kDigit;
      case 'D':
        return invert_ranges(kDigit);
      case 'w':
        return kWord;
      case 'W':
        return invert_ranges(kWord);
      case 's':
        return kSpace;
      case 'S':
        return invert_ranges(kSpace);
      case 'n':
        return {{'\n', '\n'}};
      case 'r':
        return {{'\r', '\r'}};
      case 't':
        return {{'\t', '\t'}};
      case 'f':
        return {{'\f', '\f'}};
      case 'v':
        return {{'\v', '\v'}};
      case '0':
        return {{0, 0}};
      case 'x': {
        const uint32_t v = hex(2);
        return {{v, v}};
      }
      case 'u': {
        const uint32_t v = hex(4);
        return {{v, v}};
      }
      case 'b':
        if (in_class) return {{'\b', '\b'}};
        unsupported("word boundary \\b");
      case 'B':
        unsupported("\\B");
      case 'p':
      case 'P':
        unsupported("Unicode property escapes \\p{...}");
      case 'k':
        unsupported("named backreferences \\k");
      case 'c':
        unsupported("control escapes \\c");
      default:
        if (e >= '1' && e <= '9') unsupported("backreferences \\1..\\9");
        if (std::isalnum(static_cast<unsigned char>(e))) unsupported(cat("the escape \\", e));
        return {{static_cast<uint32_t>(static_cast<unsigned char>(e)),
                 static_cast<uint32_t>(static_cast<unsigned char>(e))}};
    }
  }

  std::string atom() {
    const char c = re_[pos_];
    switch (c) {
      case '(': {
        ++pos_;
        if (!at_end() && re_[pos_] == '?') {
          if (pos_ + 1 < re_.size() && re_[pos_ + 1] == ':') {
            pos_ += 2;
          } else {
            unsupported("lookaround or named groups '(?'");
          }
        }
        ++depth_;
        std::string inner = alternation();
        --depth_;
        if (at_end() || re_[pos_] != ')') unsupported("'(' without ')'");
        ++pos_;
        return "(" + inner + ")";
      }
      case '[':
        return json_string_char_gbnf(char_class());
      case '.':
        ++pos_;
        return json_string_char_gbnf(invert_ranges({{'\n', '\n'}, {'\r', '\r'}, {0x2028, 0x2029}}));
      case '\\':
        ++pos_;
        return json_string_char_gbnf(escape(false));
      case '^':
        unsupported("'^' not at the start");
      case '$':
        unsupported("'$' not at the end");
      case '*':
      case '+':
      case '?':
      case '{':
        unsupported(cat("'", c, "' with nothing to repeat"));
      case ')':
        unsupported("')' without '('");
      default: {
        const uint32_t cp = next_char();
        return json_string_char_gbnf({{cp, cp}});
      }
    }
  }

  Ranges char_class() {
    ++pos_;  // '['
    bool negated = false;
    if (!at_end() && re_[pos_] == '^') {
      negated = true;
      ++pos_;
    }
    Ranges set;
    bool first = true;
    while (true) {
      if (at_end()) unsupported("'[' without ']'");
      if (re_[pos_] == ']' && !first) break;
      first = false;
      Ranges item;
      if (re_[pos_] == '\\') {
        ++pos_;
        item = escape(true);
      } else {
        if (re_.substr(pos_, 2) == "[:") unsupported("POSIX classes [:...:]");
        const uint32_t cp = next_char();
        item = {{cp, cp}};
      }
      if (item.size() == 1 && item[0].first == item[0].second && pos_ + 1 < re_.size() && re_[pos_] == '-' &&
          re_[pos_ + 1] != ']') {
        ++pos_;
        Ranges hi;
        if (re_[pos_] == '\\') {
          ++pos_;
          hi = escape(true);
        } else {
          const uint32_t cp = next_char();
          hi = {{cp, cp}};
        }
        if (hi.size() != 1 || hi[0].first != hi[0].second || hi[0].first < item[0].first) unsupported("a bad range");
        item = {{item[0].first, hi[0].first}};
      }
      set.insert(set.end(), item.begin(), item.end());
    }
    ++pos_;  // ']'
    return negated ? invert_ranges(set) : merge(set);
  }

  std::string_view re_;
  std::string path_;
  size_t pos_ = 0;
  int depth_ = 0;  // open groups
};
}  // namespace

std::string regex_to_gbnf(std::string_view pattern, const std::string& path) {
  return RegexCompiler(pattern, path).compile();
}

}  // namespace tpinfer
