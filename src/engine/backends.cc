#include "engine/backends.h"

#include <string>

#include "comm/mpi_comm.h"
#include "core/error.h"

namespace tpinfer {

CommBackend parse_comm_backend(std::string_view name) {
  if (name == "auto") return CommBackend::Auto;
  if (name == "local") return CommBackend::Local;
  if (name == "mpi") return CommBackend::Mpi;
  throw ConfigError(cat("--comm '", std::string(name), "' is not a back end; valid: auto, local, mpi"));
}

Device parse_device(std::string_view name) {
  if (name == "cpu") return Device::Cpu;
  if (name == "cuda") return Device::Cuda;
  throw ConfigError(cat("--device '", std::string(name), "' is not a device; valid: cpu, cuda"));
}

CommBackend resolve(CommBackend backend) {
  if (backend != CommBackend::Auto) return backend;
  return launched_by_mpirun() ? CommBackend::Mpi : CommBackend::Local;
}

const char* name(CommBackend backend) {
  switch (backend) {
    case CommBackend::Auto:
      return "auto";
    case CommBackend::Local:
      return "local";
    case CommBackend::Mpi:
      return "mpi";
  }
  return "?";
}

const char* name(Device device) { return device == Device::Cuda ? "cuda" : "cpu"; }

const char* name(DeviceComm comm) {
  switch (comm) {
    case DeviceComm::None:
      return "none";
    case DeviceComm::Nccl:
      return "nccl";
    case DeviceComm::Streams:
      return "streams";
  }
  return "?";
}

}  // namespace tpinfer
