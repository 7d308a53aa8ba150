// --device on every build and machine: an unknown name, and cuda where it
// cannot run (no CUDA back end in the build, or no GPU), are ConfigErrors that
// say why, from the Engine and from the CLI. Runs everywhere; on a machine
// with a GPU the "no GPU" case cannot happen and skips, saying so.
#include <gtest/gtest.h>

#include <string>

#include "core/error.h"
#include "engine/engine.h"
#include "test_util.h"

#ifdef TPINFER_HAVE_CUDA
#include "backend/cuda/runtime.h"
#endif

namespace tpinfer {
namespace {

std::string small_model(const testing::TempDir& dir) {
  const std::string path = dir.file("small.gguf");
  write_synth_model(testing::small_spec(Arch::Llama), path);
  return path;
}

std::string config_error(const std::string& model, const EngineOptions& o) {
  try {
    Engine engine(model, o);
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "";
}

// The ConfigError's message of parsing an option value ("" when it parses).
template <typename Parse>
std::string parse_error(Parse parse, const char* value) {
  try {
    parse(value);
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "";
}

TEST(DeviceOption, UnknownNamesListTheValidOnes) {
  EXPECT_EQ(parse_error(parse_device, "tpu"), "--device 'tpu' is not a device; valid: cpu, cuda");
  EXPECT_EQ(parse_error(parse_comm_backend, "tcp"), "--comm 'tcp' is not a back end; valid: auto, local, mpi");
  EXPECT_EQ(parse_device("cuda"), DeviceKind::Cuda);
  EXPECT_EQ(parse_device("cpu"), DeviceKind::Cpu);
  EXPECT_EQ(parse_comm_backend("mpi"), CommBackend::Mpi);
  EXPECT_EQ(parse_comm_backend("local"), CommBackend::Local);
  EXPECT_EQ(parse_comm_backend("auto"), CommBackend::Auto);
  for (DeviceComm c : {DeviceComm::None, DeviceComm::Nccl, DeviceComm::Streams}) EXPECT_STRNE(name(c), "?");
  EXPECT_STREQ(name(DeviceComm::Streams), "streams");
  EXPECT_STREQ(name(CommBackend::Mpi), "mpi");
}

TEST(DeviceOption, CudaWithoutBackEndOrGpuSaysWhy) {
#ifdef TPINFER_HAVE_CUDA
  if (cuda::device_count() > 0) GTEST_SKIP() << "a CUDA device is present: --device cuda runs here";
  const std::string want = "--device cuda: no CUDA device (" + cuda::unavailable_reason() + ")";
#else
  const std::string want = "--device cuda: this build has no CUDA back end (configure with -DTPINFER_CUDA=ON";
#endif
  testing::TempDir dir;
  EngineOptions o = testing::f32_options(2);
  o.device = DeviceKind::Cuda;
  const std::string err = config_error(small_model(dir), o);
  EXPECT_NE(err.find(want), std::string::npos) << err;
}

TEST(DeviceOption, CpuIsTheDefault) {
  testing::TempDir dir;
  Engine engine(small_model(dir), testing::f32_options(1));
  EXPECT_EQ(engine.device(), DeviceKind::Cpu);
  EXPECT_EQ(engine.device_comm(), DeviceComm::None);
  EXPECT_EQ(engine.comm_backend(), CommBackend::Local);
  EXPECT_EQ(engine.rank_reports().at(0).device, "cpu");
}

TEST(DeviceOption, CliRejectsUnknownDevice) {
  testing::TempDir dir;
  std::string out;
  const int rc =
      testing::run_command(testing::binary() + " run -m " + small_model(dir) + " -p hi -n 1 --device tpu", &out);
  EXPECT_NE(rc, 0);
  EXPECT_NE(out.find("valid: cpu, cuda"), std::string::npos) << out;
}

}  // namespace
}  // namespace tpinfer
