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
  int top_k = 40;         // 0: off
  float top_p = 0.95f;    // 1: off
  float min_p = 0.05f;    // 0: off
  float repeat_penalty = 1.0f;  // 1: off (llama.cpp semantics)
  int repeat_last_n = 64;
  float presence_penalty = 0.0f;   // OpenAI semantics
  float frequency_penalty = 0.0f;
  uint64_t seed = 0xC0FFEE;
};

class Sampler {
 public:
  explicit Sampler(const SamplingParams& params);
  // Picks the next token from `logits` (modified in place by the penalties) given
  // the tokens so far (prompt and generated).
  int32_t sample(std::span<float> logits, std::span<const int32_t> history);
  // Log-probabilities of the distribution the last sample() drew from
  // (before truncation, after penalties and temperature): filled on request.
  static void log_softmax(std::span<const float> logits, std::vector<float>& out);

 private:
  SamplingParams p_;
  std::mt19937_64 rng_;
  std::vector<std::pair<float, int32_t>> candidates_;
};

int32_t argmax(std::span<const float> logits);

}  // namespace tpinfer
