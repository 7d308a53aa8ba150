#include "structured/grammar.h"

#include <algorithm>
#include <functional>
#include <map>
#include <optional>
#include <unordered_map>
#include <utility>

#include "core/utf8.h"

namespace tpinfer {
namespace {

constexpr uint32_t kMaxCodepoint = 0x10FFFF;
constexpr int kMaxRepetition = 100000;  // {m,n} bounds: keeps the lowered grammar finite and small

// A symbol of a sequence before flattening.
struct Sym {
  bool is_rule;
  uint32_t value;  // rule id or byte-set index
  bool operator==(const Sym&) const = default;
};
using Seq = std::vector<Sym>;
using Ranges = std::vector<std::pair<uint32_t, uint32_t>>;  // inclusive code-point ranges

bool is_name_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
}

std::string describe(std::string_view text, size_t pos) {
  if (pos >= text.size()) return "end of input";
  const char c = text[pos];
  if (c == '\n') return "end of line";
  if (static_cast<unsigned char>(c) < 0x20) return cat("byte 0x", std::hex, static_cast<int>(c));
  return cat("'", text.substr(pos, utf8::char_len(text, pos)), "'");
}

// Normalizes ranges: sorted, merged, clipped to Unicode scalar values (no surrogates).
Ranges normalize(Ranges r) {
  Ranges split;
  for (auto [lo, hi] : r) {
    hi = std::min(hi, kMaxCodepoint);
    if (lo > hi) continue;
    if (lo < 0xD800 && hi >= 0xD800) {
      if (hi > 0xDFFF) split.emplace_back(0xE000, hi);
      hi = 0xD7FF;
    } else if (lo >= 0xD800 && lo <= 0xDFFF) {
      if (hi <= 0xDFFF) continue;
      lo = 0xE000;
    }
    split.emplace_back(lo, hi);
  }
  std::sort(split.begin(), split.end());
  Ranges out;
  for (const auto& [lo, hi] : split) {
    if (!out.empty() && lo <= out.back().second + 1) {
      out.back().second = std::max(out.back().second, hi);
    } else {
      out.emplace_back(lo, hi);
    }
  }
  return out;
}

Ranges complement(const Ranges& r) {
  Ranges out;
  uint32_t next = 0;
  for (const auto& [lo, hi] : normalize(r)) {
    if (lo > next) out.emplace_back(next, lo - 1);
    next = hi + 1;
  }
  if (next <= kMaxCodepoint) out.emplace_back(next, kMaxCodepoint);
  return normalize(out);
}

std::string encode(uint32_t cp) {
  std::string s;
  utf8::append(s, cp);
  return s;
}

// Splits [lo, hi] (code points of one UTF-8 length) into ranges whose encodings
// are products of per-byte ranges: each result is one byte range per position.
void utf8_sequences(uint32_t lo, uint32_t hi, std::vector<std::vector<std::pair<uint8_t, uint8_t>>>& out) {
  const size_t n = encode(lo).size();
  for (size_t i = 1; i < n; ++i) {
    const uint32_t m = (uint32_t{1} << (6 * i)) - 1;  // the low i continuation bytes
    if ((lo & ~m) != (hi & ~m)) {
      if ((lo & m) != 0) {
        utf8_sequences(lo, lo | m, out);
        utf8_sequences((lo | m) + 1, hi, out);
        return;
      }
      if ((hi & m) != m) {
        utf8_sequences(lo, (hi & ~m) - 1, out);
        utf8_sequences(hi & ~m, hi, out);
        return;
      }
    }
  }
  const std::string a = encode(lo), b = encode(hi);
  std::vector<std::pair<uint8_t, uint8_t>> seq;
  for (size_t k = 0; k < n; ++k) seq.emplace_back(static_cast<uint8_t>(a[k]), static_cast<uint8_t>(b[k]));
  out.push_back(std::move(seq));
}

}  // namespace

// Parses GBNF and lowers it to byte-level rules as it goes.
class GrammarBuilder {
 public:
  explicit GrammarBuilder(std::string_view text) : text_(text) {}

  Grammar build() {
    skip_space(true);
    if (eof()) throw GrammarError("empty grammar: no rules");
    while (!eof()) {
      parse_rule();
      skip_space(true);
    }
    for (uint32_t r = 0; r < names_.size(); ++r) {
      if (!defined_[r] && !is_aux_[r]) {
        throw GrammarError(cat(location(first_use_[r]), ": undefined rule '", names_[r], "'"));
      }
    }
    const auto root = ids_.find("root");
    if (root == ids_.end() || !defined_[root->second]) throw GrammarError("grammar has no rule named 'root'");
    check_left_recursion();
    return flatten(root->second);
  }

 private:
  // --- positions and errors ---
  bool eof() const { return pos_ >= text_.size(); }
  char peek(size_t ahead = 0) const { return pos_ + ahead < text_.size() ? text_[pos_ + ahead] : '\0'; }

  std::string location(size_t pos) const {
    int line = 1, col = 1;
    for (size_t i = 0; i < pos && i < text_.size(); ++i) {
      if (text_[i] == '\n') {
        ++line;
        col = 1;
      } else if ((static_cast<unsigned char>(text_[i]) & 0xC0) != 0x80) {
        ++col;
      }
    }
    return cat("line ", line, ":", col);
  }
  [[noreturn]] void fail(const std::string& expected) const {
    throw GrammarError(cat(location(pos_), ": expected ", expected, ", found ", describe(text_, pos_)));
  }

  // Skips blanks and comments. Inside a group (or after '::=' / '|') newlines
  // are blanks too; at the top level of a rule a newline ends the rule when
  // the next non-blank text starts a new rule or the input ends.
  void skip_space(bool newlines) {
    while (!eof()) {
      const char c = peek();
      if (c == ' ' || c == '\t' || c == '\r') {
        ++pos_;
      } else if (c == '#') {
        while (!eof() && peek() != '\n') ++pos_;
      } else if (c == '\n') {
        if (!newlines) {
          const size_t saved = pos_;
          pos_ = saved + 1;
          skip_space(true);
          const bool ends = eof() || at_rule_start();
          pos_ = ends ? saved : pos_;
          if (ends) return;
        } else {
          ++pos_;
        }
      } else {
        return;
      }
    }
  }
  bool at_rule_start() const {
    size_t p = pos_;
    while (p < text_.size() && is_name_char(text_[p])) ++p;
    if (p == pos_) return false;
    while (p < text_.size() && (text_[p] == ' ' || text_[p] == '\t')) ++p;
    return text_.substr(p, 3) == "::=";
  }

  // --- rules ---
  uint32_t rule_id(const std::string& name, size_t use_pos) {
    const auto [it, inserted] = ids_.emplace(name, static_cast<uint32_t>(names_.size()));
    if (inserted) {
      names_.push_back(name);
      rules_.emplace_back();
      defined_.push_back(false);
      is_aux_.push_back(false);
      first_use_.push_back(use_pos);
    }
    return it->second;
  }
  uint32_t aux_rule(std::vector<Seq> alts) {
    const uint32_t id = static_cast<uint32_t>(names_.size());
    names_.push_back(cat(current_rule_, "/", id));
    rules_.push_back(std::move(alts));
    defined_.push_back(true);
    is_aux_.push_back(true);
    first_use_.push_back(pos_);
    return id;
  }
  Sym byte_set(const ByteSet& s) {
    for (size_t i = 0; i < sets_.size(); ++i) {
      if (sets_[i] == s) return {false, static_cast<uint32_t>(i)};
    }
    sets_.push_back(s);
    return {false, static_cast<uint32_t>(sets_.size() - 1)};
  }
  Sym single_byte(uint8_t b) {
    ByteSet s;
    s.add(b);
    return byte_set(s);
  }

  void parse_rule() {
    const size_t start = pos_;
    std::string name;
    while (!eof() && is_name_char(peek())) name += text_[pos_++];
    if (name.empty()) fail("a rule name");
    skip_space(false);
    if (text_.substr(pos_, 3) != "::=") fail("'::='");
    pos_ += 3;
    const uint32_t id = rule_id(name, start);
    if (defined_[id]) throw GrammarError(cat(location(start), ": rule '", name, "' is defined twice"));
    defined_[id] = true;
    current_rule_ = name;
    skip_space(true);
    std::vector<Seq> alts = parse_alternates(false);
    if (!eof() && peek() != '\n') fail("an item, '|' or the end of the rule");
    rules_[id] = std::move(alts);
  }

  std::vector<Seq> parse_alternates(bool nested) {
    std::vector<Seq> alts;
    alts.push_back(parse_sequence(nested));
    while (peek() == '|') {
      ++pos_;
      skip_space(true);
      alts.push_back(parse_sequence(nested));
    }
    return alts;
  }

  Seq parse_sequence(bool nested) {
    Seq seq;
    while (!eof()) {
      const char c = peek();
      Seq item;
      if (c == '"') {
        item = parse_literal();
      } else if (c == '[') {
        item = {class_sym(parse_class())};
      } else if (c == '.') {
        ++pos_;
        item = {class_sym({{0, kMaxCodepoint}})};
      } else if (c == '(') {
        ++pos_;
        skip_space(true);
        std::vector<Seq> alts = parse_alternates(true);
        if (peek() != ')') fail("')' or '|'");
        ++pos_;
        if (alts.size() == 1) {
          item = std::move(alts[0]);
        } else {
          item = {Sym{true, aux_rule(std::move(alts))}};
        }
      } else if (is_name_char(c)) {
        const size_t start = pos_;
        std::string name;
        while (!eof() && is_name_char(peek())) name += text_[pos_++];
        item = {Sym{true, rule_id(name, start)}};
      } else {
        break;
      }
      skip_space(nested);
      item = parse_repetition(std::move(item), nested);
      seq.insert(seq.end(), item.begin(), item.end());
    }
    return seq;
  }

  Seq parse_repetition(Seq item, bool nested) {
    while (true) {
      const char c = peek();
      int min = 0, max = -1;  // max -1: unbounded
      if (c == '*') {
        ++pos_;
      } else if (c == '+') {
        ++pos_;
        min = 1;
      } else if (c == '?') {
        ++pos_;
        max = 1;
      } else if (c == '{') {
        ++pos_;
        skip_space(true);
        const std::optional<int> lo = parse_int();
        skip_space(true);
        if (peek() == '}') {
          if (!lo) fail("a repetition count");
          min = max = *lo;
        } else if (peek() == ',') {
          ++pos_;
          skip_space(true);
          const std::optional<int> hi = parse_int();
          skip_space(true);
          min = lo.value_or(0);
          max = hi.value_or(-1);
          if (max >= 0 && max < min) {
            throw GrammarError(cat(location(pos_), ": repetition {", min, ",", max, "} has max below min"));
          }
        } else {
          fail("',' or '}' in a repetition");
        }
        if (peek() != '}') fail("'}'");
        ++pos_;
      } else {
        return item;
      }
      skip_space(nested);
      item = repeat(item, min, max);
    }
  }

  std::optional<int> parse_int() {
    if (peek() < '0' || peek() > '9') return std::nullopt;
    long v = 0;
    while (peek() >= '0' && peek() <= '9') {
      v = v * 10 + (text_[pos_++] - '0');
      if (v > kMaxRepetition) throw GrammarError(cat(location(pos_), ": repetition count above ", kMaxRepetition));
    }
    return static_cast<int>(v);
  }

  // x{min,max} as rules: x repeated min times, then either a star rule or a
  // chain of nested optionals.
  Seq repeat(const Seq& item, int min, int max) {
    if (item.empty()) return {};
    const Sym unit = item.size() == 1 ? item[0] : Sym{true, aux_rule({item})};
    Seq out(static_cast<size_t>(min), unit);
    if (max < 0) {
      const uint32_t star = aux_rule({});
      rules_[star] = {Seq{unit, Sym{true, star}}, Seq{}};
      out.push_back({true, star});
    } else if (max > min) {
      uint32_t opt = aux_rule({Seq{unit}, Seq{}});
      for (int k = min + 1; k < max; ++k) opt = aux_rule({Seq{unit, Sym{true, opt}}, Seq{}});
      out.push_back({true, opt});
    }
    return out;
  }

  // --- literals and classes ---
  uint32_t parse_char(bool in_class) {
    if (eof()) fail(in_class ? "']'" : "'\"'");
    const unsigned char c = static_cast<unsigned char>(peek());
    if (c == '\\') {
      ++pos_;
      const char e = peek();
      ++pos_;
      switch (e) {
        case 'n':
          return '\n';
        case 'r':
          return '\r';
        case 't':
          return '\t';
        case '0':
          return 0;
        case '\\':
        case '"':
        case '\'':
        case '[':
        case ']':
        case '-':
        case '^':
        case '/':
          return static_cast<uint32_t>(e);
        case 'x':
          return parse_hex(2);
        case 'u':
          return parse_hex(4);
        case 'U':
          return parse_hex(8);
        default:
          --pos_;
          fail("an escape (\\n \\r \\t \\\\ \\\" \\[ \\] \\xNN \\uNNNN \\UNNNNNNNN)");
      }
    }
    const utf8::Char ch = utf8::classify(text_, pos_);
    if (ch.kind != utf8::Kind::Complete) fail("valid UTF-8");
    if (c == '\n' && !in_class) fail("'\"' before the end of the line");
    const uint32_t cp = utf8::decode(text_, pos_, ch.len);
    pos_ += ch.len;
    return cp;
  }
  uint32_t parse_hex(int digits) {
    uint32_t v = 0;
    for (int i = 0; i < digits; ++i) {
      const char h = peek();
      int d = -1;
      if (h >= '0' && h <= '9') d = h - '0';
      if (h >= 'a' && h <= 'f') d = h - 'a' + 10;
      if (h >= 'A' && h <= 'F') d = h - 'A' + 10;
      if (d < 0) fail(cat(digits, " hex digits"));
      v = v * 16 + static_cast<uint32_t>(d);
      ++pos_;
    }
    if (v > kMaxCodepoint || (v >= 0xD800 && v <= 0xDFFF)) {
      throw GrammarError(cat(location(pos_), ": escape U+", std::hex, v, " is not a Unicode scalar value"));
    }
    return v;
  }

  Seq parse_literal() {
    ++pos_;  // the opening quote
    Seq seq;
    while (peek() != '"') {
      if (eof()) fail("'\"'");
      for (const char b : encode(parse_char(false))) seq.push_back(single_byte(static_cast<uint8_t>(b)));
    }
    ++pos_;
    return seq;
  }

  Ranges parse_class() {
    ++pos_;  // '['
    bool negated = false;
    if (peek() == '^') {
      negated = true;
      ++pos_;
    }
    Ranges ranges;
    while (peek() != ']') {
      if (eof()) fail("']'");
      const uint32_t lo = parse_char(true);
      uint32_t hi = lo;
      if (peek() == '-' && peek(1) != ']' && pos_ + 1 < text_.size()) {
        ++pos_;
        hi = parse_char(true);
        if (hi < lo) throw GrammarError(cat(location(pos_), ": character range is reversed"));
      }
      ranges.emplace_back(lo, hi);
    }
    ++pos_;
    return negated ? complement(ranges) : normalize(ranges);
  }

  // One symbol for a class: a byte set when it is all ASCII, else a rule whose
  // alternatives are the UTF-8 byte sequences of its code points.
  Sym class_sym(const Ranges& in) {
    const Ranges ranges = normalize(in);
    if (const auto it = class_rules_.find(ranges); it != class_rules_.end()) return it->second;
    ByteSet ascii;
    bool any_ascii = false;
    std::vector<std::vector<std::pair<uint8_t, uint8_t>>> multi;
    for (auto [lo, hi] : ranges) {
      for (const uint32_t edge : {0x7Fu, 0x7FFu, 0xFFFFu}) {
        if (lo <= edge && hi > edge) {
          if (lo <= 0x7F) {
            ascii.add_range(static_cast<uint8_t>(lo), 0x7F);
            any_ascii = true;
          } else {
            utf8_sequences(lo, edge, multi);
          }
          lo = edge + 1;
        }
      }
      if (hi <= 0x7F) {
        ascii.add_range(static_cast<uint8_t>(lo), static_cast<uint8_t>(hi));
        any_ascii = true;
      } else {
        utf8_sequences(lo, hi, multi);
      }
    }
    Sym sym;
    if (multi.empty()) {
      sym = any_ascii ? byte_set(ascii) : Sym{true, aux_rule({})};  // an empty class matches nothing
    } else {
      std::vector<Seq> alts;
      if (any_ascii) alts.push_back({byte_set(ascii)});
      for (const auto& seq : multi) {
        Seq s;
        for (const auto& [lo, hi] : seq) {
          ByteSet b;
          b.add_range(lo, hi);
          s.push_back(byte_set(b));
        }
        alts.push_back(std::move(s));
      }
      sym = {true, aux_rule(std::move(alts))};
    }
    class_rules_.emplace(ranges, sym);
    return sym;
  }

  // --- checks and layout ---
  void check_left_recursion() const {
    const size_t n = rules_.size();
    std::vector<bool> nullable(n, false);
    for (bool changed = true; changed;) {
      changed = false;
      for (size_t r = 0; r < n; ++r) {
        if (nullable[r]) continue;
        for (const Seq& alt : rules_[r]) {
          const bool all =
              std::all_of(alt.begin(), alt.end(), [&](const Sym& s) { return s.is_rule && nullable[s.value]; });
          if (all) {
            nullable[r] = changed = true;
            break;
          }
        }
      }
    }
    // Edges r -> s where s can be called before r consumed a byte.
    std::vector<std::vector<uint32_t>> first(n);
    for (size_t r = 0; r < n; ++r) {
      for (const Seq& alt : rules_[r]) {
        for (const Sym& s : alt) {
          if (!s.is_rule) break;
          first[r].push_back(s.value);
          if (!nullable[s.value]) break;
        }
      }
    }
    std::vector<int> color(n, 0);  // 0 new, 1 on the path, 2 done
    std::vector<uint32_t> path;
    std::function<void(uint32_t)> visit = [&](uint32_t r) {
      color[r] = 1;
      path.push_back(r);
      for (const uint32_t s : first[r]) {
        if (color[s] == 1) {
          std::string cycle;
          const auto from = std::find(path.begin(), path.end(), s);
          for (auto it = from; it != path.end(); ++it) cycle += cat(display_name(*it), " -> ");
          throw GrammarError(cat("left recursion: ", cycle, display_name(s)));
        }
        if (color[s] == 0) visit(s);
      }
      path.pop_back();
      color[r] = 2;
    };
    for (uint32_t r = 0; r < n; ++r) {
      if (color[r] == 0) visit(r);
    }
  }
  std::string display_name(uint32_t r) const { return is_aux_[r] ? cat("(a group in ", names_[r], ")") : names_[r]; }

  Grammar flatten(uint32_t root) {
    Grammar g;
    g.byte_sets_ = sets_;
    g.rule_alts_.resize(rules_.size());
    g.rule_names_ = names_;
    g.root_ = root;
    for (size_t r = 0; r < rules_.size(); ++r) {
      for (const Seq& alt : rules_[r]) {
        g.rule_alts_[r].push_back(static_cast<uint32_t>(g.elements_.size()));
        for (const Sym& s : alt)
          g.elements_.push_back({s.is_rule ? Grammar::Kind::Rule : Grammar::Kind::Bytes, s.value});
        g.elements_.push_back({Grammar::Kind::End, 0});
      }
    }
    return g;
  }

  std::string_view text_;
  size_t pos_ = 0;
  std::string current_rule_;
  std::unordered_map<std::string, uint32_t> ids_;
  std::vector<std::string> names_;
  std::vector<std::vector<Seq>> rules_;
  std::vector<bool> defined_, is_aux_;
  std::vector<size_t> first_use_;
  std::vector<ByteSet> sets_;
  std::map<Ranges, Sym> class_rules_;
};

Grammar Grammar::parse_gbnf(std::string_view text) { return GrammarBuilder(text).build(); }

std::string gbnf_literal(std::string_view s) {
  std::string out = "\"";
  for (const char c : s) {
    const unsigned char u = static_cast<unsigned char>(c);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\r') {
      out += "\\r";
    } else if (c == '\t') {
      out += "\\t";
    } else if (u < 0x20 || u == 0x7F) {
      static constexpr char kHex[] = "0123456789ABCDEF";
      out += "\\x";
      out += kHex[u >> 4];
      out += kHex[u & 15];
    } else {
      out += c;
    }
  }
  return out + "\"";
}

}  // namespace tpinfer
