#include "comm/cuda/tracker.h"

#include "core/error.h"

namespace tpinfer::cuda {

namespace {
// Pending collectives kept for timing when wait() is never called; beyond this
// the oldest are forgotten (their calls and bytes are counted, their time not).
constexpr size_t kMaxPending = 4096;
}  // namespace

bool capturing(cudaStream_t stream) {
  cudaStreamCaptureStatus status = cudaStreamCaptureStatusNone;
  check(cudaStreamIsCapturing(stream, &status), "cudaStreamIsCapturing");
  return status != cudaStreamCaptureStatusNone;
}

uint64_t CollectiveTracker::begin(Collective kind, uint64_t bytes, cudaStream_t stream) {
  ++seq_;
  CollectiveCounter& counter = stats_[kind];
  counter.calls += 1;
  counter.bytes += bytes;
  current_.reset();
  if (capturing(stream)) return seq_;
  if (pool_.empty()) {
    current_ = std::make_unique<Pending>();
  } else {
    current_ = std::move(pool_.back());
    pool_.pop_back();
  }
  current_->kind = kind;
  current_->seq = seq_;
  current_->start.record(stream);
  return seq_;
}

void CollectiveTracker::end(cudaStream_t stream) {
  if (!current_) return;
  current_->end.record(stream);
  pending_.push_back(std::move(current_));
  if (pending_.size() > kMaxPending) harvest();
  while (pending_.size() > kMaxPending) pending_.pop_front();
}

void CollectiveTracker::harvest() {
  for (auto it = pending_.begin(); it != pending_.end();) {
    Pending& p = **it;
    if (!p.end.done()) {
      ++it;
      continue;
    }
    float ms = 0.0f;
    check(cudaEventElapsedTime(&ms, p.start.get(), p.end.get()), "cudaEventElapsedTime");
    stats_[p.kind].nanos += static_cast<uint64_t>(static_cast<double>(ms) * 1e6);
    pool_.push_back(std::move(*it));
    it = pending_.erase(it);
  }
}

std::string CollectiveTracker::first_incomplete() const {
  for (const auto& p : pending_) {
    const cudaError_t e = cudaEventQuery(p->end.get());
    if (e == cudaSuccess) continue;
    if (e != cudaErrorNotReady) cudaGetLastError();  // a device error: this one is as good as incomplete
    return cat(collective_name(p->kind), " #", p->seq);
  }
  return "";
}

void CollectiveTracker::clear() {
  current_.reset();
  pending_.clear();
}

}  // namespace tpinfer::cuda
