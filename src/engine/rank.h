// Inside the engine: what one rank owns, and what the rank threads of the
// local back end share with the driver. Included by the engine's own files
// only (engine.cc runs ranks, rank.cc builds them, launch_local.cc and
// launch_mpi.cc start them per back end).
#pragma once

#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "comm/communicator.h"
#include "comm/local_comm.h"
#include "core/thread_pool.h"
#include "engine/engine.h"
#include "engine/stage_message.h"
#include "model/rank_model.h"

#ifdef TPINFER_HAVE_CUDA
#include "comm/cuda/device_comm.h"
#endif

namespace tpinfer {

// What every rank owns: its communicators, thread pool, model shard and cache.
// `pipe` is declared first so it is destroyed last: under mpi it is the world
// communicator, which the stage's split communicator `tp` needs; the model
// (whose device uses tp and the pool, or on cuda dcomm) is destroyed before
// all of them.
struct Engine::Rank {
  int world_rank = 0;
  int stage = 0;
  int tp_rank = 0;
  std::unique_ptr<Communicator> pipe;  // the whole replica, for stage-to-stage sends (pp > 1)
  std::unique_ptr<Communicator> tp;    // the stage's tensor-parallel group
  std::unique_ptr<ThreadPool> pool;
#ifdef TPINFER_HAVE_CUDA
  std::unique_ptr<cuda::DeviceCommunicator> dcomm;  // cuda, tp > 1: the group's collectives on the device
#endif
  std::unique_ptr<RankModel> model;  // holds its KV cache
  std::vector<float> logits;
  int64_t row_floats = 0;      // floats per row of `logits` (LlamaModel::logits_row_floats)
  StageMessage message;        // the last message to or from the next or previous stage
  CollectiveCounter reported;  // tp_stats().total() after the last report (tp_rank_collectives)

  // The stage's tensor-parallel collectives: on the device when there is one.
  const CommStats& tp_stats() const;
  bool tp_measures_wait() const;
  void reset_tp_stats();

  // The last stage's logits rows: whole, or the ranks' summaries (Batch::logit_top).
  void run(const Batch& batch) {
    row_floats = model->last_stage() ? model->logits_row_floats(batch) : 0;
    logits.resize(static_cast<size_t>(batch.n_logits() * row_floats));
    model->forward(batch, logits.data());
  }
};

// State the rank threads share with the driver (local back end): the groups,
// and the loading handshake.
struct Engine::Shared {
  Shared();
  ~Shared();

  std::unique_ptr<LocalGroup> world;                // every rank (pp > 1)
  std::vector<std::unique_ptr<LocalGroup>> stages;  // one tensor-parallel group per stage
  std::unique_ptr<DeviceGroups> device;
  std::mutex mutex;
  std::condition_variable loaded_cv;
  int loaded = 0;
  std::string load_error;

  // A failure anywhere poisons every group, so no rank waits on one that
  // nobody will complete.
  void abort_all(const std::string& message);
  bool aborted() const;
  std::string abort_message() const;
};

}  // namespace tpinfer
