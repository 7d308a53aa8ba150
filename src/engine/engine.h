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
#include "engine/backends.h"
#include "engine/block_allocator.h"
#include "engine/stage_message.h"
#include "engine/stats.h"
#include "formats/model_source.h"
#include "parallel/batch.h"
#include "parallel/logit_summary.h"
#include "parallel/parallel_config.h"
#include "parallel/pipeline_plan.h"
#include "parallel/shard_plan.h"
#include "tokenizer/tokenizer.h"

namespace tpinfer {

struct EngineOptions {
  ParallelConfig parallel;
  // Ranks as threads of this process, one process per rank under mpirun, or
  // Auto (mpi when started by mpirun).
  CommBackend comm = CommBackend::Auto;
  // Activations in the all-reduces: none, bf16, fp8 or int8 (comm/compressed_comm.h).
  Compression compression = Compression::None;
  DType kv_type = DType::F16;
  int kv_block_size = 16;
  int64_t kv_tokens = 0;  // KV cache capacity in tokens over all sequences; 0: the model's context
  bool pin_threads = true;
  // Local back end: the first core this engine's ranks are pinned to (the
  // replicas of a data-parallel server sit side by side).
  int first_cpu = 0;
  // Where the ranks compute (parallel/device.h). On cuda, local back end: one GPU per rank
  // (cuda::place_ranks) when there are enough, else every rank a stream of GPU 0; mpi: GPU local rank % GPUs. The
  // tensor-parallel collectives then run on the device (NCCL, or the streams communicator on one GPU).
  DeviceKind device = DeviceKind::Cpu;
  // cuda: decode steps as CUDA graphs (off: every step launched kernel by kernel, for debugging).
  bool cuda_graphs = true;
  // Logits rows to the driver whole, or as the ranks' summaries where exact (summary_top()).
  SamplingGather sampling_gather = SamplingGather::Shard;
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
  // Local or Mpi (Auto resolved).
  CommBackend comm_backend() const { return backend_; }
  DeviceKind device() const { return options_.device; }
  // The tensor-parallel collectives on the device.
  DeviceComm device_comm() const { return device_comm_; }
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

  // Shard-local sampling. The candidates per rank a batch should ask for
  // (Batch::logit_top) when its sampler needs `wanted` of them to be exact
  // (Sampler::summary_top(); 0: whole rows): `wanted`, or 0 (whole rows) with
  // --sampling-gather full or when a summary would not be smaller than the
  // smallest rank's shard of a row.
  int summary_top(int wanted) const;
  // Floats per logits row of the output (step(), collect()) of a batch with
  // logit_top `top`: vocab, or tp() x summary_floats(top).
  int64_t logits_row_floats(int top) const;
  // Row i of that output as the sampler reads it (valid as long as `out`).
  LogitRow logit_row(const std::vector<float>& out, int top, int64_t i) const;

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
  struct DeviceGroups;  // cuda: each stage's group as streams of one GPU (rank.cc)
  std::unique_ptr<Rank> build_rank(int world_rank, std::unique_ptr<Communicator> pipe,
                                   std::unique_ptr<Communicator> tp);
  void worker_loop(Rank& rank);
  std::vector<RankCollectives> exchange_collectives(Rank& rank);
  void run_stage(Rank& rank, const Batch& batch, std::vector<int64_t>& busy_nanos, std::vector<int64_t>& loads);
  void send_on(Rank& rank, const std::vector<int32_t>& words, int64_t n_tokens, const std::vector<int64_t>& busy_nanos,
               const std::vector<int64_t>& loads);
  void send_stop(Rank& rank);
  // launch_local.cc, launch_mpi.cc: start this process's ranks.
  void start_local();
  void start_mpi();
  // rank.cc. --device cuda: the build has the back end and there is a GPU.
  void check_device() const;
  // cuda: checks the model; sets devices_ / device_comm_.
  void setup_cuda();
  // cuda, local back end: the stages' device groups in shared_.
  void start_device_groups();
  int mpi_device(int world_rank) const;
  void fail(const std::string& message);

  std::unique_ptr<ModelSource> source_;
  std::unique_ptr<Tokenizer> tokenizer_;
  ShardPlan plan_;
  PipelinePlan pipeline_;
  int micro_batches_ = 1;
  EngineOptions options_;
  std::unique_ptr<Shared> shared_;
  CommBackend backend_ = CommBackend::Local;
  DeviceComm device_comm_ = DeviceComm::None;
  std::vector<int> devices_;  // cuda: each world rank's GPU (local back end)
  std::unique_ptr<Rank> driver_;
  std::unique_ptr<Rank> worker_;  // this process's rank when it is an mpi worker
  std::vector<std::thread> workers_;
  std::vector<RankReport> reports_;
  std::unique_ptr<BlockAllocator> blocks_;
  std::vector<float> logits_;             // what collect() returned last
  std::vector<float> step_logits_;        // step()'s micro-batches, concatenated
  std::deque<std::vector<float>> ready_;  // pp = 1: logits submitted, not collected
  std::deque<int64_t> row_floats_;        // pp > 1: logits row width of each batch in flight
  std::vector<int32_t> words_;
  StageMessage message_;  // the last logits message (pp > 1)
  int in_flight_ = 0;
  // parallel_stats() and expert_load() beyond the communicators' own counters.
  PipelineTimes times_;
  ExpertLoadTally expert_load_;
  double load_seconds_ = 0;
};

// The block sizes of the row-parallel matrices of a model (for ShardPlan).
ShardConstraints shard_constraints(const ModelSource& src);

}  // namespace tpinfer
