#include "engine/engine.h"

#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>

#include <condition_variable>
#include <mutex>

#include "comm/local_comm.h"
#include "comm/mpi_comm.h"
#include "core/error.h"
#include "core/thread_pool.h"
#include "model/kv_cache.h"
#include "model/llama.h"
#include "model/rank_model.h"
#include "parallel/rank_context.h"

#ifdef TPINFER_HAVE_CUDA
#include "backend/cuda/runtime.h"
#include "comm/cuda/device_comm.h"
#include "comm/cuda/topology.h"
#include "model/cuda/cuda_llama.h"
#endif

namespace tpinfer {
namespace {

enum Command : int32_t { kRun = 1, kStop = 2, kLogits = 3, kReport = 4 };

}  // namespace

ShardConstraints shard_constraints(const ModelSource& src) {
  ShardConstraints c;
  const ModelConfig& m = src.config();
  auto block = [&](const std::string& name) { return dtype_info(src.get(name).type).block_size; };
  for (int l = 0; l < m.n_layers; ++l) {
    const std::string p = "blk." + std::to_string(l) + ".";
    c.attn_output_block = std::max<int64_t>(c.attn_output_block, block(p + "attn_output.weight"));
    if (!m.is_moe()) c.ffn_down_block = std::max<int64_t>(c.ffn_down_block, block(p + "ffn_down.weight"));
    for (int e = 0; e < m.n_experts; ++e) {
      c.ffn_down_block = std::max<int64_t>(c.ffn_down_block, block(expert_tensor_name(l, "ffn_down", e)));
    }
    if (m.shared_expert_ffn > 0) {
      c.shared_down_block = std::max<int64_t>(c.shared_down_block, block(p + "ffn_down_shexp.weight"));
    }
  }
  return c;
}

// What every rank owns: its communicators, thread pool, model shard and cache.
// `pipe` is declared first so it is destroyed last: under mpi it is the world
// communicator, which the stage's split communicator `tp` needs; the model
// (which uses ctx and, on cuda, dcomm) is destroyed before both.
struct Engine::Rank {
  int world_rank = 0;
  int stage = 0;
  int tp_rank = 0;
  std::unique_ptr<Communicator> pipe;  // the whole replica, for stage-to-stage sends (pp > 1)
  std::unique_ptr<Communicator> tp;    // the stage's tensor-parallel group
  std::unique_ptr<ThreadPool> pool;
  std::unique_ptr<RankContext> ctx;
#ifdef TPINFER_HAVE_CUDA
  std::unique_ptr<cuda::DeviceCommunicator> dcomm;  // cuda, tp > 1: the group's collectives on the device
#endif
  std::unique_ptr<RankModel> model;  // holds its KV cache
  std::vector<float> logits;
  std::vector<uint8_t> message;  // the last message received from the stage before
  CollectiveCounter reported;    // tp_stats().total() after the last report (tp_rank_collectives)

  // The stage's tensor-parallel collectives: on the device when there is one.
  const CommStats& tp_stats() const {
#ifdef TPINFER_HAVE_CUDA
    if (dcomm) return dcomm->stats();
#endif
    return tp->stats();
  }

  void run(const Batch& batch, int64_t vocab) {
    logits.resize(model->last_stage() ? static_cast<size_t>(batch.n_logits() * vocab) : 0);
    model->forward(batch, logits.data());
  }
};

// State the rank threads share with the driver (local back end): the groups,
// and the loading handshake.
struct Engine::Shared {
  std::unique_ptr<LocalGroup> world;                // every rank (pp > 1)
  std::vector<std::unique_ptr<LocalGroup>> stages;  // one tensor-parallel group per stage
#ifdef TPINFER_HAVE_CUDA
  // cuda with fewer GPUs than ranks: each stage's group as streams of GPU 0.
  std::vector<std::unique_ptr<cuda::StreamsGroup>> streams;
#endif
  std::mutex mutex;
  std::condition_variable loaded_cv;
  int loaded = 0;
  std::string load_error;

  // A failure anywhere poisons every group, so no rank waits on one that
  // nobody will complete.
  void abort_all(const std::string& message) {
    if (world) world->abort(message);
    for (auto& g : stages) g->abort(message);
#ifdef TPINFER_HAVE_CUDA
    for (auto& g : streams) g->abort(message);
#endif
  }
  bool aborted() const {
    if (world && world->aborted()) return true;
    for (const auto& g : stages) {
      if (g->aborted()) return true;
    }
    return false;
  }
  std::string abort_message() const {
    if (world && world->aborted()) return world->abort_message();
    for (const auto& g : stages) {
      if (g->aborted()) return g->abort_message();
    }
    return "";
  }
};

Engine::Engine(const std::string& model_path, const EngineOptions& options) : options_(options) {
  const auto t0 = std::chrono::steady_clock::now();
  backend_ = options_.comm == "auto" ? (launched_by_mpirun() ? "mpi" : "local") : options_.comm;
  if (backend_ != "local" && backend_ != "mpi") {
    throw ConfigError(cat("--comm '", options_.comm, "' is not a back end; valid: auto, local, mpi"));
  }
  if (options_.device != "cpu" && options_.device != "cuda") {
    throw ConfigError(cat("--device '", options_.device, "' is not a device; valid: cpu, cuda"));
  }
  if (options_.device == "cuda") {
#ifdef TPINFER_HAVE_CUDA
    if (cuda::device_count() == 0) throw ConfigError(cat("--device cuda: no CUDA device (", cuda::unavailable_reason(), ")"));
#else
    throw ConfigError(
        "--device cuda: this build has no CUDA back end (configure with -DTPINFER_CUDA=ON and the CUDA toolkit "
        "installed)");
#endif
  }
  source_ = ModelSource::open(model_path);
  tokenizer_ = Tokenizer::load(*source_);
  plan_ = ShardPlan::build(source_->config(), options.parallel, shard_constraints(*source_));
  pipeline_ = PipelinePlan::build(source_->config().n_layers, options.parallel.pp, options.parallel.pipeline_split);
  if (options_.parallel.micro_batches < 0) {
    throw ConfigError(cat("--micro-batches must be at least 1 (0: one per stage), got ", options_.parallel.micro_batches));
  }
  micro_batches_ = pp() == 1 ? 1 : options_.parallel.micro_batches > 0 ? options_.parallel.micro_batches : pp();
  if (options_.parallel.threads_per_rank < 1) {
    throw ConfigError(cat("--threads-per-rank must be at least 1, got ", options_.parallel.threads_per_rank));
  }
  int64_t kv_tokens = options_.kv_tokens > 0 ? options_.kv_tokens : source_->config().max_context;
  if (kv_tokens <= 0) kv_tokens = 4096;
  const int n_blocks = static_cast<int>((kv_tokens + options_.kv_block_size - 1) / options_.kv_block_size);
  blocks_ = std::make_unique<BlockAllocator>(n_blocks, options_.kv_block_size);
  reports_.resize(static_cast<size_t>(world_size()));
  stage_busy_nanos_.assign(static_cast<size_t>(pp()), 0);
  const ModelConfig& mc = source_->config();
  if (mc.is_moe()) {
    expert_load_.assign(static_cast<size_t>(mc.n_layers), std::vector<uint64_t>(static_cast<size_t>(mc.n_experts), 0));
  }
  if (options_.device == "cuda") setup_cuda();
  if (backend_ == "mpi") {
    start_mpi();
  } else {
    start_local();
  }
  load_seconds_ = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// Local back end: one thread per rank; each loads its own shard in parallel.
void Engine::start_local() {
  const int world = world_size();
  shared_ = std::make_unique<Shared>();
  // Every rank's pool competes for the cores, whichever group it waits in: the
  // stages of a pipeline are one job (4 ranks on 2 cores must not spin).
  const int busy = world * options_.parallel.threads_per_rank;
  if (pp() > 1) shared_->world = std::make_unique<LocalGroup>(world, options_.parallel.comm_timeout, busy);
  for (int s = 0; s < pp(); ++s) {
    shared_->stages.push_back(std::make_unique<LocalGroup>(tp(), options_.parallel.comm_timeout, busy));
#ifdef TPINFER_HAVE_CUDA
    if (device_comm_ == "streams") {
      shared_->streams.push_back(std::make_unique<cuda::StreamsGroup>(
          tp(), 0, cuda::DeviceCommOptions{options_.parallel.comm_timeout, options_.compression}));
    }
#endif
  }
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

namespace {

// What every process of an mpi job tells the others before and after loading.
struct MpiRecord {
  uint64_t fingerprint = 0;
  uint64_t weight_bytes = 0;
  uint64_t kv_bytes = 0;
  char host[64] = {};
};

// FNV-1a over the model's tensor index and configuration: ranks that opened
// different files (or different versions of one) disagree.
uint64_t model_fingerprint(const ModelSource& src) {
  uint64_t h = 1469598103934665603ull;
  auto mix = [&](const void* p, size_t n) {
    for (size_t i = 0; i < n; ++i) {
      h ^= static_cast<const uint8_t*>(p)[i];
      h *= 1099511628211ull;
    }
  };
  for (const TensorInfo& t : src.tensors()) {
    mix(t.name.data(), t.name.size());
    mix(&t.type, sizeof(t.type));
    for (int64_t d : t.shape) mix(&d, sizeof(d));
    mix(&t.offset, sizeof(t.offset));
    mix(&t.nbytes, sizeof(t.nbytes));
    // A few bytes of the data itself: the first and last 64 bytes of each tensor.
    mix(t.data, std::min<uint64_t>(64, t.nbytes));
    if (t.nbytes > 64) mix(t.data + t.nbytes - 64, 64);
  }
  const ModelConfig& c = src.config();
  const int dims[] = {c.n_layers, c.hidden, c.n_heads, c.n_kv_heads, c.head_dim, c.ffn, c.vocab};
  mix(dims, sizeof(dims));
  return h;
}

// Every rank's record on every rank, without a deadline on waiting for a
// slower peer (loading takes as long as it takes): rank r broadcasts its record
// in round r.
std::vector<MpiRecord> exchange(Communicator& comm, const MpiRecord& mine) {
  std::vector<MpiRecord> all(static_cast<size_t>(comm.size()));
  for (int r = 0; r < comm.size(); ++r) {
    MpiRecord rec = r == comm.rank() ? mine : MpiRecord{};
    comm.broadcast_wait(&rec, sizeof(rec), r);
    all[static_cast<size_t>(r)] = rec;
  }
  return all;
}

}  // namespace

// mpi back end: this process is one rank; world rank 0 is the driver.
void Engine::start_mpi() {
  std::unique_ptr<Communicator> world = make_mpi_communicator(options_.parallel.comm_timeout);
  if (world->size() != world_size()) {
    throw ConfigError(cat("mpirun started ", world->size(), " processes but tensor-parallel-size x pipeline-parallel-size is ",
                          tp(), " x ", pp(), " = ", world_size(), "; they must be equal (one process per rank)"));
  }
  MpiRecord mine;
  mine.fingerprint = model_fingerprint(*source_);
  gethostname(mine.host, sizeof(mine.host) - 1);
  const std::vector<MpiRecord> before = exchange(*world, mine);
  for (int r = 1; r < world->size(); ++r) {
    if (before[static_cast<size_t>(r)].fingerprint != before[0].fingerprint) {
      throw ConfigError(cat("the model at ", source_->path(), " differs between rank 0 (host ", before[0].host,
                            ") and rank ", r, " (host ", before[static_cast<size_t>(r)].host,
                            "): every host needs the same file at the same path"));
    }
  }
  const int w = world->rank();
  std::unique_ptr<Rank> rank;
  if (pp() > 1) {
    const RankPlace at = rank_place(w, tp());
    std::unique_ptr<Communicator> group = make_mpi_split_communicator(at.stage, at.tp_rank, options_.parallel.comm_timeout);
    rank = build_rank(w, std::move(world), std::move(group));
  } else {
    rank = build_rank(w, nullptr, std::move(world));
  }
  mine.weight_bytes = reports_[static_cast<size_t>(w)].weight_bytes;
  mine.kv_bytes = reports_[static_cast<size_t>(w)].kv_bytes;
  const std::vector<MpiRecord> after = exchange(rank->pipe ? *rank->pipe : *rank->tp, mine);
  for (int r = 0; r < world_size(); ++r) {
    const RankPlace at = rank_place(r, tp());
    RankReport& rep = reports_[static_cast<size_t>(r)];
    rep.weight_bytes = after[static_cast<size_t>(r)].weight_bytes;
    rep.kv_bytes = after[static_cast<size_t>(r)].kv_bytes;
    rep.shard = plan_.rank(at.tp_rank);
    rep.stage = at.stage;
    rep.tp_rank = at.tp_rank;
    rep.layers = pipeline_.stage(at.stage);
    if (r != w) rep.device = options_.device;  // the other processes' GPU names stay theirs
  }
  rank->tp->reset_stats();
  if (rank->pipe) rank->pipe->reset_stats();
  if (w == 0) {
    driver_ = std::move(rank);
  } else {
    worker_ = std::move(rank);
  }
}

void Engine::setup_cuda() {
#ifdef TPINFER_HAVE_CUDA
  CudaLlamaModel::check_supported(*source_, options_.kv_type);
  device_comm_ = tp() > 1 ? "nccl" : "none";
  if (backend_ == "mpi") return;  // one process per rank, each on its own GPU (mpi_device())
  if (cuda::device_count() >= world_size()) {
    devices_ = cuda::place_ranks(cuda::detect_topology(), tp(), pp());
  } else {
    // Fewer GPUs than ranks: every rank a stream of GPU 0, so the sharded GPU
    // code runs (and is tested) on one GPU.
    devices_.assign(static_cast<size_t>(world_size()), 0);
    if (tp() > 1) device_comm_ = "streams";
  }
#endif
}

// mpi: this process's GPU, by its rank among the processes of its host (the
// launchers' variables; the world rank without one). CUDA_VISIBLE_DEVICES
// applies by construction: device_count() counts only what it leaves visible.
int Engine::mpi_device(int world_rank) const {
  int local = -1;
  for (const char* var : {"OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID", "MV2_COMM_WORLD_LOCAL_RANK",
                          "PMI_LOCAL_RANK", "SLURM_LOCALID"}) {
    if (const char* v = std::getenv(var)) {
      local = std::atoi(v);
      break;
    }
  }
  if (local < 0) local = world_rank;
#ifdef TPINFER_HAVE_CUDA
  const int n = std::max(1, cuda::device_count());
  return local % n;
#else
  return local;
#endif
}

void Engine::run_worker() {
  if (!worker_) throw Error("run_worker() is for the worker processes of the mpi back end");
  worker_loop(*worker_);
}

Engine::~Engine() {
  if (shared_ && shared_->aborted()) {
    shared_->abort_all(shared_->abort_message());  // wake every rank, whichever group failed
  } else if (driver_ && world_size() > 1) {
    try {
      while (in_flight_ > 0) collect();  // a rank must not be left sending to nobody
      if (tp() > 1) {
        int32_t header[2] = {kStop, 0};
        driver_->tp->broadcast_wait(header, sizeof(header), 0);
      }
      send_stop(*driver_);
    } catch (const std::exception&) {
      if (shared_) shared_->abort_all("driver stopped");
    }
  }
  for (std::thread& t : workers_) t.join();
}

// A rank: its communicators, a thread pool pinned to cores of its own, the
// shard of its stage's layers and their KV cache.
std::unique_ptr<Engine::Rank> Engine::build_rank(int world_rank, std::unique_ptr<Communicator> pipe,
                                                 std::unique_ptr<Communicator> tp_comm) {
  auto rank = std::make_unique<Rank>();
  const RankPlace at = rank_place(world_rank, tp());
  rank->world_rank = world_rank;
  rank->stage = at.stage;
  rank->tp_rank = at.tp_rank;
  if (tp_comm->rank() != at.tp_rank || tp_comm->size() != tp()) {
    throw Error(cat("rank ", world_rank, ": its tensor-parallel group has it as rank ", tp_comm->rank(), " of ",
                    tp_comm->size(), ", expected ", at.tp_rank, " of ", tp()));
  }
#ifdef TPINFER_HAVE_CUDA
  // The device communicator first: NCCL's bootstrap is a collective of the
  // host group, which every rank reaches here at once.
  int device = 0;
  if (options_.device == "cuda") {
    device = backend_ == "mpi" ? mpi_device(world_rank) : devices_.at(static_cast<size_t>(world_rank));
    if (device_comm_ == "streams") {
      rank->dcomm = shared_->streams.at(static_cast<size_t>(at.stage))->rank(at.tp_rank);
    } else if (device_comm_ == "nccl") {
      rank->dcomm = cuda::make_nccl_comm(
          *tp_comm, device, cuda::DeviceCommOptions{options_.parallel.comm_timeout, options_.compression});
    }
  }
#endif
  if (options_.compression != Compression::None) {
    tp_comm = std::make_unique<CompressedCommunicator>(std::move(tp_comm), options_.compression);
  }
  const int tpr = options_.parallel.threads_per_rank;
  std::vector<int> cpus;
  const int n_cpus = available_cpus();  // the process's cores (taskset, cgroups), numbered 0.. among them
  // Pin only when every rank of this process gets cores of its own.
  const int ranks_here = backend_ == "mpi" ? 1 : world_size();
  const int first = backend_ == "mpi" ? 0 : options_.first_cpu + world_rank * tpr;
  const int last_needed = backend_ == "mpi" ? tpr : options_.first_cpu + ranks_here * tpr;
  if (options_.pin_threads && last_needed <= n_cpus && backend_ == "local") {
    for (int i = 0; i < tpr; ++i) cpus.push_back(available_cpu(first + i));
  }
  rank->pipe = std::move(pipe);
  rank->tp = std::move(tp_comm);
  rank->pool = std::make_unique<ThreadPool>(tpr, cpus);
  rank->ctx = std::make_unique<RankContext>(RankContext{*rank->tp, *rank->pool, {}});
  const LayerRange layers = pipeline_.stage(at.stage);
#ifdef TPINFER_HAVE_CUDA
  if (options_.device == "cuda") {
    CudaModelOptions mo;
    mo.device = device;
    mo.kv_type = options_.kv_type;
    mo.kv_block_size = blocks_->block_size();
    mo.kv_blocks = blocks_->n_blocks();
    mo.cuda_graphs = options_.cuda_graphs;
    rank->model = std::make_unique<CudaLlamaModel>(*source_, plan_, at.tp_rank, layers, mo, rank->dcomm.get());
  }
#endif
  if (!rank->model) {
    auto llama = std::make_unique<LlamaModel>(*source_, plan_, at.tp_rank, layers);
    auto cache = std::make_unique<KVCache>(layers.size(), llama->n_local_kv_heads(), config().head_dim,
                                           blocks_->block_size(), blocks_->n_blocks(), options_.kv_type);
    rank->model = std::make_unique<CpuRankModel>(*rank->ctx, std::move(llama), std::move(cache));
  }
  RankReport& rep = reports_[static_cast<size_t>(world_rank)];
  rep.weight_bytes = rank->model->weight_bytes();
  rep.kv_bytes = rank->model->kv_bytes();
  rep.device = rank->model->device_name();
  rep.shard = plan_.rank(at.tp_rank);
  rep.stage = at.stage;
  rep.tp_rank = at.tp_rank;
  rep.layers = layers;
  return rank;
}

namespace {

using Clock = std::chrono::steady_clock;

int64_t nanos_since(Clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - t).count();
}

// Stage-to-stage messages: a header of four int32, then (kRun) a payload of
// the batch words, the residual stream [tokens, hidden] f32 and the forward
// nanoseconds (int64) of every stage so far; (kLogits, to the driver) the
// logits [n_logits, vocab] f32 and every stage's forward nanoseconds.
struct StageHeader {
  int32_t command = 0;
  int32_t count = 0;   // kRun: batch words; kLogits: logits rows
  int32_t tokens = 0;  // kRun: tokens of the batch
  int32_t stages = 0;  // forward times carried
};

}  // namespace

// Runs the batch encoded in `words` on this rank (a stage after the first has
// its input in the model already) and appends its forward time.
void Engine::run_stage(Rank& rank, const std::vector<int32_t>& words, std::vector<int64_t>& busy_nanos) {
  const Clock::time_point t0 = Clock::now();
  rank.run(Batch::decode(words), config().vocab);
  busy_nanos.push_back(nanos_since(t0));
}

// Hands a batch this rank has run to its counterpart in the next stage; rank 0
// of the last stage sends the logits to the driver instead.
void Engine::send_on(Rank& rank, const std::vector<int32_t>& words, int64_t n_tokens,
                     const std::vector<int64_t>& busy_nanos, const std::vector<int64_t>& loads) {
  const size_t busy_bytes = busy_nanos.size() * sizeof(int64_t);
  const size_t load_bytes = loads.size() * sizeof(int64_t);
  std::vector<uint8_t>& m = rank.message;
  if (rank.stage + 1 < pp()) {
    const size_t words_bytes = words.size() * sizeof(int32_t);
    const size_t hidden_bytes = static_cast<size_t>(n_tokens * config().hidden) * sizeof(float);
    StageHeader h{kRun, static_cast<int32_t>(words.size()), static_cast<int32_t>(n_tokens),
                  static_cast<int32_t>(busy_nanos.size())};
    m.resize(words_bytes + hidden_bytes + busy_bytes + load_bytes);
    std::memcpy(m.data(), words.data(), words_bytes);
    std::memcpy(m.data() + words_bytes, rank.model->stage_output(), hidden_bytes);
    std::memcpy(m.data() + words_bytes + hidden_bytes, busy_nanos.data(), busy_bytes);
    if (load_bytes > 0) std::memcpy(m.data() + words_bytes + hidden_bytes + busy_bytes, loads.data(), load_bytes);
    const int next = world_rank_of(rank.stage + 1, rank.tp_rank, tp());
    rank.pipe->send(&h, sizeof(h), next);
    rank.pipe->send(m.data(), m.size(), next);
  } else if (rank.tp_rank == 0) {
    const size_t logits_bytes = rank.logits.size() * sizeof(float);
    StageHeader h{kLogits, static_cast<int32_t>(rank.logits.size() / static_cast<size_t>(config().vocab)), 0,
                  static_cast<int32_t>(busy_nanos.size())};
    m.resize(logits_bytes + busy_bytes + load_bytes);
    std::memcpy(m.data(), rank.logits.data(), logits_bytes);
    std::memcpy(m.data() + logits_bytes, busy_nanos.data(), busy_bytes);
    if (load_bytes > 0) std::memcpy(m.data() + logits_bytes + busy_bytes, loads.data(), load_bytes);
    rank.pipe->send(&h, sizeof(h), 0);
    rank.pipe->send(m.data(), m.size(), 0);
  }
}

void Engine::send_stop(Rank& rank) {
  if (rank.stage + 1 >= pp()) return;
  StageHeader h{kStop, 0, 0, 0};
  rank.pipe->send(&h, sizeof(h), world_rank_of(rank.stage + 1, rank.tp_rank, tp()));
}

// Ranks other than the driver: run each batch as it arrives (stage 0 from the
// driver's broadcast, later stages from the stage before), until told to stop.
void Engine::worker_loop(Rank& rank) {
  const int64_t hidden = config().hidden;
  try {
    std::vector<int32_t> words;
    std::vector<int64_t> busy, loads;
    for (;;) {
      int64_t n_tokens = 0;
      busy.clear();
      loads.clear();
      if (rank.stage == 0) {
        int32_t header[2] = {0, 0};
        rank.tp->broadcast_wait(header, sizeof(header), 0);
        if (header[0] == kStop) break;
        if (header[0] == kReport) {
          exchange_collectives(rank);
          continue;
        }
        words.resize(static_cast<size_t>(header[1]));
        rank.tp->broadcast(words.data(), words.size() * sizeof(int32_t), 0);
        n_tokens = words.empty() ? 0 : words[0];
      } else {
        const int prev = world_rank_of(rank.stage - 1, rank.tp_rank, tp());
        StageHeader h;
        rank.pipe->recv_wait(&h, sizeof(h), prev);
        if (h.command == kStop) break;
        if (h.command != kRun || h.count < 0 || h.tokens < 0 || h.stages != rank.stage) {
          throw Error(cat("malformed stage message from rank ", prev, " (command ", h.command, ")"));
        }
        const size_t words_bytes = static_cast<size_t>(h.count) * sizeof(int32_t);
        const size_t hidden_bytes = static_cast<size_t>(h.tokens * hidden) * sizeof(float);
        const size_t busy_bytes = static_cast<size_t>(h.stages) * sizeof(int64_t);
        rank.message.resize(words_bytes + hidden_bytes + busy_bytes + load_words(h.stages) * sizeof(int64_t));
        rank.pipe->recv(rank.message.data(), rank.message.size(), prev);
        words.resize(static_cast<size_t>(h.count));
        std::memcpy(words.data(), rank.message.data(), words_bytes);
        std::memcpy(rank.model->stage_input(h.tokens), rank.message.data() + words_bytes, hidden_bytes);
        busy.resize(static_cast<size_t>(h.stages));
        std::memcpy(busy.data(), rank.message.data() + words_bytes + hidden_bytes, busy_bytes);
        loads.resize(load_words(h.stages));
        if (!loads.empty()) {
          std::memcpy(loads.data(), rank.message.data() + words_bytes + hidden_bytes + busy_bytes,
                      loads.size() * sizeof(int64_t));
        }
        n_tokens = h.tokens;
      }
      run_stage(rank, words, busy);
      take_expert_load(rank, loads);
      if (pp() > 1) send_on(rank, words, n_tokens, busy, loads);
    }
    send_stop(rank);
  } catch (const std::exception& e) {
    if (shared_) {
      shared_->abort_all(cat("rank ", rank.world_rank, " failed: ", e.what()));
    } else {
      throw;
    }
  }
}

// Checks a batch on the driver before any rank sees it, so a bad request is an
// error for its caller and never takes the ranks down.
void validate_batch(const Batch& b, int64_t vocab, int block_size) {
  const size_t n = b.tokens.size();
  if (b.positions.size() != n || b.seq.size() != n || b.want_logits.size() != n) {
    throw Error("batch arrays differ in length");
  }
  for (size_t i = 0; i < n; ++i) {
    if (b.tokens[i] < 0 || b.tokens[i] >= vocab) {
      throw Error(cat("token id ", b.tokens[i], " outside the vocabulary of ", vocab));
    }
    if (b.seq[i] < 0 || static_cast<size_t>(b.seq[i]) >= b.sequences.size()) throw Error("batch token without sequence");
    const auto& table = b.sequences[static_cast<size_t>(b.seq[i])].block_table;
    if (b.positions[i] < 0 || b.positions[i] / block_size >= static_cast<int32_t>(table.size())) {
      throw Error(cat("position ", b.positions[i], " has no KV block"));
    }
  }
}

// A failure on the driver: the ranks may be left inside an operation, so the
// local groups are poisoned (the mpi back end ends the job on its own).
void Engine::fail(const std::string& message) {
  in_flight_ = 0;
  ready_.clear();
  if (shared_) shared_->abort_all(message);
}

void Engine::submit(const Batch& batch) {
  if (!driver_) throw Error("submit() is for the driver (rank 0)");
  if (shared_ && shared_->aborted()) throw CommError(shared_->abort_message());
  validate_batch(batch, config().vocab, blocks_->block_size());
  try {
    if (in_flight_ == 0) pipeline_since_ = Clock::now();
    words_ = batch.encode();
    int32_t header[2] = {kRun, static_cast<int32_t>(words_.size())};
    driver_->tp->broadcast_wait(header, sizeof(header), 0);
    driver_->tp->broadcast(words_.data(), words_.size() * sizeof(int32_t), 0);
    std::vector<int64_t> busy;
    const Clock::time_point t0 = Clock::now();
    driver_->run(batch, config().vocab);
    busy.push_back(nanos_since(t0));
    std::vector<int64_t> loads;
    take_expert_load(*driver_, loads);
    if (pp() > 1) {
      send_on(*driver_, words_, batch.size(), busy, loads);
    } else {
      stage_busy_nanos_[0] += busy[0];
      add_expert_load(loads);
      ready_.push_back(std::move(driver_->logits));
      driver_->logits.clear();
    }
    in_flight_ += 1;
  } catch (const std::exception& e) {
    fail(cat("rank 0 failed: ", e.what()));
    throw;
  }
}

const std::vector<float>& Engine::collect() {
  if (!driver_) throw Error("collect() is for the driver (rank 0)");
  if (in_flight_ == 0) throw Error("collect() without a batch in flight");
  try {
    if (pp() == 1) {
      logits_ = std::move(ready_.front());
      ready_.pop_front();
    } else {
      const int last = world_rank_of(pp() - 1, 0, tp());
      StageHeader h;
      driver_->pipe->recv(&h, sizeof(h), last);
      if (h.command != kLogits || h.count < 0 || h.stages != pp()) {
        throw Error(cat("malformed logits message from rank ", last, " (command ", h.command, ")"));
      }
      const size_t logits_bytes = static_cast<size_t>(h.count * config().vocab) * sizeof(float);
      const size_t busy_bytes = static_cast<size_t>(h.stages) * sizeof(int64_t);
      message_.resize(logits_bytes + busy_bytes + load_words(h.stages) * sizeof(int64_t));
      driver_->pipe->recv(message_.data(), message_.size(), last);
      logits_.resize(logits_bytes / sizeof(float));
      std::memcpy(logits_.data(), message_.data(), logits_bytes);
      for (int st = 0; st < pp(); ++st) {
        int64_t ns = 0;
        std::memcpy(&ns, message_.data() + logits_bytes + static_cast<size_t>(st) * sizeof(int64_t), sizeof(ns));
        stage_busy_nanos_[static_cast<size_t>(st)] += ns;
      }
      std::vector<int64_t> loads(load_words(h.stages));
      if (!loads.empty()) {
        std::memcpy(loads.data(), message_.data() + logits_bytes + busy_bytes, loads.size() * sizeof(int64_t));
      }
      add_expert_load(loads);
    }
  } catch (const std::exception& e) {
    fail(cat("rank 0 failed: ", e.what()));
    throw;
  }
  in_flight_ -= 1;
  micro_batches_run_ += 1;
  if (in_flight_ == 0) pipeline_nanos_ += nanos_since(pipeline_since_);
  return logits_;
}

const std::vector<float>& Engine::step(const Batch& batch) {
  if (in_flight_ > 0) throw Error("step() while batches are in flight: collect() them first");
  if (micro_batches_ <= 1 || batch.size() <= 1) {
    submit(batch);
    return collect();
  }
  validate_batch(batch, config().vocab, blocks_->block_size());
  const std::vector<Batch> parts = batch.split(micro_batches_);
  for (const Batch& part : parts) submit(part);
  step_logits_.clear();
  for (size_t i = 0; i < parts.size(); ++i) {
    const std::vector<float>& l = collect();
    step_logits_.insert(step_logits_.end(), l.begin(), l.end());
  }
  return step_logits_;
}

const CommStats& Engine::comm_stats() const { return driver_->tp_stats(); }

std::vector<Engine::RankCollectives> Engine::exchange_collectives(Rank& rank) {
  const CollectiveCounter now = rank.tp_stats().total();
  const uint64_t mine[2] = {now.nanos - rank.reported.nanos, now.wait_nanos - rank.reported.wait_nanos};
  std::vector<uint64_t> all(static_cast<size_t>(2 * tp()));
  rank.tp->all_gather_bytes(mine, sizeof(mine), all.data());
  rank.reported = rank.tp_stats().total();  // after the gather: its own time is not counted
  // A report is a point every rank of the group reaches together between
  // steps: the place to re-measure clock offsets (mpi), so that the wait/link
  // split stays right on hosts whose clocks drift apart over a long run.
  rank.tp->resynchronize_clocks();
  std::vector<RankCollectives> out(static_cast<size_t>(tp()));
  for (size_t r = 0; r < out.size(); ++r) {
    out[r].seconds = static_cast<double>(all[2 * r]) / 1e9;
    out[r].wait_seconds = static_cast<double>(all[2 * r + 1]) / 1e9;
  }
  return out;
}

std::vector<Engine::RankCollectives> Engine::tp_rank_collectives() {
  if (!driver_) throw Error("tp_rank_collectives() is for the driver (rank 0)");
  if (in_flight_ > 0) throw Error("tp_rank_collectives() needs every batch collected first");
  if (shared_ && shared_->aborted()) throw CommError(shared_->abort_message());
  try {
    if (tp() > 1) {
      int32_t header[2] = {kReport, 0};
      driver_->tp->broadcast_wait(header, sizeof(header), 0);
    }
    return exchange_collectives(*driver_);
  } catch (const std::exception& e) {
    fail(cat("rank 0 failed: ", e.what()));
    throw;
  }
}

ParallelStats Engine::parallel_stats() const {
  ParallelStats s;
  s.tp = comm_stats();
  s.tp_measures_wait = driver_->tp->measures_wait();
#ifdef TPINFER_HAVE_CUDA
  if (driver_->dcomm) s.tp_measures_wait = false;  // device collectives: timed by events, no arrivals
#endif
  if (driver_->pipe) s.pp = driver_->pipe->stats();
  for (int64_t ns : stage_busy_nanos_) s.stage_busy_seconds.push_back(static_cast<double>(ns) / 1e9);
  int64_t pipeline = pipeline_nanos_;
  if (in_flight_ > 0) pipeline += nanos_since(pipeline_since_);
  s.pipeline_seconds = static_cast<double>(pipeline) / 1e9;
  s.micro_batches = micro_batches_run_;
  return s;
}

void Engine::reset_comm_stats() {
  driver_->tp->reset_stats();
  driver_->reported = {};
#ifdef TPINFER_HAVE_CUDA
  if (driver_->dcomm) driver_->dcomm->reset_stats();
#endif
  if (driver_->pipe) driver_->pipe->reset_stats();
  std::fill(stage_busy_nanos_.begin(), stage_busy_nanos_.end(), 0);
  pipeline_nanos_ = 0;
  micro_batches_run_ = 0;
  pipeline_since_ = Clock::now();
}

double ParallelStats::bubble_share() const {
  if (pipeline_seconds <= 0 || stage_busy_seconds.empty()) return 0;
  double busy = 0;
  for (double b : stage_busy_seconds) busy += b;
  return std::max(0.0, 1.0 - busy / (static_cast<double>(stage_busy_seconds.size()) * pipeline_seconds));
}

// MoE: every rank counts the routing of its stage's layers; after each
// micro-batch a rank takes its counts ([layer][expert] of its stage, as
// int64s) and appends them to what the stages before it sent, so the message
// that brings the logits to the driver carries every stage's counts.
size_t Engine::load_words(int stages) const {
  const ModelConfig& c = config();
  if (!c.is_moe()) return 0;
  size_t layers = 0;
  for (int st = 0; st < stages && st < pp(); ++st) layers += static_cast<size_t>(pipeline_.stage(st).size());
  return layers * static_cast<size_t>(c.n_experts);
}

void Engine::take_expert_load(Rank& rank, std::vector<int64_t>& loads) {
  if (!config().is_moe()) return;
  for (const std::vector<uint64_t>& layer : rank.model->expert_load()) {
    for (uint64_t n : layer) loads.push_back(static_cast<int64_t>(n));
  }
  rank.model->reset_expert_load();
}

void Engine::add_expert_load(const std::vector<int64_t>& loads) {
  const size_t experts = static_cast<size_t>(config().n_experts);
  for (size_t i = 0; i < loads.size() && experts > 0 && i / experts < expert_load_.size(); ++i) {
    expert_load_[i / experts][i % experts] += static_cast<uint64_t>(loads[i]);
  }
}

std::vector<std::vector<uint64_t>> Engine::expert_load() const { return expert_load_; }
void Engine::reset_expert_load() {
  for (std::vector<uint64_t>& layer : expert_load_) std::fill(layer.begin(), layer.end(), 0);
}

}  // namespace tpinfer
