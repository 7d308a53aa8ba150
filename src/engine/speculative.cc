#include "engine/speculative.h"

#include <algorithm>
#include <memory>
#include <string>

#include "core/enum_names.h"
#include "core/error.h"
#include "engine/engine.h"
#include "engine/sampler.h"

namespace tpinfer {
namespace {

constexpr EnumNames<Speculation, 3> kSpeculations{{"none", "ngram", "draft"}};

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
  if (o.method == Speculation::Draft && o.draft == nullptr) {
    throw ConfigError("--speculative draft needs a draft model (--draft-model PATH)");
  }
}

void check_draft_vocabulary(int64_t draft_vocab, int64_t target_vocab) {
  if (draft_vocab != target_vocab) {
    throw ConfigError(cat("the draft model's vocabulary has ", draft_vocab, " tokens and the target's ", target_vocab,
                          "; a draft model must share the target's vocabulary"));
  }
}

std::vector<int32_t> propose_ngram(std::span<const int32_t> history, int k, int n_max, int n_min) {
  const auto len = static_cast<int64_t>(history.size());
  for (int n = static_cast<int>(std::min<int64_t>(n_max, len - 1)); n >= n_min; --n) {
    const auto suffix = history.subspan(static_cast<size_t>(len - n));
    // The latest earlier occurrence followed by k tokens, else the one
    // followed by the most (an occurrence near the end of a repeating text
    // has only a few tokens after it; an earlier one repeats the same).
    int64_t best = -1, most = 0;
    for (int64_t at = len - n - 1; at >= 0 && most < k; --at) {
      if (!std::equal(suffix.begin(), suffix.end(), history.begin() + at)) continue;
      const int64_t follow = std::min<int64_t>(k, len - (at + n));
      if (follow > most) {
        best = at;
        most = follow;
      }
    }
    if (best >= 0) return {history.begin() + best + n, history.begin() + best + n + most};
  }
  return {};
}

namespace {

class NgramProposer final : public Proposer {
 public:
  explicit NgramProposer(const SpeculativeOptions& o) : n_max_(o.ngram_max), n_min_(o.ngram_min) {}
  std::vector<int32_t> propose(std::span<const int32_t> history, int k) override {
    return propose_ngram(history, k, n_max_, n_min_);
  }

 private:
  int n_max_, n_min_;
};

class DraftProposer final : public Proposer {
 public:
  explicit DraftProposer(Engine& draft) : draft_(draft) {}
  ~DraftProposer() override { draft_.blocks().release(table_); }
  DraftProposer(const DraftProposer&) = delete;
  DraftProposer& operator=(const DraftProposer&) = delete;

  // Feeds the text the draft has not seen (its cache holds [0, valid_)), then
  // decodes greedily: k guesses from one forward over the new text and k - 1
  // over the guesses.
  std::vector<int32_t> propose(std::span<const int32_t> history, int k) override {
    const auto len = static_cast<int64_t>(history.size());
    fed_ = 0;
    len_ = len;
    if (len == 0 || !draft_.blocks().reserve(table_, len + k - 1)) return {};
    const int64_t vocab = draft_.config().vocab;
    Batch b;
    b.sequences.push_back({table_});
    for (int64_t p = valid_; p < len; ++p) {
      b.tokens.push_back(history[static_cast<size_t>(p)]);
      b.positions.push_back(static_cast<int32_t>(p));
      b.seq.push_back(0);
      b.want_logits.push_back(p + 1 == len ? 1 : 0);
    }
    std::vector<int32_t> guesses;
    const std::vector<float>* logits = &draft_.step(b);
    valid_ = len;
    for (int i = 0; i < k; ++i) {
      guesses.push_back(argmax(std::span<const float>(logits->data(), static_cast<size_t>(vocab))));
      if (i + 1 == k) break;
      b.tokens = {guesses.back()};
      b.positions = {static_cast<int32_t>(len + i)};
      b.seq = {0};
      b.want_logits = {1};
      logits = &draft_.step(b);
      ++fed_;
    }
    return guesses;
  }

  void accepted(int kept) override { valid_ = len_ + std::min<int64_t>(kept, fed_); }

 private:
  Engine& draft_;
  std::vector<int32_t> table_;
  int64_t valid_ = 0;  // positions of the text in the draft's cache
  int64_t len_ = 0;    // the text's length at the last proposal
  int64_t fed_ = 0;    // guesses of the last proposal fed to the draft
};

}  // namespace

std::unique_ptr<Proposer> make_proposer(const SpeculativeOptions& o) {
  switch (o.method) {
    case Speculation::None:
      return nullptr;
    case Speculation::Ngram:
      return std::make_unique<NgramProposer>(o);
    case Speculation::Draft:
      check(o);
      return std::make_unique<DraftProposer>(*o.draft);
  }
  return nullptr;
}

}  // namespace tpinfer
