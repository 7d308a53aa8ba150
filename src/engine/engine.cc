#include "engine/engine.h"

#include <algorithm>
#include <condition_variable>
#include <mutex>

#include "comm/local_comm.h"
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
  for (int l = 0; l < src.config().n_layers; ++l) {
    const std::string p = "blk." + std::to_string(l) + ".";
    c.attn_output_block = std::max<int64_t>(c.attn_output_block, dtype_info(src.get(p + "attn_output.weight").type).block_size);
    c.ffn_down_block = std::max<int64_t>(c.ffn_down_block, dtype_info(src.get(p + "ffn_down.weight").type).block_size);
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
  source_ = ModelSource::open(model_path);
  tokenizer_ = Tokenizer::load(*source_);
  plan_ = ShardPlan::build(source_->config(), options.parallel, shard_constraints(*source_));
  const int tp = plan_.tp();
  if (options_.parallel.threads_per_rank < 1) {
    throw ConfigError(cat("--threads-per-rank must be at least 1, got ", options_.parallel.threads_per_rank));
  }
  int64_t kv_tokens = options_.kv_tokens > 0 ? options_.kv_tokens : source_->config().max_context;
  if (kv_tokens <= 0) kv_tokens = 4096;
  const int n_blocks = static_cast<int>((kv_tokens + options_.kv_block_size - 1) / options_.kv_block_size);
  blocks_ = std::make_unique<BlockAllocator>(n_blocks, options_.kv_block_size);
  reports_.resize(static_cast<size_t>(tp));

  shared_ = std::make_unique<Shared>();
  shared_->group = std::make_unique<LocalGroup>(tp, options_.parallel.comm_timeout);
  for (int r = 1; r < tp; ++r) workers_.emplace_back([this, r] { rank_main(r); });
  rank_main(0);  // loads the driver's shard and returns
  {
    std::unique_lock<std::mutex> lock(shared_->mutex);
    shared_->loaded_cv.wait(lock, [&] { return shared_->loaded == tp; });
    if (!shared_->load_error.empty()) {
      const std::string err = shared_->load_error;
      lock.unlock();
      shared_->group->abort("engine failed to start: " + err);
      for (std::thread& t : workers_) t.join();
      workers_.clear();
      throw Error(err);
    }
  }
  load_seconds_ = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

Engine::~Engine() {
  if (!workers_.empty()) {
    try {
      int32_t header[2] = {kStop, 0};
      if (!shared_->group->aborted()) driver_->comm->broadcast_wait(header, sizeof(header), 0);
    } catch (const std::exception&) {
      shared_->group->abort("driver stopped");
    }
    for (std::thread& t : workers_) t.join();
  }
}

// Rank r: builds its shard; rank 0 returns after loading (the driver runs it from
// step()); the others loop on the driver's batches until told to stop.
void Engine::rank_main(int r) {
  auto rank = std::make_unique<Rank>();
  try {
    const int tpr = options_.parallel.threads_per_rank;
    std::vector<int> cpus;
    const int n_cpus = static_cast<int>(std::thread::hardware_concurrency());
    if (options_.pin_threads && plan_.tp() * tpr <= n_cpus) {
      for (int i = 0; i < tpr; ++i) cpus.push_back(r * tpr + i);
    }
    rank->comm = shared_->group->communicator(r);
    rank->pool = std::make_unique<ThreadPool>(tpr, cpus);
    rank->ctx = std::make_unique<RankContext>(RankContext{*rank->comm, *rank->pool, {}});
    rank->model = std::make_unique<LlamaModel>(*source_, plan_, r);
    rank->cache = std::make_unique<KVCache>(config().n_layers, rank->model->n_local_kv_heads(), config().head_dim,
                                            blocks_->block_size(), blocks_->n_blocks(), options_.kv_type);
    RankReport& rep = reports_[static_cast<size_t>(r)];
    rep.weight_bytes = rank->model->weight_bytes();
    rep.kv_bytes = rank->cache->bytes();
    rep.shard = plan_.rank(r);
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
  if (r == 0) {
    driver_ = std::move(rank);
    return;
  }
  if (failed) return;
  // Worker loop.
  const int64_t vocab = config().vocab;
  try {
    std::vector<int32_t> words;
    for (;;) {
      int32_t header[2] = {0, 0};
      rank->comm->broadcast_wait(header, sizeof(header), 0);
      if (header[0] == kStop) break;
      words.resize(static_cast<size_t>(header[1]));
      rank->comm->broadcast(words.data(), words.size() * sizeof(int32_t), 0);
      rank->run(Batch::decode(words), vocab);
    }
  } catch (const std::exception& e) {
    shared_->group->abort(cat("rank ", r, " failed: ", e.what()));
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
  if (shared_->group->aborted()) throw CommError(shared_->group->abort_message());
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
    shared_->group->abort(cat("rank 0 failed: ", e.what()));
    throw;
  }
  return driver_->logits;
}

const CommStats& Engine::comm_stats() const { return driver_->comm->stats(); }
void Engine::reset_comm_stats() { driver_->comm->reset_stats(); }

}  // namespace tpinfer
