// Bookkeeping shared by the device communicators (internal to comm/cuda): the
// collectives enqueued since the last wait(), each between two timing events,
// so that wait() can add their device time to the counters and, on a timeout,
// name the first one that has not completed.
//
// Counters: calls and bytes are added at enqueue (begin()); nanoseconds are the
// device time between the events around each collective, added when wait()
// finds them complete (harvest()). Under CUDA graph capture no events are
// recorded: the call and its bytes are counted once, at capture, and a replay
// of the graph adds nothing (the model accounts replays itself if it wants).
#pragma once

#include <cuda_runtime.h>

#include <chrono>
#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "backend/cuda/runtime.h"
#include "comm/communicator.h"

namespace tpinfer::cuda {

class CollectiveTracker {
 public:
  explicit CollectiveTracker(CommStats& stats) : stats_(stats) {}

  // Counts a call of `kind` moving `bytes` and records its start on `stream`
  // (unless the stream is being captured). Returns its sequence number.
  uint64_t begin(Collective kind, uint64_t bytes, cudaStream_t stream);
  // Records the end of the collective begun last.
  void end(cudaStream_t stream);
  // The collective begun last will never be enqueued whole (its enqueue threw).
  void abandon() { current_.reset(); }

  // Adds the device time of every completed collective to the counters and
  // forgets them.
  void harvest();
  // "all_reduce #12", the first collective enqueued that has not completed; empty when none.
  std::string first_incomplete() const;
  uint64_t seq() const { return seq_; }
  // Forgets everything pending (after an abort, the events may never complete).
  void clear();

 private:
  struct Pending {
    Collective kind = Collective::AllReduce;
    uint64_t seq = 0;
    Event start{true};
    Event end{true};
  };
  CommStats& stats_;
  uint64_t seq_ = 0;
  std::unique_ptr<Pending> current_;
  std::deque<std::unique_ptr<Pending>> pending_;
  std::vector<std::unique_ptr<Pending>> pool_;
};

// True while `stream` is being captured into a CUDA graph.
bool capturing(cudaStream_t stream);

// Milliseconds as the error messages write them.
inline long long millis(std::chrono::milliseconds ms) { return static_cast<long long>(ms.count()); }

}  // namespace tpinfer::cuda
