// Stop strings over streamed text against the plain reference on the whole
// text, for random texts, stop sets and cuttings into pieces; the size parser
// and the KV budget against the cache the engine really allocates; the
// Prometheus histogram.
#include <gtest/gtest.h>

#include <random>

#include "core/error.h"
#include "server/kv_budget.h"
#include "server/metrics.h"
#include "server/stop_matcher.h"
#include "test_util.h"

namespace tpinfer::server {
namespace {

// Random text of whole UTF-8 characters from a small alphabet (so stop strings
// occur often), including multi-byte ones.
std::vector<std::string> random_chars(std::mt19937_64& rng, size_t n) {
  static const std::vector<std::string> alphabet = {"a", "b", "c", " ", "\n", "\xc3\xa9", "\xe2\x82\xac",
                                                    "\xf0\x9f\x98\x80"};
  std::vector<std::string> out;
  for (size_t i = 0; i < n; ++i) out.push_back(alphabet[rng() % alphabet.size()]);
  return out;
}

std::string join(const std::vector<std::string>& v, size_t from, size_t to) {
  std::string s;
  for (size_t i = from; i < to; ++i) s += v[i];
  return s;
}

TEST(StopMatcher, RandomPiecesMatchTheReference) {
  std::mt19937_64 rng(31337);
  int stopped_cases = 0;
  for (int iter = 0; iter < 20000; ++iter) {
    const std::vector<std::string> chars = random_chars(rng, rng() % 40);
    std::vector<std::string> stops;
    for (size_t k = rng() % 4; k > 0; --k) {
      // Half of the stop strings are taken from the text itself.
      const std::vector<std::string> s = random_chars(rng, 1 + rng() % 4);
      if (rng() % 2 == 0 && chars.size() > 4) {
        const size_t from = rng() % (chars.size() - 1);
        stops.push_back(join(chars, from, std::min(chars.size(), from + 1 + rng() % 4)));
      } else {
        stops.push_back(join(s, 0, s.size()));
      }
    }
    const std::string text = join(chars, 0, chars.size());
    bool want_stopped = false;
    const std::string want = truncate_at_stop(text, stops, &want_stopped);

    StopMatcher m(stops);
    std::string got;
    size_t at = 0;
    while (at < chars.size()) {
      const size_t len = std::min(chars.size() - at, static_cast<size_t>(rng() % 4));
      const std::string piece = join(chars, at, at + len);
      at += len;
      got += m.push(piece);
      // What went out is always a prefix of the final answer: no piece of a
      // stop string is ever sent and then taken back.
      ASSERT_EQ(want.compare(0, got.size(), got), 0) << "text '" << text << "' got '" << got << "'";
      if (m.stopped()) break;
    }
    got += m.flush();
    ASSERT_EQ(got, want) << "text '" << text << "'";
    ASSERT_EQ(m.stopped(), want_stopped) << "text '" << text << "'";
    if (want_stopped) {
      ++stopped_cases;
      EXPECT_NE(std::find(stops.begin(), stops.end(), m.matched()), stops.end());
    }
  }
  EXPECT_GT(stopped_cases, 3000);
}

TEST(StopMatcher, HoldsBackOnlyWhatCouldStartAStop) {
  StopMatcher m({"STOP", "xyz"});
  EXPECT_EQ(m.push("hello S"), "hello ");
  EXPECT_EQ(m.push("T"), "");
  EXPECT_EQ(m.push("x"), "ST") << "'STx' cannot start a stop string, but 'x' can";
  EXPECT_EQ(m.push("y"), "");
  EXPECT_EQ(m.push("!"), "xy!");
  EXPECT_EQ(m.push("xyxy"), "xy") << "the second 'xy' could still become 'xyz'";
  EXPECT_EQ(m.push("!"), "xy!");
  EXPECT_EQ(m.push("ab STO"), "ab ");
  EXPECT_EQ(m.push("P and more"), "");
  EXPECT_TRUE(m.stopped());
  EXPECT_EQ(m.matched(), "STOP");
  EXPECT_EQ(m.push("after"), "");
  EXPECT_EQ(m.flush(), "");
  // The stop string that completes first wins, whatever the pieces.
  StopMatcher a({"abcd", "c"}), b({"abcd", "c"});
  EXPECT_EQ(a.push("abcd"), "ab");
  std::string pieces = b.push("ab");
  pieces += b.push("cd");
  EXPECT_EQ(pieces, "ab");
  // No stop strings: everything passes at once.
  StopMatcher none({});
  EXPECT_EQ(none.push("abc"), "abc");
  EXPECT_EQ(none.flush(), "");
}

TEST(KvBudget, ParsesSizes) {
  EXPECT_EQ(parse_byte_size("4096"), 4096u);
  EXPECT_EQ(parse_byte_size("512MiB"), 512ull << 20);
  EXPECT_EQ(parse_byte_size("2GiB"), 2ull << 30);
  EXPECT_EQ(parse_byte_size("2gib"), 2ull << 30);
  EXPECT_EQ(parse_byte_size("1.5G"), 3ull << 29);
  EXPECT_EQ(parse_byte_size("64K"), 64ull << 10);
  EXPECT_EQ(parse_byte_size("300 MB"), 300000000u);
  EXPECT_EQ(parse_byte_size("1TiB"), 1ull << 40);
  for (const char* bad : {"", "G", "1.2.3G", "-1G", "1X", "0", "0.0001", "1e3", "huge", "99999999999999999999T"}) {
    EXPECT_THROW(parse_byte_size(bad), ConfigError) << bad;
  }
}

// The budget arithmetic against the cache the engine really allocates on each
// rank, for even and uneven KV-head splits and every cache type.
TEST(KvBudget, TokensFitTheBudgetOnEveryRank) {
  testing::TempDir dir;
  SynthSpec spec = testing::small_spec(Arch::Llama);
  spec.layers = 3;
  spec.heads = 6;
  spec.kv_heads = 3;
  spec.hidden = 96;
  spec.ffn = 192;
  const std::string model = dir.file("kv.gguf");
  write_synth_model(spec, model);
  std::mt19937_64 rng(5);
  for (int tp : {1, 2, 3}) {
    for (DType kv : {DType::F32, DType::F16, DType::BF16}) {
      EngineOptions o = testing::f32_options(tp);
      o.kv_type = kv;
      const auto src = ModelSource::open(model);
      const ShardPlan plan = ShardPlan::build(src->config(), o.parallel, shard_constraints(*src));
      const uint64_t per_token = kv_bytes_per_token(src->config(), plan, kv);
      const uint64_t budget = per_token * o.kv_block_size * (1 + rng() % 8) + rng() % (per_token * o.kv_block_size);
      o.kv_tokens = kv_tokens_for_budget(budget, src->config(), plan, kv, o.kv_block_size);
      EXPECT_EQ(o.kv_tokens % o.kv_block_size, 0);
      Engine engine(model, o);
      uint64_t busiest = 0;
      for (const RankReport& r : engine.rank_reports()) busiest = std::max(busiest, r.kv_bytes);
      EXPECT_LE(busiest, budget) << "tp " << tp;
      EXPECT_GT(busiest + per_token * static_cast<uint64_t>(o.kv_block_size), budget)
          << "tp " << tp << ": a whole block more would have fit";
      EXPECT_EQ(busiest, per_token * static_cast<uint64_t>(o.kv_tokens)) << "tp " << tp;
    }
  }
  const auto src = ModelSource::open(model);
  const ShardPlan plan = ShardPlan::build(src->config(), testing::f32_options(1).parallel, shard_constraints(*src));
  EXPECT_THROW(kv_tokens_for_budget(100, src->config(), plan, DType::F16, 16), ConfigError);
}

TEST(Metrics, HistogramIsCumulative) {
  Histogram h({0.1, 1, 10});
  std::mt19937_64 rng(3);
  std::vector<double> values;
  for (int i = 0; i < 1000; ++i) values.push_back(static_cast<double>(rng() % 20000) / 1000.0);
  values.push_back(0.1);  // on a bound: counts in that bucket (le)
  double sum = 0;
  for (double v : values) {
    h.observe(v);
    sum += v;
  }
  std::string out;
  h.render(out, "x");
  for (const auto& [bound, label] : std::vector<std::pair<double, std::string>>{
           {0.1, "0.10000000000000001"}, {1, "1"}, {10, "10"}, {1e300, "+Inf"}}) {
    const size_t want = static_cast<size_t>(std::count_if(values.begin(), values.end(), [&](double v) { return v <= bound; }));
    EXPECT_NE(out.find("x_bucket{le=\"" + label + "\"} " + std::to_string(want) + "\n"), std::string::npos)
        << label << "\n" << out;
  }
  EXPECT_NE(out.find("x_count " + std::to_string(values.size()) + "\n"), std::string::npos) << out;
  const size_t at = out.find("x_sum ");
  ASSERT_NE(at, std::string::npos);
  EXPECT_NEAR(std::stod(out.substr(at + 6)), sum, 1e-6 * sum);
  EXPECT_EQ(escape_label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
}

TEST(Metrics, RequestsAreCountedByKnownEndpoint) {
  ServerMetrics m;
  m.count_request("/v1/completions", 200);
  m.count_request("/v1/completions", 200);
  m.count_request("/v1/completions", 400);
  m.count_request("/../etc/passwd\"", 404);
  const std::string out = m.render(SchedulerMetrics{});
  EXPECT_NE(out.find("tpinfer_requests_total{endpoint=\"/v1/completions\",status=\"200\"} 2\n"), std::string::npos);
  EXPECT_NE(out.find("tpinfer_requests_total{endpoint=\"/v1/completions\",status=\"400\"} 1\n"), std::string::npos);
  EXPECT_NE(out.find("tpinfer_requests_total{endpoint=\"other\",status=\"404\"} 1\n"), std::string::npos);
  EXPECT_EQ(out.find("passwd"), std::string::npos);
}

TEST(ServerMetrics, ExpertTokensSummedOverLayers) {
  ServerMetrics m;
  EXPECT_EQ(m.render(SchedulerMetrics{}).find("tpinfer_expert_tokens_total"), std::string::npos);  // dense: none
  m.set_expert_load(0, {{3, 1, 0, 4}, {2, 2, 2, 2}});
  m.set_expert_load(1, {{1, 0, 0, 0}, {0, 0, 0, 0}});  // a second replica adds to the totals
  const std::string out = m.render(SchedulerMetrics{});
  EXPECT_NE(out.find("# TYPE tpinfer_expert_tokens_total counter\n"), std::string::npos);
  EXPECT_NE(out.find("tpinfer_expert_tokens_total{expert=\"0\"} 6\n"), std::string::npos) << out;
  EXPECT_NE(out.find("tpinfer_expert_tokens_total{expert=\"2\"} 2\n"), std::string::npos) << out;
  EXPECT_NE(out.find("tpinfer_expert_tokens_total{expert=\"3\"} 6\n"), std::string::npos) << out;
}

}  // namespace
}  // namespace tpinfer::server
