// Shard-local sampling: what a rank sends the driver instead of its whole
// vocabulary shard of a logits row, and how the driver reads it.
//
// The lm_head is column-parallel over the vocabulary, so rank r computes the
// logits of ids [first_id, first_id + cols). Sampling needs far less than the
// whole row: greedy needs the argmax, top-k the k largest logits (the
// sampler's softmax, min-p and top-p run over those k only), logprobs the
// log-sum-exp and the top n. So each rank applies the row's penalties to its
// shard (it is told the history tokens and their counts, PenaltyInputs, and
// applies them with the very float operations the driver's full-row path
// does), then reduces each row to a summary of summary_floats(top) floats:
//
//   [0]            the shard's largest penalised logit (-inf for an empty shard)
//   [1]            sum over the shard of exp(logit - [0]), summed in double
//                  (NaN when not asked for: it costs an exp per logit)
//   [2 + 2i]       candidate i's vocabulary id, its int32 bits (-1: none)
//   [3 + 2i]       candidate i's penalised logit (-inf: none)
//
// Candidates are the shard's `top` largest penalised logits, by logit then
// lower id first. The global top k (k <= top) is the first k of the union of
// the shards' candidates in that order, so the driver gets the same
// candidates, the same floats, in the same order as from the full row.
#pragma once

#include <cstdint>
#include <span>
#include <utility>
#include <vector>

namespace tpinfer {

// One history token of a row: its id, how often it occurs in the whole
// history (presence and frequency penalties) and whether it is among the last
// repeat_last_n tokens (the repetition penalty).
struct PenaltyToken {
  int32_t id = 0;
  int32_t count = 0;
  bool in_window = false;
};

// The penalties of one logits row (engine/sampler.h's SamplingParams with the
// row's history boiled down). Empty tokens: nothing to apply.
struct PenaltyInputs {
  float repeat_penalty = 1.0f;  // llama.cpp: l > 0 ? l / p : l * p, on the window's tokens
  float presence_penalty = 0.0f;
  float frequency_penalty = 0.0f;    // OpenAI: l -= presence + frequency * count
  std::vector<PenaltyToken> tokens;  // by id, each once

  bool empty() const { return tokens.empty(); }
};

// Applies `p` to the logits of ids [first_id, first_id + logits.size()) (a
// shard; first_id 0 and the whole vocabulary on the driver). Tokens outside
// the range are not this shard's and are skipped.
void apply_penalties(std::span<float> logits, int64_t first_id, const PenaltyInputs& p);

// Floats of one rank's summary of one row with `top` candidates.
constexpr int64_t summary_floats(int top) { return 2 + 2 * static_cast<int64_t>(top); }

// The reference reduction (every device's: parallel/device.h
// summarize_logits): for each of `rows` rows of `logits` (`stride` floats
// apart, `cols` of them, vocabulary ids first_id..), penalised by
// penalties[row] when there are any (penalties empty: none), writes its
// summary to out + row * summary_floats(top), with the sum of exps when
// `lse`. `scratch` is reused.
void summarize_shard(const float* logits, int64_t rows, int64_t cols, int64_t stride, int64_t first_id, int top,
                     bool lse, std::span<const PenaltyInputs> penalties, float* out, std::vector<float>& scratch);

// One row of a step's output on the driver: either the full row of logits
// (penalties not yet applied) or every rank's summary of it, rank after rank
// (penalties applied on the ranks).
struct LogitRow {
  std::span<float> full;             // the whole vocabulary, or empty
  const float* summaries = nullptr;  // ranks x summary_floats(top)
  int ranks = 0;
  int top = 0;

  bool is_full() const { return summaries == nullptr; }
};

// The first min(k, available) candidates of `row`'s summaries, merged over the
// ranks: (logit, id), by logit then lower id first.
void merge_candidates(const LogitRow& row, size_t k, std::vector<std::pair<float, int32_t>>& out);

// log(sum over the whole vocabulary of exp(logit)) of a summarised row (NaN
// when its summaries were made without).
float summary_log_sum_exp(const LogitRow& row);

}  // namespace tpinfer
