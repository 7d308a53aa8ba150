// tpinfer itself under mpirun: one process per rank gives the tokens the local
// back end gives; a model that differs between ranks is refused naming the
// hosts; a rank killed (SIGKILL) or stopped (SIGSTOP) mid-generation ends the
// whole job within --comm-timeout plus a few seconds, with no process left.
// Every job runs behind `timeout` so the suite cannot hang. Skips without mpirun.
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <nlohmann/json.hpp>
#include <string>

#include "test_util.h"

namespace tpinfer {
namespace {

using Clock = std::chrono::steady_clock;

const char* kMpirun = "mpirun --allow-run-as-root --oversubscribe";

bool have_mpi() {
#ifdef TPINFER_HAVE_MPI
  return testing::run_command("command -v mpirun", nullptr) == 0;
#else
  return false;
#endif
}

std::string model() { return testing::source_dir() + "/models/bible-q8_0.gguf"; }

std::string tokens_of(const std::string& json_text) {
  const auto j = nlohmann::json::parse(json_text.substr(json_text.find('{')));
  return j["tokens"].dump() + " " + j["stats"]["comm_backend"].get<std::string>();
}

TEST(MpiRun, SameTokensAsLocal) {
  if (!have_mpi()) GTEST_SKIP() << "mpirun not available (install openmpi-bin libopenmpi-dev)";
  const std::string args = " run -m " + model() + " -tp 2 -p 'And Jesus said unto them,' -n 32 --temperature 0 --json";
  std::string local, mpi;
  ASSERT_EQ(testing::run_command(testing::binary() + args + " --comm local 2>/dev/null", &local), 0) << local;
  ASSERT_EQ(testing::run_command(std::string("timeout -k 5 120 ") + kMpirun + " -np 2 " + testing::binary() + args +
                                     " 2>/dev/null",
                                 &mpi),
            0)
      << mpi;
  const std::string a = tokens_of(local), b = tokens_of(mpi);
  EXPECT_EQ(a.substr(0, a.rfind(' ')), b.substr(0, b.rfind(' ')));
  EXPECT_NE(a.find(" local"), std::string::npos);
  EXPECT_NE(b.find(" mpi"), std::string::npos);
}

// Pipeline stages under mpirun (one process per rank, world = tp x pp, a
// tensor-parallel group on consecutive ranks) and on the local back end give
// the greedy tokens of TP=1, on the bible model and on a synth one.
std::string run_tokens(const std::string& launcher, const std::string& model, const std::string& layout,
                       const std::string& prompt) {
  std::string out;
  const std::string cmd = launcher + testing::binary() + " run -m " + model + " " + layout + " -p '" + prompt +
                          "' -n 32 --temperature 0 --ignore-eos --json 2>/dev/null";
  const int code = testing::run_command(cmd, &out);
  EXPECT_EQ(code, 0) << cmd << "\n" << out;
  if (code != 0 || out.find('{') == std::string::npos) return "(failed)";
  return tokens_of(out);
}

TEST(MpiRun, PipelineLayoutsGiveTheTokensOfTp1) {
  const bool mpi = have_mpi();
  testing::TempDir dir;
  const std::string synth = dir.file("synth.gguf");
  std::string out;
  ASSERT_EQ(testing::run_command(testing::binary() +
                                     " synth --arch llama --layers 4 --hidden 256 --heads 8 --kv-heads 4 --ffn 512 "
                                     "--vocab 512 --dtype f32 --seed 11 -o " + synth,
                                 &out),
            0)
      << out;
  struct Layout {
    int tp, pp;
  };
  for (const auto& [model, prompt] : std::vector<std::pair<std::string, std::string>>{
           {model(), "And Jesus said unto them,"}, {synth, "hello pipeline"}}) {
    std::string base = run_tokens("", model, "-tp 1 --comm local", prompt);
    base = base.substr(0, base.rfind(' '));
    for (const Layout l : {Layout{1, 2}, Layout{2, 2}, Layout{1, 4}, Layout{2, 1}}) {
      const std::string layout = "-tp " + std::to_string(l.tp) + " -pp " + std::to_string(l.pp);
      const std::string local = run_tokens("", model, layout + " --comm local", prompt);
      EXPECT_EQ(local, base + " local") << model << " " << layout;
      if (!mpi) continue;
      const std::string launcher =
          std::string("timeout -k 5 120 ") + kMpirun + " -np " + std::to_string(l.tp * l.pp) + " ";
      const std::string over_mpi = run_tokens(launcher, model, layout, prompt);
      EXPECT_EQ(over_mpi, base + " mpi") << model << " " << layout;
    }
  }
  if (!mpi) GTEST_SKIP() << "the local back end passed; mpirun not available for the mpi half";
}

TEST(MpiRun, WorldSizeMustBeTpTimesPp) {
  if (!have_mpi()) GTEST_SKIP() << "mpirun not available";
  std::string out;
  const int code = testing::run_command(std::string("timeout -k 5 120 ") + kMpirun + " -np 3 " + testing::binary() +
                                            " run -m " + model() + " -tp 2 -pp 2 -p hi -n 2",
                                        &out);
  EXPECT_NE(code, 0) << out;
  EXPECT_NE(out.find("mpirun started 3 processes but tensor-parallel-size x pipeline-parallel-size is 2 x 2 = 4"),
            std::string::npos)
      << out;
}

TEST(MpiRun, DifferentModelPerRankIsRefused) {
  if (!have_mpi()) GTEST_SKIP() << "mpirun not available";
  testing::TempDir dir;
  const std::string other = testing::shared_dir() + "/models/bible/bible-bf16.gguf";
  std::string out;
  const std::string run = " run -tp 2 -p hi -n 2 -m ";
  const int code = testing::run_command(std::string("timeout -k 5 120 ") + kMpirun + " -np 1 " + testing::binary() +
                                            run + model() + " : -np 1 " + testing::binary() + run + other,
                                        &out);
  EXPECT_NE(code, 0) << out;
  EXPECT_NE(out.find("differs between rank 0 (host "), std::string::npos) << out;
  EXPECT_NE(out.find("and rank 1 (host "), std::string::npos) << out;
}

// Starts a long generation under mpirun, then sends `signal` to rank 1 after
// two seconds; returns the job's exit code, its output and how long it took
// after the signal.
struct Fault {
  int code;
  std::string output;
  double seconds_after_signal;
  std::string leftovers;
};

// The generation must outlast the signal: the bible model's context is 512
// tokens, so the KV cache is sized well past it (-c 65536) for a long run.
Fault run_with_fault(const std::string& signal, int comm_timeout, const std::string& layout = "-tp 2") {
  const std::string tag = "mpi-fault-" + std::to_string(::getpid()) + "-" + signal;
  testing::TempDir dir;
  const std::string script = dir.file("fault.sh");
  const std::string cmd =
      "set -u\n"
      "timeout -k 5 120 " + std::string(kMpirun) + " -np 2 " + testing::binary() + " run -m " + model() +
      " " + layout + " -c 65536 -p '" + tag + "' -n 1000000 --ignore-eos --temperature 0 --comm-timeout " +
      std::to_string(comm_timeout) + " > " + dir.file("out.txt") + " 2>&1 &\n"
      "job=$!\n"
      "sleep 3\n"
      "for pid in $(pgrep -f '[t]pinfer run .*" + tag + "'); do\n"
      "  if tr '\\0' '\\n' < /proc/$pid/environ 2>/dev/null | grep -qx OMPI_COMM_WORLD_RANK=1; then kill -" + signal +
      " $pid; fi\n"
      "done\n"
      "start=$(date +%s.%N)\n"
      "wait $job; code=$?\n"
      "end=$(date +%s.%N)\n"
      "echo \"exit $code after $(awk -v a=$start -v b=$end 'BEGIN { print b - a }')\"\n"
      "sleep 1\n"
      "pgrep -f '[t]pinfer run .*" + tag + "' | sed 's/^/LEFTOVER /'; pkill -9 -f '[t]pinfer run .*" + tag + "'\n"
      "cat " + dir.file("out.txt") + "\n";
  {
    FILE* f = std::fopen(script.c_str(), "w");
    std::fputs(cmd.c_str(), f);
    std::fclose(f);
  }
  Fault fault{};
  testing::run_command("bash " + script, &fault.output);
  const size_t at = fault.output.find("exit ");
  if (at != std::string::npos) {
    fault.code = std::stoi(fault.output.substr(at + 5));
    fault.seconds_after_signal = std::stod(fault.output.substr(fault.output.find(" after ", at) + 7));
  }
  const size_t left = fault.output.find("LEFTOVER ");
  fault.leftovers = left == std::string::npos ? "" : fault.output.substr(left, 200);
  return fault;
}

TEST(MpiRun, KilledRankEndsTheJob) {
  if (!have_mpi()) GTEST_SKIP() << "mpirun not available";
  const Fault f = run_with_fault("KILL", 3);
  EXPECT_NE(f.code, 0) << f.output;
  EXPECT_LT(f.seconds_after_signal, 3 + 5.0) << f.output;
  EXPECT_EQ(f.leftovers, "") << "processes left behind";
}

TEST(MpiRun, StoppedRankTimesOutNamingIt) {
  if (!have_mpi()) GTEST_SKIP() << "mpirun not available";
  const Fault f = run_with_fault("STOP", 3);
  EXPECT_NE(f.code, 0) << f.output;
  EXPECT_LT(f.seconds_after_signal, 3 + 5.0) << f.output;
  EXPECT_NE(f.output.find("timed out after 3 s on rank 0"), std::string::npos) << f.output;
  EXPECT_NE(f.output.find("rank(s) 1 did not arrive"), std::string::npos) << f.output;
  EXPECT_EQ(f.leftovers, "") << "processes left behind";
}

// A stopped last stage: the driver's wait for its logits has the deadline.
TEST(MpiRun, StoppedPipelineStageTimesOutNamingIt) {
  if (!have_mpi()) GTEST_SKIP() << "mpirun not available";
  const Fault f = run_with_fault("STOP", 3, "-pp 2");
  EXPECT_NE(f.code, 0) << f.output;
  EXPECT_LT(f.seconds_after_signal, 3 + 5.0) << f.output;
  EXPECT_NE(f.output.find("on rank 0 timed out after 3 s: rank 1 sent nothing"), std::string::npos) << f.output;
  EXPECT_EQ(f.leftovers, "") << "processes left behind";
}

}  // namespace
}  // namespace tpinfer
