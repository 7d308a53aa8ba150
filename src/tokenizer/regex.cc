#define PCRE2_CODE_UNIT_WIDTH 8
#include "tokenizer/regex.h"

#include <pcre2.h>

#include "core/error.h"

namespace tpinfer {
namespace {

std::string pcre2_message(int code) {
  PCRE2_UCHAR buf[256];
  pcre2_get_error_message(code, buf, sizeof(buf));
  return reinterpret_cast<const char*>(buf);
}

pcre2_code* as_code(void* p) { return static_cast<pcre2_code*>(p); }

}  // namespace

Regex::Regex(std::string pattern) : pattern_(std::move(pattern)) {
  int err = 0;
  PCRE2_SIZE err_offset = 0;
  const uint32_t options = PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF;
  code_ = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern_.data()), pattern_.size(), options, &err, &err_offset,
                        nullptr);
  if (code_ == nullptr) {
    throw FormatError(cat("pre-tokenizer regex /", pattern_, "/: offset ", err_offset, ": ", pcre2_message(err)));
  }
  jit_ = pcre2_jit_compile(as_code(code_), PCRE2_JIT_COMPLETE) == 0;
}

Regex::~Regex() { pcre2_code_free(as_code(code_)); }

Regex::Regex(Regex&& o) noexcept : pattern_(std::move(o.pattern_)), code_(o.code_), jit_(o.jit_) { o.code_ = nullptr; }

Regex& Regex::operator=(Regex&& o) noexcept {
  if (this != &o) {
    pcre2_code_free(as_code(code_));
    pattern_ = std::move(o.pattern_);
    code_ = o.code_;
    jit_ = o.jit_;
    o.code_ = nullptr;
  }
  return *this;
}

Regex::Matcher::Matcher(const Regex& re)
    : re_(re), match_data_(pcre2_match_data_create_from_pattern(as_code(re.code_), nullptr)) {
  if (match_data_ == nullptr) throw Error("pcre2: out of memory creating match data");
}

Regex::Matcher::~Matcher() { pcre2_match_data_free(static_cast<pcre2_match_data*>(match_data_)); }

void Regex::Matcher::find_all(std::string_view subject, std::vector<Span>& out) {
  auto* md = static_cast<pcre2_match_data*>(match_data_);
  const auto* s = reinterpret_cast<PCRE2_SPTR>(subject.data());
  size_t pos = 0;
  while (pos < subject.size()) {
    // The JIT stack is small; a pathological subject falls back to the
    // interpreter, which uses the heap.
    int rc = pcre2_match(as_code(re_.code_), s, subject.size(), pos, 0, md, nullptr);
    if (rc == PCRE2_ERROR_JIT_STACKLIMIT) {
      rc = pcre2_match(as_code(re_.code_), s, subject.size(), pos, PCRE2_NO_JIT, md, nullptr);
    }
    if (rc == PCRE2_ERROR_NOMATCH) return;
    if (rc < 0) {
      throw Error(
          cat("pre-tokenizer regex /", re_.pattern_, "/: matching failed at byte ", pos, ": ", pcre2_message(rc)));
    }
    const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md);
    if (ov[1] > ov[0]) {
      out.push_back({ov[0], ov[1]});
      pos = ov[1];
    } else {
      // Empty match: skip one character (or one invalid byte).
      pos = ov[0] + 1;
      while (pos < subject.size() && (static_cast<uint8_t>(subject[pos]) & 0xC0) == 0x80) ++pos;
    }
  }
}

}  // namespace tpinfer
