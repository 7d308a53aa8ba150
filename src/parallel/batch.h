// One step's work for every rank: the tokens to run, their positions, and the
// KV-cache blocks of the sequences they belong to. The driver builds it (the
// scheduler owns block allocation) and broadcasts it; every rank runs the same
// batch on its own shard.
#pragma once

#include <cstdint>
#include <vector>

#include "parallel/logit_summary.h"

namespace tpinfer {

struct BatchSequence {
  std::vector<int32_t> block_table;  // KV-cache blocks holding positions 0, bs, 2bs, ...
};

struct Batch {
  std::vector<int32_t> tokens;
  std::vector<int32_t> positions;    // position of each token in its sequence
  std::vector<int32_t> seq;          // index into `sequences` for each token
  std::vector<uint8_t> want_logits;  // 1 where the driver needs this token's logits
  std::vector<BatchSequence> sequences;
  // How the logits rows reach the driver (parallel/logit_summary.h): 0, the
  // full rows (the lm_head's all-gather); else each rank's summary of each
  // row with this many candidates (and, with logit_lse, the shard's
  // log-sum-exp), after the rows' penalties: one
  // PenaltyInputs per logits row, in order, or none at all.
  int32_t logit_top = 0;
  bool logit_lse = false;  // the summaries carry the log-sum-exp (logprobs want it)
  std::vector<PenaltyInputs> penalties;

  int64_t size() const { return static_cast<int64_t>(tokens.size()); }
  int64_t n_logits() const;
  void clear();
  // Cuts the batch into min(parts, size()) micro-batches of consecutive tokens
  // (sizes differ by at most one), each with only the sequences its tokens
  // belong to. Run in order, they write the KV cache as the batch would, and
  // their logits rows, concatenated, are the batch's.
  std::vector<Batch> split(int parts) const;
  // Flat int32 encoding for broadcasting, and back. decode() validates every
  // count against the buffer and throws Error on a malformed one.
  std::vector<int32_t> encode() const;
  static Batch decode(const std::vector<int32_t>& words);
};

}  // namespace tpinfer
