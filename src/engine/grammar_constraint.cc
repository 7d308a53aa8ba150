#include "engine/grammar_constraint.h"

#include <algorithm>
#include <limits>

namespace tpinfer {

std::shared_ptr<const TokenVocabulary> grammar_vocabulary(const Tokenizer& tok, int64_t model_vocab,
                                                          std::span<const int32_t> literal_specials) {
  std::vector<std::string> bytes(static_cast<size_t>(model_vocab));
  std::vector<int32_t> eog;
  const int64_t n = std::min<int64_t>(model_vocab, tok.vocab_size());
  for (int32_t id = 0; id < n; ++id) {
    if (tok.is_eog(id)) {
      eog.push_back(id);
    } else if (!tok.is_special(id)) {
      bytes[static_cast<size_t>(id)] = tok.token_bytes(id);
    }
  }
  for (int32_t id : literal_specials) {
    if (id >= 0 && id < n && !tok.is_eog(id)) bytes[static_cast<size_t>(id)] = tok.token_text(id);
  }
  return TokenVocabulary::build(std::move(bytes), std::move(eog));
}

GrammarConstraint::GrammarConstraint(std::shared_ptr<CompiledGrammar> grammar) : matcher_(std::move(grammar)) {}

bool GrammarConstraint::mask(std::span<float> logits) {
  if (dead_) return false;
  matcher_.fill_mask(bits_);
  constexpr float kNever = -std::numeric_limits<float>::infinity();
  const std::vector<uint64_t>& words = bits_.words();
  bool any = false;
  for (size_t w = 0; w < words.size(); ++w) {
    const size_t base = w * 64;
    if (base >= logits.size()) break;
    const uint64_t word = words[w];
    any = any || word != 0;
    if (word == ~uint64_t{0}) continue;
    const size_t end = std::min(logits.size(), base + 64);
    for (size_t i = base; i < end; ++i) {
      if (!((word >> (i - base)) & 1)) logits[i] = kNever;
    }
  }
  for (size_t i = words.size() * 64; i < logits.size(); ++i) logits[i] = kNever;
  return any;
}

// A token the mask did not allow (only if every allowed logit was -inf or
// NaN) leaves the matcher where it was and the next mask() ends the sequence.
void GrammarConstraint::accept(int32_t token) {
  if (!matcher_.accept_token(token)) dead_ = true;
}

bool GrammarConstraint::finished() const {
  return matcher_.is_terminated() || (matcher_.is_complete() && !matcher_.can_continue());
}

}  // namespace tpinfer
