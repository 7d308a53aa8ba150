// Measurements that replace the planner's table values with this machine's
// (`tpinfer plan --probe`, `--device cpu`):
//
//   probe_link        times all_reduce_sum over a communicator at several sizes
//                     (without compute_bytes: the median of reps, each started
//                     after a barrier; with it: a chain of reps x (every rank
//                     streams that many bytes of memory, all-reduce) without
//                     barriers, as a decode step runs, costing the chain's
//                     time less the busiest rank's streaming, over reps) and
//                     fits the ring alpha-beta model the planner uses:
//                       t(m) = 2(p-1) x latency + 2(p-1)/p x m / bandwidth.
//                     Collective: every rank of the communicator calls it.
//   probe_local_link  the same over a LocalGroup of `ranks` threads (the local
//                     back end), started and joined here.
//   cpu_device        "this machine as `ranks` devices": memory = RAM / ranks,
//                     bandwidth = the slowest rank's rate of tpinfer's own
//                     GEMV when every rank streams its share of weights far
//                     larger than the caches at once, on its own cores (a
//                     tensor-parallel step goes at its slowest rank's pace;
//                     they share the memory system),
//                     FLOP/s = the measured rate of tpinfer's matmul kernel for
//                     the weight type on a cache-resident matrix with the rank's
//                     threads (the most a rank can compute when not waiting on
//                     memory).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "comm/communicator.h"
#include "core/dtype.h"
#include "planner/hardware.h"
#include "planner/model_shape.h"

namespace tpinfer::planner {

struct LinkSample {
  uint64_t bytes = 0;
  double seconds = 0;  // median over the repetitions
};

struct LinkProbe {
  std::string backend;
  int ranks = 1;
  std::vector<LinkSample> samples;
  LinkSpec link;  // the fit; name "probed:<backend>"
};

// 256 B to 4 MiB of floats.
std::vector<uint64_t> default_probe_sizes();

// compute_bytes: what each rank streams before each timed all-reduce (0: the
// collectives back to back). Between computing phases the ranks arrive a
// little apart, as they do in a step, and a collective costs that spread on
// top of the link: on two emulated hosts at 1 Gbit/s, 3-5% of a decode step
// that back-to-back probing missed.
LinkProbe probe_link(Communicator& comm, const std::vector<uint64_t>& sizes, int reps, uint64_t compute_bytes = 0);
LinkProbe probe_local_link(int ranks, const std::vector<uint64_t>& sizes, int reps, uint64_t compute_bytes = 0);
// The weight bytes each of `ranks` tensor-parallel ranks streams between two
// collectives of a decode step of `model` (its shard over the 2 x layers + 1
// all-reduces); 0 when the model cannot be split that way.
uint64_t compute_bytes_between_collectives(const ModelShape& model, int ranks);

// The alpha-beta fit of samples taken over `ranks` ranks (at least two sizes):
// least squares on the relative error.
LinkSpec fit_ring_link(const std::vector<LinkSample>& samples, int ranks);

// Threads each of `ranks` ranks gets on this machine (cores / ranks, at least 1).
int cpu_threads_per_rank(int ranks);
// `sync`, when given, is called before every timed pass (by this process's
// first rank, before its ranks start together): under mpirun a barrier over
// the ranks, so that every process streams at once, as in a step. Without it
// each process measures whenever it gets there, and a rank streaming alone
// reads about a third more bandwidth than it gets beside the others, which
// makes the prediction too fast (bench/RESULTS.md: 1.46x across two hosts).
DeviceSpec cpu_device(int ranks, DType weight_type, const std::function<void()>& sync = {});
// FLOP/s of cpu::matmul for a one-token product with a cache-resident matrix.
double measure_matmul_flops(DType weight_type, int threads);
// Weight bytes per second of cpu::matmul for one token over weights far past
// the caches (the bandwidth decode sees), for `ranks` ranks at once, each on
// its own cores (as the engine pins them) over bytes / ranks: each rank's
// rate; 0s for types without a GEMV.
std::vector<double> measure_rank_gemv_bandwidths(DType weight_type, int ranks, int threads_per_rank,
                                                 uint64_t bytes = uint64_t{256} << 20,
                                                 const std::function<void()>& sync = {});

}  // namespace tpinfer::planner
