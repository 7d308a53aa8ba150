// The streams device communicator (device_comm.h): the ranks are threads of one
// process, each with its own stream on ONE GPU. A collective is
//   1. stage: the rank copies (or, compressed, encodes) its data into its own
//      slot, a device buffer of the group, and records its `ready` event;
//   2. rendezvous: a host barrier with the deadline (an abort wakes everyone),
//      after which every rank's slot pointer and `ready` event are visible;
//   3. combine: the rank's stream waits for every peer's `ready`, then a kernel
//      sums the p slots in rank order into its data (all-gather: copies them),
//      and the rank records its `done` event.
// Every rank sums the same bytes in the same order: bit-identical results. The
// numerics are the nccl back end's (compress.cu for both).
//
// Slot reuse. Slots, ready and done events come in two sets, used by rounds of
// alternating parity (round k uses set k % 2). Before rank r overwrites its slot
// in round k (step 1), its stream waits for every rank's `done` of round k - 2,
// the last round that read that slot. That record exists and is the right one:
//   - every rank q recorded done(k-2) before arriving at the barrier of round
//     k-1, which r has passed, so r's wait does not miss it (a wait on an event
//     with no record yet would wait for nothing);
//   - q re-records that event only in round k, after the barrier of round k,
//     which r reaches after its waits, so r never waits on a later record.
// The same argument covers `ready`: q waits on r's ready(k) after barrier k; r
// records ready(k+2) only after barrier k+1, which q reaches after that wait.
// The GPU can never deadlock: a stream only ever waits on records that were
// already made, whose work depends on nothing that comes later.
//
// The host rendezvous is in the call (the caller blocks until every rank has
// enqueued its stage; no GPU work is waited for), so a rank that never calls
// makes the others' call throw after the timeout: "all_reduce #7 (streams)
// timed out after 60 s on rank 0 of 2: rank(s) 1 did not arrive"; wait()
// enforces the deadline on the GPU work itself. Counters: bytes as if the slots
// were links (the host back ends' counts: all-reduce 2 x bytes x (p-1)/p, or the
// 16-byte-padded encoding x (p - 1) compressed; all-gather count x 4 x (p-1)).
#include <condition_variable>
#include <mutex>
#include <thread>
#include <vector>

#include "backend/cuda/runtime.h"
#include "comm/cuda/compress.h"
#include "comm/cuda/device_comm.h"
#include "comm/cuda/tracker.h"
#include "core/error.h"

namespace tpinfer::cuda {

using Clock = std::chrono::steady_clock;

struct StreamsGroup::State {
  int size = 0;
  int device = 0;
  DeviceCommOptions options;

  std::mutex mutex;
  std::condition_variable changed;
  std::vector<uint64_t> arrived;  // rounds each rank has reached (under mutex)
  std::vector<bool> taken;        // rank(r) handed out (under mutex)
  bool aborted = false;
  std::string abort_message;

  // [parity][rank]. Slot buffers and events are touched (grown, recorded) only
  // by their rank's thread; peers read the pointers and wait on the events
  // after the rendezvous, which orders them (see above).
  std::vector<DeviceBuffer> slots[2];
  std::vector<void*> slot_ptr[2];
  std::vector<Event> ready[2];
  std::vector<Event> done[2];

  void abort(const std::string& message) {
    {
      std::lock_guard<std::mutex> lock(mutex);
      if (aborted) return;
      aborted = true;
      abort_message = message;
    }
    changed.notify_all();
  }
};

namespace {

double seconds(std::chrono::milliseconds ms) { return static_cast<double>(ms.count()) / 1000.0; }

class StreamsCommunicator final : public DeviceCommunicator {
 public:
  StreamsCommunicator(StreamsGroup::State& g, int rank) : g_(g), rank_(rank), tracker_(stats_) {}

  int rank() const override { return rank_; }
  int size() const override { return g_.size; }
  const char* backend() const override { return "streams"; }
  bool capturable() const override { return false; }

  void all_reduce_sum(float* data, size_t n, cudaStream_t stream) override {
    check_aborted();
    DeviceGuard guard(g_.device);
    const size_t p = static_cast<size_t>(g_.size);
    const Compression c = g_.options.compression;
    if (n == 0 || p == 1) {
      count_only(Collective::AllReduce);
      return;
    }
    const size_t chunk = device_chunk_bytes(c, n);
    const uint64_t bytes = c == Compression::None ? 2 * n * sizeof(float) * (p - 1) / p : chunk * (p - 1);
    const int parity = stage(chunk, stream);
    tracker_.begin(Collective::AllReduce, bytes, stream);
    try {
      encode_on_device(c, data, n, static_cast<uint8_t*>(g_.slot_ptr[parity][static_cast<size_t>(rank_)]), stream);
      g_.ready[parity][static_cast<size_t>(rank_)].record(stream);
      rendezvous(Collective::AllReduce);
    } catch (...) {
      tracker_.abandon();
      throw;
    }
    wait_for_peers(parity, stream);
    std::vector<const uint8_t*> sources(p);
    for (size_t r = 0; r < p; ++r) sources[r] = static_cast<const uint8_t*>(g_.slot_ptr[parity][r]);
    decode_sum_on_device(c, sources.data(), g_.size, n, data, /*accumulate=*/false, stream);
    g_.done[parity][static_cast<size_t>(rank_)].record(stream);
    tracker_.end(stream);
  }

  void all_gather(const float* send, size_t count, float* recv, cudaStream_t stream) override {
    check_aborted();
    DeviceGuard guard(g_.device);
    const size_t p = static_cast<size_t>(g_.size);
    if (count == 0) {
      count_only(Collective::AllGather);
      return;
    }
    const size_t bytes = count * sizeof(float);
    if (p == 1) {
      tracker_.begin(Collective::AllGather, 0, stream);
      if (recv != send) check(cudaMemcpyAsync(recv, send, bytes, cudaMemcpyDeviceToDevice, stream), "cudaMemcpyAsync");
      tracker_.end(stream);
      return;
    }
    const int parity = stage(device_chunk_bytes(Compression::None, count), stream);
    tracker_.begin(Collective::AllGather, bytes * (p - 1), stream);
    try {
      check(cudaMemcpyAsync(g_.slot_ptr[parity][static_cast<size_t>(rank_)], send, bytes, cudaMemcpyDeviceToDevice,
                            stream),
            "cudaMemcpyAsync (all_gather stage)");
      g_.ready[parity][static_cast<size_t>(rank_)].record(stream);
      rendezvous(Collective::AllGather);
    } catch (...) {
      tracker_.abandon();
      throw;
    }
    wait_for_peers(parity, stream);
    for (size_t r = 0; r < p; ++r) {
      check(cudaMemcpyAsync(recv + r * count, g_.slot_ptr[parity][r], bytes, cudaMemcpyDeviceToDevice, stream),
            "cudaMemcpyAsync (all_gather)");
    }
    g_.done[parity][static_cast<size_t>(rank_)].record(stream);
    tracker_.end(stream);
  }

  void wait(cudaStream_t stream) override {
    DeviceGuard guard(g_.device);
    const Clock::time_point deadline = Clock::now() + g_.options.timeout;
    for (uint64_t i = 0;; ++i) {
      const cudaError_t e = cudaStreamQuery(stream);
      if (e == cudaSuccess) break;
      if (e != cudaErrorNotReady) check(e, "cudaStreamQuery (streams wait)");
      check_aborted();
      if (Clock::now() >= deadline) {
        const std::string what = tracker_.first_incomplete();
        const std::string msg =
            cat(what.empty() ? std::string("the stream") : what, " (streams) did not complete within ",
                g_.options.timeout.count(), " ms on rank ", rank_, " of ", g_.size, "; group aborted");
        g_.abort(msg);
        tracker_.clear();
        throw CommError(msg);
      }
      if (i < 64) {
        std::this_thread::yield();
      } else {
        std::this_thread::sleep_for(std::chrono::microseconds(i < 1024 ? 20 : 200));
      }
    }
    tracker_.harvest();
  }

 private:
  void check_aborted() {
    std::lock_guard<std::mutex> lock(g_.mutex);
    if (g_.aborted) throw CommError(cat("rank ", rank_, ": ", g_.abort_message));
  }

  void count_only(Collective kind) {
    ++seq_;
    stats_[kind].calls += 1;
  }

  // Step 1's preparation: this round's parity, this rank's slot of that parity
  // at least `bytes` long, and this stream ordered after every read of the slot
  // in the round two before (see the top of the file).
  int stage(size_t bytes, cudaStream_t stream) {
    const int parity = static_cast<int>(round_ & 1u);
    const size_t me = static_cast<size_t>(rank_);
    DeviceBuffer& slot = g_.slots[parity][me];
    if (slot.bytes() < bytes) {
      // Readers of the old buffer (round - 2) have all been enqueued; let them
      // finish before it is freed. Rare: slot sizes settle after the first steps.
      for (Event& e : g_.done[parity]) check(cudaEventSynchronize(e.get()), "cudaEventSynchronize (slot growth)");
      slot.reserve(bytes);
      g_.slot_ptr[parity][me] = slot.data();
    }
    for (Event& e : g_.done[parity]) check(cudaStreamWaitEvent(stream, e.get(), 0), "cudaStreamWaitEvent (slot reuse)");
    return parity;
  }

  void wait_for_peers(int parity, cudaStream_t stream) {
    for (int r = 0; r < g_.size; ++r) {
      if (r == rank_) continue;
      check(cudaStreamWaitEvent(stream, g_.ready[parity][static_cast<size_t>(r)].get(), 0),
            "cudaStreamWaitEvent (peer ready)");
    }
  }

  // Step 2: the host barrier of this round, with the deadline.
  void rendezvous(Collective kind) {
    ++seq_;
    const uint64_t target = ++round_;
    const Clock::time_point deadline = Clock::now() + g_.options.timeout;
    std::unique_lock<std::mutex> lock(g_.mutex);
    g_.arrived[static_cast<size_t>(rank_)] = target;
    g_.changed.notify_all();
    for (;;) {
      if (g_.aborted) throw CommError(cat("rank ", rank_, ": ", g_.abort_message));
      std::string missing;
      for (int r = 0; r < g_.size; ++r) {
        if (g_.arrived[static_cast<size_t>(r)] < target) missing += cat(missing.empty() ? "" : ", ", r);
      }
      if (missing.empty()) return;
      if (Clock::now() >= deadline) {
        const std::string msg = cat(collective_name(kind), " #", seq_, " (streams) timed out after ",
                                    seconds(g_.options.timeout), " s on rank ", rank_, " of ", g_.size, ": rank(s) ",
                                    missing, " did not arrive");
        lock.unlock();
        g_.abort(msg);
        throw CommError(msg);
      }
      g_.changed.wait_until(lock, deadline);
    }
  }

  StreamsGroup::State& g_;
  int rank_;
  uint64_t seq_ = 0;    // collectives called on this rank
  uint64_t round_ = 0;  // rendezvous passed (or attempted)
  CollectiveTracker tracker_;
};

}  // namespace

StreamsGroup::StreamsGroup(int size, int device, const DeviceCommOptions& options)
    : state_(std::make_unique<State>()) {
  if (size < 1) throw ConfigError(cat("a streams group needs at least one rank, got ", size));
  State& s = *state_;
  s.size = size;
  s.device = device;
  s.options = options;
  s.arrived.assign(static_cast<size_t>(size), 0);
  s.taken.assign(static_cast<size_t>(size), false);
  DeviceGuard guard(device);
  for (int parity = 0; parity < 2; ++parity) {
    for (int r = 0; r < size; ++r) {
      s.slots[parity].emplace_back();
      s.slot_ptr[parity].push_back(nullptr);
      s.ready[parity].emplace_back(false);
      s.done[parity].emplace_back(false);
    }
  }
}

StreamsGroup::~StreamsGroup() = default;

std::unique_ptr<DeviceCommunicator> StreamsGroup::rank(int r) {
  State& s = *state_;
  if (r < 0 || r >= s.size) throw ConfigError(cat("rank ", r, " outside a streams group of ", s.size));
  {
    std::lock_guard<std::mutex> lock(s.mutex);
    if (s.taken[static_cast<size_t>(r)]) throw ConfigError(cat("rank ", r, " of the streams group was taken twice"));
    s.taken[static_cast<size_t>(r)] = true;
  }
  return std::make_unique<StreamsCommunicator>(s, r);
}

void StreamsGroup::abort(const std::string& message) { state_->abort(message); }

}  // namespace tpinfer::cuda
