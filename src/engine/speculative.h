// Speculative decoding's proposers and options: a cheap guess of the next k
// tokens that the target model then checks in one forward pass over k + 1
// positions (engine/generator.cc), keeping the guesses the sampler accepts
// (Sampler::verify: greedy output unchanged token for token, sampled output
// distributed exactly as without speculation).
//
// ngram (prompt lookup): the longest suffix of the text so far, n_max tokens
// down to n_min, that occurred earlier in it; the tokens that followed its
// latest earlier occurrence are the guess. Costs no model; pays off where the
// output repeats the input (quoting, editing, code, retrieval answers).
#pragma once

#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

namespace tpinfer {

enum class Speculation { None, Ngram };

struct SpeculativeOptions {
  Speculation method = Speculation::None;
  int k = 4;  // tokens proposed per target forward, [1, kMaxSpeculativeTokens]
  int ngram_max = 3;
  int ngram_min = 2;  // one-token matches guess wrong too often to pay for their rows
};

constexpr int kMaxSpeculativeTokens = 16;

// "--speculative x": none, ngram; ConfigError naming the valid ones otherwise.
Speculation parse_speculation(std::string_view name);
const char* name(Speculation s);
// ConfigError unless options are in range (k, n-gram lengths).
void check(const SpeculativeOptions& options);

// Up to k tokens that followed the latest earlier occurrence of the longest
// matching suffix of `history` (empty when no suffix of n_min tokens or more
// occurred before).
std::vector<int32_t> propose_ngram(std::span<const int32_t> history, int k, int n_max, int n_min);

}  // namespace tpinfer
