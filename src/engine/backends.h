// The choices an engine is started with: how its ranks talk (the host
// communication back end), where they compute (the device), and how a
// tensor-parallel group's collectives run on that device. Parsed once from the
// command line; everything after compares enums.
#pragma once

#include <string_view>

namespace tpinfer {

// Host communication: ranks as threads of this process, or one process per
// rank under mpirun; Auto is Mpi when this process was started by mpirun.
enum class CommBackend { Auto, Local, Mpi };

// Where the ranks compute: the Device of parallel/cpu_device.h or parallel/cuda/cuda_device.h.
enum class DeviceKind { Cpu, Cuda };

// A tensor-parallel group's collectives on the device: None (cpu, or one rank
// per group), Nccl (one GPU per rank), Streams (several ranks as streams of
// one GPU, comm/cuda/device_comm.h).
enum class DeviceComm { None, Nccl, Streams };

// How the logits rows a sampler needs reach the driver: Full, the whole rows
// (the lm_head's all-gather); Shard, each rank's summary of its vocabulary
// shard (parallel/logit_summary.h) wherever that is exact, else whole rows
// (Engine::summary_top).
enum class SamplingGather { Full, Shard };

// "--comm x" / "--device x" / "--sampling-gather x": ConfigError naming the valid choices otherwise.
CommBackend parse_comm_backend(std::string_view name);
DeviceKind parse_device(std::string_view name);
SamplingGather parse_sampling_gather(std::string_view name);

// Auto resolved for this process; Local and Mpi unchanged.
CommBackend resolve(CommBackend backend);

const char* name(CommBackend backend);
const char* name(DeviceKind device);
const char* name(DeviceComm comm);
const char* name(SamplingGather gather);

}  // namespace tpinfer
