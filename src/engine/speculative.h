// Speculative decoding's proposers and options: a cheap guess of the next k
// tokens that the target model then checks in one forward pass over k + 1
// positions (engine/generator.cc), keeping the guesses the sampler accepts
// (Sampler::verify: greedy output unchanged token for token, sampled output
// distributed exactly as without speculation).
//
// ngram (prompt lookup): the longest suffix of the text so far, n_max tokens
// down to n_min, that occurred earlier in it; the tokens that followed its
// latest earlier occurrence (with k tokens after it, if any has) are the guess. Costs no model; pays off where the
// output repeats the input (quoting, editing, code, retrieval answers).
//
// draft: a smaller model with the same vocabulary, its own Engine (on the
// driver, its own KV cache), decodes k tokens greedily. Its cache keeps the
// positions whose tokens are still the text's: after a verification, the fed
// guesses that were accepted stay, the rest is overwritten by the next
// proposal. Greedy guesses are a point mass, so the sampler's rule stays exact.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string_view>
#include <vector>

namespace tpinfer {

class Engine;

enum class Speculation { None, Ngram, Draft };

struct SpeculativeOptions {
  Speculation method = Speculation::None;
  Engine* draft = nullptr;  // Draft: the draft model's engine (outlives the generation)
  int k = 4;                // tokens proposed per target forward, [1, kMaxSpeculativeTokens]
  int ngram_max = 3;
  int ngram_min = 2;  // one-token matches guess wrong too often to pay for their rows
};

constexpr int kMaxSpeculativeTokens = 16;

// "--speculative x": none, ngram, draft; ConfigError naming the valid ones otherwise.
Speculation parse_speculation(std::string_view name);
const char* name(Speculation s);
// ConfigError unless options are in range (k, n-gram lengths) and a draft,
// when asked for, is there.
void check(const SpeculativeOptions& options);
// ConfigError unless a draft model shares the target's vocabulary (names both sizes).
void check_draft_vocabulary(int64_t draft_vocab, int64_t target_vocab);

// Up to k tokens that followed an earlier occurrence of the longest matching
// suffix of `history`: the latest one followed by k tokens, else the one
// followed by the most (empty when no suffix of n_min tokens or more occurred
// before).
std::vector<int32_t> propose_ngram(std::span<const int32_t> history, int k, int n_max, int n_min);

// Where guesses come from during one generation.
class Proposer {
 public:
  virtual ~Proposer() = default;
  // Up to k guesses of what follows `history` (possibly none).
  virtual std::vector<int32_t> propose(std::span<const int32_t> history, int k) = 0;
  // The first `kept` guesses of the last proposal were accepted.
  virtual void accepted(int kept) { (void)kept; }
};

// The proposer of `options.method` (null for None).
std::unique_ptr<Proposer> make_proposer(const SpeculativeOptions& options);

}  // namespace tpinfer
