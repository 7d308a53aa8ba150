// The measurements behind `tpinfer bench` (llama-bench style): prompt
// processing (one prefill of n_prompt tokens) and text generation (n_gen decode
// steps) on an Engine, repeated, reported as the median with the spread, plus
// the share of time inside collectives and the bytes moved per token. The
// collective share splits into the wait for the last rank to arrive (load
// imbalance: there with an infinitely fast link) and the link share, the time
// the collectives took once every rank was there (comm/communicator.h), and
// the critical-path share: the least collective share over the ranks. With
// pipeline stages: each stage's busy share, the bubble and the bytes sent
// between stages per token.
#pragma once

#include <cstdint>
#include <vector>

#include "engine/engine.h"
#include "engine/speculative.h"

namespace tpinfer {

struct BenchSample {
  double tokens_per_second = 0;
  double collective_share = 0;  // of the measured time: the driver's tensor-parallel collectives
  double wait_share = 0;        // of it: waiting for the last rank (0 when not measured)
  double link_share = 0;        // collective_share - wait_share
  // The least collective share over the ranks of the driver's group: what
  // communication adds to the step on its critical path (the rank that
  // computes longest waits least; the others' extra is load imbalance).
  // Engine::tp_rank_collectives().
  double critical_comm_share = 0;
  std::vector<double> rank_comm_share;  // each rank's collective share, [tp_rank]
  std::vector<double> rank_wait_share;  // of it, waiting for the last rank
  double comm_bytes_per_token = 0;      // tensor-parallel, the driver's
  double all_reduces_per_token = 0;
  double pp_bytes_per_token = 0;         // the driver's sends and receives between stages
  double bubble_share = 0;               // ParallelStats::bubble_share()
  std::vector<double> stage_busy_share;  // per stage: forward time / measured time
};

struct BenchResult {
  int64_t tokens = 0;
  std::vector<BenchSample> samples;
  double median_tps = 0;
  double min_tps = 0;
  double max_tps = 0;
  double stddev_tps = 0;
  double median_collective_share = 0;
  double median_wait_share = 0;
  double median_link_share = 0;
  double median_critical_comm_share = 0;
  std::vector<double> rank_comm_share;  // of the median-speed sample, [tp_rank]
  std::vector<double> rank_wait_share;
  bool measures_wait = false;  // the back end splits wait from link (else wait 0, link = all)
  double comm_bytes_per_token = 0;
  double all_reduces_per_token = 0;
  double pp_bytes_per_token = 0;
  double median_bubble_share = 0;
  std::vector<double> stage_busy_share;  // of the median-speed sample
};

// Prefill of n_prompt random tokens, `reps` times (after one warm-up); one
// Engine::step, so with pipeline stages it runs as micro-batches.
BenchResult bench_prompt(Engine& engine, int n_prompt, int reps, uint64_t seed = 1);
// n_gen decode steps after a 1-token context, `reps` times (after one warm-up).
BenchResult bench_generate(Engine& engine, int n_gen, int reps, uint64_t seed = 2);

// Speculative decoding against plain decoding on the same prompt: n_gen
// greedy tokens after `prompt`, without and with `spec`, alternating, `reps`
// times each (after one warm-up of each); decode tokens/s (first token, from
// the prefill, excluded), the guesses accepted, and whether the two outputs
// are the same tokens (they must be).
struct SpeculativeBenchResult {
  int64_t tokens = 0;  // generated per run
  std::vector<double> off_tps, on_tps;
  double median_off_tps = 0;
  double median_on_tps = 0;
  double acceptance_rate = 0;     // of the last run with speculation
  double tokens_per_forward = 0;  // of the last run with speculation
  int64_t decode_forwards_off = 0;
  int64_t decode_forwards_on = 0;
  bool same_output = true;
};
SpeculativeBenchResult bench_speculative(Engine& engine, const std::vector<int32_t>& prompt, int n_gen, int reps,
                                         const SpeculativeOptions& spec);

}  // namespace tpinfer
