// tpinfer itself under mpirun: one process per rank gives the tokens the local
// back end gives; a model that differs between ranks is refused naming the
// hosts; a rank killed (SIGKILL) or stopped (SIGSTOP) mid-generation ends the
// whole job, naming the deadline, with no process left (within --comm-timeout
// plus a few seconds: a timed test, TPINFER_TIMED_TESTS=1).
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

// Starts a long generation under mpirun, then sends `signal` to rank 1 once
// the generation streams (the first text on rank 0's stdout) and rank 1 runs;
// returns the job's exit code, its output and how long it took after the
// signal.
struct Fault {
  int code;
  std::string output;
  double seconds_after_signal;
  std::string leftovers;
};

// The generation must outlast the signal: the bible model's context is 512
// tokens, so the KV cache is sized well past it (-c 65536) for a long run.
// The script waits for the generation to start (up to 60 s: a cap that only
// ends a hang), not for a guess of how long start-up takes on a loaded machine.
// After mpirun returned, its processes are gone (it waits for them); the
// leftover check looks for up to 2 s, short of the 3 s deadline that would end
// a leftover rank stuck in a collective on its own.
Fault run_with_fault(const std::string& signal, int comm_timeout, const std::string& layout = "-tp 2") {
  const std::string tag = "mpi-fault-" + std::to_string(::getpid()) + "-" + signal;
  testing::TempDir dir;
  const std::string script = dir.file("fault.sh");
  const std::string procs = "pgrep -f '[t]pinfer run .*" + tag + "'";
  const std::string cmd =
      "set -u\n"
      "timeout -k 5 120 " + std::string(kMpirun) + " -np 2 " + testing::binary() + " run -m " + model() +
      " " + layout + " -c 65536 -p '" + tag + "' -n 1000000 --ignore-eos --temperature 0 --comm-timeout " +
      std::to_string(comm_timeout) + " > " + dir.file("out.txt") + " 2> " + dir.file("err.txt") + " &\n"
      "job=$!\n"
      "target=\"\"\n"
      "for (( i = 0; i < 600; i++ )); do\n"
      "  if [ -s " + dir.file("out.txt") + " ]; then\n"
      "    for pid in $(" + procs + "); do\n"
      "      if tr '\\0' '\\n' < /proc/$pid/environ 2>/dev/null | grep -qx OMPI_COMM_WORLD_RANK=1; then\n"
      "        target=$pid\n"
      "      fi\n"
      "    done\n"
      "  fi\n"
      "  [ -n \"$target\" ] && break\n"
      "  kill -0 $job 2>/dev/null || break\n"
      "  sleep 0.1\n"
      "done\n"
      "if [ -n \"$target\" ]; then kill -" + signal + " $target; else echo 'NO SIGNAL: no generation in 60 s'; fi\n"
      "start=$(date +%s.%N)\n"
      "wait $job; code=$?\n"
      "end=$(date +%s.%N)\n"
      "echo \"exit $code after $(awk -v a=$start -v b=$end 'BEGIN { print b - a }')\"\n"
      "for (( i = 0; i < 20; i++ )); do " + procs + " >/dev/null || break; sleep 0.1; done\n"
      + procs + " | sed 's/^/LEFTOVER /'; pkill -9 -f '[t]pinfer run .*" + tag + "'\n"
      "cat " + dir.file("err.txt") + " " + dir.file("out.txt") + "\n";
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

// The jobs below run with --comm-timeout 3. How long after the signal they
// may take to end: by default only a hang-catcher, ten times the deadline and
// a second (a hung job lasts until the 120 s watchdog); timed
// (TPINFER_TIMED_TESTS=1), the figure promised on an idle machine: the
// deadline plus 5 s.
constexpr int kCommTimeout = 3;
constexpr double kHangCatcher = 10 * (kCommTimeout + 1.0);
constexpr double kPromised = kCommTimeout + 5.0;

void check_killed_rank_ends_the_job(double bound) {
  const Fault f = run_with_fault("KILL", kCommTimeout);
  EXPECT_NE(f.code, 0) << f.output;
  EXPECT_LT(f.seconds_after_signal, bound) << f.output;
  EXPECT_EQ(f.leftovers, "") << "processes left behind";
}

void check_stopped_rank_times_out_naming_it(double bound) {
  const Fault f = run_with_fault("STOP", kCommTimeout);
  EXPECT_NE(f.code, 0) << f.output;
  EXPECT_LT(f.seconds_after_signal, bound) << f.output;
  EXPECT_NE(f.output.find("timed out after 3 s on rank 0"), std::string::npos) << f.output;
  EXPECT_NE(f.output.find("rank(s) 1 did not arrive"), std::string::npos) << f.output;
  EXPECT_EQ(f.leftovers, "") << "processes left behind";
}

// A stopped last stage: the driver's wait for its logits has the deadline.
void check_stopped_pipeline_stage_times_out_naming_it(double bound) {
  const Fault f = run_with_fault("STOP", kCommTimeout, "-pp 2");
  EXPECT_NE(f.code, 0) << f.output;
  EXPECT_LT(f.seconds_after_signal, bound) << f.output;
  EXPECT_NE(f.output.find("on rank 0 timed out after 3 s: rank 1 sent nothing"), std::string::npos) << f.output;
  EXPECT_EQ(f.leftovers, "") << "processes left behind";
}

TEST(MpiRun, KilledRankEndsTheJob) {
  if (!have_mpi()) GTEST_SKIP() << "mpirun not available";
  check_killed_rank_ends_the_job(kHangCatcher);
}

TEST(MpiRun, StoppedRankTimesOutNamingIt) {
  if (!have_mpi()) GTEST_SKIP() << "mpirun not available";
  check_stopped_rank_times_out_naming_it(kHangCatcher);
}

TEST(MpiRun, StoppedPipelineStageTimesOutNamingIt) {
  if (!have_mpi()) GTEST_SKIP() << "mpirun not available";
  check_stopped_pipeline_stage_times_out_naming_it(kHangCatcher);
}

// Timed: the three faults end the job within the deadline plus 5 s.
TEST(MpiRun, TimedFaultsEndTheJobWithinTheDeadlinePlusFiveSeconds) {
  TPINFER_SKIP_UNLESS_TIMED();
  if (!have_mpi()) GTEST_SKIP() << "mpirun not available";
  check_killed_rank_ends_the_job(kPromised);
  check_stopped_rank_times_out_naming_it(kPromised);
  check_stopped_pipeline_stage_times_out_naming_it(kPromised);
}

}  // namespace
}  // namespace tpinfer
