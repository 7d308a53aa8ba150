// The mpi back end: this process is one rank of an mpirun job (world rank 0
// the driver). The processes check that they opened the same model, load
// their shards, and tell each other what they hold.
#include <unistd.h>

#include <algorithm>

#include "comm/mpi_comm.h"
#include "core/error.h"
#include "engine/rank.h"

namespace tpinfer {
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

void Engine::start_mpi() {
  std::unique_ptr<Communicator> world = make_mpi_communicator(options_.parallel.comm_timeout);
  if (world->size() != world_size()) {
    throw ConfigError(cat("mpirun started ", world->size(),
                          " processes but tensor-parallel-size x pipeline-parallel-size is ", tp(), " x ", pp(), " = ",
                          world_size(), "; they must be equal (one process per rank)"));
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
    std::unique_ptr<Communicator> group =
        make_mpi_split_communicator(at.stage, at.tp_rank, options_.parallel.comm_timeout);
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
    if (r != w) rep.device = name(options_.device);  // the other processes' GPU names stay theirs
  }
  rank->tp->reset_stats();
  if (rank->pipe) rank->pipe->reset_stats();
  if (w == 0) {
    driver_ = std::move(rank);
  } else {
    worker_ = std::move(rank);
  }
}

}  // namespace tpinfer
