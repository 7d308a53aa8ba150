// Collectives over device memory, for ranks whose activations live on GPUs.
// Two back ends: nccl (one rank per GPU, in one process or one per process
// under MPI) and streams (several ranks as streams of one GPU, so the sharded
// GPU code runs where there is one GPU; the all-reduce is a kernel that sums
// the ranks' buffers on the device).
//
// Calls are enqueued on the caller's stream and return without waiting. A
// collective's deadline is enforced where the host waits: wait() blocks until
// the stream has finished everything enqueued, at most the timeout; when a
// collective has not completed by then, the communicator is aborted
// (ncclCommAbort) and wait() throws CommError naming the collective, its
// sequence number and, where it can tell, the ranks that did not arrive. The
// other ranks' wait() throws too. Counters are the host Communicator's
// (CommStats): calls and bytes at enqueue, time as measured by events around
// each collective, collected at wait().
#pragma once

#include <cuda_runtime.h>

#include <chrono>
#include <cstddef>
#include <memory>

#include "comm/communicator.h"
#include "comm/compressed_comm.h"

namespace tpinfer::cuda {

class DeviceCommunicator {
 public:
  virtual ~DeviceCommunicator() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  virtual const char* backend() const = 0;  // "nccl", "streams"
  // True when its collectives may be captured in a CUDA graph.
  virtual bool capturable() const = 0;

  // data[0, n) <- sum over ranks, in stream order. With compression the
  // payload crosses the link encoded (compressed_comm.h's formats).
  virtual void all_reduce_sum(float* data, size_t n, cudaStream_t stream) = 0;
  // recv[r * count, + count) <- rank r's send[0, count).
  virtual void all_gather(const float* send, size_t count, float* recv, cudaStream_t stream) = 0;
  // Blocks until `stream` has finished, at most the deadline (see above).
  virtual void wait(cudaStream_t stream) = 0;

  const CommStats& stats() const { return stats_; }
  void reset_stats() { stats_ = CommStats{}; }

 protected:
  CommStats stats_;
};

struct DeviceCommOptions {
  std::chrono::milliseconds timeout{60000};
  Compression compression = Compression::None;
};

// NCCL over the ranks of `host` (every rank of it calls this at once; rank 0's
// unique id reaches the others through host.broadcast(), so the bootstrap is
// whatever `host` is: threads of one process, or MPI). `device` is this rank's
// GPU. Throws CommError when NCCL is missing from the build or fails to start.
std::unique_ptr<DeviceCommunicator> make_nccl_comm(Communicator& host, int device, const DeviceCommOptions& options);

// Ranks that are streams of one GPU: one group object shared by the rank
// threads, each of which takes its own communicator with rank(r).
class StreamsGroup {
 public:
  StreamsGroup(int size, int device, const DeviceCommOptions& options);
  ~StreamsGroup();
  StreamsGroup(const StreamsGroup&) = delete;
  StreamsGroup& operator=(const StreamsGroup&) = delete;
  std::unique_ptr<DeviceCommunicator> rank(int r);
  // Makes every rank's pending and next wait() throw CommError(message).
  void abort(const std::string& message);

  struct State;

 private:
  std::unique_ptr<State> state_;
};

}  // namespace tpinfer::cuda
