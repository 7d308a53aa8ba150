// Single-sequence text generation and perplexity on an Engine: chunked prefill,
// then one token per step (or, speculating, the accepted guesses and one more), with timings and communication counters
// for the stats line. (The server's continuous batching lives in engine/scheduler.h.)
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "engine/constraint.h"
#include "engine/engine.h"
#include "engine/sampler.h"
#include "engine/speculative.h"

namespace tpinfer {

struct GenerationStats {
  int64_t prompt_tokens = 0;
  int64_t generated_tokens = 0;
  double prefill_seconds = 0;
  double decode_seconds = 0;
  // Tensor-parallel communication during decode and prefill (driver's counters).
  CommStats decode_comm;
  CommStats prefill_comm;
  // Both dimensions and the pipeline stages' times (Engine::parallel_stats()).
  ParallelStats decode_parallel;
  ParallelStats prefill_parallel;
  // Every rank of the driver's tensor-parallel group during decode
  // (Engine::tp_rank_collectives()): the least of their collective time is
  // what communication added to the decode on its critical path.
  std::vector<Engine::RankCollectives> decode_ranks;
  // Decode's forward passes of the target model, and with speculation the
  // tokens proposed and accepted.
  int64_t decode_forwards = 0;
  int64_t proposed_tokens = 0;
  int64_t accepted_tokens = 0;
  double acceptance_rate() const {
    return proposed_tokens > 0 ? static_cast<double>(accepted_tokens) / static_cast<double>(proposed_tokens) : 0;
  }
  // Generated tokens per decode forward (the first token comes from the prefill).
  double tokens_per_forward() const {
    return decode_forwards > 0 ? static_cast<double>(generated_tokens - 1) / static_cast<double>(decode_forwards) : 0;
  }
};

struct GenerateOptions {
  int max_tokens = 128;
  int prefill_chunk = 512;
  bool stop_at_eog = true;
  // With a method, each decode step runs the last token and the proposed
  // ones through the model together (engine/speculative.h).
  SpeculativeOptions speculative;
  // Structured output (engine/constraint.h): the generation's constraint, or
  // null. It ends the generation when complete; no guesses are taken with it.
  TokenConstraint* constraint = nullptr;
};

// Generates after `prompt`; calls on_token for every new token (return false to
// stop). Returns the generated tokens.
std::vector<int32_t> generate(Engine& engine, const std::vector<int32_t>& prompt, const SamplingParams& sampling,
                              const GenerateOptions& options, const std::function<bool(int32_t)>& on_token,
                              GenerationStats* stats = nullptr);

struct PerplexityResult {
  double perplexity = 0;
  double nll_mean = 0;
  int64_t scored_tokens = 0;
  int chunks = 0;
  double seconds = 0;
};

// llama.cpp's llama-perplexity: the tokens are cut into chunks of `ctx`, the
// first token of each chunk becomes BOS (when the model has one), and only the
// second half of each chunk is scored. on_chunk(i, running ppl) reports progress.
PerplexityResult perplexity(Engine& engine, const std::vector<int32_t>& tokens, int ctx,
                            const std::function<void(int, double)>& on_chunk = {});

}  // namespace tpinfer
