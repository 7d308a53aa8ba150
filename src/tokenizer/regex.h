// A compiled PCRE2 pattern in UTF + UCP mode (\s, \d, \w and POSIX classes are
// Unicode-aware, as in the Oniguruma / fancy-regex patterns of Hugging Face
// tokenizers), JIT-compiled when the library supports it. Matching tolerates
// ill-formed UTF-8 in the subject (PCRE2_MATCH_INVALID_UTF): invalid bytes
// simply never match, so they end up between matches.
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace tpinfer {

struct Span {
  size_t begin = 0;
  size_t end = 0;
};

class Regex {
 public:
  // Throws FormatError naming the pattern and the offset of the error.
  explicit Regex(std::string pattern);
  ~Regex();
  Regex(Regex&&) noexcept;
  Regex& operator=(Regex&&) noexcept;

  const std::string& pattern() const { return pattern_; }

  // Scratch space for matching; one per thread of use (a Regex is shared
  // read-only between threads, a Matcher is not).
  class Matcher {
   public:
    explicit Matcher(const Regex& re);
    ~Matcher();
    Matcher(const Matcher&) = delete;
    Matcher& operator=(const Matcher&) = delete;
    // All non-overlapping, non-empty matches in `subject`, left to right,
    // appended to `out`. The subject is matched on its own: lookarounds and
    // anchors see its ends as the ends of the text.
    void find_all(std::string_view subject, std::vector<Span>& out);

   private:
    const Regex& re_;
    void* match_data_;  // pcre2_match_data_8
  };

 private:
  std::string pattern_;
  void* code_ = nullptr;  // pcre2_code_8
  bool jit_ = false;
};

}  // namespace tpinfer
