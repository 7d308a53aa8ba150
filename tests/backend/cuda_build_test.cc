// Always compiled: says visibly when the CUDA back end was not built, and when
// it was, that its device probe is consistent (no device <=> a reason).
#include <gtest/gtest.h>

#ifdef TPINFER_HAVE_CUDA
#include <iostream>
#include <string>

#include "backend/cuda/runtime.h"
#endif

namespace tpinfer {
namespace {

TEST(CudaBuild, DeviceProbeIsConsistent) {
#ifndef TPINFER_HAVE_CUDA
  GTEST_SKIP() << "the CUDA back end was not built (configure with -DTPINFER_CUDA=ON)";
#else
  const int count = cuda::device_count();
  const std::string reason = cuda::unavailable_reason();
  EXPECT_GE(count, 0);
  EXPECT_EQ(count == 0, !reason.empty()) << "device_count " << count << ", reason '" << reason << "'";
  if (count == 0) std::cout << "[   INFO   ] no CUDA device: " << reason << "\n";
#endif
}

}  // namespace
}  // namespace tpinfer
