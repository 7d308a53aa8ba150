// The mpi communicator across emulated hosts: tests/multihost/netns_hosts.sh
// puts one rank in each of two network namespaces joined through a switch
// namespace, with MPI pinned to TCP on those links. Needs root (namespaces);
// skips otherwise, and when the script reports it cannot make namespaces (77).
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <regex>
#include <string>

#include "core/error.h"
#include "test_util.h"

namespace tpinfer {
namespace {

using Clock = std::chrono::steady_clock;

struct HostsRun {
  int code = -1;
  std::string output;
  double seconds = 0;
};

std::string script() { return testing::source_dir() + "/tests/multihost/netns_hosts.sh"; }

HostsRun run_hosts(const std::string& script_args, const std::string& worker_args) {
#ifdef TPINFER_MPI_CHECK
  const std::string worker = TPINFER_MPI_CHECK;
#else
  const std::string worker;
#endif
  // TERM first, so the script's trap removes its namespaces; KILL 10 s later.
  const std::string cmd = cat("timeout -k 10 120 ", script(), " ", script_args, " -- ", worker, " ", worker_args);
  HostsRun run;
  const auto start = Clock::now();
  run.code = testing::run_command(cmd, &run.output);
  run.seconds = std::chrono::duration<double>(Clock::now() - start).count();
  return run;
}

#define SKIP_WITHOUT_NAMESPACES(run)                                                           \
  do {                                                                                         \
    if ((run).code == 77) GTEST_SKIP() << "netns_hosts.sh cannot run here:\n" << (run).output; \
  } while (0)

#define SKIP_UNLESS_ROOT_AND_MPI()                                                               \
  do {                                                                                           \
    if (!mpi_built()) GTEST_SKIP() << "tpinfer was built without MPI (CMake found none)";        \
    if (::geteuid() != 0) GTEST_SKIP() << "network namespaces need root; run the tests as root"; \
  } while (0)

bool mpi_built() {
#ifdef TPINFER_MPI_CHECK
  return true;
#else
  return false;
#endif
}

// The namespaces the run made ("tpinfer-h0-<suffix>" ...) must be gone.
void expect_namespaces_removed(const std::string& output) {
  std::smatch m;
  ASSERT_TRUE(std::regex_search(output, m, std::regex("namespaces tpinfer-\\*-([0-9]+)"))) << output;
  std::string list;
  testing::run_command("ip netns list", &list);
  EXPECT_EQ(list.find(cat("-", m[1].str())), std::string::npos) << list;
}

long long bytes_sent(const std::string& output, int host) {
  std::smatch m;
  const std::regex re(cat("host ", host, " \\([0-9.]+\\) sent ([0-9]+) bytes"));
  return std::regex_search(output, m, re) ? std::stoll(m[1].str()) : -1;
}

// Every operation against its reference with the two ranks on two hosts, links
// shaped to 1 Gbit/s: the bytes really cross the namespace interfaces.
TEST(MpiMultihost, CollectivesAcrossNamespaces) {
  SKIP_UNLESS_ROOT_AND_MPI();
  const HostsRun run = run_hosts("--hosts 2 --rate 1gbit", "check --timeout-ms 60000");
  SKIP_WITHOUT_NAMESPACES(run);
  EXPECT_EQ(run.code, 0) << run.output;
  EXPECT_NE(run.output.find("OK rank 0 on tpinfer-h0"), std::string::npos) << run.output;
  EXPECT_NE(run.output.find("OK rank 1 on tpinfer-h1"), std::string::npos) << run.output;
  // The check all-reduces 3 x 1000003 floats among others: each side sends over
  // 4 MB through its link (tx counters of the namespace interfaces).
  EXPECT_GT(bytes_sent(run.output, 0), 4'000'000) << run.output;
  EXPECT_GT(bytes_sent(run.output, 1), 4'000'000) << run.output;
  expect_namespaces_removed(run.output);
}

// A rank that skips a collective on another host still ends the whole job,
// with the message, through the user-space delaying switch (2 ms each way),
// within `bound` seconds (namespaces, start-up, the 1 s timeout and its probe).
void check_skipped_collective_ends_job_across_hosts(double bound) {
  const HostsRun run = run_hosts("--hosts 2 --delay-ms 2", "skip --timeout-ms 1000");
  SKIP_WITHOUT_NAMESPACES(run);
  EXPECT_NE(run.code, 0) << run.output;
  EXPECT_LT(run.seconds, bound) << run.output;
  EXPECT_NE(run.output.find("all_reduce #2 timed out after 1 s on rank 0: rank(s) 1 did not arrive"), std::string::npos)
      << run.output;
  expect_namespaces_removed(run.output);
}

// By default the bound only catches a job that waits for the skipping rank
// (it sleeps 100 s): 60 s, ten times what the run needs on a loaded machine.
TEST(MpiMultihost, SkippedCollectiveEndsJobAcrossHosts) {
  SKIP_UNLESS_ROOT_AND_MPI();
  check_skipped_collective_ends_job_across_hosts(60.0);
}

// Timed: within 15 s on an idle machine.
TEST(MpiMultihost, TimedSkippedCollectiveEndsJobAcrossHostsWithin15Seconds) {
  TPINFER_SKIP_UNLESS_TIMED();
  SKIP_UNLESS_ROOT_AND_MPI();
  check_skipped_collective_ends_job_across_hosts(15.0);
}

}  // namespace
}  // namespace tpinfer
