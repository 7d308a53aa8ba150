#include "comm/host_comm.h"

#include "core/error.h"

namespace tpinfer {

uint64_t HostCommunicator::bus_bytes(size_t bytes) const {
  const size_t p = static_cast<size_t>(size_);
  return p <= 1 ? 0 : 2 * bytes * (p - 1) / p;
}

void HostCommunicator::check_peer(int peer, const char* op) const {
  if (peer < 0 || peer >= size_ || peer == rank_) {
    throw CommError(cat(op, " on rank ", rank_, ": invalid peer ", peer, " (group of ", size_, ")"));
  }
}

void HostCommunicator::check_root(int root, const char* op) const {
  if (root < 0 || root >= size_) {
    throw CommError(cat(op, " on rank ", rank_, ": invalid root ", root, " (group of ", size_, ")"));
  }
}

size_t HostCommunicator::check_counts(std::span<const size_t> counts) const {
  if (counts.size() != static_cast<size_t>(size_)) {
    throw CommError(cat("all_gather on rank ", rank_, ": ", counts.size(), " counts for ", size_, " ranks"));
  }
  size_t total = 0;
  for (size_t c : counts) total += c;
  return total;
}

std::string HostCommunicator::timeout_head() const {
  return cat(collective_name(kind_), " #", seq_, " timed out after ", seconds(timeout_), " s on rank ", rank_, ": ");
}

std::string HostCommunicator::recv_timeout(const std::string& why) const {
  return cat("recv #", seq_, " on rank ", rank_, " timed out after ", seconds(timeout_), " s: ", why);
}

std::string HostCommunicator::recv_size_mismatch(size_t bytes, int src, size_t got) const {
  return cat("recv #", seq_, " on rank ", rank_, ": expected ", bytes, " bytes from rank ", src, ", got ", got);
}

}  // namespace tpinfer
