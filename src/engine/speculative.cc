#include "engine/speculative.h"

#include <algorithm>
#include <string>

#include "core/enum_names.h"
#include "core/error.h"

namespace tpinfer {
namespace {

constexpr EnumNames<Speculation, 2> kSpeculations{{"none", "ngram"}};

}  // namespace

Speculation parse_speculation(std::string_view name) {
  if (const auto s = kSpeculations.find(name)) return *s;
  throw ConfigError(cat("--speculative '", std::string(name), "' is not a method; valid: ", kSpeculations.valid()));
}

const char* name(Speculation s) { return kSpeculations[s]; }

void check(const SpeculativeOptions& o) {
  if (o.k < 1 || o.k > kMaxSpeculativeTokens) {
    throw ConfigError(cat("--num-speculative-tokens ", o.k, " is out of range; valid: 1 to ", kMaxSpeculativeTokens));
  }
  if (o.ngram_min < 1 || o.ngram_max < o.ngram_min) {
    throw ConfigError(cat("n-gram lengths ", o.ngram_min, " to ", o.ngram_max, " are not a range of positive lengths"));
  }
}

std::vector<int32_t> propose_ngram(std::span<const int32_t> history, int k, int n_max, int n_min) {
  const auto len = static_cast<int64_t>(history.size());
  for (int n = std::min<int64_t>(n_max, len - 1); n >= n_min; --n) {
    const auto suffix = history.subspan(static_cast<size_t>(len - n));
    // The latest earlier occurrence: starts before len - n, scanning back.
    for (int64_t at = len - n - 1; at >= 0; --at) {
      if (!std::equal(suffix.begin(), suffix.end(), history.begin() + at)) continue;
      const int64_t from = at + n;
      const int64_t to = std::min<int64_t>(len, from + k);
      return {history.begin() + from, history.begin() + to};
    }
  }
  return {};
}

}  // namespace tpinfer
