// Token sampling on the driver: repetition / presence / frequency penalties,
// temperature, top-k, top-p and min-p, from a seeded generator (the same seed
// and logits give the same tokens). Temperature 0 is greedy (argmax; ties go to
// the lowest id).
//
// A row comes whole or as the ranks' summaries of their vocabulary shards
// (parallel/logit_summary.h, shard-local sampling). Both go through the same
// arithmetic: the penalties with the same float operations (on the ranks, or
// here on a whole row), then the top-k candidates by logit (ties to the lower
// id), which the summaries hold exactly when each rank sent summary_top() of
// them; temperature, min-p, top-p and the draw only ever look at those k. So
// for the same seed both give the same token, bit for bit. Sampling with no
// top-k reads the whole vocabulary: summary_top() is 0 and the row must come
// whole.
#pragma once

#include <cstdint>
#include <random>
#include <span>
#include <vector>

#include "parallel/batch.h"
#include "parallel/logit_summary.h"

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
  const SamplingParams& params() const { return p_; }
  // Candidates per rank that a summarised row needs for sample() and
  // verify() (and, with top_logprobs n >= 0, logprobs() of n) to give exactly
  // what the whole row gives: 1 greedy, top_k sampling; 0 when only the whole
  // row will do (sampling with top-k off).
  int summary_top(int top_logprobs = -1) const;
  // What the ranks need to penalise a row that follows `history` (prompt and
  // generated tokens); empty when these params penalise nothing.
  PenaltyInputs penalties(std::span<const int32_t> history) const;
  bool penalizes() const {
    return (p_.repeat_penalty != 1.0f && p_.repeat_last_n != 0) || p_.presence_penalty != 0.0f ||
           p_.frequency_penalty != 0.0f;
  }
  // Picks the next token from `logits` (modified in place by the penalties) given
  // the tokens so far (prompt and generated).
  int32_t sample(std::span<float> logits, std::span<const int32_t> history);
  // The same for a row whole (as above) or summarised (its penalties applied
  // on the ranks, from penalties(history); `history` is not read then).
  int32_t sample(const LogitRow& row, std::span<const int32_t> history);
  // Speculative decoding: decides a token someone proposed deterministically
  // (a point mass q on `proposed`) against the distribution p that sample()
  // would draw from here. Greedy: accepted iff it is the argmax, else the
  // argmax. Sampled: accepted with probability min(1, p/q) = p(proposed), else
  // drawn from the residual max(0, p - q), normalized: p without `proposed`.
  // Either way the token that comes out is distributed exactly as sample()'s.
  Verdict verify(std::span<float> logits, std::span<const int32_t> history, int32_t proposed);
  Verdict verify(const LogitRow& row, std::span<const int32_t> history, int32_t proposed);
  // Log-probabilities of the distribution the last sample() drew from
  // (before truncation, after penalties and temperature): filled on request.
  static void log_softmax(std::span<const float> logits, std::vector<float>& out);
  // The log-probability of `token` in a row sampled from (after penalties,
  // before temperature and truncation), and the n most likely (id, logprob)
  // into `top` (n <= 0: none). A summarised row has them from its candidates
  // and the ranks' log-sum-exps (exact to rounding of the sum): it needs
  // summary_top(n) candidates, and `token` among them (a sampled token is).
  static float logprobs(const LogitRow& row, int32_t token, int n, std::vector<std::pair<int32_t, float>>& top);

 private:
  // candidates_: the top-k of a whole row (all of it without top-k) or of
  // the summaries, by logit, ties to the lower id.
  void candidates_of(std::span<const float> logits);
  void candidates_of(const LogitRow& row);
  // Fills probs_ (softmax with temperature over candidates_) and returns how
  // many survive min-p and top-p.
  size_t truncate();
  int32_t draw();
  Verdict decide(int32_t proposed);

  SamplingParams p_;
  std::mt19937_64 rng_;
  std::vector<std::pair<float, int32_t>> candidates_;
  std::vector<double> probs_;
};

int32_t argmax(std::span<const float> logits);

// What a batch's logits rows need from the ranks (shard-local sampling): add()
// each row's sampler and history in row order, then fill() the batch with
// top = Engine::summary_top(wanted()); read the rows back with
// Engine::logit_row(out, top, row).
class SummaryRequest {
 public:
  // A row sampled by `s` after `history` (prompt and tokens so far), with
  // logprobs of top_logprobs alternatives (-1: none).
  void add(const Sampler& s, std::span<const int32_t> history, int top_logprobs = -1);
  // A row that must come whole whatever its sampler (a constraint that
  // masks the whole row first, a caller that reads every logit).
  void add_whole();
  // Candidates per rank that make every row exact; 0 when some row needs it whole.
  int wanted() const { return whole_ ? 0 : wanted_; }
  // b.logit_top = top, and with top > 0 the rows' penalties when any has
  // some, and the log-sum-exp when any row wants logprobs.
  void fill(Batch& b, int top);

 private:
  int wanted_ = 0;
  bool whole_ = false;
  bool lse_ = false;
  bool penalized_ = false;
  std::vector<PenaltyInputs> penalties_;
};

}  // namespace tpinfer
