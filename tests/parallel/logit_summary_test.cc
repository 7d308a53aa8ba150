// Shard-local sampling's reduction (parallel/logit_summary.h) against plain
// references on fresh random logits: each shard's top candidates after the
// penalties, its log-sum-exp, the merge over shards, and the batch words that
// carry the request to the ranks.
#include "parallel/logit_summary.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "core/error.h"
#include "parallel/batch.h"

namespace tpinfer {
namespace {

// Random logits in [-8, 8), never zero, with some exact ties (a tie must go
// to the lower id on both sides).
std::vector<float> random_logits(size_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> u(-8.0f, 8.0f);
  std::vector<float> l(n);
  for (float& x : l) {
    do x = u(rng);
    while (x == 0.0f);
  }
  for (size_t i = 7; i < n; i += 13) l[i] = l[i - 5];
  return l;
}

PenaltyInputs random_penalties(int64_t vocab, uint64_t seed) {
  std::mt19937_64 rng(seed);
  PenaltyInputs p;
  p.repeat_penalty = 1.3f;
  p.presence_penalty = -0.4f;  // negative: raises the logits of history tokens
  p.frequency_penalty = 0.25f;
  std::vector<int32_t> ids;
  for (int i = 0; i < 60; ++i) ids.push_back(static_cast<int32_t>(rng() % static_cast<uint64_t>(vocab)));
  std::sort(ids.begin(), ids.end());
  ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
  for (int32_t id : ids) p.tokens.push_back({id, static_cast<int32_t>(1 + rng() % 4), rng() % 2 == 0});
  return p;
}

// The plain reference: penalties one token at a time, then a full sort.
std::vector<std::pair<float, int32_t>> reference_top(std::vector<float> l, const PenaltyInputs& p, size_t k) {
  for (const PenaltyToken& t : p.tokens) {
    float& x = l[static_cast<size_t>(t.id)];
    if (p.repeat_penalty != 1.0f && t.in_window) x = x > 0 ? x / p.repeat_penalty : x * p.repeat_penalty;
    x -= p.presence_penalty + p.frequency_penalty * static_cast<float>(t.count);
  }
  std::vector<std::pair<float, int32_t>> all;
  for (size_t i = 0; i < l.size(); ++i) all.push_back({l[i], static_cast<int32_t>(i)});
  std::sort(all.begin(), all.end(), [](const auto& a, const auto& b) {
    return a.first > b.first || (a.first == b.first && a.second < b.second);
  });
  all.resize(std::min(k, all.size()));
  return all;
}

int32_t id_of(float f) {
  int32_t id;
  std::memcpy(&id, &f, sizeof(id));
  return id;
}

TEST(LogitSummary, ShardTopCandidatesAndLogSumExpMatchAPlainReference) {
  const int64_t cols = 500, first = 1000;
  for (int top : {1, 5, 40}) {
    for (bool penalised : {false, true}) {
      SCOPED_TRACE(::testing::Message() << "top " << top << (penalised ? " penalised" : ""));
      const int64_t rows = 3, stride = cols + 7;
      std::vector<float> logits(static_cast<size_t>(rows * stride), 1e30f);  // the gaps must not be read
      std::vector<PenaltyInputs> pens;
      for (int64_t r = 0; r < rows; ++r) {
        const std::vector<float> l = random_logits(static_cast<size_t>(cols), 17 + static_cast<uint64_t>(r));
        std::copy(l.begin(), l.end(), logits.begin() + r * stride);
        PenaltyInputs p = random_penalties(first + cols + 200, 5 + static_cast<uint64_t>(r));
        pens.push_back(penalised ? p : PenaltyInputs{});
      }
      std::vector<float> out(static_cast<size_t>(rows * summary_floats(top))), scratch;
      summarize_shard(logits.data(), rows, cols, stride, first, top, true, pens, out.data(), scratch);
      for (int64_t r = 0; r < rows; ++r) {
        // The reference works on the whole vocabulary; this shard is [first, first + cols).
        std::vector<float> whole(static_cast<size_t>(first + cols + 200), -100.0f);
        std::copy(logits.begin() + r * stride, logits.begin() + r * stride + cols, whole.begin() + first);
        const PenaltyInputs& p = pens[static_cast<size_t>(r)];
        std::vector<float> penalised_whole = whole;
        apply_penalties(penalised_whole, 0, p);
        const auto want = reference_top(whole, p, static_cast<size_t>(top));
        const float* o = out.data() + r * summary_floats(top);
        for (int i = 0; i < top; ++i) {
          EXPECT_EQ(id_of(o[2 + 2 * i]), want[static_cast<size_t>(i)].second) << "row " << r << " candidate " << i;
          EXPECT_EQ(o[3 + 2 * i], want[static_cast<size_t>(i)].first) << "row " << r << " candidate " << i;
        }
        double mx = -1e300, sum = 0;
        for (int64_t i = first; i < first + cols; ++i) mx = std::max(mx, static_cast<double>(penalised_whole[i]));
        for (int64_t i = first; i < first + cols; ++i) sum += std::exp(penalised_whole[i] - mx);
        EXPECT_EQ(o[0], static_cast<float>(mx));
        EXPECT_NEAR(std::log(o[1]) + o[0], std::log(sum) + mx, 1e-5);
      }
      // Without the log-sum-exp: the same candidates, the sum left out.
      std::vector<float> lean(out.size());
      summarize_shard(logits.data(), rows, cols, stride, first, top, false, pens, lean.data(), scratch);
      for (int64_t r = 0; r < rows; ++r) {
        const float* a = out.data() + r * summary_floats(top);
        const float* b = lean.data() + r * summary_floats(top);
        EXPECT_EQ(b[0], a[0]);
        EXPECT_TRUE(std::isnan(b[1]));
        EXPECT_EQ(std::memcmp(a + 2, b + 2, static_cast<size_t>(2 * top) * sizeof(float)), 0);
      }
    }
  }
}

TEST(LogitSummary, AShardSmallerThanTopIsPaddedAndMergesSkipThePadding) {
  const std::vector<float> l = random_logits(3, 9);
  std::vector<float> out(static_cast<size_t>(summary_floats(5))), scratch;
  summarize_shard(l.data(), 1, 3, 3, 10, 5, true, {}, out.data(), scratch);
  EXPECT_EQ(id_of(out[2 + 2 * 3]), -1);
  EXPECT_EQ(out[3 + 2 * 4], -std::numeric_limits<float>::infinity());
  LogitRow row;
  row.summaries = out.data();
  row.ranks = 1;
  row.top = 5;
  std::vector<std::pair<float, int32_t>> merged;
  merge_candidates(row, 5, merged);
  ASSERT_EQ(merged.size(), 3u);
  EXPECT_EQ(merged[0].first, *std::max_element(l.begin(), l.end()));
}

// Shards of one vocabulary (uneven, as a tensor split makes them), each
// summarised alone, then merged: the global top k and log-sum-exp.
TEST(LogitSummary, MergedShardsGiveTheWholeRowsTopKAndLogSumExp) {
  const int64_t vocab = 4096;
  const std::vector<float> l = random_logits(static_cast<size_t>(vocab), 42);
  const PenaltyInputs p = random_penalties(vocab, 3);
  for (const std::vector<int64_t>& cuts : {std::vector<int64_t>{0, 4096}, std::vector<int64_t>{0, 2048, 4096},
                                           std::vector<int64_t>{0, 1000, 2048, 3000, 4096}}) {
    const int ranks = static_cast<int>(cuts.size()) - 1;
    for (int top : {1, 40, 64}) {
      std::vector<float> summaries(static_cast<size_t>(ranks * summary_floats(top))), scratch;
      const std::vector<PenaltyInputs> pens{p};
      for (int r = 0; r < ranks; ++r) {
        const int64_t a = cuts[static_cast<size_t>(r)], b = cuts[static_cast<size_t>(r) + 1];
        summarize_shard(l.data() + a, 1, b - a, b - a, a, top, true, pens, summaries.data() + r * summary_floats(top),
                        scratch);
      }
      LogitRow row;
      row.summaries = summaries.data();
      row.ranks = ranks;
      row.top = top;
      for (int k : {1, top / 2 + 1, top}) {
        std::vector<std::pair<float, int32_t>> merged;
        merge_candidates(row, static_cast<size_t>(k), merged);
        EXPECT_EQ(merged, reference_top(l, p, static_cast<size_t>(k))) << ranks << " ranks, top " << top << " k " << k;
      }
      std::vector<float> pl = l;
      apply_penalties(pl, 0, p);
      double mx = *std::max_element(pl.begin(), pl.end()), sum = 0;
      for (float x : pl) sum += std::exp(x - mx);
      EXPECT_NEAR(summary_log_sum_exp(row), mx + std::log(sum), 1e-5);
    }
  }
}

TEST(LogitSummary, BatchWordsCarryTopAndPenaltiesThroughSplits) {
  Batch b;
  b.sequences.push_back({{0, 1}});
  for (int i = 0; i < 5; ++i) {
    b.tokens.push_back(i + 3);
    b.positions.push_back(i);
    b.seq.push_back(0);
    b.want_logits.push_back(i % 2 == 0 ? 1 : 0);
  }
  b.logit_top = 40;
  b.logit_lse = true;
  for (int r = 0; r < 3; ++r) b.penalties.push_back(random_penalties(4096, 11 + static_cast<uint64_t>(r)));
  const Batch d = Batch::decode(b.encode());
  EXPECT_EQ(d.logit_top, 40);
  EXPECT_TRUE(d.logit_lse);
  ASSERT_EQ(d.penalties.size(), 3u);
  for (size_t r = 0; r < 3; ++r) {
    EXPECT_EQ(d.penalties[r].repeat_penalty, b.penalties[r].repeat_penalty);
    EXPECT_EQ(d.penalties[r].presence_penalty, b.penalties[r].presence_penalty);
    EXPECT_EQ(d.penalties[r].frequency_penalty, b.penalties[r].frequency_penalty);
    ASSERT_EQ(d.penalties[r].tokens.size(), b.penalties[r].tokens.size());
    for (size_t i = 0; i < b.penalties[r].tokens.size(); ++i) {
      EXPECT_EQ(d.penalties[r].tokens[i].id, b.penalties[r].tokens[i].id);
      EXPECT_EQ(d.penalties[r].tokens[i].count, b.penalties[r].tokens[i].count);
      EXPECT_EQ(d.penalties[r].tokens[i].in_window, b.penalties[r].tokens[i].in_window);
    }
  }
  // Micro-batches keep each logits row's penalties with it.
  const std::vector<Batch> parts = b.split(2);
  ASSERT_EQ(parts.size(), 2u);
  EXPECT_EQ(parts[0].penalties.size(), static_cast<size_t>(parts[0].n_logits()));
  EXPECT_EQ(parts[1].penalties.size(), static_cast<size_t>(parts[1].n_logits()));
  EXPECT_EQ(parts[1].penalties.back().tokens[0].id, b.penalties.back().tokens[0].id);
  EXPECT_EQ(parts[1].logit_top, 40);
  // Penalty rows that do not match the logits rows are malformed.
  std::vector<int32_t> w = b.encode();
  b.penalties.pop_back();
  EXPECT_THROW(Batch::decode(b.encode()), Error);
  w.resize(w.size() - 3);
  EXPECT_THROW(Batch::decode(w), Error);
}

}  // namespace
}  // namespace tpinfer
