#include "engine/benchmark.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <functional>
#include <random>

#include "core/error.h"
#include "engine/comm_summary.h"
#include "engine/generator.h"
#include "engine/sampler.h"

namespace tpinfer {
namespace {

using Clock = std::chrono::steady_clock;

BenchSample measure(Engine& engine, const std::function<int64_t()>& body) {
  engine.tp_rank_collectives();  // every rank counts from here
  engine.reset_comm_stats();
  const auto t0 = Clock::now();
  const int64_t tokens = body();
  const double s = std::chrono::duration<double>(Clock::now() - t0).count();
  const ParallelStats p = engine.parallel_stats();
  const std::vector<Engine::RankCollectives> ranks = engine.tp_rank_collectives();
  const CommSummary tp = summarize_comm(p.tp, s, tokens, ranks);
  BenchSample out;
  out.tokens_per_second = static_cast<double>(tokens) / s;
  out.collective_share = tp.share;
  out.wait_share = tp.wait_share;
  out.link_share = tp.link_share;
  out.critical_comm_share = tp.critical_share;
  out.rank_comm_share = tp.rank_share;
  out.rank_wait_share = tp.rank_wait_share;
  out.comm_bytes_per_token = tp.bytes_per_token;
  out.all_reduces_per_token = tp.all_reduces_per_token;
  out.pp_bytes_per_token = summarize_comm(p.pp, s, tokens).bytes_per_token;
  out.bubble_share = p.bubble_share();
  for (double busy : p.stage_busy_seconds) out.stage_busy_share.push_back(busy / s);
  return out;
}

BenchResult summarize(int64_t tokens, std::vector<BenchSample> samples) {
  BenchResult r;
  r.tokens = tokens;
  r.samples = samples;
  std::vector<double> tps, share, wait, link, critical, bubble;
  for (const BenchSample& s : samples) {
    tps.push_back(s.tokens_per_second);
    share.push_back(s.collective_share);
    wait.push_back(s.wait_share);
    link.push_back(s.link_share);
    critical.push_back(s.critical_comm_share);
    bubble.push_back(s.bubble_share);
  }
  auto median = [](std::vector<double> v) {
    std::sort(v.begin(), v.end());
    const size_t n = v.size();
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
  };
  r.median_tps = median(tps);
  r.min_tps = *std::min_element(tps.begin(), tps.end());
  r.max_tps = *std::max_element(tps.begin(), tps.end());
  double mean = 0;
  for (double t : tps) mean += t / static_cast<double>(tps.size());
  double var = 0;
  for (double t : tps) var += (t - mean) * (t - mean) / static_cast<double>(tps.size());
  r.stddev_tps = std::sqrt(var);
  r.median_collective_share = median(share);
  r.median_wait_share = median(wait);
  r.median_link_share = median(link);
  r.median_critical_comm_share = median(critical);
  r.median_bubble_share = median(bubble);
  r.comm_bytes_per_token = samples.back().comm_bytes_per_token;
  r.all_reduces_per_token = samples.back().all_reduces_per_token;
  r.pp_bytes_per_token = samples.back().pp_bytes_per_token;
  const auto at_median = std::min_element(samples.begin(), samples.end(), [&](const auto& a, const auto& b) {
    return std::abs(a.tokens_per_second - r.median_tps) < std::abs(b.tokens_per_second - r.median_tps);
  });
  r.stage_busy_share = at_median->stage_busy_share;
  r.rank_comm_share = at_median->rank_comm_share;
  r.rank_wait_share = at_median->rank_wait_share;
  return r;
}

std::vector<int32_t> tokens_for(const Engine& engine, int n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<int32_t> t(static_cast<size_t>(n));
  for (int32_t& x : t) x = static_cast<int32_t>(rng() % static_cast<uint64_t>(engine.config().vocab));
  return t;
}

// Runs `tokens` from position `start` of the sequence with block table `table`
// as one batch (logits for the last token only).
void run_batch(Engine& engine, std::vector<int32_t>& table, const std::vector<int32_t>& tokens, int64_t start) {
  if (!engine.blocks().reserve(table, start + static_cast<int64_t>(tokens.size()))) {
    throw ConfigError(
        cat("the KV cache cannot hold ", start + static_cast<int64_t>(tokens.size()), " tokens; raise --ctx-size"));
  }
  Batch b;
  b.sequences.push_back({table});
  // The logits come back as the default sampler (top-k 40) would ask for them.
  b.logit_top = engine.summary_top(Sampler(SamplingParams{}).summary_top());
  for (size_t i = 0; i < tokens.size(); ++i) {
    b.tokens.push_back(tokens[i]);
    b.positions.push_back(static_cast<int32_t>(start + static_cast<int64_t>(i)));
    b.seq.push_back(0);
    b.want_logits.push_back(i + 1 == tokens.size() ? 1 : 0);
  }
  engine.step(b);
}

}  // namespace

BenchResult bench_prompt(Engine& engine, int n_prompt, int reps, uint64_t seed) {
  const std::vector<int32_t> tokens = tokens_for(engine, n_prompt, seed);
  std::vector<BenchSample> samples;
  for (int r = -1; r < reps; ++r) {
    std::vector<int32_t> table;
    const BenchSample s = measure(engine, [&] {
      run_batch(engine, table, tokens, 0);
      return static_cast<int64_t>(n_prompt);
    });
    engine.blocks().release(table);
    if (r >= 0) samples.push_back(s);
  }
  BenchResult r = summarize(n_prompt, samples);
  r.measures_wait = engine.parallel_stats().tp_measures_wait;
  return r;
}

BenchResult bench_generate(Engine& engine, int n_gen, int reps, uint64_t seed) {
  const std::vector<int32_t> tokens = tokens_for(engine, n_gen + 1, seed);
  std::vector<BenchSample> samples;
  for (int r = -1; r < reps; ++r) {
    std::vector<int32_t> table;
    run_batch(engine, table, {tokens[0]}, 0);
    const BenchSample s = measure(engine, [&] {
      for (int i = 1; i <= n_gen; ++i) run_batch(engine, table, {tokens[static_cast<size_t>(i)]}, i);
      return static_cast<int64_t>(n_gen);
    });
    engine.blocks().release(table);
    if (r >= 0) samples.push_back(s);
  }
  BenchResult r = summarize(n_gen, samples);
  r.measures_wait = engine.parallel_stats().tp_measures_wait;
  return r;
}

SpeculativeBenchResult bench_speculative(Engine& engine, const std::vector<int32_t>& prompt, int n_gen, int reps,
                                         const SpeculativeOptions& spec) {
  if (n_gen < 2) throw ConfigError(cat("a speculative bench needs at least 2 generated tokens, got ", n_gen));
  SamplingParams greedy;
  greedy.temperature = 0;
  SpeculativeBenchResult r;
  std::vector<int32_t> reference;
  for (int rep = -1; rep < reps; ++rep) {
    for (const bool on : {false, true}) {
      GenerateOptions g;
      g.max_tokens = n_gen;
      g.stop_at_eog = false;
      if (on) g.speculative = spec;
      GenerationStats st;
      const std::vector<int32_t> out = generate(
          engine, prompt, greedy, g, [](int32_t) { return true; }, &st);
      if (!on) {
        reference = out;
      } else if (out != reference) {
        r.same_output = false;
      }
      if (rep < 0) continue;
      const double tps = st.decode_seconds > 0 ? static_cast<double>(st.generated_tokens - 1) / st.decode_seconds : 0;
      r.tokens = st.generated_tokens;
      if (on) {
        r.on_tps.push_back(tps);
        r.acceptance_rate = st.acceptance_rate();
        r.tokens_per_forward = st.tokens_per_forward();
        r.decode_forwards_on = st.decode_forwards;
      } else {
        r.off_tps.push_back(tps);
        r.decode_forwards_off = st.decode_forwards;
      }
    }
  }
  auto median = [](std::vector<double> v) {
    std::sort(v.begin(), v.end());
    const size_t n = v.size();
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
  };
  r.median_off_tps = median(r.off_tps);
  r.median_on_tps = median(r.on_tps);
  return r;
}

}  // namespace tpinfer
