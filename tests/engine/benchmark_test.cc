// engine/benchmark.h: the shares `tpinfer bench` reports. The critical-path
// share is the least collective share over the ranks of the driver's group,
// so a rank that waits for a slower one does not count its waiting as
// communication; the driver's own split into waiting and link stays as it was.
#include "engine/benchmark.h"

#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <string>

#include "model/synth.h"
#include "test_util.h"

namespace tpinfer {
namespace {

// Rank 1 holds three quarters of every split matrix (--tensor-split 1,3), so
// the driver (rank 0) spends about half of each step waiting for it, while
// rank 1 spends almost nothing in collectives: the critical path is rank 1's
// compute, and communication adds only the link time to it.
//
// The default test checks what holds however busy the machine is: the back
// end splits wait from link, the critical-path share is the least over the
// ranks so at most the driver's, a wait is within its total. The figures
// (the driver waits over a quarter of the time, the critical path is under
// half of the driver's share, rank 0 waits longer than rank 1, an empty report
// is ~0) are ratios of times: a timed test, TPINFER_TIMED_TESTS=1.
void check_critical_path_share(bool timed) {
  testing::TempDir dir;
  const std::string path = dir.file("m.gguf");
  SynthSpec spec;
  spec.layers = 4;
  spec.hidden = 512;
  spec.heads = 8;
  spec.kv_heads = 4;
  spec.ffn = 1536;
  spec.vocab = 512;
  spec.dtype = DType::Q8_0;
  write_synth_model(spec, path);
  EngineOptions o;
  o.parallel.tp = 2;
  o.parallel.threads_per_rank = 1;
  o.parallel.tensor_split = {1, 3};
  o.kv_tokens = 128;
  Engine engine(path, o);
  const BenchResult r = bench_generate(engine, 16, 3);
  ASSERT_TRUE(r.measures_wait);
  ASSERT_EQ(r.rank_comm_share.size(), 2u);
  EXPECT_GE(r.median_critical_comm_share, 0.0);
  EXPECT_LE(r.median_critical_comm_share, r.median_collective_share);
  if (timed) {
    EXPECT_GT(r.median_collective_share, 0.25) << "the driver should wait for the rank with 3x its work";
    EXPECT_LT(r.median_critical_comm_share, 0.5 * r.median_collective_share)
        << "critical " << r.median_critical_comm_share << ", driver's collectives " << r.median_collective_share;
  }

  // The per-rank report itself: since the previous report, and its own
  // collectives are not counted (two reports in a row give ~0).
  engine.tp_rank_collectives();
  const std::vector<Engine::RankCollectives> idle = engine.tp_rank_collectives();
  ASSERT_EQ(idle.size(), 2u);
  for (const auto& rank : idle) {
    EXPECT_LE(rank.wait_seconds, rank.seconds);
    if (timed) {
      EXPECT_LT(rank.seconds, 0.05);
    }
  }
  testing::greedy_decode(engine, {1, 2, 3}, 8);
  const std::vector<Engine::RankCollectives> ranks = engine.tp_rank_collectives();
  ASSERT_EQ(ranks.size(), 2u);
  if (timed) {
    EXPECT_GT(ranks[0].wait_seconds, ranks[1].wait_seconds);
  }
  for (const auto& rank : ranks) {
    EXPECT_GT(rank.seconds, 0.0) << "8 decode steps of all-reduces take some time";
    EXPECT_LE(rank.wait_seconds, rank.seconds);
  }
}

TEST(Bench, CriticalPathShareLeavesOutTheWaitForASlowerRank) { check_critical_path_share(/*timed=*/false); }

TEST(Bench, TimedCriticalPathShareLeavesOutTheWaitForASlowerRank) {
  TPINFER_SKIP_UNLESS_TIMED();
  check_critical_path_share(/*timed=*/true);
}

// A group of one does no communication: its all-reduces move no bytes and
// return at once. Their timers are all that shows, on a step of microseconds:
// under a tenth of the step, a ratio of times checked only in the timed test.
void check_one_rank(bool timed) {
  testing::TempDir dir;
  const std::string path = dir.file("m.gguf");
  write_synth_model(testing::small_spec(Arch::Llama), path);
  EngineOptions o;
  o.kv_tokens = 64;
  Engine engine(path, o);
  const BenchResult r = bench_generate(engine, 4, 1);
  const CollectiveCounter& all_reduce = engine.comm_stats()[Collective::AllReduce];
  EXPECT_GT(all_reduce.calls, 0u);
  EXPECT_EQ(all_reduce.bytes, 0u);
  EXPECT_LE(r.median_critical_comm_share, r.median_collective_share);
  if (timed) {
    EXPECT_LT(r.median_critical_comm_share, 0.1);
  }
  ASSERT_EQ(engine.tp_rank_collectives().size(), 1u);
}

TEST(Bench, OneRankHasNoCommunication) { check_one_rank(/*timed=*/false); }

TEST(Bench, TimedOneRankSpendsNoTimeCommunicating) {
  TPINFER_SKIP_UNLESS_TIMED();
  check_one_rank(/*timed=*/true);
}

// Under mpirun the report crosses processes: `tpinfer bench --json` on two
// mpi ranks gives a critical-path share no larger than the driver's.
TEST(Bench, CriticalPathShareUnderMpirun) {
#ifndef TPINFER_HAVE_MPI
  GTEST_SKIP() << "built without MPI";
#else
  if (testing::run_command("command -v mpirun", nullptr) != 0) GTEST_SKIP() << "mpirun not available";
  testing::TempDir dir;
  const std::string out = dir.file("bench.json");
  std::string log;
  const int rc = testing::run_command(
      "{ timeout -k 5 120 mpirun --allow-run-as-root --oversubscribe -np 2 " + testing::binary() + " bench -m " +
          testing::source_dir() + "/models/bible-q8_0.gguf -tp 2 -p 0 -n 8 -r 2 --json > " + out + "; }",
      &log);
  ASSERT_EQ(rc, 0) << log;
  std::ifstream in(out);
  const nlohmann::json j = nlohmann::json::parse(in);
  const auto& tg = j["runs"][0]["tg"];
  ASSERT_TRUE(tg.contains("critical_comm_share")) << tg.dump();
  EXPECT_GT(tg["critical_comm_share"].get<double>(), 0.0);
  EXPECT_LE(tg["critical_comm_share"].get<double>(), tg["collective_share"].get<double>() + 1e-9);
#endif
}

// bench --speculative: plain and speculative greedy decoding of the same
// quoting prompt give the same tokens in fewer forwards, at tp 1 and 2 (the
// bench's JSON, through the command line).
TEST(BenchSpeculative, SameOutputInFewerForwards) {
  testing::TempDir dir;
  const std::string out = dir.file("bench.json");
  std::string log;
  const int rc = testing::run_command(testing::binary() + " bench --no-pin -m " + testing::source_dir() +
                                          "/models/bible-q8_0.gguf -tp 1,2 -p 0 -n 32 -r 1 --speculative ngram "
                                          "--num-speculative-tokens 4 --json > " + out,
                                      &log);
  ASSERT_EQ(rc, 0) << log;
  std::ifstream in(out);
  const nlohmann::json j = nlohmann::json::parse(in);
  ASSERT_EQ(j["runs"].size(), 2u) << j.dump();
  for (const auto& run : j["runs"]) {
    const auto& s = run["speculative"];
    SCOPED_TRACE(s.dump());
    EXPECT_EQ(s["method"], "ngram");
    EXPECT_TRUE(s["same_output"].get<bool>());
    EXPECT_EQ(s["tokens"], 32);
    EXPECT_EQ(s["decode_forwards_off"], 31);
    EXPECT_LT(s["decode_forwards_on"].get<int>(), 31) << "the quote should have been guessed";
    EXPECT_GT(s["acceptance_rate"].get<double>(), 0.0);
    EXPECT_GT(s["tokens_per_forward"].get<double>(), 1.0);
    EXPECT_EQ(s["samples_on"].size(), 1u);
  }
}

}  // namespace
}  // namespace tpinfer
