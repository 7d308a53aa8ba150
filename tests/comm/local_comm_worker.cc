// tpinfer_local_check: the program local_comm_test.cc starts as a subprocess
// (behind a watchdog) to check the local back end's deadline end to end: one
// rank skips a collective, every rank gets the error within timeout + 1 s, and
// the process exits non-zero with the message, never hangs.
//
//   tpinfer_local_check skip --ranks N --timeout-ms T
//
// N rank threads of one LocalGroup do all_reduce #1 together; then rank 1 skips
// all_reduce #2 (it is busy until the others' deadline has aborted the group:
// it waits for that event, up to 30 s, however long a loaded machine takes
// to get there; then it calls its next collective, a barrier, which finds the
// group aborted) while the others enter all_reduce #2. Every rank prints one line
//   rank <r> error after <seconds> s: <message>
// where <seconds> counts from the moment the rank entered the call that threw
// (all_reduce #2 for every rank but 1, the barrier for rank 1) to the moment it
// threw, or "rank <r> finished" if it did not throw. Then, as tpinfer's main does with any tpinfer::Error, the program
// prints "error: <message>" to stderr and exits 1 if any rank failed; 0 (a
// failure of the check) if none did.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "comm/local_comm.h"
#include "core/error.h"

namespace tpinfer {
namespace {

using Clock = std::chrono::steady_clock;

struct Outcome {
  std::string error;  // "" if the rank finished cleanly
  double seconds = 0;
};

[[noreturn]] void usage(const std::string& why) {
  std::fprintf(stderr, "tpinfer_local_check: %s\nusage: tpinfer_local_check skip --ranks N --timeout-ms T\n",
               why.c_str());
  std::exit(2);
}

// Runs the skip scenario; throws CommError (the first rank's message) if any
// rank failed, as the engine carries a rank's error to the caller.
void run_skip(int n, std::chrono::milliseconds timeout) {
  LocalGroup group(n, timeout);
  std::vector<Outcome> outcomes(static_cast<size_t>(n));
  std::vector<std::thread> threads;
  for (int r = 0; r < n; ++r) {
    threads.emplace_back([&, r] {
      auto comm = group.communicator(r);
      Outcome& out = outcomes[static_cast<size_t>(r)];
      std::vector<float> buf(64, 1.0f);
      Clock::time_point entered = Clock::now();
      try {
        comm->all_reduce_sum(buf.data(), buf.size());
        if (comm->rank() == 1) {
          // Misses all_reduce #2: waits until the others' deadline aborts the group.
          const Clock::time_point give_up = Clock::now() + std::chrono::seconds(30);
          while (!group.aborted()) {
            if (Clock::now() >= give_up) throw std::runtime_error("the group was not aborted within 30 s");
            std::this_thread::sleep_for(std::chrono::milliseconds(1));
          }
          entered = Clock::now();
          comm->barrier();
        } else {
          entered = Clock::now();
          comm->all_reduce_sum(buf.data(), buf.size());
        }
      } catch (const std::exception& e) {
        out.error = e.what();
      }
      out.seconds = std::chrono::duration<double>(Clock::now() - entered).count();
    });
  }
  for (auto& t : threads) t.join();
  std::string first;
  for (int r = 0; r < n; ++r) {
    const Outcome& o = outcomes[static_cast<size_t>(r)];
    if (o.error.empty()) {
      std::printf("rank %d finished\n", r);
    } else {
      std::printf("rank %d error after %.3f s: %s\n", r, o.seconds, o.error.c_str());
      if (first.empty()) first = o.error;
    }
  }
  std::fflush(stdout);
  if (!first.empty()) throw CommError(first);
}

}  // namespace
}  // namespace tpinfer

int main(int argc, char** argv) {
  if (argc < 2 || std::string(argv[1]) != "skip") tpinfer::usage("the only mode is skip");
  int ranks = 2;
  long long timeout_ms = 1000;
  for (int i = 2; i < argc; ++i) {
    const std::string a = argv[i];
    if (i + 1 >= argc) tpinfer::usage("missing value after " + a);
    const char* v = argv[++i];
    if (a == "--ranks") {
      ranks = std::atoi(v);
    } else if (a == "--timeout-ms") {
      timeout_ms = std::atoll(v);
    } else {
      tpinfer::usage("unknown option " + a);
    }
  }
  if (ranks < 2) tpinfer::usage("--ranks must be at least 2 (rank 1 skips)");
  try {
    tpinfer::run_skip(ranks, std::chrono::milliseconds(timeout_ms));
  } catch (const tpinfer::Error& e) {  // as tpinfer's main: the message and exit code 1
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
