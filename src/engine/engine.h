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
#include <string>
#include <thread>
#include <vector>

#include "comm/communicator.h"
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
  Engine(const std::string& model_path, const EngineOptions& options);
  ~Engine();
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  const ModelConfig& config() const { return source_->config(); }
  const ModelSource& source() const { return *source_; }
  const Tokenizer& tokenizer() const { return *tokenizer_; }
  const ShardPlan& plan() const { return plan_; }
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

 private:
  struct Rank;
  struct Shared;
  void rank_main(int rank);

  std::unique_ptr<ModelSource> source_;
  std::unique_ptr<Tokenizer> tokenizer_;
  ShardPlan plan_;
  EngineOptions options_;
  std::unique_ptr<Shared> shared_;
  std::unique_ptr<Rank> driver_;
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
