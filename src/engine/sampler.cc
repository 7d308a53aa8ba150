#include "engine/sampler.h"

#include <algorithm>
#include <cmath>
#include <unordered_map>

namespace tpinfer {

int32_t argmax(std::span<const float> logits) {
  int32_t best = 0;
  for (size_t i = 1; i < logits.size(); ++i) {
    if (logits[i] > logits[static_cast<size_t>(best)]) best = static_cast<int32_t>(i);
  }
  return best;
}

Sampler::Sampler(const SamplingParams& params) : p_(params), rng_(params.seed) {}

void Sampler::log_softmax(std::span<const float> logits, std::vector<float>& out) {
  out.resize(logits.size());
  const float mx = *std::max_element(logits.begin(), logits.end());
  double sum = 0;
  for (float l : logits) sum += std::exp(static_cast<double>(l - mx));
  const float lse = mx + static_cast<float>(std::log(sum));
  for (size_t i = 0; i < logits.size(); ++i) out[i] = logits[i] - lse;
}

void Sampler::apply_penalties(std::span<float> logits, std::span<const int32_t> history) const {
  const int32_t vocab = static_cast<int32_t>(logits.size());
  if (p_.repeat_penalty != 1.0f && p_.repeat_last_n != 0) {
    const size_t from = p_.repeat_last_n < 0 || history.size() < static_cast<size_t>(p_.repeat_last_n)
                            ? 0
                            : history.size() - static_cast<size_t>(p_.repeat_last_n);
    std::vector<int32_t> seen(history.begin() + static_cast<std::ptrdiff_t>(from), history.end());
    std::sort(seen.begin(), seen.end());
    seen.erase(std::unique(seen.begin(), seen.end()), seen.end());
    for (int32_t t : seen) {
      if (t < 0 || t >= vocab) continue;
      float& l = logits[static_cast<size_t>(t)];
      l = l > 0 ? l / p_.repeat_penalty : l * p_.repeat_penalty;
    }
  }
  if (p_.presence_penalty != 0.0f || p_.frequency_penalty != 0.0f) {
    std::unordered_map<int32_t, int> counts;
    for (int32_t t : history) counts[t] += 1;
    for (const auto& [t, c] : counts) {
      if (t < 0 || t >= vocab) continue;
      logits[static_cast<size_t>(t)] -= p_.presence_penalty + p_.frequency_penalty * static_cast<float>(c);
    }
  }
}

size_t Sampler::truncate(std::span<const float> logits) {
  const int32_t vocab = static_cast<int32_t>(logits.size());
  // Candidates sorted by logit, truncated by top-k.
  candidates_.clear();
  for (int32_t i = 0; i < vocab; ++i) candidates_.push_back({logits[static_cast<size_t>(i)], i});
  const size_t k =
      p_.top_k > 0 ? std::min<size_t>(static_cast<size_t>(p_.top_k), candidates_.size()) : candidates_.size();
  std::partial_sort(
      candidates_.begin(), candidates_.begin() + static_cast<std::ptrdiff_t>(k), candidates_.end(),
      [](const auto& a, const auto& b) { return a.first > b.first || (a.first == b.first && a.second < b.second); });
  candidates_.resize(k);
  // Softmax with temperature.
  const float mx = candidates_[0].first;
  probs_.resize(k);
  double sum = 0;
  for (size_t i = 0; i < k; ++i) sum += probs_[i] = std::exp((candidates_[i].first - mx) / p_.temperature);
  for (double& p : probs_) p /= sum;
  // min-p: drop tokens below min_p x the most likely one.
  size_t keep = k;
  if (p_.min_p > 0.0f) {
    for (size_t i = 1; i < k; ++i) {
      if (probs_[i] < p_.min_p * probs_[0]) {
        keep = i;
        break;
      }
    }
  }
  // top-p: the smallest prefix whose mass reaches top_p.
  if (p_.top_p < 1.0f) {
    double cum = 0;
    for (size_t i = 0; i < keep; ++i) {
      cum += probs_[i];
      if (cum >= p_.top_p) {
        keep = i + 1;
        break;
      }
    }
  }
  return keep;
}

int32_t Sampler::sample(std::span<float> logits, std::span<const int32_t> history) {
  apply_penalties(logits, history);
  if (p_.temperature <= 0.0f) return argmax(logits);
  const size_t keep = truncate(logits);
  double mass = 0;
  for (size_t i = 0; i < keep; ++i) mass += probs_[i];
  const double r = std::uniform_real_distribution<double>(0.0, mass)(rng_);
  double cum = 0;
  for (size_t i = 0; i < keep; ++i) {
    cum += probs_[i];
    if (r < cum) return candidates_[i].second;
  }
  return candidates_[keep - 1].second;
}

Verdict Sampler::verify(std::span<float> logits, std::span<const int32_t> history, int32_t proposed) {
  apply_penalties(logits, history);
  if (p_.temperature <= 0.0f) {
    const int32_t best = argmax(logits);
    return {best == proposed, best};
  }
  const size_t keep = truncate(logits);
  double mass = 0, p = 0;
  size_t at = keep;
  for (size_t i = 0; i < keep; ++i) {
    mass += probs_[i];
    if (candidates_[i].second == proposed) {
      p = probs_[i];
      at = i;
    }
  }
  if (std::uniform_real_distribution<double>(0.0, 1.0)(rng_) < p / mass) return {true, proposed};
  // The residual: the kept tokens but the proposed one.
  const double rest = mass - p;
  const double r = std::uniform_real_distribution<double>(0.0, rest)(rng_);
  double cum = 0;
  size_t last = keep;
  for (size_t i = 0; i < keep; ++i) {
    if (i == at) continue;
    last = i;
    cum += probs_[i];
    if (r < cum) return {false, candidates_[i].second};
  }
  // Rounding at the end of the walk, or (p = mass) nothing left: the proposal stands.
  return last < keep ? Verdict{false, candidates_[last].second} : Verdict{true, proposed};
}

}  // namespace tpinfer
