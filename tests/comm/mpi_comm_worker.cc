// tpinfer_mpi_check: the program mpi_comm_test.cc (and tests/multihost) start
// under mpirun, one process per rank. Each mode exercises the mpi communicator
// from inside a real MPI job:
//   check         every operation against a plain reference on fresh random
//                 inputs (all-reduce: bit for bit, and against the local back
//                 end); every rank prints "OK rank <r> on <host>" and exits 0
//   skip          rank 1 skips all_reduce #2 (sleeps 100 s): the job must end
//                 within the timeout plus a moment, naming all_reduce #2 and rank 1
//   recv-timeout  rank 0 receives from rank 1, which sends nothing (sleeps 100 s)
//   kill          rank 1 SIGKILLs itself in the middle of a loop of all-reduces
//   wait-kill     ranks 1.. wait in broadcast_wait (no deadline); the root dies
//   wait          one rank (the sleeper) enters each of 4 calls of every group
//                 collective (all-reduce in one and two hops, small and large,
//                 all_gather, all_gather_bytes, all_to_all) 30 ms after every
//                 other rank has told it (a message) that it is entering the
//                 call; first the last rank sleeps, then rank 0. Checks what
//                 load cannot change: results exact, every call counted, wait
//                 within the total, and some wait counted by every rank but
//                 the sleeper (each arrived 30 ms before it)
//   wait-timed    wait, and the figures (a timed test: run on an idle machine):
//                 the others must count 120 ms (+-20 %) of wait per kind, the
//                 sleeper under 5 ms, everyone under 10 ms per call of link time
//                 (nanos - wait_nanos)
//   bench         all-reduce latency and bandwidth by size, printed by rank 0
//   bench-blocking  the same with plain MPI_Allreduce, for comparison
//   latency       all_reduce_sum per-call latency: after a barrier, 2000 calls of
//                 each size (min, 2 min, ... up to max), timed one by one;
//                 rank 0 prints the median and the 10th / 90th percentiles
// Options: --timeout-ms N (default 30000), --min-bytes / --max-bytes N (bench:
// sizes min, 4 min, ... up to max; default 4 B to 64 MiB),
// --tag WORD (ignored: lets a test find its own processes with pgrep -f).
// A failed check prints "FAIL rank <r>: ..." and exits 1 at once (mpirun then
// ends the job).
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <random>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#ifndef OMPI_SKIP_MPICXX
#define OMPI_SKIP_MPICXX 1
#endif
#include <mpi.h>

#include "comm/local_comm.h"
#include "comm/mpi_comm.h"
#include "core/error.h"

// Open MPI keeps some allocations until process exit by design; LeakSanitizer
// would count them. Our own leaks are still reported. Open MPI is built without
// frame pointers, so only the slow unwinder reaches the library frames that the
// suppressions name. (Both hooks are inert without sanitizers.)
extern "C" const char* __lsan_default_suppressions() {
  return "leak:libmpi.so\nleak:libopen-pal.so\nleak:libopen-rte.so\nleak:libpmix.so\nleak:libevent\nleak:mca_\n"
         "leak:libhwloc.so\n";
}
extern "C" const char* __asan_default_options() { return "fast_unwind_on_malloc=0"; }

namespace tpinfer {
namespace {

using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

struct Options {
  std::string mode;
  std::chrono::milliseconds timeout{30000};
  size_t min_bytes = 4;
  size_t max_bytes = size_t{64} << 20;
};

[[noreturn]] void usage(const char* why) {
  std::fprintf(stderr,
               "tpinfer_mpi_check: %s\nusage: tpinfer_mpi_check "
               "check|skip|recv-timeout|kill|wait-kill|wait|wait-timed|bench|bench-blocking|latency "
               "[--timeout-ms N] [--min-bytes N] [--max-bytes N] [--tag WORD]\n",
               why);
  std::exit(2);
}

Options parse(int argc, char** argv) {
  if (argc < 2) usage("no mode");
  Options o;
  o.mode = argv[1];
  for (int i = 2; i < argc; ++i) {
    const std::string a = argv[i];
    if (i + 1 >= argc) usage(("missing value after " + a).c_str());
    const char* v = argv[++i];
    if (a == "--timeout-ms") {
      o.timeout = std::chrono::milliseconds(std::strtoll(v, nullptr, 10));
    } else if (a == "--min-bytes") {
      o.min_bytes = std::max<size_t>(4, std::strtoull(v, nullptr, 10));
    } else if (a == "--max-bytes") {
      o.max_bytes = std::strtoull(v, nullptr, 10);
    } else if (a == "--tag") {
      // only for pgrep
    } else {
      usage(("unknown option " + a).c_str());
    }
  }
  return o;
}

// The message is built only on failure: checks run on millions of elements.
#define EXPECT_OR_THROW(ok, what)              \
  do {                                         \
    if (!(ok)) throw std::runtime_error(what); \
  } while (0)

uint64_t mix(uint64_t x) {  // splitmix64 finalizer
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

// Rank r's input element i in round `round`: pseudo-random, 24 significant
// bits and exponents from 2^-8 to 2^7, so sums round and their order shows.
// Every rank can compute every other rank's input.
float input(uint64_t seed, int rank, int round, size_t i) {
  const uint64_t h = mix(seed ^ mix(static_cast<uint64_t>(rank) * 1000003u + static_cast<uint64_t>(round)) ^
                         (static_cast<uint64_t>(i) * 0x632be59bd9b4e019ull));
  const float unit =
      static_cast<float>(static_cast<int64_t>(h >> 40) - (int64_t{1} << 23)) / static_cast<float>(1 << 23);
  return std::ldexp(unit, static_cast<int>(h & 15) - 8);
}

uint8_t byte_of(uint64_t seed, int from, int to, size_t k) {
  return static_cast<uint8_t>(mix(seed + static_cast<uint64_t>(from) * 7919 + static_cast<uint64_t>(to) * 104729 + k));
}

// Every bit of a float, for messages: 0x1.4p+0.
std::string exact(float v) {
  std::array<char, 32> text{};
  std::snprintf(text.data(), text.size(), "%a", static_cast<double>(v));
  return text.data();
}

std::string where(const Communicator& comm, const std::string& what) {
  return cat(what, " (rank ", comm.rank(), " of ", comm.size(), ")");
}

// The reference: the sum over ranks in rank order from 0.0f, which is what both
// back ends promise bit for bit.
float reference_sum(uint64_t seed, int ranks, int round, size_t i) {
  float want = 0;
  for (int r = 0; r < ranks; ++r) want += input(seed, r, round, i);
  return want;
}

// The local back end on the same inputs, n threads inside this process.
std::vector<float> local_all_reduce(uint64_t seed, int n, int round, size_t len) {
  LocalGroup group(n, std::chrono::seconds(60));
  std::vector<std::vector<float>> bufs(static_cast<size_t>(n), std::vector<float>(len));
  std::vector<std::thread> threads;
  for (int r = 0; r < n; ++r) {
    threads.emplace_back([&, r] {
      auto comm = group.communicator(r);
      std::vector<float>& b = bufs[static_cast<size_t>(r)];
      for (size_t i = 0; i < len; ++i) b[i] = input(seed, r, round, i);
      comm->all_reduce_sum(b.data(), len);
    });
  }
  for (auto& t : threads) t.join();
  return bufs[0];
}

void check_all_reduce(Communicator& comm, uint64_t seed) {
  const int n = comm.size();
  // 8193 floats is just over the one-hop limit, 4194309 over one piece.
  for (size_t len : {size_t{1}, size_t{7}, size_t{4096}, size_t{8193}, size_t{1000003}, size_t{4194309}}) {
    comm.reset_stats();
    const int rounds = len > 100000 ? 2 : 50;
    std::vector<float> buf(len);
    for (int round = 0; round < rounds; ++round) {
      for (size_t i = 0; i < len; ++i) buf[i] = input(seed, comm.rank(), round, i);
      comm.all_reduce_sum(buf.data(), len);
      for (size_t i = 0; i < len; ++i) {
        const float want = reference_sum(seed, n, round, i);
        EXPECT_OR_THROW(std::memcmp(&buf[i], &want, sizeof(float)) == 0,
                        where(comm, cat("all_reduce len ", len, " round ", round, " index ", i, ": got ", exact(buf[i]),
                                        ", want ", exact(want))));
      }
      if (round == 0 && comm.rank() == 0) {
        const std::vector<float> local = local_all_reduce(seed, n, round, len);
        EXPECT_OR_THROW(std::memcmp(local.data(), buf.data(), len * sizeof(float)) == 0,
                        where(comm, cat("all_reduce len ", len, " differs from the local back end's")));
      }
    }
    const CollectiveCounter& c = comm.stats()[Collective::AllReduce];
    EXPECT_OR_THROW(c.calls == static_cast<uint64_t>(rounds), where(comm, cat("all_reduce calls ", c.calls)));
    const uint64_t per_call =
        n == 1 ? 0 : 2 * len * sizeof(float) * static_cast<uint64_t>(n - 1) / static_cast<uint64_t>(n);
    EXPECT_OR_THROW(c.bytes == per_call * static_cast<uint64_t>(rounds),
                    where(comm, cat("all_reduce bytes ", c.bytes)));
  }
}

void check_all_gather(Communicator& comm, uint64_t seed) {
  const int n = comm.size(), me = comm.rank();
  // Uneven counts, one of them zero when there are enough ranks.
  std::vector<size_t> counts;
  for (int r = 0; r < n; ++r) counts.push_back(r == 2 ? 0 : static_cast<size_t>((r * 37) % 5 + 1) * 100);
  size_t total = 0, mine_at = 0;
  for (int r = 0; r < n; ++r) {
    if (r == me) mine_at = total;
    total += counts[static_cast<size_t>(r)];
  }
  std::vector<float> mine(counts[static_cast<size_t>(me)]);
  for (size_t k = 0; k < mine.size(); ++k) mine[k] = input(seed, me, 7, k);
  auto verify = [&](const std::vector<float>& all, const char* how) {
    size_t at = 0;
    for (int r = 0; r < n; ++r) {
      for (size_t k = 0; k < counts[static_cast<size_t>(r)]; ++k, ++at) {
        EXPECT_OR_THROW(all[at] == input(seed, r, 7, k),
                        where(comm, cat("all_gather (", how, ") element ", k, " of rank ", r)));
      }
    }
  };
  comm.reset_stats();
  std::vector<float> all(total, -12345.0f);
  comm.all_gather(mine.data(), counts, all.data());
  verify(all, "separate buffers");
  EXPECT_OR_THROW(comm.stats()[Collective::AllGather].bytes == (total - mine.size()) * sizeof(float),
                  where(comm, "all_gather byte count"));
  // In place: my part already sits at its offset of the output.
  std::vector<float> in_place(total, -1.0f);
  std::copy(mine.begin(), mine.end(), in_place.begin() + static_cast<std::ptrdiff_t>(mine_at));
  comm.all_gather(in_place.data() + mine_at, counts, in_place.data());
  verify(in_place, "in place");
  // Overlapping but not in place: the send buffer starts at the output's start.
  std::vector<float> shifted(std::max(total, mine.size()), -1.0f);
  std::copy(mine.begin(), mine.end(), shifted.begin());
  comm.all_gather(shifted.data(), counts, shifted.data());
  shifted.resize(total);
  verify(shifted, "overlapping");

  bool threw = false;
  try {
    std::vector<size_t> wrong(static_cast<size_t>(n) + 1, 1);
    comm.all_gather(mine.data(), wrong, all.data());
  } catch (const CommError& e) {
    threw = std::string(e.what()).find("counts for") != std::string::npos;
  }
  EXPECT_OR_THROW(threw, where(comm, "all_gather with a wrong counts array did not throw"));

  // Bytes: every rank sends 13 random bytes.
  std::vector<uint8_t> b(13), gathered(13 * static_cast<size_t>(n));
  for (size_t k = 0; k < b.size(); ++k) b[k] = byte_of(seed, me, -1, k);
  comm.all_gather_bytes(b.data(), b.size(), gathered.data());
  for (int r = 0; r < n; ++r) {
    for (size_t k = 0; k < 13; ++k) {
      EXPECT_OR_THROW(gathered[static_cast<size_t>(r) * 13 + k] == byte_of(seed, r, -1, k),
                      where(comm, "all_gather_bytes"));
    }
  }
}

void check_all_to_all(Communicator& comm, uint64_t seed) {
  const int n = comm.size(), me = comm.rank();
  for (size_t chunk : {size_t{1}, size_t{3}, size_t{70000}}) {
    std::vector<uint8_t> send(chunk * static_cast<size_t>(n)), recv(send.size());
    for (int j = 0; j < n; ++j) {
      for (size_t k = 0; k < chunk; ++k) send[static_cast<size_t>(j) * chunk + k] = byte_of(seed + chunk, me, j, k);
    }
    comm.reset_stats();
    comm.all_to_all(send.data(), chunk, recv.data());
    for (int i = 0; i < n; ++i) {
      for (size_t k = 0; k < chunk; ++k) {
        EXPECT_OR_THROW(recv[static_cast<size_t>(i) * chunk + k] == byte_of(seed + chunk, i, me, k),
                        where(comm, cat("all_to_all chunk ", chunk, " from rank ", i, " byte ", k)));
      }
    }
    EXPECT_OR_THROW(comm.stats()[Collective::AllToAll].bytes == chunk * static_cast<size_t>(n - 1),
                    where(comm, "all_to_all bytes"));
  }
}

void check_broadcast(Communicator& comm, uint64_t seed) {
  const int n = comm.size(), me = comm.rank();
  for (int root = 0; root < n; ++root) {
    for (size_t bytes : {size_t{1}, size_t{8}, size_t{300001}}) {
      std::vector<uint8_t> buf(bytes);
      for (size_t k = 0; k < bytes; ++k) buf[k] = me == root ? byte_of(seed, root, 99, k) : 0;
      if (bytes == 8) {
        comm.broadcast_wait(buf.data(), bytes, root);
      } else {
        comm.broadcast(buf.data(), bytes, root);
      }
      for (size_t k = 0; k < bytes; ++k) {
        EXPECT_OR_THROW(buf[k] == byte_of(seed, root, 99, k),
                        where(comm, cat("broadcast from ", root, " of ", bytes, " bytes")));
      }
    }
  }
}

void check_send_recv(Communicator& comm, uint64_t seed) {
  const int n = comm.size(), me = comm.rank();
  if (n == 1) return;
  const int next = (me + 1) % n, prev = (me + n - 1) % n;
  // Every rank sends first and receives second: the sends must not wait for the
  // receiver, even above MPI's eager limit (4 MiB here).
  for (size_t bytes : {size_t{4}, size_t{4} << 20}) {
    std::vector<uint8_t> out(bytes), in(bytes);
    for (size_t k = 0; k < bytes; ++k) out[k] = byte_of(seed, me, next, k);
    comm.send(out.data(), bytes, next);
    comm.recv(in.data(), bytes, prev);
    for (size_t k = 0; k < bytes; ++k) {
      EXPECT_OR_THROW(in[k] == byte_of(seed, prev, me, k),
                      where(comm, cat("recv of ", bytes, " bytes from rank ", prev)));
    }
  }
  // Several messages queue in order.
  for (int k = 0; k < 5; ++k) {
    const int v = me * 100 + k;
    comm.send(&v, sizeof(v), next);
  }
  for (int k = 0; k < 5; ++k) {
    int v = -1;
    comm.recv(&v, sizeof(v), prev);
    EXPECT_OR_THROW(v == prev * 100 + k, where(comm, cat("message ", k, " from rank ", prev, " is ", v)));
  }
  // A message of the wrong size is an error naming both sizes, and the stream
  // stays usable afterwards.
  const int32_t small = 5;
  comm.send(&small, sizeof(small), next);
  int64_t big = 0;
  std::string error;
  try {
    comm.recv(&big, sizeof(big), prev);
  } catch (const CommError& e) {
    error = e.what();
  }
  EXPECT_OR_THROW(error.find("expected 8 bytes from rank " + std::to_string(prev) + ", got 4") != std::string::npos,
                  where(comm, "wrong-size recv said: " + error));
  const int32_t after = 700 + me;
  comm.send(&after, sizeof(after), next);
  int32_t got = -1;
  comm.recv(&got, sizeof(got), prev);
  EXPECT_OR_THROW(got == 700 + prev, where(comm, cat("the message after a wrong-size one is ", got)));
  bool threw = false;
  try {
    comm.send(&small, sizeof(small), me);
  } catch (const CommError&) {
    threw = true;
  }
  EXPECT_OR_THROW(threw, where(comm, "send to self did not throw"));
}

void run_check(Communicator& comm) {
  uint64_t seed = 0;
  if (comm.rank() == 0) seed = (static_cast<uint64_t>(std::random_device{}()) << 32) ^ std::random_device{}();
  comm.broadcast(&seed, sizeof(seed), 0);
  if (comm.rank() == 0) std::printf("seed %llu\n", static_cast<unsigned long long>(seed));
  check_all_reduce(comm, seed);
  check_all_gather(comm, seed);
  check_all_to_all(comm, seed);
  check_broadcast(comm, seed);
  check_send_recv(comm, seed);
  comm.barrier();
  const CommStats& stats = comm.stats();
  EXPECT_OR_THROW(stats[Collective::Barrier].calls == 1, where(comm, "barrier count"));
  // Waiting: the mpi back end measures it; a barrier is all wait, point to
  // point and broadcasts none (see mpi_comm.h).
  EXPECT_OR_THROW(comm.measures_wait(), where(comm, "measures_wait() is false"));
  EXPECT_OR_THROW(stats[Collective::Barrier].wait_nanos == stats[Collective::Barrier].nanos,
                  where(comm, cat("barrier wait ", stats[Collective::Barrier].wait_nanos, " of ",
                                  stats[Collective::Barrier].nanos, " ns")));
  EXPECT_OR_THROW(stats[Collective::SendRecv].wait_nanos == 0, where(comm, "send/recv wait is not 0"));
  EXPECT_OR_THROW(stats[Collective::Broadcast].wait_nanos == 0, where(comm, "broadcast wait is not 0"));
  for (Collective c : {Collective::AllReduce, Collective::AllGather, Collective::AllToAll}) {
    EXPECT_OR_THROW(stats[c].wait_nanos <= stats[c].nanos,
                    where(comm, cat(collective_name(c), " wait ", stats[c].wait_nanos, " > ", stats[c].nanos)));
  }
}

// One rank (the sleeper) arrives `sleep` late at each of `calls` calls of every
// group collective: it waits for a message from every other rank saying that
// it is entering the call, then sleeps, then enters, so it is the last to
// arrive however busy the machine is. Every rank checks its own counters
// against that; `timed` adds the figures.
void run_wait(Communicator& comm, bool timed) {
  constexpr auto kSleep = 30ms;
  constexpr int kCalls = 4;
  const int n = comm.size(), me = comm.rank();
  if (n < 2) throw std::runtime_error("wait needs at least 2 ranks");
  const uint64_t seed = 12345;
  const double expected_ms = 1e-6 * static_cast<double>(std::chrono::nanoseconds(kSleep).count()) * kCalls;
  int sleeper = 0;
  // Called by every rank just before it enters the collective.
  auto arrive = [&] {
    if (me != sleeper) {
      const int32_t entering = me;
      comm.send(&entering, sizeof(entering), sleeper);
      return;
    }
    for (int r = 0; r < n; ++r) {
      if (r == me) continue;
      int32_t entering = -1;
      comm.recv(&entering, sizeof(entering), r);
      EXPECT_OR_THROW(entering == r, where(comm, cat("wait: rank ", r, " said ", entering)));
    }
    std::this_thread::sleep_for(kSleep);
  };
  // 1024 floats: one hop; 12000 floats (48 KiB): two hops with 3 ranks or more;
  // 100000 floats (400 KiB) and 80 KiB chunks: messages over 64 KiB, whose
  // stamps travel apart (mpi_comm.cc).
  auto all_reduce = [&](size_t len) {
    return [&, len](int round) {
      std::vector<float> buf(len);
      for (size_t i = 0; i < len; ++i) buf[i] = input(seed, me, round, i);
      arrive();
      comm.all_reduce_sum(buf.data(), len);
      for (size_t i = 0; i < len; ++i) {
        const float want = reference_sum(seed, n, round, i);
        EXPECT_OR_THROW(std::memcmp(&buf[i], &want, sizeof(float)) == 0,
                        where(comm, cat("wait: all_reduce len ", len, " index ", i)));
      }
    };
  };
  auto all_gather = [&](int round) {
    std::vector<size_t> counts(static_cast<size_t>(n), 1000);
    std::vector<float> mine(1000), all(1000 * static_cast<size_t>(n));
    for (size_t k = 0; k < mine.size(); ++k) mine[k] = input(seed, me, round, k);
    arrive();
    comm.all_gather(mine.data(), counts, all.data());
    for (size_t k = 0; k < all.size(); ++k) {
      EXPECT_OR_THROW(all[k] == input(seed, static_cast<int>(k / 1000), round, k % 1000),
                      where(comm, cat("wait: all_gather element ", k)));
    }
  };
  auto all_gather_bytes = [&](int round) {
    std::vector<uint8_t> b(4096), all(4096 * static_cast<size_t>(n));
    for (size_t k = 0; k < b.size(); ++k) b[k] = byte_of(seed + static_cast<uint64_t>(round), me, -1, k);
    arrive();
    comm.all_gather_bytes(b.data(), b.size(), all.data());
    for (size_t k = 0; k < all.size(); ++k) {
      EXPECT_OR_THROW(all[k] == byte_of(seed + static_cast<uint64_t>(round), static_cast<int>(k / 4096), -1, k % 4096),
                      where(comm, cat("wait: all_gather_bytes byte ", k)));
    }
  };
  auto all_to_all = [&](size_t chunk) {
    return [&, chunk](int round) {
      std::vector<uint8_t> send(chunk * static_cast<size_t>(n)), recv(send.size());
      for (size_t k = 0; k < send.size(); ++k) {
        send[k] = byte_of(seed + static_cast<uint64_t>(round), me, static_cast<int>(k / chunk), k % chunk);
      }
      arrive();
      comm.all_to_all(send.data(), chunk, recv.data());
      for (size_t k = 0; k < recv.size(); ++k) {
        EXPECT_OR_THROW(
            recv[k] == byte_of(seed + static_cast<uint64_t>(round), static_cast<int>(k / chunk), me, k % chunk),
            where(comm, cat("wait: all_to_all byte ", k)));
      }
    };
  };
  struct Case {
    const char* name;
    Collective kind;
    std::function<void(int)> call;
  };
  const std::vector<Case> cases = {
      {"all_reduce 4 KiB", Collective::AllReduce, all_reduce(1024)},
      {"all_reduce 48 KiB", Collective::AllReduce, all_reduce(12000)},
      {"all_reduce 400 KiB", Collective::AllReduce, all_reduce(100000)},
      {"all_gather", Collective::AllGather, all_gather},
      {"all_gather_bytes", Collective::AllGather, all_gather_bytes},
      {"all_to_all 4 KiB", Collective::AllToAll, all_to_all(4096)},
      {"all_to_all 80 KiB", Collective::AllToAll, all_to_all(80 << 10)},
  };
  for (int s : {n - 1, 0}) {
    sleeper = s;
    for (const Case& c : cases) {
      comm.barrier();
      comm.resynchronize_clocks();  // mid-life, as Engine::tp_rank_collectives does: the split must stay right
      comm.reset_stats();
      for (int round = 0; round < kCalls; ++round) c.call(round);
      const CollectiveCounter& k = comm.stats()[c.kind];
      const double wait_ms = static_cast<double>(k.wait_nanos) * 1e-6;
      const double link_ms = static_cast<double>(k.nanos - k.wait_nanos) * 1e-6;
      std::printf("rank %d, sleeper %d, %s: %llu calls, %.2f ms, of which wait %.2f ms\n", me, sleeper, c.name,
                  static_cast<unsigned long long>(k.calls), static_cast<double>(k.nanos) * 1e-6, wait_ms);
      const std::string what = cat("wait: sleeper ", sleeper, ", ", c.name, ": wait ", wait_ms, " ms, link ", link_ms,
                                   " ms over ", k.calls, " calls");
      EXPECT_OR_THROW(k.calls == static_cast<uint64_t>(kCalls), where(comm, what));
      EXPECT_OR_THROW(k.wait_nanos <= k.nanos, where(comm, what));
      if (me != sleeper) {
        EXPECT_OR_THROW(k.wait_nanos > 0, where(comm, what + ": arrived before the sleeper, counted no wait"));
      }
      if (!timed) continue;
      EXPECT_OR_THROW(link_ms < 10.0 * kCalls, where(comm, what + ": link time over 10 ms per call"));
      if (me == sleeper) {
        EXPECT_OR_THROW(wait_ms < 5.0, where(comm, what + ": the late rank counted wait"));
      } else {
        EXPECT_OR_THROW(wait_ms >= 0.8 * expected_ms - 3.0 && wait_ms <= 1.2 * expected_ms + 3.0,
                        where(comm, cat(what, ": want ", expected_ms, " ms +-20 %")));
      }
    }
  }
  std::fflush(stdout);
}

void run_skip(Communicator& comm) {
  std::vector<float> buf(64, 1.0f);
  comm.all_reduce_sum(buf.data(), buf.size());
  if (comm.rank() == 1) {
    // Misses all_reduce #2. The job must be gone long before this ends: the
    // sleep outlasts the tests' hang-catching bounds (30 s and more), so a job
    // that waits for this rank fails them.
    std::this_thread::sleep_for(100s);
    comm.barrier();
  } else {
    comm.all_reduce_sum(buf.data(), buf.size());
  }
  throw std::runtime_error("the skipped all-reduce completed");
}

void run_recv_timeout(Communicator& comm) {
  if (comm.rank() == 0) {
    int x = 0;
    comm.recv(&x, sizeof(x), 1);
    throw std::runtime_error("recv from a silent rank returned");
  }
  std::this_thread::sleep_for(100s);  // as in run_skip: longer than the tests' bounds
  comm.barrier();
}

void run_kill(Communicator& comm) {
  std::vector<float> buf(1024);
  for (int round = 0; round < 1000000; ++round) {
    std::fill(buf.begin(), buf.end(), 1.0f);
    if (comm.rank() == 1 && round == 50) {
      std::printf("rank 1 kills itself at round 50\n");
      std::fflush(stdout);
      raise(SIGKILL);
    }
    comm.all_reduce_sum(buf.data(), buf.size());
  }
  throw std::runtime_error("the loop outlived a killed rank");
}

void run_wait_kill(Communicator& comm) {
  comm.barrier();
  if (comm.rank() == 0) {
    std::this_thread::sleep_for(300ms);
    std::printf("root kills itself while the others wait\n");
    std::fflush(stdout);
    raise(SIGKILL);
  }
  int64_t v = 0;
  comm.broadcast_wait(&v, sizeof(v), 0);
  throw std::runtime_error("broadcast_wait returned without a root");
}

// `blocking` measures plain MPI_Allreduce instead, for comparison: what the
// deadline (non-blocking call + polling) costs.
void run_bench(Communicator& comm, size_t min_bytes, size_t max_bytes, bool blocking) {
  const int n = comm.size();
  auto reduce = [&](float* data, size_t len) {
    if (!blocking) return comm.all_reduce_sum(data, len);
    if (MPI_Allreduce(MPI_IN_PLACE, data, static_cast<int>(len), MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD) != MPI_SUCCESS) {
      throw std::runtime_error("MPI_Allreduce failed");
    }
  };
  if (comm.rank() == 0) {
    std::printf("all_reduce_sum over %d ranks (%s)\n%12s %10s %12s %12s %12s\n", n,
                blocking ? "plain blocking MPI_Allreduce" : "tpinfer mpi communicator", "bytes", "iters", "us/op",
                "algbw MB/s", "busbw MB/s");
  }
  for (size_t bytes = min_bytes; bytes <= max_bytes; bytes *= 4) {
    const size_t len = bytes / sizeof(float);
    std::vector<float> buf(len, 1.0f);
    for (int w = 0; w < 2; ++w) reduce(buf.data(), len);
    // Batches of 1, 2, 4, ... calls until one lasts 0.2 s on rank 0, which
    // tells the others whether to go on; the last batch is the measurement.
    int64_t iters = 1;
    double per = 0;
    for (;;) {
      comm.barrier();
      const auto t0 = Clock::now();
      for (int64_t i = 0; i < iters; ++i) reduce(buf.data(), len);
      const double took = std::chrono::duration<double>(Clock::now() - t0).count();
      per = took / static_cast<double>(iters);
      int32_t more = took < 0.2 && iters < 100000;
      comm.broadcast(&more, sizeof(more), 0);
      if (!more) break;
      iters *= 2;
    }
    if (comm.rank() == 0) {
      const double alg = static_cast<double>(bytes) / per / 1e6;
      std::printf("%12zu %10lld %12.1f %12.1f %12.1f\n", bytes, static_cast<long long>(iters), per * 1e6, alg,
                  alg * 2.0 * (n - 1) / n);
      std::fflush(stdout);
    }
  }
}

void run_latency(Communicator& comm, size_t min_bytes, size_t max_bytes) {
  constexpr int kCalls = 2000;
  if (comm.rank() == 0) {
    std::printf("all_reduce_sum latency over %d ranks, %d calls after a barrier\n%12s %10s %10s %10s\n", comm.size(),
                kCalls, "bytes", "p10 us", "median us", "p90 us");
  }
  for (size_t bytes = min_bytes; bytes <= max_bytes; bytes *= 2) {
    const size_t len = bytes / sizeof(float);
    std::vector<float> buf(len, 1.0f);
    std::vector<double> us(kCalls);
    for (int w = 0; w < 20; ++w) comm.all_reduce_sum(buf.data(), len);
    comm.barrier();
    for (int i = 0; i < kCalls; ++i) {
      const auto t0 = Clock::now();
      comm.all_reduce_sum(buf.data(), len);
      us[static_cast<size_t>(i)] = std::chrono::duration<double, std::micro>(Clock::now() - t0).count();
    }
    std::sort(us.begin(), us.end());
    if (comm.rank() == 0) {
      std::printf("%12zu %10.2f %10.2f %10.2f\n", bytes, us[kCalls / 10], us[kCalls / 2], us[kCalls * 9 / 10]);
      std::fflush(stdout);
    }
  }
}

}  // namespace
}  // namespace tpinfer

int main(int argc, char** argv) {
  using namespace tpinfer;
  const Options opt = parse(argc, argv);
  MpiSession session;
  auto comm = make_mpi_communicator(opt.timeout);
  try {
    if (opt.mode == "check") {
      run_check(*comm);
    } else if (opt.mode == "skip") {
      run_skip(*comm);
    } else if (opt.mode == "recv-timeout") {
      run_recv_timeout(*comm);
    } else if (opt.mode == "kill") {
      run_kill(*comm);
    } else if (opt.mode == "wait-kill") {
      run_wait_kill(*comm);
    } else if (opt.mode == "wait" || opt.mode == "wait-timed") {
      run_wait(*comm, opt.mode == "wait-timed");
    } else if (opt.mode == "bench") {
      run_bench(*comm, opt.min_bytes, opt.max_bytes, false);
    } else if (opt.mode == "bench-blocking") {
      run_bench(*comm, opt.min_bytes, opt.max_bytes, true);
    } else if (opt.mode == "latency") {
      run_latency(*comm, opt.min_bytes, opt.max_bytes);
    } else {
      usage(("unknown mode " + opt.mode).c_str());
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "FAIL rank %d: %s\n", comm->rank(), e.what());
    std::fflush(stderr);
    std::_Exit(1);  // peers may be inside a collective: let mpirun end the job
  }
  char host[256] = {};
  gethostname(host, sizeof(host) - 1);
  std::printf("OK rank %d on %s\n", comm->rank(), host);
  std::fflush(stdout);
  return 0;
}
