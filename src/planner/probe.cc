#include "planner/probe.h"

#include <unistd.h>

#include <algorithm>
#include <barrier>
#include <chrono>
#include <exception>
#include <random>
#include <thread>

#include "backend/cpu/matmul.h"
#include "backend/cpu/memory_bandwidth.h"
#include "backend/cpu/quant.h"
#include "comm/local_comm.h"
#include "core/error.h"
#include "core/thread_pool.h"
#include "planner/planner.h"

namespace tpinfer::planner {
namespace {

using Clock = std::chrono::steady_clock;

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

}  // namespace

std::vector<uint64_t> default_probe_sizes() {
  return {256, 4 << 10, 16 << 10, 64 << 10, 256 << 10, 1 << 20, 4 << 20};
}

LinkSpec fit_ring_link(const std::vector<LinkSample>& s, int p) {
  if (s.size() < 2 || p < 2) throw Error("a link fit needs two sizes or more over two ranks or more");
  // t = fixed + slope x bytes by least squares on the relative error (weights
  // 1/t^2): every size counts alike, so the small ones set the fixed cost and
  // the large ones the slope, and one noisy sample moves the fit by its share
  // instead of deciding it (the smallest sample alone can put the fixed cost
  // at 0 on one run and 162 us on the next over the same link).
  double sw = 0, sx = 0, sy = 0, sxx = 0, sxy = 0;
  for (const LinkSample& x : s) {
    const double w = 1.0 / std::max(x.seconds * x.seconds, 1e-30);
    const double b = static_cast<double>(x.bytes);
    sw += w;
    sx += w * b;
    sy += w * x.seconds;
    sxx += w * b * b;
    sxy += w * b * x.seconds;
  }
  const double det = sw * sxx - sx * sx;
  double slope = det > 0 ? (sw * sxy - sx * sy) / det : 0;
  double fixed = det > 0 ? (sy - slope * sx) / sw : 0;
  if (!(slope > 0) || !(fixed > 0)) {
    // Degenerate (noise larger than the size effect): the largest sample's rate
    // and the smallest sample's time as the fixed cost.
    const auto [lo, hi] = std::minmax_element(s.begin(), s.end(), [](const LinkSample& a, const LinkSample& b) {
      return a.bytes < b.bytes;
    });
    slope = std::max(hi->seconds, 1e-12) / static_cast<double>(std::max<uint64_t>(hi->bytes, 1));
    fixed = std::max(lo->seconds - slope * static_cast<double>(lo->bytes), 1e-9);
  }
  LinkSpec l;
  l.bandwidth = 2.0 * (p - 1) / p / slope;
  l.latency = fixed / (2.0 * (p - 1));
  return l;
}

uint64_t compute_bytes_between_collectives(const ModelShape& model, int ranks) {
  try {
    const std::vector<std::vector<RankLoad>> loads = rank_loads(model, ranks, 1);
    uint64_t most = 0;
    for (const RankLoad& r : loads[0]) most = std::max(most, r.weight_bytes - r.lookup_bytes);
    return most / static_cast<uint64_t>(2 * model.config.n_layers + 1);
  } catch (const ConfigError&) {
    return 0;  // no tensor-parallel split over that many ranks
  }
}

LinkProbe probe_link(Communicator& comm, const std::vector<uint64_t>& sizes, int reps, uint64_t compute_bytes) {
  LinkProbe out;
  out.backend = comm.backend();
  out.ranks = comm.size();
  std::vector<float> buf;
  std::mt19937 rng(static_cast<uint32_t>(comm.rank() + 1));
  std::uniform_real_distribution<float> dist(-1, 1);
  // The compute phase reads fresh memory each time, as a step streams weights
  // it has not touched since the last token: a ring far past the caches (at
  // least 64 MiB, two phases long). A phase is at most 256 MiB, long enough
  // for the ranks to drift apart as they do in a step, so a 70B model's 100 MB
  // phases do not make each rank hold 800 MB for the probe.
  const size_t phase = std::min<uint64_t>(compute_bytes, uint64_t{256} << 20) / 64 * 64;
  std::vector<uint8_t> ring(phase > 0 ? std::max<size_t>(2 * phase, size_t{64} << 20) : 0, 1);
  size_t at = 0;
  volatile uint64_t sink = 0;
  auto compute = [&] {
    if (phase == 0) return;
    if (at + phase > ring.size()) at = 0;
    sink = sink + cpu::sum_bytes(ring.data() + at, phase);
    at += phase;
  };
  for (uint64_t bytes : sizes) {
    buf.resize(bytes / sizeof(float));
    for (float& x : buf) x = dist(rng);
    if (phase == 0) {
      // Back to back: the median of reps, each after a barrier.
      std::vector<double> times;
      for (int r = -1; r < reps; ++r) {  // one warm-up
        comm.barrier();
        const auto t0 = Clock::now();
        comm.all_reduce_sum(buf.data(), buf.size());
        const double t = std::chrono::duration<double>(Clock::now() - t0).count();
        if (r >= 0) times.push_back(t);
      }
      out.samples.push_back({bytes, median(times)});
      continue;
    }
    // Between compute phases: a chain of reps x (compute, all-reduce) with no
    // barrier inside, as a step runs. A rank whose data comes in later starts
    // its next phase later and its peer then waits for it; a barrier before
    // each collective would hide that. The cost per collective is the chain's
    // time less the busiest rank's computing, over reps: what the collectives
    // add to the critical path (bench's critical-path share), as a mean, as
    // a step pays it.
    comm.barrier();
    compute();
    comm.all_reduce_sum(buf.data(), buf.size());  // warm-up
    comm.barrier();
    double computing = 0;
    const auto start = Clock::now();
    for (int r = 0; r < reps; ++r) {
      const auto c0 = Clock::now();
      compute();
      computing += std::chrono::duration<double>(Clock::now() - c0).count();
      comm.all_reduce_sum(buf.data(), buf.size());
    }
    const double total = std::chrono::duration<double>(Clock::now() - start).count();
    std::vector<double> each(static_cast<size_t>(comm.size()));
    comm.all_gather_bytes(&computing, sizeof(computing), each.data());
    const double busiest = *std::max_element(each.begin(), each.end());
    out.samples.push_back({bytes, std::max(total - busiest, 0.0) / reps});
  }
  // Every rank adopts rank 0's timings so all of them plan alike.
  std::vector<double> secs;
  for (const LinkSample& s : out.samples) secs.push_back(s.seconds);
  comm.broadcast(secs.data(), secs.size() * sizeof(double), 0);
  for (size_t i = 0; i < secs.size(); ++i) out.samples[i].seconds = secs[i];
  if (out.ranks > 1) {
    out.link = fit_ring_link(out.samples, out.ranks);
    for (const LinkSample& x : out.samples) out.link.curve.push_back({static_cast<double>(x.bytes), x.seconds});
    std::sort(out.link.curve.begin(), out.link.curve.end(),
              [](const LinkPoint& a, const LinkPoint& b) { return a.bytes < b.bytes; });
    out.link.curve_ranks = out.ranks;
    const LinkPoint& a = out.link.curve[out.link.curve.size() - 2];
    const LinkPoint& b = out.link.curve.back();
    if (b.seconds > a.seconds && b.bytes > a.bytes) {
      out.link.sustained_bandwidth = 2.0 * (out.ranks - 1) / out.ranks * (b.bytes - a.bytes) / (b.seconds - a.seconds);
    }
    out.link.name = cat("probed:", out.backend);
    out.link.source = cat("all-reduce over ", out.ranks, " ", out.backend, " ranks, measured by --probe");
  }
  return out;
}

LinkProbe probe_local_link(int ranks, const std::vector<uint64_t>& sizes, int reps, uint64_t compute_bytes) {
  if (ranks < 2) throw ConfigError("probing a link needs two ranks or more");
  LocalGroup group(ranks, std::chrono::milliseconds(60000));
  std::vector<LinkProbe> results(static_cast<size_t>(ranks));
  std::vector<std::string> errors(static_cast<size_t>(ranks));
  std::vector<std::thread> threads;
  for (int r = 0; r < ranks; ++r) {
    threads.emplace_back([&, r] {
      // Placed as the engine places ranks: a core each when they fit. Never
      // the creator's pin, which every thread would otherwise inherit.
      if (ranks <= available_cpus()) {
        pin_current_thread(available_cpu(r));
      } else {
        unpin_current_thread();
      }
      try {
        std::unique_ptr<Communicator> comm = group.communicator(r);
        results[static_cast<size_t>(r)] = probe_link(*comm, sizes, reps, compute_bytes);
      } catch (const std::exception& e) {
        errors[static_cast<size_t>(r)] = e.what();
        group.abort(cat("link probe failed on rank ", r, ": ", e.what()));
      }
    });
  }
  for (std::thread& t : threads) t.join();
  for (const std::string& e : errors) {
    if (!e.empty()) throw Error(e);
  }
  return results[0];
}

int cpu_threads_per_rank(int ranks) {
  const int cores = available_cpus();
  return std::max(1, cores / std::max(1, ranks));
}

double measure_matmul_flops(DType type, int threads) {
  const int64_t cols = 1024;
  const uint64_t row = row_bytes(type, cols);
  // ~192 KiB of weights per thread: in L2 on current x86 cores.
  const int64_t rows = std::max<int64_t>(16, static_cast<int64_t>((192u << 10) * static_cast<uint64_t>(threads) / row));
  std::vector<uint8_t> w(static_cast<size_t>(row * static_cast<uint64_t>(rows)));
  std::vector<float> values(static_cast<size_t>(cols)), x(static_cast<size_t>(cols)), y(static_cast<size_t>(rows));
  std::mt19937 rng(11);
  std::uniform_real_distribution<float> dist(-1, 1);
  for (int64_t r = 0; r < rows; ++r) {
    for (float& v : values) v = dist(rng);
    cpu::quantize_row(type, values.data(), w.data() + static_cast<uint64_t>(r) * row, cols);
  }
  for (float& v : x) v = dist(rng);
  ThreadPool pool(threads);
  cpu::MatmulScratch scratch;
  const cpu::WeightView view{type, rows, cols, w.data(), row};
  for (int i = 0; i < 10; ++i) cpu::matmul(view, x.data(), 1, y.data(), pool, scratch);
  double best = 0;
  for (int pass = 0; pass < 5; ++pass) {
    int iters = 0;
    const auto t0 = Clock::now();
    double t = 0;
    while (t < 0.05) {
      for (int i = 0; i < 20; ++i) cpu::matmul(view, x.data(), 1, y.data(), pool, scratch);
      iters += 20;
      t = std::chrono::duration<double>(Clock::now() - t0).count();
    }
    best = std::max(best, 2.0 * static_cast<double>(rows) * cols * iters / t);
  }
  return best;
}

std::vector<double> measure_rank_gemv_bandwidths(DType type, int ranks, int threads_per_rank, uint64_t bytes,
                                                 const std::function<void()>& sync) {
  const int cores = available_cpus();
  const bool pin = ranks * threads_per_rank <= cores;
  std::vector<double> out(static_cast<size_t>(ranks), 0.0);
  if (!dtype_info(type).quantized && type != DType::F32 && type != DType::F16 && type != DType::BF16) return out;
  std::barrier together(ranks);
  std::exception_ptr error;  // from `sync`, on the first rank's thread
  std::vector<std::thread> group;
  for (int r = 0; r < ranks; ++r) {
    group.emplace_back([&, r] {
      std::vector<int> cpus;
      if (pin) {
        for (int t = 0; t < threads_per_rank; ++t) cpus.push_back(available_cpu(r * threads_per_rank + t));
      } else {
        unpin_current_thread();
      }
      const int64_t cols = 2048;
      const uint64_t row = row_bytes(type, cols);
      const int64_t rows = static_cast<int64_t>(bytes / static_cast<uint64_t>(ranks) / row);
      std::vector<uint8_t> w(static_cast<size_t>(row * static_cast<uint64_t>(rows)), 0x11);
      std::vector<float> x(static_cast<size_t>(cols), 0.5f), y(static_cast<size_t>(rows));
      ThreadPool pool(threads_per_rank, cpus);
      cpu::MatmulScratch scratch;
      const cpu::WeightView view{type, rows, cols, w.data(), row};
      cpu::matmul(view, x.data(), 1, y.data(), pool, scratch);  // first touch, warm-up
      for (int pass = 0; pass < 4; ++pass) {
        if (r == 0 && sync && !error) {
          try {
            sync();  // the other processes' ranks too
          } catch (...) {
            error = std::current_exception();
          }
        }
        together.arrive_and_wait();  // every rank streams at once, as in a step
        const auto t0 = Clock::now();
        cpu::matmul(view, x.data(), 1, y.data(), pool, scratch);
        const double t = std::chrono::duration<double>(Clock::now() - t0).count();
        out[static_cast<size_t>(r)] =
            std::max(out[static_cast<size_t>(r)], static_cast<double>(row) * static_cast<double>(rows) / t);
      }
    });
  }
  for (std::thread& t : group) t.join();
  if (error) std::rethrow_exception(error);
  return out;
}

DeviceSpec cpu_device(int ranks, DType weight_type, const std::function<void()>& sync) {
  if (ranks < 1) throw ConfigError(cat("--devices must be at least 1, got ", ranks));
  const int cores = available_cpus();
  const int tpr = cpu_threads_per_rank(ranks);
  DeviceSpec d;
  d.name = "cpu";
  const long pages = ::sysconf(_SC_PHYS_PAGES);
  const long page = ::sysconf(_SC_PAGE_SIZE);
  d.memory = static_cast<uint64_t>(std::max(0L, pages)) * static_cast<uint64_t>(std::max(0L, page)) /
             static_cast<uint64_t>(ranks);
  // A tensor-parallel step goes at the pace of its slowest rank: the ranks'
  // GEMVs run at once on the cores the engine gives them, and the slowest
  // one's rate is the device's. (Cores of one machine can stream at different
  // rates; the faster rank then waits for the slower at every collective.)
  // Types without a GEMV rate: a streaming read shared by the ranks.
  const std::vector<double> per_rank = measure_rank_gemv_bandwidths(weight_type, ranks, tpr, uint64_t{256} << 20, sync);
  const double slowest = *std::min_element(per_rank.begin(), per_rank.end());
  const int threads = std::min(cores, ranks * tpr);
  d.bandwidth = slowest > 0 ? slowest : cpu::measure_read_bandwidth(threads, uint64_t{256} << 20, 5) / ranks;
  // Ranks beyond the cores share them: each gets its slice of the time.
  const double share = std::min(1.0, static_cast<double>(cores) / (ranks * tpr));
  d.flops = measure_matmul_flops(weight_type, tpr) * share;
  d.source = cat("this machine: ", cores, " cores, ", ranks, " rank(s) of ", tpr,
                 " thread(s); the slowest rank's bandwidth (all streaming at once) and ", dtype_name(weight_type),
                 " matmul rate measured");
  return d;
}

}  // namespace tpinfer::planner
