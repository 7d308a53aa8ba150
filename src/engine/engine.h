// The Engine: a model split over tp x pp ranks (one replica), ready to run
// batches. It opens the model, checks the split (ShardPlan, PipelinePlan),
// starts the ranks (local back end: one thread per rank, each with its own
// pinned thread pool), lets every rank load only its slice of its stage's
// layers, and then runs the SPMD step.
//
// A step, pp = 1: the driver (world rank 0) broadcasts the batch to its
// tensor-parallel group, every rank runs the same forward on its shard, and
// the logits come back to the driver (the lm_head's all-gather).
//
// pp > 1 (world rank = stage x tp + tp_rank): the driver broadcasts the batch
// to stage 0's group; each rank of stage s runs its layers and sends the batch
// description and the residual stream ([tokens, hidden] f32) to its
// counterpart (same tp_rank) in stage s + 1; rank 0 of the last stage sends
// the logits back to the driver. Every rank works through what reaches it in
// order, so while stage 1 runs one micro-batch stage 0 runs the next:
// submit() returns once the driver's own stage-0 part is done, collect() waits
// for the oldest micro-batch's logits. step() cuts a batch into micro-batches
// and does both; the server's scheduler keeps one batch per stage in flight.
// Each micro-batch carries the forward time of every stage back to the
// driver, which is how the bubble (stage time idle while work is in the
// pipeline) is measured.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
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
#include "parallel/pipeline_plan.h"
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
  // Local back end: the first core this engine's ranks are pinned to (the
  // replicas of a data-parallel server sit side by side).
  int first_cpu = 0;
  // Where the ranks compute: "cpu", or "cuda" (model/cuda/cuda_llama.h). On
  // cuda, local back end: one GPU per rank (cuda::place_ranks) when there are
  // enough, else every rank a stream of GPU 0; mpi: GPU local rank % GPUs.
  // The tensor-parallel collectives then run on the device (NCCL, or the
  // streams communicator on one GPU).
  std::string device = "cpu";
  // cuda: decode steps as CUDA graphs (off: every step launched kernel by kernel, for debugging).
  bool cuda_graphs = true;
};

// One rank of the replica, by world rank (stage x tp + tp_rank).
struct RankReport {
  uint64_t weight_bytes = 0;
  uint64_t kv_bytes = 0;
  RankShard shard;
  int stage = 0;
  int tp_rank = 0;
  LayerRange layers;
  std::string device = "cpu";  // "cpu" or "cuda:N (name)"
};

// What the driver knows of the replica's parallel work since the last reset.
// Traffic is the driver's own: its tensor-parallel group's collectives (every
// rank of a group moves the same), and its stage-to-stage sends and receives
// (the activations out, the logits back; every tp_rank of a stage sends its
// counterpart the same).
struct ParallelStats {
  CommStats tp;
  bool tp_measures_wait = false;  // tp's wait_nanos are measured (Communicator::measures_wait)
  CommStats pp;
  // Per stage: seconds its rank 0 spent running micro-batches (the forward,
  // its tensor-parallel collectives included).
  std::vector<double> stage_busy_seconds;
  // Wall seconds with at least one micro-batch submitted and not collected.
  double pipeline_seconds = 0;
  uint64_t micro_batches = 0;
  // The share of stage time idle while work was in the pipeline:
  // 1 - sum(stage_busy_seconds) / (stages x pipeline_seconds); 0 when idle.
  double bubble_share() const;
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
  // "cpu" or "cuda".
  const std::string& device() const { return options_.device; }
  // The tensor-parallel collectives on the device: "nccl", "streams", or
  // "none" (cpu, or a single rank per group).
  const std::string& device_comm_backend() const { return device_comm_; }
  // False on the worker processes of the mpi back end.
  bool is_driver() const { return driver_ != nullptr; }
  // Worker processes (mpi): run the driver's batches until it stops.
  void run_worker();
  int tp() const { return plan_.tp(); }
  int pp() const { return pipeline_.stages(); }
  int world_size() const { return tp() * pp(); }
  const PipelinePlan& pipeline() const { return pipeline_; }
  // Micro-batches step() cuts a batch into (1 at pp = 1).
  int micro_batches() const { return micro_batches_; }
  BlockAllocator& blocks() { return *blocks_; }
  double load_seconds() const { return load_seconds_; }

  // Runs one batch on every rank, cut into micro-batches() micro-batches that
  // flow through the stages one behind the other. Returns the driver's
  // logits, [batch.n_logits(), vocab] row-major, valid until the next step,
  // submit() or collect(). Needs no batch in flight.
  const std::vector<float>& step(const Batch& batch);

  // The pipelined halves of step(), for a caller that keeps several batches
  // in flight (the scheduler, one per stage). submit() validates the batch and
  // starts it through the pipeline: it returns once the driver's stage is done
  // with it (at pp = 1, once the logits are there). collect() returns the
  // logits of the oldest batch submitted and not yet collected, waiting for
  // them at most --comm-timeout. Batches run in submission order on every
  // stage, so a later batch may read the KV cache an earlier one writes. On
  // an error (thrown by either) every batch in flight is lost.
  void submit(const Batch& batch);
  const std::vector<float>& collect();
  int in_flight() const { return in_flight_; }

  const std::vector<RankReport>& rank_reports() const { return reports_; }
  // The driver's tensor-parallel collectives (every rank's are alike).
  const CommStats& comm_stats() const;
  ParallelStats parallel_stats() const;
  // Resets comm_stats() and every counter of parallel_stats().
  void reset_comm_stats();
  // Every rank of the driver's tensor-parallel group: seconds inside its
  // collectives (and of them, waiting for the last rank) since its previous
  // report, [tp_rank]; the driver's since reset_comm_stats() if that came
  // later. The report's own collectives are not counted. All ranks compute in
  // parallel, so the rank that computes longest spends the least time in
  // collectives, and that least time is what communication adds to the step
  // (the others' extra is waiting for it: load imbalance). On a saturated
  // link the difference matters: a rank whose data comes late starts its next
  // layer late, and the driver then counts waiting for it as waiting, not as
  // link. A collective over the group; driver thread, nothing in flight.
  struct RankCollectives {
    double seconds = 0;
    double wait_seconds = 0;
  };
  std::vector<RankCollectives> tp_rank_collectives();
  // MoE models: tokens routed to each expert, [layer][expert], since the
  // engine started or the last reset; empty for a dense model. Each stage
  // counts its layers (every rank of a stage routes every token) and the
  // counts reach the driver with the logits. Driver thread only, between steps.
  std::vector<std::vector<uint64_t>> expert_load() const;
  void reset_expert_load();

 private:
  struct Rank;
  struct Shared;
  std::unique_ptr<Rank> build_rank(int world_rank, std::unique_ptr<Communicator> pipe,
                                   std::unique_ptr<Communicator> tp);
  void worker_loop(Rank& rank);
  std::vector<RankCollectives> exchange_collectives(Rank& rank);
  void run_stage(Rank& rank, const std::vector<int32_t>& words, std::vector<int64_t>& busy_nanos);
  void send_on(Rank& rank, const std::vector<int32_t>& words, int64_t n_tokens, const std::vector<int64_t>& busy_nanos,
               const std::vector<int64_t>& loads);
  size_t load_words(int stages) const;
  void take_expert_load(Rank& rank, std::vector<int64_t>& loads);
  void add_expert_load(const std::vector<int64_t>& loads);
  void send_stop(Rank& rank);
  void start_local();
  // cuda: checks the build, the GPUs and the model; sets devices_ / device_comm_.
  void setup_cuda();
  int mpi_device(int world_rank) const;
  void start_mpi();
  void fail(const std::string& message);

  std::unique_ptr<ModelSource> source_;
  std::unique_ptr<Tokenizer> tokenizer_;
  ShardPlan plan_;
  PipelinePlan pipeline_;
  int micro_batches_ = 1;
  EngineOptions options_;
  std::unique_ptr<Shared> shared_;
  std::string backend_;
  std::string device_comm_ = "none";
  std::vector<int> devices_;  // cuda: each world rank's GPU (local back end)
  std::unique_ptr<Rank> driver_;
  std::unique_ptr<Rank> worker_;  // this process's rank when it is an mpi worker
  std::vector<std::thread> workers_;
  std::vector<RankReport> reports_;
  std::unique_ptr<BlockAllocator> blocks_;
  std::vector<float> logits_;       // what collect() returned last
  std::vector<float> step_logits_;  // step()'s micro-batches, concatenated
  std::deque<std::vector<float>> ready_;  // pp = 1: logits submitted, not collected
  std::vector<int32_t> words_;
  std::vector<uint8_t> message_;
  int in_flight_ = 0;
  // parallel_stats() beyond the communicators' own counters.
  std::vector<int64_t> stage_busy_nanos_;
  int64_t pipeline_nanos_ = 0;
  uint64_t micro_batches_run_ = 0;
  std::chrono::steady_clock::time_point pipeline_since_;
  double load_seconds_ = 0;
  std::vector<std::vector<uint64_t>> expert_load_;  // [layer][expert], on the driver
};

// The block sizes of the row-parallel matrices of a model (for ShardPlan).
ShardConstraints shard_constraints(const ModelSource& src);

}  // namespace tpinfer
