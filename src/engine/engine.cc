#include "engine/engine.h"

#include <algorithm>
#include <thread>

#include "core/error.h"
#include "engine/rank.h"

namespace tpinfer {
namespace {

using Clock = std::chrono::steady_clock;

int64_t nanos_since(Clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - t).count();
}

// The driver's broadcast to stage 0: a command and the number of batch words
// (then, for Run, the words).
void broadcast_command(Communicator& tp, StageCommand command, int32_t words) {
  int32_t header[2] = {static_cast<int32_t>(command), words};
  tp.broadcast_wait(header, sizeof(header), 0);
}

}  // namespace

ShardConstraints shard_constraints(const ModelSource& src) {
  return shard_constraints_of(src.config(),
                              [&](const std::string& name) { return dtype_info(src.get(name).type).block_size; });
}

Engine::Engine(const std::string& model_path, const EngineOptions& options) : options_(options) {
  const auto t0 = Clock::now();
  backend_ = resolve(options_.comm);
  check_device();
  source_ = ModelSource::open(model_path);
  tokenizer_ = Tokenizer::load(*source_);
  plan_ = ShardPlan::build(source_->config(), options.parallel, shard_constraints(*source_));
  pipeline_ = PipelinePlan::build(source_->config().n_layers, options.parallel.pp, options.parallel.pipeline_split);
  if (options_.parallel.micro_batches < 0) {
    throw ConfigError(
        cat("--micro-batches must be at least 1 (0: one per stage), got ", options_.parallel.micro_batches));
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
  times_ = PipelineTimes(pp());
  expert_load_ = ExpertLoadTally(source_->config(), pipeline_);
  if (options_.device == DeviceKind::Cuda) setup_cuda();
  if (backend_ == CommBackend::Mpi) {
    start_mpi();
  } else {
    start_local();
  }
  load_seconds_ = std::chrono::duration<double>(Clock::now() - t0).count();
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
      if (tp() > 1) broadcast_command(*driver_->tp, StageCommand::Stop, 0);
      send_stop(*driver_);
    } catch (const std::exception&) {
      if (shared_) shared_->abort_all("driver stopped");
    }
  }
  for (std::thread& t : workers_) t.join();
}

// Runs a batch on this rank (a stage after the first has its input in the
// model already), appends its forward time and takes its expert counts.
void Engine::run_stage(Rank& rank, const Batch& batch, std::vector<int64_t>& busy_nanos, std::vector<int64_t>& loads) {
  const Clock::time_point t0 = Clock::now();
  rank.run(batch);
  busy_nanos.push_back(nanos_since(t0));
  expert_load_.take(*rank.model, loads);
}

// Hands a batch this rank has run to its counterpart in the next stage; rank 0
// of the last stage sends the logits to the driver instead.
void Engine::send_on(Rank& rank, const std::vector<int32_t>& words, int64_t n_tokens,
                     const std::vector<int64_t>& busy_nanos, const std::vector<int64_t>& loads) {
  int to = 0;
  if (rank.stage + 1 < pp()) {
    rank.message.encode(StageCommand::Run, words, rank.model->stage_output(), n_tokens, config().hidden, busy_nanos,
                        loads);
    to = world_rank_of(rank.stage + 1, rank.tp_rank, tp());
  } else if (rank.tp_rank == 0) {
    const int64_t width = rank.row_floats;
    rank.message.encode(StageCommand::Logits, {}, rank.logits.data(), static_cast<int64_t>(rank.logits.size()) / width,
                        width, busy_nanos, loads);
  } else {
    return;
  }
  rank.pipe->send(&rank.message.header(), sizeof(StageHeader), to);
  rank.pipe->send(rank.message.payload(), rank.message.payload_size(), to);
}

void Engine::send_stop(Rank& rank) {
  if (rank.stage + 1 >= pp()) return;
  const StageHeader h{static_cast<int32_t>(StageCommand::Stop), 0, 0, 0};
  rank.pipe->send(&h, sizeof(h), world_rank_of(rank.stage + 1, rank.tp_rank, tp()));
}

// Ranks other than the driver: run each batch as it arrives (stage 0 from the
// driver's broadcast, later stages from the stage before), until told to stop.
void Engine::worker_loop(Rank& rank) {
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
        if (header[0] == static_cast<int32_t>(StageCommand::Stop)) break;
        if (header[0] == static_cast<int32_t>(StageCommand::Report)) {
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
        if (h.command == static_cast<int32_t>(StageCommand::Stop)) break;
        rank.message.expect(h, StageCommand::Run, rank.stage, config().hidden, expert_load_.words(rank.stage), prev);
        rank.pipe->recv(rank.message.payload(), rank.message.payload_size(), prev);
        rank.message.words(words);
        std::copy_n(rank.message.rows(), rank.message.row_bytes() / sizeof(float), rank.model->stage_input(h.rows));
        rank.message.nanos(busy);
        rank.message.loads(loads);
        n_tokens = h.rows;
      }
      run_stage(rank, Batch::decode(words), busy, loads);
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
  if (b.logit_top < 0 || b.logit_top > vocab) {
    throw Error(cat("batch asks for ", b.logit_top, " candidates per rank of a vocabulary of ", vocab));
  }
  if (!b.penalties.empty() && (b.logit_top == 0 || static_cast<int64_t>(b.penalties.size()) != b.n_logits())) {
    throw Error(cat("batch has ", b.penalties.size(), " penalty rows for ", b.n_logits(), " logits rows with top ",
                    b.logit_top, " (penalties go with summaries, one per row)"));
  }
  for (const PenaltyInputs& p : b.penalties) {
    for (const PenaltyToken& t : p.tokens) {
      if (t.count < 0 || t.count > (1 << 29)) throw Error(cat("penalty count ", t.count, " of token ", t.id));
    }
  }
  for (size_t i = 0; i < n; ++i) {
    if (b.tokens[i] < 0 || b.tokens[i] >= vocab) {
      throw Error(cat("token id ", b.tokens[i], " outside the vocabulary of ", vocab));
    }
    if (b.seq[i] < 0 || static_cast<size_t>(b.seq[i]) >= b.sequences.size())
      throw Error("batch token without sequence");
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
  row_floats_.clear();
  if (shared_) shared_->abort_all(message);
}

void Engine::submit(const Batch& batch) {
  if (!driver_) throw Error("submit() is for the driver (rank 0)");
  if (shared_ && shared_->aborted()) throw CommError(shared_->abort_message());
  validate_batch(batch, config().vocab, blocks_->block_size());
  try {
    times_.submitted(in_flight_);
    words_ = batch.encode();
    broadcast_command(*driver_->tp, StageCommand::Run, static_cast<int32_t>(words_.size()));
    driver_->tp->broadcast(words_.data(), words_.size() * sizeof(int32_t), 0);
    std::vector<int64_t> busy, loads;
    run_stage(*driver_, batch, busy, loads);
    if (pp() > 1) {
      send_on(*driver_, words_, batch.size(), busy, loads);
      row_floats_.push_back(logits_row_floats(batch.logit_top));
    } else {
      times_.add_busy(busy);
      expert_load_.add(loads);
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
      message_.expect(h, StageCommand::Logits, pp(), row_floats_.front(), expert_load_.words(pp()), last);
      row_floats_.pop_front();
      driver_->pipe->recv(message_.payload(), message_.payload_size(), last);
      logits_.assign(message_.rows(), message_.rows() + message_.row_bytes() / sizeof(float));
      std::vector<int64_t> busy, loads;
      message_.nanos(busy);
      message_.loads(loads);
      times_.add_busy(busy);
      expert_load_.add(loads);
    }
  } catch (const std::exception& e) {
    fail(cat("rank 0 failed: ", e.what()));
    throw;
  }
  in_flight_ -= 1;
  times_.collected(in_flight_);
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

int Engine::summary_top(int wanted) const {
  if (options_.sampling_gather == SamplingGather::Full || wanted <= 0) return 0;
  int64_t smallest = config().vocab;
  for (int r = 0; r < tp(); ++r) smallest = std::min(smallest, plan_.rank(r).vocab.size());
  // A candidate is two floats; a summary adds two more.
  return summary_floats(wanted) < smallest ? wanted : 0;
}

int64_t Engine::logits_row_floats(int top) const { return top > 0 ? tp() * summary_floats(top) : config().vocab; }

// The caller owns `out` (step()'s or collect()'s result) and may modify the
// row (the sampler penalises a whole row in place).
LogitRow Engine::logit_row(const std::vector<float>& out, int top, int64_t i) const {
  const int64_t w = logits_row_floats(top);
  float* row = const_cast<float*>(out.data()) + i * w;
  LogitRow r;
  if (top > 0) {
    r.summaries = row;
    r.ranks = tp();
    r.top = top;
  } else {
    r.full = std::span<float>(row, static_cast<size_t>(w));
  }
  return r;
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
    if (tp() > 1) broadcast_command(*driver_->tp, StageCommand::Report, 0);
    return exchange_collectives(*driver_);
  } catch (const std::exception& e) {
    fail(cat("rank 0 failed: ", e.what()));
    throw;
  }
}

ParallelStats Engine::parallel_stats() const {
  ParallelStats s;
  s.tp = comm_stats();
  s.tp_measures_wait = driver_->tp_measures_wait();
  if (driver_->pipe) s.pp = driver_->pipe->stats();
  times_.fill(s, in_flight_);
  return s;
}

void Engine::reset_comm_stats() {
  driver_->reset_tp_stats();
  if (driver_->pipe) driver_->pipe->reset_stats();
  times_.reset();
}

std::vector<std::vector<uint64_t>> Engine::expert_load() const { return expert_load_.counts(); }
void Engine::reset_expert_load() { expert_load_.reset(); }

}  // namespace tpinfer
