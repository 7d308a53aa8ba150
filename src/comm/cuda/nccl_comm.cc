// The nccl device communicator (device_comm.h). One rank per GPU; the NCCL
// communicator is non-blocking (config.blocking = 0), so that no NCCL call can
// hang the host: initialisation and every enqueue are polled with
// ncclCommGetAsyncError under the deadline, and wait() polls the stream. On a
// timeout the communicator is aborted (ncclCommAbort) and stays unusable.
//
// Compressed all-reduce (p >= 2): every rank encodes its whole vector on the
// device (compress.cu, compressed_comm.h's format), ncclAllGather exchanges the
// encodings (each padded to 16 bytes), and every rank decodes and sums all p of
// them in rank order on the device: bit-identical results on every rank, one
// quantisation per value. For p == 2 this is the host scheme exactly (same
// bytes, same sums); for p > 2 it moves chunk x (p - 1) bytes per rank where the
// host's reduce-scatter + all-gather moves 2 chunk/p x (p - 1) (one more
// quantisation, p times fewer bytes): fine for the p = 2..8 of one node, and
// results differ from the host back end's for p > 2 (within the same bounds
// per stage). The counters say what crossed: chunk x (p - 1) bytes.
#include "backend/cuda/runtime.h"
#include "comm/cuda/compress.h"
#include "comm/cuda/device_comm.h"
#include "comm/cuda/tracker.h"
#include "core/error.h"

#if defined(TPINFER_HAVE_NCCL)
#include <nccl.h>

#include <cstdio>
#include <cstring>
#include <thread>
#include <vector>
#endif

namespace tpinfer::cuda {

#if !defined(TPINFER_HAVE_NCCL)

std::unique_ptr<DeviceCommunicator> make_nccl_comm(Communicator& host, int device, const DeviceCommOptions& options) {
  (void)device;
  (void)options;
  throw CommError(cat("rank ", host.rank(), ": this build has no NCCL (the nccl device communicator needs it)"));
}

#else

namespace {

using Clock = std::chrono::steady_clock;

std::string nccl_message(ncclResult_t r, ncclComm_t comm) {
  std::string msg = ncclGetErrorString(r);
  const char* last = comm ? ncclGetLastError(comm) : nullptr;
  if (last && *last) msg += cat(" (", last, ")");
  return msg;
}

// Sleeps a little between polls: the first ones are cheap yields, since a
// collective of a decode step takes tens of microseconds.
void backoff(uint64_t iteration) {
  if (iteration < 64) {
    std::this_thread::yield();
  } else {
    std::this_thread::sleep_for(std::chrono::microseconds(iteration < 1024 ? 20 : 200));
  }
}

class NcclCommunicator final : public DeviceCommunicator {
 public:
  NcclCommunicator(ncclComm_t comm, int rank, int size, int device, const DeviceCommOptions& options)
      : comm_(comm), rank_(rank), size_(size), device_(device), options_(options), tracker_(stats_) {}

  ~NcclCommunicator() override {
    if (aborted_ || !comm_) return;
    try {
      DeviceGuard guard(device_);
      // Flush what is enqueued, with the deadline; abort when it does not finish.
      ncclResult_t r = ncclCommFinalize(comm_);
      if (r == ncclInProgress) r = poll("finalize", /*throw_on_timeout=*/false);
      if (r == ncclSuccess) {
        ncclCommDestroy(comm_);
      } else {
        ncclCommAbort(comm_);
      }
    } catch (...) {
      ncclCommAbort(comm_);
    }
  }

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  const char* backend() const override { return "nccl"; }
  bool capturable() const override { return true; }

  void all_reduce_sum(float* data, size_t n, cudaStream_t stream) override {
    usable();
    DeviceGuard guard(device_);
    const size_t p = static_cast<size_t>(size_);
    const Compression c = options_.compression;
    if (n == 0 || p == 1) {
      tracker_.begin(Collective::AllReduce, 0, stream);
      tracker_.abandon();
      return;
    }
    if (c == Compression::None) {
      const size_t bytes = n * sizeof(float);
      tracker_.begin(Collective::AllReduce, 2 * bytes * (p - 1) / p, stream);
      enqueue(ncclAllReduce(data, data, n, ncclFloat32, ncclSum, comm_, stream), "ncclAllReduce");
      tracker_.end(stream);
      return;
    }
    const size_t chunk = device_chunk_bytes(c, n);
    grow(send_, chunk, stream);
    grow(recv_, chunk * p, stream);
    tracker_.begin(Collective::AllReduce, chunk * (p - 1), stream);
    encode_on_device(c, data, n, send_.as<uint8_t>(), stream);
    enqueue(ncclAllGather(send_.data(), recv_.data(), chunk, ncclUint8, comm_, stream), "ncclAllGather");
    std::vector<const uint8_t*> sources(p);
    for (size_t r = 0; r < p; ++r) sources[r] = recv_.as<uint8_t>() + r * chunk;
    decode_sum_on_device(c, sources.data(), size_, n, data, /*accumulate=*/false, stream);
    tracker_.end(stream);
  }

  void all_gather(const float* send, size_t count, float* recv, cudaStream_t stream) override {
    usable();
    DeviceGuard guard(device_);
    const size_t p = static_cast<size_t>(size_);
    tracker_.begin(Collective::AllGather, count * sizeof(float) * (p - 1), stream);
    if (count == 0) {
      tracker_.abandon();
      return;
    }
    enqueue(ncclAllGather(send, recv, count, ncclFloat32, comm_, stream), "ncclAllGather");
    tracker_.end(stream);
  }

  void wait(cudaStream_t stream) override {
    usable();
    DeviceGuard guard(device_);
    const Clock::time_point deadline = Clock::now() + options_.timeout;
    for (uint64_t i = 0;; ++i) {
      const cudaError_t e = cudaStreamQuery(stream);
      if (e == cudaSuccess) break;
      if (e != cudaErrorNotReady) check(e, "cudaStreamQuery (nccl wait)");
      ncclResult_t async = ncclSuccess;
      const ncclResult_t r = ncclCommGetAsyncError(comm_, &async);
      if (r != ncclSuccess || (async != ncclSuccess && async != ncclInProgress)) {
        fail(cat(describe_pending(), " (nccl) failed on rank ", rank_, " of ", size_, ": ",
                 nccl_message(r != ncclSuccess ? r : async, comm_), "; communicator aborted"));
      }
      if (Clock::now() >= deadline) {
        const std::string what = tracker_.first_incomplete();
        fail(what.empty() ? cat("wait on rank ", rank_, " of ", size_, ": the stream did not finish within ",
                                millis(options_.timeout), " ms (no nccl collective pending); communicator aborted")
                          : cat(what, " (nccl) did not complete within ", millis(options_.timeout), " ms on rank ",
                                rank_, " of ", size_, "; communicator aborted"));
      }
      backoff(i);
    }
    tracker_.harvest();
  }

 private:
  void usable() const {
    if (aborted_) throw CommError(cat("nccl rank ", rank_, " of ", size_, ": communicator aborted: ", abort_message_));
  }

  std::string describe_pending() const {
    const std::string what = tracker_.first_incomplete();
    return what.empty() ? std::string("a collective") : what;
  }

  [[noreturn]] void fail(const std::string& message) {
    aborted_ = true;
    abort_message_ = message;
    tracker_.clear();
    ncclCommAbort(comm_);
    throw CommError(message);
  }

  // Polls a non-blocking operation of the communicator to its end, at most the timeout.
  ncclResult_t poll(const char* what, bool throw_on_timeout) {
    const Clock::time_point deadline = Clock::now() + options_.timeout;
    for (uint64_t i = 0;; ++i) {
      ncclResult_t async = ncclSuccess;
      const ncclResult_t r = ncclCommGetAsyncError(comm_, &async);
      if (r != ncclSuccess) return r;
      if (async != ncclInProgress) return async;
      if (Clock::now() >= deadline) {
        if (!throw_on_timeout) return ncclInProgress;
        fail(cat(what, " (nccl) did not return within ", millis(options_.timeout), " ms on rank ", rank_, " of ",
                 size_, "; communicator aborted"));
      }
      backoff(i);
    }
  }

  void enqueue(ncclResult_t r, const char* call) {
    if (r == ncclInProgress) r = poll(call, /*throw_on_timeout=*/true);
    if (r != ncclSuccess) {
      tracker_.abandon();
      fail(cat(call, " #", tracker_.seq(), " on rank ", rank_, " of ", size_, ": ", nccl_message(r, comm_),
               "; communicator aborted"));
    }
  }

  // Grows a staging buffer. The old one may still be read by work enqueued
  // earlier, so the stream is drained first (rare: sizes settle after the
  // first steps); not possible while capturing a graph.
  void grow(DeviceBuffer& buffer, size_t bytes, cudaStream_t stream) {
    if (buffer.bytes() >= bytes) return;
    if (capturing(stream)) {
      throw CommError(cat("nccl rank ", rank_, ": a compressed all_reduce of ", bytes,
                          " bytes needs larger buffers during graph capture; run one step of that size before capturing"));
    }
    wait(stream);
    buffer.reserve(bytes);
    check(cudaMemsetAsync(buffer.data(), 0, buffer.bytes(), stream), "cudaMemsetAsync (nccl staging)");
  }

  ncclComm_t comm_;
  int rank_, size_, device_;
  DeviceCommOptions options_;
  CollectiveTracker tracker_;
  DeviceBuffer send_, recv_;
  bool aborted_ = false;
  std::string abort_message_;
};

// What rank 0 sends the others: the unique id, or why there is none.
struct Bootstrap {
  int32_t ok = 0;
  ncclUniqueId id{};
  char error[256] = {};
};

}  // namespace

std::unique_ptr<DeviceCommunicator> make_nccl_comm(Communicator& host, int device, const DeviceCommOptions& options) {
  const int rank = host.rank(), size = host.size();
  DeviceGuard guard(device);
  Bootstrap boot;
  if (rank == 0) {
    const ncclResult_t r = ncclGetUniqueId(&boot.id);
    boot.ok = r == ncclSuccess ? 1 : 0;
    if (!boot.ok) std::snprintf(boot.error, sizeof boot.error, "ncclGetUniqueId: %s", ncclGetErrorString(r));
  }
  host.broadcast(&boot, sizeof boot, 0);
  if (!boot.ok) throw CommError(cat("nccl init on rank ", rank, " of ", size, ": rank 0 failed: ", boot.error));

  ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
  config.blocking = 0;
  ncclComm_t comm = nullptr;
  ncclResult_t r = ncclCommInitRankConfig(&comm, size, boot.id, rank, &config);
  if (r != ncclSuccess && r != ncclInProgress) {
    if (comm) ncclCommAbort(comm);
    throw CommError(cat("nccl init on rank ", rank, " of ", size, " (device ", device, "): ", nccl_message(r, nullptr)));
  }
  const Clock::time_point deadline = Clock::now() + options.timeout;
  for (uint64_t i = 0;; ++i) {
    ncclResult_t async = ncclSuccess;
    r = ncclCommGetAsyncError(comm, &async);
    if (r == ncclSuccess) r = async;
    if (r != ncclInProgress) break;
    if (Clock::now() >= deadline) {
      ncclCommAbort(comm);
      throw CommError(cat("nccl init did not complete within ", millis(options.timeout), " ms on rank ", rank, " of ",
                          size, " (device ", device, "); communicator aborted"));
    }
    backoff(i);
  }
  if (r != ncclSuccess) {
    const std::string msg = nccl_message(r, comm);
    ncclCommAbort(comm);
    throw CommError(cat("nccl init on rank ", rank, " of ", size, " (device ", device, "): ", msg));
  }
  return std::make_unique<NcclCommunicator>(comm, rank, size, device, options);
}

#endif

}  // namespace tpinfer::cuda
