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
TEST(Bench, CriticalPathShareLeavesOutTheWaitForASlowerRank) {
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
  EXPECT_GT(r.median_collective_share, 0.25) << "the driver should wait for the rank with 3x its work";
  EXPECT_LT(r.median_critical_comm_share, 0.5 * r.median_collective_share)
      << "critical " << r.median_critical_comm_share << ", driver's collectives " << r.median_collective_share;
  EXPECT_GE(r.median_critical_comm_share, 0.0);

  // The per-rank report itself: since the previous report, and its own
  // collectives are not counted (two reports in a row give ~0).
  engine.tp_rank_collectives();
  const std::vector<Engine::RankCollectives> idle = engine.tp_rank_collectives();
  ASSERT_EQ(idle.size(), 2u);
  for (const auto& rank : idle) EXPECT_LT(rank.seconds, 0.05);
  testing::greedy_decode(engine, {1, 2, 3}, 8);
  const std::vector<Engine::RankCollectives> ranks = engine.tp_rank_collectives();
  ASSERT_EQ(ranks.size(), 2u);
  EXPECT_GT(ranks[0].wait_seconds, ranks[1].wait_seconds);
  for (const auto& rank : ranks) EXPECT_LE(rank.wait_seconds, rank.seconds);
}

TEST(Bench, OneRankHasNoCommunication) {
  testing::TempDir dir;
  const std::string path = dir.file("m.gguf");
  write_synth_model(testing::small_spec(Arch::Llama), path);
  EngineOptions o;
  o.kv_tokens = 64;
  Engine engine(path, o);
  const BenchResult r = bench_generate(engine, 4, 1);
  // A group of one does no communication; its collectives return at once
  // (their timers are all that shows, on a step of microseconds).
  EXPECT_LE(r.median_critical_comm_share, r.median_collective_share);
  EXPECT_LT(r.median_critical_comm_share, 0.1);
  ASSERT_EQ(engine.tp_rank_collectives().size(), 1u);
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

}  // namespace
}  // namespace tpinfer
