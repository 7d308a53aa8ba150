// What one rank computes with: its communicator, its thread pool and reusable
// scratch. One per rank; never shared between ranks.
#pragma once

#include "backend/cpu/matmul.h"
#include "comm/communicator.h"
#include "core/thread_pool.h"

namespace tpinfer {

struct RankContext {
  Communicator& comm;
  ThreadPool& pool;
  cpu::MatmulScratch scratch;

  int rank() const { return comm.rank(); }
  int size() const { return comm.size(); }
};

}  // namespace tpinfer
