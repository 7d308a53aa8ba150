// tpinfer devices: the GPUs this build can use, how they are linked, and
// whether NCCL is there; which CUDA back end was built at all. Always exits 0
// when it could answer (no GPU is an answer, not an error).
#include <cstdio>
#include <string>

#include "cli/common.h"
#include "core/error.h"

#if defined(TPINFER_HAVE_CUDA)
#include "backend/cuda/runtime.h"
#include "comm/cuda/topology.h"
#endif
#if defined(TPINFER_HAVE_NCCL)
#include <nccl.h>
#endif

namespace tpinfer::cli {
namespace {

void devices() {
#if !defined(TPINFER_HAVE_CUDA)
  std::printf("the CUDA back end was not built (configure with -DTPINFER_CUDA=ON where nvcc is installed)\n");
#else
  const int n = cuda::device_count();
  if (n == 0) {
    std::printf("no CUDA device: %s\n", cuda::unavailable_reason().c_str());
  } else {
    for (int i = 0; i < n; ++i) {
      const cuda::DeviceInfo d = cuda::device_info(i);
      std::printf("GPU%d: %s, sm_%d%d, %s, %d SMs\n", i, d.name.c_str(), d.sm_major, d.sm_minor,
                  format_bytes(d.total_bytes).c_str(), d.multiprocessors);
    }
    std::printf("\n%s", cuda::detect_topology().describe().c_str());
  }
#if defined(TPINFER_HAVE_NCCL)
  int version = 0;
  if (ncclGetVersion(&version) == ncclSuccess) {
    std::printf("NCCL: %d.%d.%d (comm nccl: one rank per GPU)\n", version / 10000, version / 100 % 100, version % 100);
  } else {
    std::printf("NCCL: built, but its library does not answer\n");
  }
#else
  std::printf("NCCL: not in this build (comm nccl unavailable; streams works on one GPU)\n");
#endif
#endif
}

}  // namespace

void register_devices(CLI::App& app) {
  CLI::App* cmd = app.add_subcommand("devices", "The GPUs, how they are linked, and whether NCCL is available");
  cmd->callback([] { devices(); });
}

}  // namespace tpinfer::cli
