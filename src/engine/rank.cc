// Building one rank on its device: its communicators (the device's collectives
// first), its pinned thread pool, its model shard and KV cache. Everything
// the engine knows of CUDA is here.
#include "engine/rank.h"

#include <algorithm>
#include <cstdlib>

#include "comm/compressed_comm.h"
#include "core/error.h"
#include "model/llama.h"
#include "parallel/cpu_device.h"

#ifdef TPINFER_HAVE_CUDA
#include "backend/cuda/runtime.h"
#include "comm/cuda/topology.h"
#include "parallel/cuda/cuda_device.h"
#endif

namespace tpinfer {

struct Engine::DeviceGroups {
#ifdef TPINFER_HAVE_CUDA
  std::vector<std::unique_ptr<cuda::StreamsGroup>> streams;  // [stage]
#endif
};

Engine::Shared::Shared() = default;
Engine::Shared::~Shared() = default;

void Engine::Shared::abort_all(const std::string& message) {
  if (world) world->abort(message);
  for (auto& g : stages) g->abort(message);
#ifdef TPINFER_HAVE_CUDA
  if (device) {
    for (auto& g : device->streams) g->abort(message);
  }
#endif
}

bool Engine::Shared::aborted() const {
  if (world && world->aborted()) return true;
  for (const auto& g : stages) {
    if (g->aborted()) return true;
  }
  return false;
}

std::string Engine::Shared::abort_message() const {
  if (world && world->aborted()) return world->abort_message();
  for (const auto& g : stages) {
    if (g->aborted()) return g->abort_message();
  }
  return "";
}

const CommStats& Engine::Rank::tp_stats() const {
#ifdef TPINFER_HAVE_CUDA
  if (dcomm) return dcomm->stats();
#endif
  return tp->stats();
}

bool Engine::Rank::tp_measures_wait() const {
#ifdef TPINFER_HAVE_CUDA
  if (dcomm) return false;  // device collectives: timed by events, no arrivals
#endif
  return tp->measures_wait();
}

void Engine::Rank::reset_tp_stats() {
  tp->reset_stats();
#ifdef TPINFER_HAVE_CUDA
  if (dcomm) dcomm->reset_stats();
#endif
  reported = {};
}

void Engine::check_device() const {
  if (options_.device != DeviceKind::Cuda) return;
#ifdef TPINFER_HAVE_CUDA
  if (cuda::device_count() == 0)
    throw ConfigError(cat("--device cuda: no CUDA device (", cuda::unavailable_reason(), ")"));
#else
  throw ConfigError(
      "--device cuda: this build has no CUDA back end (configure with -DTPINFER_CUDA=ON and the CUDA toolkit "
      "installed)");
#endif
}

void Engine::setup_cuda() {
#ifdef TPINFER_HAVE_CUDA
  CudaDevice::check_supported(*source_, options_.kv_type);
  device_comm_ = tp() > 1 ? DeviceComm::Nccl : DeviceComm::None;
  if (backend_ == CommBackend::Mpi) return;  // one process per rank, each on its own GPU (mpi_device())
  if (cuda::device_count() >= world_size()) {
    devices_ = cuda::place_ranks(cuda::detect_topology(), tp(), pp());
  } else {
    // Fewer GPUs than ranks: every rank a stream of GPU 0, so the sharded GPU
    // code runs (and is tested) on one GPU.
    devices_.assign(static_cast<size_t>(world_size()), 0);
    if (tp() > 1) device_comm_ = DeviceComm::Streams;
  }
#endif
}

void Engine::start_device_groups() {
  auto groups = std::make_unique<DeviceGroups>();
#ifdef TPINFER_HAVE_CUDA
  if (device_comm_ == DeviceComm::Streams) {
    for (int s = 0; s < pp(); ++s) {
      groups->streams.push_back(std::make_unique<cuda::StreamsGroup>(
          tp(), 0, cuda::DeviceCommOptions{options_.parallel.comm_timeout, options_.compression}));
    }
  }
#endif
  shared_->device = std::move(groups);
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
  const bool mpi = backend_ == CommBackend::Mpi;
#ifdef TPINFER_HAVE_CUDA
  // The device communicator first: NCCL's bootstrap is a collective of the
  // host group, which every rank reaches here at once.
  int device = 0;
  if (options_.device == DeviceKind::Cuda) {
    device = mpi ? mpi_device(world_rank) : devices_.at(static_cast<size_t>(world_rank));
    if (device_comm_ == DeviceComm::Streams) {
      rank->dcomm = shared_->device->streams.at(static_cast<size_t>(at.stage))->rank(at.tp_rank);
    } else if (device_comm_ == DeviceComm::Nccl) {
      rank->dcomm = cuda::make_nccl_comm(*tp_comm, device,
                                         cuda::DeviceCommOptions{options_.parallel.comm_timeout, options_.compression});
    }
  }
#endif
  if (options_.compression != Compression::None) {
    tp_comm = std::make_unique<CompressedCommunicator>(std::move(tp_comm), options_.compression);
  }
  const int tpr = options_.parallel.threads_per_rank;
  std::vector<int> cpus;
  const int n_cpus = available_cpus();  // the process's cores (taskset, cgroups), numbered 0.. among them
  // Pin only the local back end's ranks, and only when every rank gets cores of its own.
  const int first = options_.first_cpu + world_rank * tpr;
  if (options_.pin_threads && !mpi && options_.first_cpu + world_size() * tpr <= n_cpus) {
    for (int i = 0; i < tpr; ++i) cpus.push_back(available_cpu(first + i));
  }
  rank->pipe = std::move(pipe);
  rank->tp = std::move(tp_comm);
  rank->pool = std::make_unique<ThreadPool>(tpr, cpus);
  const LayerRange layers = pipeline_.stage(at.stage);
  std::unique_ptr<Device> dev;
#ifdef TPINFER_HAVE_CUDA
  if (options_.device == DeviceKind::Cuda) {
    dev = std::make_unique<CudaDevice>(CudaDeviceOptions{device, options_.cuda_graphs}, rank->dcomm.get());
  }
#endif
  if (!dev) dev = std::make_unique<CpuDevice>(*rank->tp, *rank->pool);
  KvCacheShape kv;
  kv.block_size = blocks_->block_size();
  kv.n_blocks = blocks_->n_blocks();
  kv.type = options_.kv_type;
  auto llama = std::make_unique<LlamaModel>(*dev, *source_, plan_, at.tp_rank, layers, kv);
  rank->model = std::make_unique<RankModel>(std::move(dev), std::move(llama));
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

}  // namespace tpinfer
