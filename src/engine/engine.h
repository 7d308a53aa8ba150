// The Engine: a model split over a tensor-parallel group of ranks, ready to run
// batches. It opens the model, checks the split (ShardPlan), starts the ranks
// (local back end: one thread per rank, each with its own pinned thread pool),
// lets every rank load only its slice, and then runs the SPMD step: the driver
// (rank 0) broadcasts each batch, every rank runs the same forward on its shard,
// and the logits come back to the driver.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "comm/communicator.h"
#include "comm/compressed_comm.h"
#include "core/dtype.h"
#include "engine/block_allocator.h"
#include "formats/model_source.h"
#include "model/batch.h"
#include "parallel/parallel_config.h"
#include "parallel/shard_plan.h"
#include "tokenizer/tokenizer.h"

namespace tpinfer {

struct EngineOptions {
  ParallelConfig parallel;
  // Communication back end: "local" (ranks are threads of this process), "mpi"
  // (one process per rank under mpirun), or "auto" (mpi when started by mpirun).
  std::string comm = "auto";
  // Activations in the all-reduces: none, bf16, fp8 or int8 (comm/compressed_comm.h).
  Compression compression = Compression::None;
  DType kv_type = DType::F16;
  int kv_block_size = 16;
  int64_t kv_tokens = 0;  // KV cache capacity in tokens over all sequences; 0: the model's context
  bool pin_threads = true;
};

struct RankReport {
  uint64_t weight_bytes = 0;
  uint64_t kv_bytes = 0;
  RankShard shard;
};

class Engine {
 public:
  // Opens the model and starts the ranks; throws FormatError / ConfigError.
  // With the mpi back end every process constructs an Engine; only rank 0's is
  // the driver, the others must call run_worker().
  Engine(const std::string& model_path, const EngineOptions& options);
  ~Engine();
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  const ModelConfig& config() const { return source_->config(); }
  const ModelSource& source() const { return *source_; }
  const Tokenizer& tokenizer() const { return *tokenizer_; }
  const ShardPlan& plan() const { return plan_; }
  const char* comm_backend() const { return backend_.c_str(); }
  // False on the worker processes of the mpi back end.
  bool is_driver() const { return driver_ != nullptr; }
  // Worker processes (mpi): run the driver's batches until it stops.
  void run_worker();
  int tp() const { return plan_.tp(); }
  BlockAllocator& blocks() { return *blocks_; }
  double load_seconds() const { return load_seconds_; }

  // Runs one batch on every rank. Returns the driver's logits,
  // [batch.n_logits(), vocab] row-major, valid until the next step.
  const std::vector<float>& step(const Batch& batch);

  const std::vector<RankReport>& rank_reports() const { return reports_; }
  // The driver's communication counters (every rank's are alike).
  const CommStats& comm_stats() const;
  void reset_comm_stats();
  // MoE models: tokens routed to each expert, [layer][expert], counted on the
  // driver (every rank routes every token) since the engine started or the
  // last reset; empty for a dense model. Driver thread only, between steps.
  std::vector<std::vector<uint64_t>> expert_load() const;
  void reset_expert_load();

 private:
  struct Rank;
  struct Shared;
  std::unique_ptr<Rank> build_rank(std::unique_ptr<Communicator> comm);
  void worker_loop(Rank& rank);
  void start_local();
  void start_mpi();

  std::unique_ptr<ModelSource> source_;
  std::unique_ptr<Tokenizer> tokenizer_;
  ShardPlan plan_;
  EngineOptions options_;
  std::unique_ptr<Shared> shared_;
  std::string backend_;
  std::unique_ptr<Rank> driver_;
  std::unique_ptr<Rank> worker_;  // this process's rank when it is an mpi worker
  std::vector<std::thread> workers_;
  std::vector<RankReport> reports_;
  std::unique_ptr<BlockAllocator> blocks_;
  std::vector<float> logits_;
  std::vector<int32_t> words_;
  double load_seconds_ = 0;
};

// The block sizes of the row-parallel matrices of a model (for ShardPlan).
ShardConstraints shard_constraints(const ModelSource& src);

}  // namespace tpinfer
