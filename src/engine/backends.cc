#include "engine/backends.h"

#include <string>

#include "comm/mpi_comm.h"
#include "core/enum_names.h"
#include "core/error.h"

namespace tpinfer {
namespace {

constexpr EnumNames<CommBackend, 3> kCommBackends{{"auto", "local", "mpi"}};
constexpr EnumNames<DeviceKind, 2> kDevices{{"cpu", "cuda"}};
constexpr EnumNames<DeviceComm, 3> kDeviceComms{{"none", "nccl", "streams"}};
constexpr EnumNames<SamplingGather, 2> kSamplingGathers{{"full", "shard"}};

}  // namespace

CommBackend parse_comm_backend(std::string_view name) {
  if (const auto b = kCommBackends.find(name)) return *b;
  throw ConfigError(cat("--comm '", std::string(name), "' is not a back end; valid: ", kCommBackends.valid()));
}

DeviceKind parse_device(std::string_view name) {
  if (const auto d = kDevices.find(name)) return *d;
  throw ConfigError(cat("--device '", std::string(name), "' is not a device; valid: ", kDevices.valid()));
}

SamplingGather parse_sampling_gather(std::string_view name) {
  if (const auto g = kSamplingGathers.find(name)) return *g;
  throw ConfigError(
      cat("--sampling-gather '", std::string(name), "' is not a choice; valid: ", kSamplingGathers.valid()));
}

CommBackend resolve(CommBackend backend) {
  if (backend != CommBackend::Auto) return backend;
  return launched_by_mpirun() ? CommBackend::Mpi : CommBackend::Local;
}

const char* name(CommBackend backend) { return kCommBackends[backend]; }
const char* name(DeviceKind device) { return kDevices[device]; }
const char* name(DeviceComm comm) { return kDeviceComms[comm]; }
const char* name(SamplingGather gather) { return kSamplingGathers[gather]; }

}  // namespace tpinfer
