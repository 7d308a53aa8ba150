// The local back end: every rank a thread of this process, each loading its
// own shard in parallel; the driver is world rank 0 on the caller's thread.
#include <thread>

#include "core/error.h"
#include "engine/rank.h"

namespace tpinfer {

void Engine::start_local() {
  const int world = world_size();
  shared_ = std::make_unique<Shared>();
  // Every rank's pool competes for the cores, whichever group it waits in: the
  // stages of a pipeline are one job (4 ranks on 2 cores must not spin).
  const int busy = world * options_.parallel.threads_per_rank;
  if (pp() > 1) shared_->world = std::make_unique<LocalGroup>(world, options_.parallel.comm_timeout, busy);
  for (int s = 0; s < pp(); ++s) {
    shared_->stages.push_back(std::make_unique<LocalGroup>(tp(), options_.parallel.comm_timeout, busy));
  }
  start_device_groups();
  auto load = [this, world](int w) -> std::unique_ptr<Rank> {
    std::unique_ptr<Rank> rank;
    try {
      const RankPlace at = rank_place(w, tp());
      rank = build_rank(w, shared_->world ? shared_->world->communicator(w) : nullptr,
                        shared_->stages[static_cast<size_t>(at.stage)]->communicator(at.tp_rank));
    } catch (const std::exception& e) {
      std::lock_guard<std::mutex> lock(shared_->mutex);
      if (shared_->load_error.empty()) shared_->load_error = cat("rank ", w, ": ", e.what());
    }
    bool failed;
    {
      std::lock_guard<std::mutex> lock(shared_->mutex);
      shared_->loaded += 1;
      failed = !shared_->load_error.empty();
    }
    shared_->loaded_cv.notify_all();
    if (failed) return nullptr;
    // Workers wait until every rank has loaded before serving the driver.
    std::unique_lock<std::mutex> lock(shared_->mutex);
    shared_->loaded_cv.wait(lock, [&] { return shared_->loaded == world; });
    return shared_->load_error.empty() ? std::move(rank) : nullptr;
  };
  for (int w = 1; w < world; ++w) {
    workers_.emplace_back([this, load, w] {
      std::unique_ptr<Rank> rank = load(w);
      if (rank) worker_loop(*rank);
    });
  }
  driver_ = load(0);
  std::unique_lock<std::mutex> lock(shared_->mutex);
  shared_->loaded_cv.wait(lock, [&] { return shared_->loaded == world; });
  if (!shared_->load_error.empty()) {
    const std::string err = shared_->load_error;
    lock.unlock();
    driver_.reset();
    shared_->abort_all("engine failed to start: " + err);
    for (std::thread& t : workers_) t.join();
    workers_.clear();
    throw Error(err);
  }
}

}  // namespace tpinfer
