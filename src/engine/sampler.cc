#include "engine/sampler.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "core/error.h"

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

int Sampler::summary_top(int top_logprobs) const {
  int top = p_.temperature <= 0.0f ? 1 : p_.top_k;
  if (top <= 0) return 0;
  return std::max(top, top_logprobs);
}

PenaltyInputs Sampler::penalties(std::span<const int32_t> history) const {
  PenaltyInputs in;
  const bool repeat = p_.repeat_penalty != 1.0f && p_.repeat_last_n != 0;
  const bool additive = p_.presence_penalty != 0.0f || p_.frequency_penalty != 0.0f;
  if (!repeat && !additive) return in;
  in.repeat_penalty = repeat ? p_.repeat_penalty : 1.0f;
  in.presence_penalty = additive ? p_.presence_penalty : 0.0f;
  in.frequency_penalty = additive ? p_.frequency_penalty : 0.0f;
  const size_t from = !repeat || p_.repeat_last_n < 0 || history.size() < static_cast<size_t>(p_.repeat_last_n)
                          ? 0
                          : history.size() - static_cast<size_t>(p_.repeat_last_n);
  std::vector<int32_t> ids(history.begin(), history.end());
  std::sort(ids.begin(), ids.end());
  for (size_t i = 0; i < ids.size();) {
    size_t j = i;
    while (j < ids.size() && ids[j] == ids[i]) ++j;
    in.tokens.push_back({ids[i], static_cast<int32_t>(j - i), false});
    i = j;
  }
  if (repeat) {
    for (size_t i = from; i < history.size(); ++i) {
      auto it = std::lower_bound(in.tokens.begin(), in.tokens.end(), history[i],
                                 [](const PenaltyToken& t, int32_t id) { return t.id < id; });
      it->in_window = true;
    }
  }
  // A token only the repetition window penalises, without presence or
  // frequency penalties, changes nothing outside it: keep the list short.
  if (!additive) {
    std::erase_if(in.tokens, [](const PenaltyToken& t) { return !t.in_window; });
  }
  return in;
}

void Sampler::candidates_of(std::span<const float> logits) {
  const int32_t vocab = static_cast<int32_t>(logits.size());
  candidates_.clear();
  for (int32_t i = 0; i < vocab; ++i) candidates_.push_back({logits[static_cast<size_t>(i)], i});
  const size_t k =
      p_.top_k > 0 ? std::min<size_t>(static_cast<size_t>(p_.top_k), candidates_.size()) : candidates_.size();
  std::partial_sort(
      candidates_.begin(), candidates_.begin() + static_cast<std::ptrdiff_t>(k), candidates_.end(),
      [](const auto& a, const auto& b) { return a.first > b.first || (a.first == b.first && a.second < b.second); });
  candidates_.resize(k);
}

void Sampler::candidates_of(const LogitRow& row) {
  if (row.is_full()) {
    candidates_of(row.full);
    return;
  }
  const int k = p_.temperature <= 0.0f ? 1 : p_.top_k;
  if (k <= 0 || k > row.top) {
    throw Error(cat("sampling with top_k ", p_.top_k, " from summaries of ", row.top,
                    " candidates per rank: the row must come whole (Sampler::summary_top)"));
  }
  merge_candidates(row, static_cast<size_t>(k), candidates_);
}

size_t Sampler::truncate() {
  const size_t k = candidates_.size();
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

int32_t Sampler::draw() {
  const size_t keep = truncate();
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

int32_t Sampler::sample(std::span<float> logits, std::span<const int32_t> history) {
  LogitRow row;
  row.full = logits;
  return sample(row, history);
}

int32_t Sampler::sample(const LogitRow& row, std::span<const int32_t> history) {
  if (row.is_full()) {
    apply_penalties(row.full, 0, penalties(history));
    if (p_.temperature <= 0.0f) return argmax(row.full);
  }
  candidates_of(row);
  if (p_.temperature <= 0.0f) return candidates_[0].second;
  return draw();
}

Verdict Sampler::verify(std::span<float> logits, std::span<const int32_t> history, int32_t proposed) {
  LogitRow row;
  row.full = logits;
  return verify(row, history, proposed);
}

Verdict Sampler::verify(const LogitRow& row, std::span<const int32_t> history, int32_t proposed) {
  if (row.is_full()) {
    apply_penalties(row.full, 0, penalties(history));
    if (p_.temperature <= 0.0f) {
      const int32_t best = argmax(row.full);
      return {best == proposed, best};
    }
  }
  candidates_of(row);
  if (p_.temperature <= 0.0f) return {candidates_[0].second == proposed, candidates_[0].second};
  return decide(proposed);
}

Verdict Sampler::decide(int32_t proposed) {
  const size_t keep = truncate();
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

float Sampler::logprobs(const LogitRow& row, int32_t token, int n, std::vector<std::pair<int32_t, float>>& top) {
  top.clear();
  if (row.is_full()) {
    std::vector<float> lp;
    log_softmax(row.full, lp);
    const size_t vocab = lp.size();
    std::vector<int32_t> ids(vocab);
    for (size_t v = 0; v < vocab; ++v) ids[v] = static_cast<int32_t>(v);
    const size_t k = n > 0 ? std::min<size_t>(static_cast<size_t>(n), vocab) : 0;
    std::partial_sort(ids.begin(), ids.begin() + static_cast<std::ptrdiff_t>(k), ids.end(), [&](int32_t a, int32_t b) {
      return lp[static_cast<size_t>(a)] > lp[static_cast<size_t>(b)] ||
             (lp[static_cast<size_t>(a)] == lp[static_cast<size_t>(b)] && a < b);
    });
    for (size_t j = 0; j < k; ++j) top.push_back({ids[j], lp[static_cast<size_t>(ids[j])]});
    return token >= 0 && static_cast<size_t>(token) < vocab ? lp[static_cast<size_t>(token)]
                                                            : -std::numeric_limits<float>::infinity();
  }
  const float lse = summary_log_sum_exp(row);
  if (std::isnan(lse)) throw Error("logprobs of a row summarised without its log-sum-exp (Batch::logit_lse)");
  std::vector<std::pair<float, int32_t>> cand;
  merge_candidates(row, static_cast<size_t>(row.ranks) * static_cast<size_t>(row.top), cand);
  float out = -std::numeric_limits<float>::infinity();
  for (size_t j = 0; j < cand.size(); ++j) {
    const float lp = cand[j].first - lse;
    if (static_cast<int>(j) < n) top.push_back({cand[j].second, lp});
    if (cand[j].second == token) out = lp;
  }
  return out;
}

void SummaryRequest::add(const Sampler& s, std::span<const int32_t> history, int top_logprobs) {
  const int top = s.summary_top(top_logprobs);
  if (top == 0) whole_ = true;
  lse_ = lse_ || top_logprobs >= 0;
  wanted_ = std::max(wanted_, top);
  penalties_.push_back(s.penalizes() ? s.penalties(history) : PenaltyInputs{});
  penalized_ = penalized_ || !penalties_.back().empty();
}

void SummaryRequest::add_whole() {
  whole_ = true;
  penalties_.emplace_back();
}

void SummaryRequest::fill(Batch& b, int top) {
  b.logit_top = top;
  b.logit_lse = top > 0 && lse_;
  b.penalties.clear();
  if (top > 0 && penalized_) b.penalties = std::move(penalties_);
}

}  // namespace tpinfer
