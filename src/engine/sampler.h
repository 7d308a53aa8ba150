// Token sampling on the driver: repetition / presence / frequency penalties,
// temperature, top-k, top-p and min-p, from a seeded generator (the same seed
// and logits give the same tokens). Temperature 0 is greedy (argmax; ties go to
// the lowest id).
#pragma once

#include <cstdint>
#include <random>
#include <span>
#include <vector>

namespace tpinfer {

struct SamplingParams {
  float temperature = 0.8f;
  int top_k = 40;               // 0: off
  float top_p = 0.95f;          // 1: off
  float min_p = 0.05f;          // 0: off
  float repeat_penalty = 1.0f;  // 1: off (llama.cpp semantics)
  int repeat_last_n = 64;
  float presence_penalty = 0.0f;  // OpenAI semantics
  float frequency_penalty = 0.0f;
  uint64_t seed = 0xC0FFEE;
};

// What verify() decided about a proposed token.
struct Verdict {
  bool accepted = false;
  int32_t token = -1;  // the proposed token when accepted, else the one drawn instead
};

class Sampler {
 public:
  explicit Sampler(const SamplingParams& params);
  // Picks the next token from `logits` (modified in place by the penalties) given
  // the tokens so far (prompt and generated).
  int32_t sample(std::span<float> logits, std::span<const int32_t> history);
  // Speculative decoding: decides a token someone proposed deterministically
  // (a point mass q on `proposed`) against the distribution p that sample()
  // would draw from here. Greedy: accepted iff it is the argmax, else the
  // argmax. Sampled: accepted with probability min(1, p/q) = p(proposed), else
  // drawn from the residual max(0, p - q), normalized: p without `proposed`.
  // Either way the token that comes out is distributed exactly as sample()'s.
  Verdict verify(std::span<float> logits, std::span<const int32_t> history, int32_t proposed);
  // Log-probabilities of the distribution the last sample() drew from
  // (before truncation, after penalties and temperature): filled on request.
  static void log_softmax(std::span<const float> logits, std::vector<float>& out);

 private:
  void apply_penalties(std::span<float> logits, std::span<const int32_t> history) const;
  // Fills candidates_ (by logit, ties to the lower id) and probs_ (softmax with
  // temperature over the top-k) and returns how many survive min-p and top-p.
  size_t truncate(std::span<const float> logits);

  SamplingParams p_;
  std::mt19937_64 rng_;
  std::vector<std::pair<float, int32_t>> candidates_;
  std::vector<double> probs_;
};

int32_t argmax(std::span<const float> logits);

}  // namespace tpinfer
