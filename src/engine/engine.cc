#include "engine/engine.h"

#include <algorithm>
#include <unistd.h>

#include <condition_variable>
#include <mutex>

#include "comm/local_comm.h"
#include "comm/mpi_comm.h"
#include "core/error.h"
#include "core/thread_pool.h"
#include "model/kv_cache.h"
#include "model/llama.h"
#include "parallel/rank_context.h"

namespace tpinfer {
namespace {

enum Command : int32_t { kRun = 1, kStop = 2 };

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

// What every rank owns: its communicator, thread pool, model shard and cache.
struct Engine::Rank {
  std::unique_ptr<Communicator> comm;
  std::unique_ptr<ThreadPool> pool;
  std::unique_ptr<RankContext> ctx;
  std::unique_ptr<LlamaModel> model;
  std::unique_ptr<KVCache> cache;
  std::vector<float> logits;

  void run(const Batch& batch, int64_t vocab) {
    logits.resize(static_cast<size_t>(batch.n_logits() * vocab));
    model->forward(*ctx, batch, *cache, logits.data());
  }
};

// State the rank threads share with the driver while they start.
struct Engine::Shared {
  std::unique_ptr<LocalGroup> group;
  std::mutex mutex;
  std::condition_variable loaded_cv;
  int loaded = 0;
  std::string load_error;
};

Engine::Engine(const std::string& model_path, const EngineOptions& options) : options_(options) {
  const auto t0 = std::chrono::steady_clock::now();
  backend_ = options_.comm == "auto" ? (launched_by_mpirun() ? "mpi" : "local") : options_.comm;
  if (backend_ != "local" && backend_ != "mpi") {
    throw ConfigError(cat("--comm '", options_.comm, "' is not a back end; valid: auto, local, mpi"));
  }
  source_ = ModelSource::open(model_path);
  tokenizer_ = Tokenizer::load(*source_);
  plan_ = ShardPlan::build(source_->config(), options.parallel, shard_constraints(*source_));
  if (options_.parallel.threads_per_rank < 1) {
    throw ConfigError(cat("--threads-per-rank must be at least 1, got ", options_.parallel.threads_per_rank));
  }
  int64_t kv_tokens = options_.kv_tokens > 0 ? options_.kv_tokens : source_->config().max_context;
  if (kv_tokens <= 0) kv_tokens = 4096;
  const int n_blocks = static_cast<int>((kv_tokens + options_.kv_block_size - 1) / options_.kv_block_size);
  blocks_ = std::make_unique<BlockAllocator>(n_blocks, options_.kv_block_size);
  reports_.resize(static_cast<size_t>(plan_.tp()));
  if (backend_ == "mpi") {
    start_mpi();
  } else {
    start_local();
  }
  load_seconds_ = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// Local back end: one thread per rank; each loads its own shard in parallel.
void Engine::start_local() {
  const int tp = plan_.tp();
  shared_ = std::make_unique<Shared>();
  shared_->group = std::make_unique<LocalGroup>(tp, options_.parallel.comm_timeout);
  auto load = [this](int r) -> std::unique_ptr<Rank> {
    std::unique_ptr<Rank> rank;
    try {
      rank = build_rank(shared_->group->communicator(r));
    } catch (const std::exception& e) {
      std::lock_guard<std::mutex> lock(shared_->mutex);
      if (shared_->load_error.empty()) shared_->load_error = cat("rank ", r, ": ", e.what());
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
    shared_->loaded_cv.wait(lock, [&] { return shared_->loaded == plan_.tp(); });
    return shared_->load_error.empty() ? std::move(rank) : nullptr;
  };
  for (int r = 1; r < tp; ++r) {
    workers_.emplace_back([this, load, r] {
      std::unique_ptr<Rank> rank = load(r);
      if (rank) worker_loop(*rank);
    });
  }
  driver_ = load(0);
  std::unique_lock<std::mutex> lock(shared_->mutex);
  shared_->loaded_cv.wait(lock, [&] { return shared_->loaded == tp; });
  if (!shared_->load_error.empty()) {
    const std::string err = shared_->load_error;
    lock.unlock();
    driver_.reset();
    shared_->group->abort("engine failed to start: " + err);
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

// mpi back end: this process is one rank; rank 0 is the driver.
void Engine::start_mpi() {
  std::unique_ptr<Communicator> comm = make_mpi_communicator(options_.parallel.comm_timeout);
  if (comm->size() != plan_.tp()) {
    throw ConfigError(cat("mpirun started ", comm->size(), " processes but --tensor-parallel-size is ", plan_.tp(),
                          "; they must be equal (one process per rank)"));
  }
  MpiRecord mine;
  mine.fingerprint = model_fingerprint(*source_);
  gethostname(mine.host, sizeof(mine.host) - 1);
  const std::vector<MpiRecord> before = exchange(*comm, mine);
  for (int r = 1; r < comm->size(); ++r) {
    if (before[static_cast<size_t>(r)].fingerprint != before[0].fingerprint) {
      throw ConfigError(cat("the model at ", source_->path(), " differs between rank 0 (host ", before[0].host,
                            ") and rank ", r, " (host ", before[static_cast<size_t>(r)].host,
                            "): every host needs the same file at the same path"));
    }
  }
  std::unique_ptr<Rank> rank = build_rank(std::move(comm));
  mine.weight_bytes = reports_[static_cast<size_t>(rank->comm->rank())].weight_bytes;
  mine.kv_bytes = reports_[static_cast<size_t>(rank->comm->rank())].kv_bytes;
  const std::vector<MpiRecord> after = exchange(*rank->comm, mine);
  for (int r = 0; r < plan_.tp(); ++r) {
    reports_[static_cast<size_t>(r)].weight_bytes = after[static_cast<size_t>(r)].weight_bytes;
    reports_[static_cast<size_t>(r)].kv_bytes = after[static_cast<size_t>(r)].kv_bytes;
    reports_[static_cast<size_t>(r)].shard = plan_.rank(r);
  }
  rank->comm->reset_stats();
  if (rank->comm->rank() == 0) {
    driver_ = std::move(rank);
  } else {
    worker_ = std::move(rank);
  }
}

void Engine::run_worker() {
  if (!worker_) throw Error("run_worker() is for the worker processes of the mpi back end");
  worker_loop(*worker_);
}

Engine::~Engine() {
  if (driver_ && plan_.tp() > 1 && !(shared_ && shared_->group->aborted())) {
    try {
      int32_t header[2] = {kStop, 0};
      driver_->comm->broadcast_wait(header, sizeof(header), 0);
    } catch (const std::exception&) {
      if (shared_) shared_->group->abort("driver stopped");
    }
  }
  for (std::thread& t : workers_) t.join();
}

// A rank: its communicator, a thread pool pinned to cores of its own, its
// model shard and KV cache.
std::unique_ptr<Engine::Rank> Engine::build_rank(std::unique_ptr<Communicator> comm) {
  auto rank = std::make_unique<Rank>();
  const int r = comm->rank();
  if (options_.compression != Compression::None) {
    comm = std::make_unique<CompressedCommunicator>(std::move(comm), options_.compression);
  }
  const int tpr = options_.parallel.threads_per_rank;
  std::vector<int> cpus;
  const int n_cpus = static_cast<int>(std::thread::hardware_concurrency());
  // Pin only when every rank of this process gets cores of its own.
  const int ranks_here = backend_ == "mpi" ? 1 : plan_.tp();
  const int first = backend_ == "mpi" ? 0 : r * tpr;
  if (options_.pin_threads && ranks_here * tpr <= n_cpus && backend_ == "local") {
    for (int i = 0; i < tpr; ++i) cpus.push_back(first + i);
  }
  rank->comm = std::move(comm);
  rank->pool = std::make_unique<ThreadPool>(tpr, cpus);
  rank->ctx = std::make_unique<RankContext>(RankContext{*rank->comm, *rank->pool, {}});
  rank->model = std::make_unique<LlamaModel>(*source_, plan_, r);
  rank->cache = std::make_unique<KVCache>(config().n_layers, rank->model->n_local_kv_heads(), config().head_dim,
                                          blocks_->block_size(), blocks_->n_blocks(), options_.kv_type);
  RankReport& rep = reports_[static_cast<size_t>(r)];
  rep.weight_bytes = rank->model->weight_bytes();
  rep.kv_bytes = rank->cache->bytes();
  rep.shard = plan_.rank(r);
  return rank;
}

// Non-driver ranks: run each batch the driver broadcasts, until it says stop.
void Engine::worker_loop(Rank& rank) {
  const int64_t vocab = config().vocab;
  try {
    std::vector<int32_t> words;
    for (;;) {
      int32_t header[2] = {0, 0};
      rank.comm->broadcast_wait(header, sizeof(header), 0);
      if (header[0] == kStop) break;
      words.resize(static_cast<size_t>(header[1]));
      rank.comm->broadcast(words.data(), words.size() * sizeof(int32_t), 0);
      rank.run(Batch::decode(words), vocab);
    }
  } catch (const std::exception& e) {
    if (shared_) {
      shared_->group->abort(cat("rank ", rank.comm->rank(), " failed: ", e.what()));
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

const std::vector<float>& Engine::step(const Batch& batch) {
  if (!driver_) throw Error("step() is for the driver (rank 0)");
  if (shared_ && shared_->group->aborted()) throw CommError(shared_->group->abort_message());
  validate_batch(batch, config().vocab, blocks_->block_size());
  try {
    words_ = batch.encode();
    int32_t header[2] = {kRun, static_cast<int32_t>(words_.size())};
    driver_->comm->broadcast_wait(header, sizeof(header), 0);
    driver_->comm->broadcast(words_.data(), words_.size() * sizeof(int32_t), 0);
    driver_->run(batch, config().vocab);
  } catch (const CommError&) {
    throw;
  } catch (const std::exception& e) {
    if (shared_) shared_->group->abort(cat("rank 0 failed: ", e.what()));
    throw;
  }
  return driver_->logits;
}

const CommStats& Engine::comm_stats() const { return driver_->comm->stats(); }
void Engine::reset_comm_stats() { driver_->comm->reset_stats(); }

std::vector<std::vector<uint64_t>> Engine::expert_load() const { return driver_->model->expert_load(); }
void Engine::reset_expert_load() { driver_->model->reset_expert_load(); }

}  // namespace tpinfer
